/** `master-key show`: the configured key's fingerprint (the key itself only with --reveal). */
import { Command, Option } from 'commander';
import { CONFIG_FORMATS, ConfigFormat } from '../../config/formats';
import { configTarget } from '../../config/config-file';
import { ExitCode, ExitCodeValue } from '../../errors';
import { runShow } from '../../rotation/keys';
import { CliCommand, DEFAULT_CONFIG, Io, configOption, emit } from '../options';

export interface ShowOptions {
  config: string[];
  format?: ConfigFormat;
  keyName: string;
  reveal?: boolean;
  json?: boolean;
}

export const show = {
  define: (program: Command) =>
    program
      .command('show')
      .description("print the configured key's fingerprint (the key itself only with --reveal)")
      .addOption(configOption('config file holding the master key'))
      .addOption(new Option('--format <format>', 'config file format').choices(CONFIG_FORMATS as string[]))
      .option('--key-name <entry>', 'config entry holding the key', 'ACT_MASTER_KEY')
      .option('--reveal', 'print the key itself (64 hex characters) on stdout')
      .option('--json', 'print JSON'),

  async run(o: ShowOptions, io: Io): Promise<ExitCodeValue> {
    const targets = (o.config.length ? o.config : [DEFAULT_CONFIG]).map((p) => configTarget(p, o.keyName, o.format));
    const r = runShow({ targets }, !!o.reveal);
    emit(io, o.json, r, r.key ?? r.fingerprint);
    return ExitCode.OK;
  },
} satisfies CliCommand;
