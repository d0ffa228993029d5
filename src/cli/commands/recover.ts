/** `master-key recover`: finish or undo an interrupted rotation. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { runRecover } from '../../rotation/recover';
import { CliCommand, CommonOpts, Io, emit, makeContext, withBackupDir, withBatchSize, withCommon, withHooks } from '../options';

export const recover = {
  define: (program: Command) => withBackupDir(withBatchSize(withHooks(withCommon(program.command('recover').description('finish or undo an interrupted rotation')), ['start', 'health']))),

  async run(o: CommonOpts, io: Io): Promise<ExitCodeValue> {
    const r = await runRecover(makeContext(o, io));
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
