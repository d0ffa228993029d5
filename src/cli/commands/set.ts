/** `master-key set`: write a key into another node's config file, only if it opens the database's canary. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue, MasterKeyError } from '../../errors';
import { CliCommand, CommonOpts, Io, emit, newKeySource, onInstallation, withCommon } from '../options';

export interface SetOptions extends CommonOpts {
  keyFile?: string;
  keyStdin?: boolean;
  keyEnv?: string;
}

export const set = {
  define: (program: Command) =>
    withCommon(program.command('set').description("write a key into another node's config file, only if it opens the database's canary"))
      .option('--key-file <path>', 'read the key from this file')
      .option('--key-stdin', 'read the key from standard input')
      .option('--key-env <NAME>', 'read the key from this environment variable'),

  async run(o: SetOptions, io: Io): Promise<ExitCodeValue> {
    if (o.config.length !== 1) throw new MasterKeyError('USAGE', "Name exactly one node's config file with --config.");
    const source = newKeySource(o);
    const r = await onInstallation(o, io, (inst) => inst.set(source));
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
