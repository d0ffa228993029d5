/**
 * What terraform shows of a failure or a caution: diagnostics with the CLI's
 * sentence as the summary and its error code in the detail. Terraform prints
 * a diagnostic's summary and detail and nothing else.
 */
import { ErrorCode, MasterKeyError, exitCodeFor, isMasterKeyError } from '../errors';
import { log } from './plugin-server';
import type { Diagnostic } from './protocol';

/** "Error code X (`master-key` reports the same and exits N)." */
export function codeLine(code: ErrorCode, cli = '`master-key` reports the same and exits'): string {
  return `Error code ${code} (${cli} ${exitCodeFor(code)}).`;
}

/** The CLI's sentence as the summary, its code in the detail. */
export function errorDiagnostic(e: unknown): Diagnostic {
  const err = isMasterKeyError(e) ? e : new MasterKeyError('INTERNAL', `Internal error in terraform-provider-masterkey: ${(e as Error)?.message ?? String(e)}; please report it.`);
  if (err.code === 'INTERNAL') log('error', 'internal error', { error: String((e as Error)?.stack ?? e) });
  return { severity: 'ERROR', summary: err.message, detail: codeLine(err.code) };
}

export const warning = (summary: string, detail = ''): Diagnostic => ({ severity: 'WARNING', summary, detail });

export const error = (summary: string, detail = ''): Diagnostic => ({ severity: 'ERROR', summary, detail });
