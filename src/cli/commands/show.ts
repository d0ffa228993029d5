/** `master-key show`: the configured key's fingerprint (the key itself only with --reveal). */
import { Command, Option } from 'commander';
import { CONFIG_FORMATS, ConfigFormat } from '../../config/formats';
import { withInstallation } from '../../context/installation';
import { ExitCode, ExitCodeValue } from '../../errors';
import { CliCommand, DEFAULT_CONFIG, Io, SshOpts, cliSurface, configOption, emit, sshSettingsOf, withSsh } from '../options';

export interface ShowOptions extends SshOpts {
  config: string[];
  format?: ConfigFormat;
  keyName: string;
  reveal?: boolean;
  json?: boolean;
}

export const show = {
  define: (program: Command) =>
    withSsh(program
      .command('show'))
      .description("print the configured key's fingerprint (the key itself only with --reveal)")
      .addOption(configOption('config file holding the master key'))
      .addOption(new Option('--format <format>', 'config file format').choices(CONFIG_FORMATS as string[]))
      .option('--key-name <entry>', 'config entry holding the key', 'ACT_MASTER_KEY')
      .option('--reveal', 'print the key itself (64 hex characters) on stdout')
      .option('--json', 'print JSON'),

  async run(o: ShowOptions, io: Io): Promise<ExitCodeValue> {
    const configFiles = o.config.length ? o.config : [DEFAULT_CONFIG];
    const settings = { configFiles, configFormat: o.format, keyName: o.keyName, ...sshSettingsOf(o, configFiles) };
    const r = await withInstallation(settings, cliSurface(o, io), (inst) => inst.show(!!o.reveal));
    emit(io, o.json, r, r.key ?? r.fingerprint);
    return ExitCode.OK;
  },
} satisfies CliCommand;
