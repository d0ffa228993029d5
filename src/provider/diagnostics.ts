/**
 * What terraform shows of a failure or a caution: diagnostics with the CLI's
 * sentence as the summary and its error code in the detail. Terraform prints
 * a diagnostic's summary and detail and nothing else, so whatever the user
 * needs to act on (the rows that do not open, say) goes into the detail.
 */
import { ErrorCode, MasterKeyError, exitCodeFor, isMasterKeyError } from '../errors';
import { count } from '../format';
import type { SecretFailure } from '../store/store';
import { log } from './plugin-server';
import type { Diagnostic } from './protocol';

/** How many undecryptable values a diagnostic lists (the count says how many there are in all). */
export const LISTED_ROWS = 20;

/** "Error code X (`master-key` reports the same and exits N)." */
export function codeLine(code: ErrorCode, cli = '`master-key` reports the same and exits'): string {
  return `Error code ${code} (${cli} ${exitCodeFor(code)}).`;
}

/** One value that does not open, by its place (never the value): `table.column#path id=7 (kind): SEALED_WRONG_KEY`. */
export function failureLine(f: SecretFailure): string {
  return `${f.table}.${f.column}${f.path ? `#${f.path}` : ''} id=${f.id} (${f.kind}): ${f.code}`;
}

/** The first `LISTED_ROWS` of `total` values that do not open, one per line, and how many more there are. */
export function failureList(rows: readonly SecretFailure[], total: number): string {
  const listed = rows.slice(0, LISTED_ROWS);
  const lines = listed.map((f) => `  - ${failureLine(f)}`);
  if (total > listed.length) lines.push(`  … and ${count(total - listed.length)} more (${count(total)} in all).`);
  return lines.join('\n');
}

/**
 * The CLI's sentence as the summary, its code (and, for values that do not
 * open, their places) in the detail. An error of the provider's own carries
 * its detail in `details.providerOnly`.
 */
export function errorDiagnostic(e: unknown): Diagnostic {
  const err = isMasterKeyError(e) ? e : new MasterKeyError('INTERNAL', `Internal error in terraform-provider-masterkey: ${(e as Error)?.message ?? String(e)}; please report it.`);
  if (err.code === 'INTERNAL') log('error', 'internal error', { error: String((e as Error)?.stack ?? e) });
  const failures = err.details.failures as readonly SecretFailure[] | undefined;
  const rows = Array.isArray(failures) && failures.length ? `Values that do not open:\n${failureList(failures, Math.max(failures.length, Number(err.details.failureCount) || 0))}\n\n` : '';
  // A refusal of the provider's own (the CLI has none like it) says so instead of pointing at the CLI.
  const code = typeof err.details.providerOnly === 'string' ? `${err.details.providerOnly}\n\nError code ${err.code}.` : codeLine(err.code);
  return { severity: 'ERROR', summary: err.message, detail: `${rows}${code}` };
}

export const warning = (summary: string, detail = ''): Diagnostic => ({ severity: 'WARNING', summary, detail });

export const error = (summary: string, detail = ''): Diagnostic => ({ severity: 'ERROR', summary, detail });
