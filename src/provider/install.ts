/**
 * `master-key provider install`: puts terraform-provider-masterkey where an
 * offline `terraform init` finds it without any CLI configuration: one of
 * Terraform's implicit local mirror directories, in the "unpacked" layout
 * `<dir>/registry.terraform.io/cdktf-master-key/masterkey/<version>/<os>_<arch>/`.
 * What goes there is a small launcher script that runs this package's
 * provider with the node binary running the install; `.terraform.lock.hcl`
 * records its checksum as for any provider.
 */
import { chmodSync, existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { MasterKeyError } from '../errors';
import { packageVersion } from '../version';

export const PROVIDER_HOSTNAME = 'registry.terraform.io';
export const PROVIDER_NAMESPACE = 'cdktf-master-key';
export const PROVIDER_TYPE = 'masterkey';
/** The source address to write in `required_providers`. */
export const PROVIDER_SOURCE = `${PROVIDER_NAMESPACE}/${PROVIDER_TYPE}`;

/** This package's version, which is the provider's (from the package.json above this file). */
export function providerVersion(here: string = __dirname): string {
  const v = packageVersion(here);
  if (v !== undefined) return v;
  throw new MasterKeyError('INTERNAL', 'Cannot find the package.json of cdktf-master-key to read the provider version; reinstall the package.');
}

/** Terraform's name for this machine's platform, e.g. linux_amd64. */
export function terraformPlatform(platform: string = process.platform, arch: string = process.arch): string {
  const a: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm' };
  return `${platform}_${a[arch] ?? arch}`;
}

/** The implicit local mirror Terraform searches in the user's home (used unless told otherwise). */
export function defaultPluginsDir(): string {
  return join(homedir(), '.terraform.d', 'plugins');
}

/** The compiled provider entry point: beside this file in dist/, or dist/ of the package when run from the sources. */
export function providerEntry(here: string = __dirname): string {
  const beside = join(here, 'main.js');
  if (existsSync(beside)) return beside;
  const built = resolve(here, '..', '..', 'dist', 'src', 'provider', 'main.js');
  if (existsSync(built)) return built;
  throw new MasterKeyError('INTERNAL', `The provider is not built (${built} is missing); run \`npm run build\` first.`);
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface InstallOptions {
  /** A plugins directory Terraform searches, e.g. ~/.terraform.d/plugins or <working dir>/terraform.d/plugins. */
  readonly pluginsDir?: string;
  /** The node binary the launcher runs. @default the one running this */
  readonly node?: string;
}

export interface Installed {
  readonly source: string;
  readonly version: string;
  readonly platform: string;
  /** The launcher's path. */
  readonly executable: string;
}

/** Installs (or refreshes) the launcher; idempotent. */
export function installProvider(opts: InstallOptions = {}): Installed {
  const version = providerVersion();
  const platform = terraformPlatform();
  const dir = join(resolve(opts.pluginsDir ?? defaultPluginsDir()), PROVIDER_HOSTNAME, PROVIDER_NAMESPACE, PROVIDER_TYPE, version, platform);
  const executable = join(dir, `terraform-provider-${PROVIDER_TYPE}_v${version}`);
  const script = [
    '#!/bin/sh',
    `# terraform-provider-${PROVIDER_TYPE} ${version} (${PROVIDER_SOURCE}), installed by \`master-key provider install\`.`,
    `exec ${shq(opts.node ?? process.execPath)} ${shq(providerEntry())} "$@"`,
    '',
  ].join('\n');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const tmp = `${executable}.tmp-${process.pid}`;
    writeFileSync(tmp, script, { mode: 0o755 });
    chmodSync(tmp, 0o755);
    renameSync(tmp, executable);
  } catch (e) {
    throw new MasterKeyError('FILE_ERROR', `Cannot install the provider into ${dir} (${(e as NodeJS.ErrnoException).code ?? 'error'}); choose a writable plugins directory with --dir.`);
  }
  return { source: PROVIDER_SOURCE, version, platform, executable };
}

/** What `master-key provider install` prints. */
export function describeInstall(i: Installed): string {
  return [
    `Installed terraform-provider-${PROVIDER_TYPE} ${i.version} (${i.platform}) at ${i.executable}.`,
    `Use it with: terraform { required_providers { ${PROVIDER_TYPE} = { source = "${i.source}", version = "${i.version}" } } }`,
    '`terraform init` finds it there with no registry and no CLI configuration.',
  ].join('\n');
}
