/** `master-key init`: create the integrity canary and rotation history for the configured key. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { CliCommand, CommonOpts, Io, emit, onInstallation, positiveInt, withCommon } from '../options';

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
    const opts = { generation: positiveInt('--generation', o.generation)!, createActSchema: !!o.createActSchema };
    const r = await onInstallation(o, io, (inst) => inst.init(opts));
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
