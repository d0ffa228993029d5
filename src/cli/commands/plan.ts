/** `master-key plan`: the dry run; shows everything apply would do and writes nothing (except `--out`). */
import { resolve } from 'node:path';
import { Command } from 'commander';
import { ExitCode, ExitCodeValue, exitCodeFor } from '../../errors';
import { atomicWriteFile } from '../../fsutil';
import { renderPlan } from '../../rotation/plan';
import { CliCommand, CommonOpts, DeclaredOpts, Io, declared, emit, onInstallation, withCommon, withDeclared, withBatchSize, withDirs, withHooks, withSealAhead } from '../options';

export interface PlanOptions extends CommonOpts, DeclaredOpts {
  detailedExitcode?: boolean;
  out?: string;
}

export const plan = {
  define: (program: Command) =>
    withDeclared(withSealAhead(withBatchSize(withHooks(withDirs(withCommon(program.command('plan').description('dry run: show everything apply would do; writes nothing')))))), 'declared generation: rotate only when the database is below it')
      .option('--detailed-exitcode', 'exit 0 when there is nothing to do, 2 when a rotation is pending, 1 on error (as terraform)')
      .option('--out <file>', 'save the plan (JSON) for `apply --plan <file>`'),

  async run(o: PlanOptions, io: Io): Promise<ExitCodeValue> {
    const d = declared(o);
    const p = await onInstallation(o, io, async (inst) => (await inst.plan(d, { verify: true })).plan);
    if (o.out) atomicWriteFile(resolve(o.out), JSON.stringify(p, null, 2) + '\n', { mode: 0o600 });
    emit(io, o.json, p, renderPlan(p));
    // The exit code apply would refuse with: the first blocker's.
    if (p.blockers.length) return exitCodeFor(p.blockerCodes[0]);
    return o.detailedExitcode && p.action !== 'none' ? ExitCode.CHANGES : ExitCode.OK;
  },
} satisfies CliCommand;
