/** `master-key restore`: put a backup back (stored values, canary and config files). */
import { resolve } from 'node:path';
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../../errors';
import { runRestore } from '../../rotation/restore';
import { CliCommand, CommonOpts, Io, emit, makeContext, withCommon } from '../options';

export interface RestoreOptions extends CommonOpts {
  backup: string;
}

export const restore = {
  define: (program: Command) =>
    withCommon(program.command('restore').description('put a backup back: stored values, canary and config files')).requiredOption('--backup <dir>', 'backup directory printed by apply'),

  async run(o: RestoreOptions, io: Io): Promise<ExitCodeValue> {
    const r = await runRestore(makeContext(o, io), resolve(o.backup));
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
