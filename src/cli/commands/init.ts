/** `master-key init`: create the integrity canary and rotation history for the configured key. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { runInit } from '../../rotation/init';
import { CliCommand, CommonOpts, Io, emit, makeContext, positiveInt, withCommon } from '../options';

export interface InitOptions extends CommonOpts {
  generation: string;
  createActSchema?: boolean;
}

export const init = {
  define: (program: Command) =>
    withCommon(program.command('init').description('create the integrity canary and rotation history for the configured key'))
      .option('--generation <n>', 'generation of the current key', '1')
      .option('--create-act-schema', 'also create the tables of the built-in ACT preset (if missing)'),

  async run(o: InitOptions, io: Io): Promise<ExitCodeValue> {
    const ctx = makeContext(o, io);
    const r = await runInit(ctx, { generation: positiveInt('--generation', o.generation)!, createActSchema: !!o.createActSchema });
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
