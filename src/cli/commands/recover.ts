/** `master-key recover`: finish or undo an interrupted rotation. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { CliCommand, CommonOpts, Io, emit, onInstallation, withBackupDir, withBatchSize, withCommon, withHooks } from '../options';

export const recover = {
  define: (program: Command) => withBackupDir(withBatchSize(withHooks(withCommon(program.command('recover').description('finish or undo an interrupted rotation')), ['start', 'health']))),

  async run(o: CommonOpts, io: Io): Promise<ExitCodeValue> {
    const r = await onInstallation(o, io, (inst) => inst.recover());
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
