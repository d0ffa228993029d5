/**
 * `master-key provider install [--dir <plugins dir>]` and `master-key
 * provider package --out <dir>`: the CLI's entries into the provider
 * (./install: a launcher in a local mirror; ./release: terraform release
 * archives for a filesystem or network mirror).
 */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue } from '../errors';
import type { CliCommand, Io } from '../cli/options';
import { describeInstall, installProvider } from './install';
import { describeRelease, packageProvider } from './release';

export interface ProviderInstallOptions {
  readonly dir?: string;
  readonly json?: boolean;
}

export interface ProviderPackageOptions {
  readonly out: string;
  readonly json?: boolean;
}

/** The `provider` command group, declared once whichever subcommand is defined first. */
function group(program: Command): Command {
  return program.commands.find((c) => c.name() === 'provider') ?? program.command('provider').description('the terraform provider cdktf-master-key/masterkey');
}

export const providerInstall = {
  define: (program: Command) =>
    group(program)
      .command('install')
      .description('install terraform-provider-masterkey where an offline `terraform init` finds it (no registry, no CLI configuration)')
      .option('--dir <dir>', 'a plugins directory Terraform searches (default: ~/.terraform.d/plugins; or <working dir>/terraform.d/plugins)')
      .option('--json', 'print JSON'),

  async run(o: ProviderInstallOptions, io: Io): Promise<ExitCodeValue> {
    const i = installProvider({ pluginsDir: o.dir });
    io.out((o.json ? JSON.stringify({ ok: true, ...i }, null, 2) : describeInstall(i)) + '\n');
    return ExitCode.OK;
  },
} satisfies CliCommand;

export const providerPackage = {
  define: (program: Command) =>
    group(program)
      .command('package')
      .description('write terraform release archives (zip + SHA256SUMS) in the layout of a filesystem mirror, with the JSON files of a network mirror')
      .requiredOption('--out <dir>', 'the mirror directory (filesystem_mirror path, or the root of an HTTPS network_mirror)')
      .option('--json', 'print JSON'),

  async run(o: ProviderPackageOptions, io: Io): Promise<ExitCodeValue> {
    const r = await packageProvider({ out: o.out });
    io.out((o.json ? JSON.stringify({ ok: true, ...r }, null, 2) : describeRelease(r, o.out)) + '\n');
    return ExitCode.OK;
  },
} satisfies CliCommand;
