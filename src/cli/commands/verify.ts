/** `master-key verify`: open every secret with the configured key and report failures. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { count } from '../../format';
import { CliCommand, CommonOpts, Io, emit, onInstallation, withCommon } from '../options';

export const verify = {
  define: (program: Command) => withCommon(program.command('verify').description('open every secret with the configured key and report failures')),

  async run(o: CommonOpts, io: Io): Promise<ExitCodeValue> {
    const r = await onInstallation(o, io, (inst) => inst.verify());
    const ok = r.scan.failureCount === 0;
    emit(
      io,
      o.json,
      { ok, fingerprint: r.fingerprint, checked: r.scan.total, byKind: r.scan.byKind, failures: r.scan.failures, failureCount: r.scan.failureCount },
      [
        `${ok ? 'OK' : 'FAILED'}: ${count(r.scan.total - r.scan.failureCount)} of ${count(r.scan.total)} secrets open with ${r.fingerprint}.`,
        ...r.scan.failures.map((f) => `  ${f.table}.${f.column}${f.path ? `#${f.path}` : ''} id=${f.id} (${f.kind}): ${f.code}`),
      ].join('\n'),
    );
    return ok ? ExitCode.OK : ExitCode.UNDECRYPTABLE;
  },
} satisfies CliCommand;
