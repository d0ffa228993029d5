/** `master-key restore`: put a backup back without stranding a secret, or `--drill`: restore it into a scratch copy and prove it opens. */
import { resolve } from 'node:path';
import { isSshAddress } from '../../remote/address';
import type { DrillResult, RestoreResult } from '../../rotation/restore';
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { CliCommand, CommonOpts, Io, emit, onInstallation, withBatchSize, withCommon } from '../options';

export interface RestoreOptions extends CommonOpts {
  backup: string;
  drill?: boolean;
  identityFile?: string;
}

export const restore = {
  define: (program: Command) =>
    withBatchSize(
      withCommon(
        program
          .command('restore')
          .description('put a backup back (values, canary, config files), re-sealing values written since under its key; or --drill: restore it into a scratch copy and check it'),
      ),
    )
      .requiredOption('--backup <dir>', 'backup directory printed by apply')
      .option('--drill', 'restore into a scratch copy and open every value with the backup\'s key; the live database and config files are not touched')
      .option('--identity-file <path>', 'age identity file (mode 0600) of one of the recipients a sealed backup is sealed to'),

  async run(o: RestoreOptions, io: Io): Promise<ExitCodeValue> {
    const backup = o.config.some(isSshAddress) ? o.backup : resolve(o.backup);
    const open = { identityFile: o.identityFile !== undefined ? resolve(o.identityFile) : undefined };
    const r = await onInstallation<RestoreResult | DrillResult>(o, io, (inst) => (o.drill ? inst.drill(backup, open) : inst.restore(backup, open)));
    emit(io, o.json, { ok: r.verification.ok, ...r }, '');
    return r.verification.ok ? ExitCode.OK : ExitCode.UNDECRYPTABLE;
  },
} satisfies CliCommand;
