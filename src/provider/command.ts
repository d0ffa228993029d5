/**
 * `master-key provider install [--dir <plugins dir>]`: the CLI's one entry
 * into the provider (see ./install).
 */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../errors';
import type { CliCommand, Io } from '../cli/options';
import { describeInstall, installProvider } from './install';

export interface ProviderCommandOptions {
  readonly dir?: string;
  readonly json?: boolean;
}

export const provider = {
  /** `provider` groups the provider's subcommands; the one that runs is `install`. */
  define: (program: Command) =>
    program
      .command('provider')
      .description('the terraform provider cdktf-master-key/masterkey')
      .command('install')
      .description('install terraform-provider-masterkey where an offline `terraform init` finds it (no registry, no CLI configuration)')
      .option('--dir <dir>', 'a plugins directory Terraform searches (default: ~/.terraform.d/plugins; or <working dir>/terraform.d/plugins)')
      .option('--json', 'print JSON'),

  async run(o: ProviderCommandOptions, io: Io): Promise<ExitCodeValue> {
    const i = installProvider({ pluginsDir: o.dir });
    io.out((o.json ? JSON.stringify({ ok: true, ...i }, null, 2) : describeInstall(i)) + '\n');
    return ExitCode.OK;
  },
} satisfies CliCommand;
