/**
 * `master-key provider package --out DIR`: the provider as terraform release
 * archives, for a mirror of one's own.
 *
 * Into DIR it writes, in the packed layout of a filesystem mirror,
 *
 *     registry.terraform.io/cdktf-master-key/masterkey/
 *       terraform-provider-masterkey_<version>_<os>_<arch>.zip
 *       SHA256SUMS                 (sha256sum -c checks the zip)
 *       index.json                 network mirror: the versions
 *       <version>.json             network mirror: the archives, with h1: and zh: hashes
 *
 * so that DIR serves `terraform providers lock -fs-mirror=DIR`, a
 * `provider_installation { filesystem_mirror { path = DIR } }` CLI
 * configuration, and, copied behind any HTTPS server, a
 * `network_mirror { url = "https://…/" }` (the provider network mirror
 * protocol's static-website form). Packaging another version or platform
 * into the same DIR adds to index.json, <version>.json and SHA256SUMS.
 *
 * The zip holds the launcher `terraform-provider-masterkey_v<version>` (a
 * shell script), and under lib/ the compiled provider with its runtime
 * dependencies and the prebuilt OpenSSL addon: Node.js must be installed on
 * the machine that runs terraform, and the launcher says so in one sentence
 * when it is not (or too old). The zip's bytes depend only on its contents
 * (fixed timestamps, sorted entries), so packaging the same build twice
 * gives the same hashes.
 *
 * Hashes, as terraform computes them (internal/getproviders): `zh:` is the
 * SHA-256 of the zip file in hex; `h1:` is Go's dirhash Hash1 over the
 * zip's files: SHA-256 of the lines "<sha256 hex>  <name>\n" in the order of
 * the names, in base64.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { ZipFile } from 'yazl';
import { MasterKeyError } from '../errors';
import { PROVIDER_HOSTNAME, PROVIDER_NAMESPACE, PROVIDER_SOURCE, PROVIDER_TYPE, providerVersion, terraformPlatform } from './install';

/** The oldest Node.js the package supports (package.json `engines`), which the launcher checks. */
export const MIN_NODE = '20.19.0';

/** One file of the archive. */
export interface ArchiveEntry {
  /** Its path in the zip ('/'-separated). */
  readonly name: string;
  readonly data: Buffer;
  /** 0o755 for the launcher, 0o644 otherwise. */
  readonly mode: number;
}

export interface PackageOptions {
  /** The mirror directory to write into (created when missing). */
  readonly out: string;
}

export interface ProviderRelease {
  readonly source: string;
  readonly version: string;
  readonly platform: string;
  /** The directory of the packed layout: <out>/registry.terraform.io/cdktf-master-key/masterkey. */
  readonly dir: string;
  readonly zip: string;
  readonly files: number;
  readonly bytes: number;
  /** `zh:` + SHA-256 of the zip, hex. */
  readonly zh: string;
  /** `h1:` + dirhash Hash1 of the zip's contents. */
  readonly h1: string;
  /** Every file written or updated, absolute paths. */
  readonly written: readonly string[];
}

/** The package root: the folder of the package.json above this file (dist/src/provider, or src/provider in a checkout). */
export function packageRoot(here: string = __dirname): string {
  for (let d = here; d !== dirname(d); d = dirname(d)) if (existsSync(join(d, 'package.json'))) return d;
  throw new MasterKeyError('INTERNAL', 'Cannot find the package.json of cdktf-master-key; reinstall the package.');
}

interface PackageJson {
  readonly name?: string;
  readonly version?: string;
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
}

const readPackage = (dir: string) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;

/** Where node finds package `name` when required from `fromDir` (walking up node_modules folders). */
export function findPackage(name: string, fromDir: string): string | undefined {
  for (let d = fromDir; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(d) === d) return undefined;
  }
}

/**
 * The installed folders of a package's runtime dependency closure:
 * `dependencies` (which must be installed), the `optionalDependencies` that
 * are, and the peer dependencies named in `peers`; then, for each,
 * its dependencies, its installed optional ones and its installed peers.
 */
export function dependencyClosure(root: string, opts: { peers?: readonly string[] } = {}): string[] {
  const pkg = readPackage(root);
  const found = new Set<string>();
  const visit = (names: Record<string, string> | undefined, from: string, optional: boolean) => {
    for (const name of Object.keys(names ?? {})) {
      const dir = findPackage(name, from);
      if (!dir) {
        if (optional) continue;
        throw new MasterKeyError('INTERNAL', `${name} (needed by ${relative(root, from) || 'cdktf-master-key'}) is not installed; run \`npm install\` (or \`npm ci\` in a checkout).`);
      }
      if (found.has(dir)) continue;
      found.add(dir);
      const dep = readPackage(dir);
      visit(dep.dependencies, dir, false);
      visit(dep.optionalDependencies, dir, true);
      visit(dep.peerDependencies, dir, true);
    }
  };
  visit(pkg.dependencies, root, false);
  visit(pkg.optionalDependencies, root, true);
  visit(Object.fromEntries(Object.entries(pkg.peerDependencies ?? {}).filter(([name]) => opts.peers?.includes(name))), root, false);
  return [...found].sort();
}

/**
 * Where an installed dependency goes in a copy of the package that keeps
 * node's resolution: inside the package as it is, or, hoisted beside it
 * (an app's node_modules), at the same place relative to the app.
 */
export function placeOfDependency(root: string, dir: string): string {
  if (dir.startsWith(root + sep)) return relative(root, dir);
  for (let base = dirname(root); base !== dirname(base); base = dirname(base)) {
    if (dir.startsWith(join(base, 'node_modules') + sep) && !relative(base, root).startsWith('..')) return relative(base, dir);
  }
  throw new MasterKeyError('INTERNAL', `Cannot place the dependency ${dir} beside ${root}; reinstall the package.`);
}

/** Files of a folder, recursively, relative to it, sorted; symbolic links are skipped. */
function filesUnder(dir: string, keep: (rel: string) => boolean, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) {
      if (keep(`${r}/`)) out.push(...filesUnder(dir, keep, r));
    } else if (e.isFile() && keep(r)) out.push(r);
  }
  return out;
}

/**
 * What of a dependency the provider needs at run time: no type
 * declarations, source maps, docs, tests, or links in .bin; of a native package
 * (one with a binding.gyp), not its sources (deps/) nor its build
 * leftovers: of build/, only build/Release/*.node.
 */
function runtimeFile(native: boolean): (rel: string) => boolean {
  return (rel) => {
    if (rel.endsWith('/')) return !/(^|\/)(\.bin|\.github|test|tests|__tests__)\/$/.test(rel) && !(native && (rel === 'deps/' || (/^build\/./.test(rel) && rel !== 'build/Release/')));
    if (native && rel.startsWith('build/')) return /^build\/Release\/[^/]+\.node$/.test(rel);
    const base = rel.split('/').pop()!;
    return /^licen[cs]e/i.test(base) || !/\.(d\.ts|d\.mts|d\.cts|map|md|markdown|ts|mts|cts|c|cc|cpp|h|hpp|gyp|gypi)$/i.test(base);
  };
}

/** The parts of this package the provider runs: compiled sources (no maps, no declarations), schemas, protocol files, the prebuilt addon. */
function ownFile(rel: string): boolean {
  if (rel.endsWith('/')) return /^(dist|src|native)\//.test(rel);
  // The provider shares a few modules with the constructs (the rotation window); none of them requires cdktf.
  if (rel.startsWith('dist/src/') || rel.startsWith('dist/constructs/')) return rel.endsWith('.js');
  return ['package.json', 'LICENSE', 'native/binding.gyp'].includes(rel) || /^(dist\/docs|src\/provider\/proto|native\/prebuilds)\//.test(rel);
}

/** The launcher terraform runs: finds Node.js, checks its version in one sentence, runs lib/launch.js. */
export function launcherScript(version: string): string {
  return [
    '#!/bin/sh',
    `# terraform-provider-${PROVIDER_TYPE} ${version} (${PROVIDER_SOURCE}), from \`master-key provider package\`.`,
    '# It runs on Node.js: `node` on PATH, or the binary named by MASTER_KEY_NODE.',
    // Only shell built-ins before node is found: PATH may hold nothing else.
    'case $0 in */*) here=${0%/*} ;; *) here=. ;; esac',
    'node=${MASTER_KEY_NODE:-node}',
    'if ! command -v "$node" >/dev/null 2>&1; then',
    `  msg="terraform-provider-${PROVIDER_TYPE} needs Node.js ${MIN_NODE} or later on the machine that runs terraform, and there is no \\\`$node\\\` on PATH: install Node.js, or set MASTER_KEY_NODE to the path of its node binary."`,
    // go-plugin shows the first line of stdout in terraform's error; stderr goes to terraform's log.
    '  echo "$msg"; echo "$msg" >&2; exit 1',
    'fi',
    'exec "$node" "$here/lib/launch.js" "$@"',
    '',
  ].join('\n');
}

/** lib/launch.js: refuses a Node.js older than MIN_NODE in one sentence (on stdout too, which terraform shows), then starts the provider. */
export function launchScript(version: string): string {
  return [
    `'use strict';`,
    `// terraform-provider-${PROVIDER_TYPE} ${version}: checks the Node.js version, then serves the provider.`,
    `const want = ${JSON.stringify(MIN_NODE)}.split('.').map(Number);`,
    `const have = process.versions.node.split('.').map(Number);`,
    `const older = have[0] !== want[0] ? have[0] < want[0] : have[1] !== want[1] ? have[1] < want[1] : have[2] < want[2];`,
    `if (older) {`,
    `  const msg = 'terraform-provider-${PROVIDER_TYPE} needs Node.js ${MIN_NODE} or later on the machine that runs terraform, and ' + process.execPath + ' is ' + process.version + ': install a newer Node.js, or set MASTER_KEY_NODE to the path of one.';`,
    `  process.stdout.write(msg + '\\n');`,
    `  process.stderr.write(msg + '\\n');`,
    `  process.exit(1);`,
    `}`,
    `require(require('path').join(__dirname, 'dist', 'src', 'provider', 'main.js'));`,
    '',
  ].join('\n');
}

/** The archive's files, sorted by name: the launcher, then lib/ (this package's runtime part and its dependency closure). */
export function archiveEntries(root: string = packageRoot()): ArchiveEntry[] {
  const version = readPackage(root).version ?? providerVersion(root);
  if (!existsSync(join(root, 'dist', 'src', 'provider', 'main.js'))) {
    throw new MasterKeyError('INTERNAL', `The provider is not built (${join(root, 'dist/src/provider/main.js')} is missing); run \`npm run build\` first.`);
  }
  const entries = new Map<string, ArchiveEntry>();
  const add = (name: string, data: Buffer, mode = 0o644) => {
    if (!entries.has(name)) entries.set(name, { name, data, mode });
  };
  add(`terraform-provider-${PROVIDER_TYPE}_v${version}`, Buffer.from(launcherScript(version)), 0o755);
  add('lib/launch.js', Buffer.from(launchScript(version)));
  for (const rel of filesUnder(root, ownFile)) add(`lib/${rel}`, readFileSync(join(root, rel)));
  for (const dep of dependencyClosure(root)) {
    const place = placeOfDependency(root, dep).split(sep).join('/');
    for (const rel of filesUnder(dep, runtimeFile(existsSync(join(dep, 'binding.gyp'))))) {
      if (lstatSync(join(dep, rel)).isFile()) add(`lib/${place}/${rel}`, readFileSync(join(dep, rel)));
    }
  }
  return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();

/** terraform's `h1:` hash of a package: Go's dirhash Hash1 over its files. */
export function hashV1(entries: readonly ArchiveEntry[]): string {
  const lines = [...entries]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((e) => {
      if (e.name.includes('\n')) throw new MasterKeyError('INTERNAL', `The file name ${JSON.stringify(e.name)} holds a newline, which terraform's package hash refuses.`);
      return `${sha256(e.data).toString('hex')}  ${e.name}\n`;
    });
  return `h1:${sha256(lines.join('')).toString('base64')}`;
}

/** The zip of the entries, byte for byte the same for the same entries (fixed DOS timestamps, given order). */
export function zipEntries(entries: readonly ArchiveEntry[], path: string): Promise<void> {
  const zip = new ZipFile();
  const mtime = new Date(2000, 0, 1);
  // The mode holds the file type too (a regular file), as unzip and terraform read it.
  for (const e of entries) zip.addBuffer(e.data, e.name, { mtime, mode: 0o100000 | e.mode, compress: true, forceDosTimestamp: true });
  zip.end();
  return new Promise((done, fail) => {
    const out = createWriteStream(path, { mode: 0o644 });
    out.on('error', fail);
    out.on('close', () => done());
    zip.outputStream.on('error', fail).pipe(out);
  });
}

/** A JSON file of the mirror as it is (an empty object when absent); a file that is not JSON is refused, not overwritten. */
function readJson(path: string): Record<string, unknown> {
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    throw new MasterKeyError('FILE_ERROR', `${path} is not JSON; remove it or choose another --out directory.`);
  }
}

/** Writes a file through a temporary name beside it and a rename. */
function replaceFile(path: string, text: string): void {
  const tmp = `${path}.mk-tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, path);
}

/** The packed-layout directory of the provider under a mirror or plugins directory. */
export function packedDir(base: string): string {
  return join(resolve(base), PROVIDER_HOSTNAME, PROVIDER_NAMESPACE, PROVIDER_TYPE);
}

/** The release archive of this platform written into `dir` (atomically), with its hashes. */
async function writeArchive(dir: string, flag: string): Promise<Omit<ProviderRelease, 'written'>> {
  const root = packageRoot();
  const version = providerVersion();
  const platform = terraformPlatform();
  const zip = join(dir, `terraform-provider-${PROVIDER_TYPE}_${version}_${platform}.zip`);
  const entries = archiveEntries(root);
  const tmp = `${zip}.mk-tmp-${process.pid}`;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    await zipEntries(entries, tmp);
    renameSync(tmp, zip);
  } catch (e) {
    rmSync(tmp, { force: true });
    if (e instanceof MasterKeyError) throw e;
    throw new MasterKeyError('FILE_ERROR', `Cannot write the provider archive into ${dir} (${(e as NodeJS.ErrnoException).code ?? 'error'}); choose a writable ${flag} directory.`);
  }
  const bytes = readFileSync(zip);
  return { source: PROVIDER_SOURCE, version, platform, dir, zip, files: entries.length, bytes: bytes.length, zh: `zh:${sha256(bytes).toString('hex')}`, h1: hashV1(entries) };
}

/** Packages the provider for this platform into the mirror directory `out`, with SHA256SUMS and the network mirror's JSON files. */
export async function packageProvider(opts: PackageOptions): Promise<ProviderRelease> {
  const dir = packedDir(opts.out);
  const r = await writeArchive(dir, '--out');
  const zipName = basename(r.zip);

  const sums = join(dir, 'SHA256SUMS');
  const others = existsSync(sums) ? readFileSync(sums, 'utf8').split('\n').filter((l) => l && !l.endsWith(`  ${zipName}`)) : [];
  replaceFile(sums, [...others, `${r.zh.slice(3)}  ${zipName}`].sort((a, b) => (a.slice(66) < b.slice(66) ? -1 : 1)).join('\n') + '\n');

  const indexPath = join(dir, 'index.json');
  const index = readJson(indexPath) as { versions?: Record<string, object> };
  replaceFile(indexPath, JSON.stringify({ versions: { ...(index.versions ?? {}), [r.version]: {} } }, null, 2) + '\n');

  const versionPath = join(dir, `${r.version}.json`);
  const archives = (readJson(versionPath) as { archives?: Record<string, unknown> }).archives ?? {};
  replaceFile(versionPath, JSON.stringify({ archives: { ...archives, [r.platform]: { url: zipName, hashes: [r.h1, r.zh] } } }, null, 2) + '\n');

  return { ...r, written: [r.zip, sums, indexPath, versionPath] };
}

const LOCK_FILE = '.terraform.lock.hcl';

/**
 * Records the release's hashes (h1: and zh:) for the provider in the
 * working directory's dependency lock file, as terraform records the
 * checksums a registry publishes: `terraform init` then verifies the archive
 * against them, and, having more than the one hash it computes itself, does
 * not warn about "Incomplete lock file information". Other providers'
 * entries are kept.
 */
export function recordInLockFile(workingDir: string, r: Pick<ProviderRelease, 'version' | 'h1' | 'zh'>): string {
  const path = join(workingDir, LOCK_FILE);
  const address = `${PROVIDER_HOSTNAME}/${PROVIDER_NAMESPACE}/${PROVIDER_TYPE}`;
  const header = '# This file is maintained automatically by "terraform init".\n# Manual edits may be lost in future updates.\n';
  const before = existsSync(path) ? readFileSync(path, 'utf8') : header;
  const others = before.replace(new RegExp(`\\n?provider "${address.replace(/\./g, '\\.')}" \\{[\\s\\S]*?\\n\\}\\n`), '');
  replaceFile(path, `${others.replace(/\n*$/, '\n')}\n${lockBlock(r)}`);
  return path;
}

/**
 * Puts the release archive into a plugins directory terraform searches
 * without any CLI configuration (a working directory's terraform.d/plugins,
 * in the packed layout) and records its hashes in that working directory's
 * lock file: an offline `terraform init` there installs and verifies it,
 * with no warning. For `npm start`, `npm run plan` and `npm run deploy`.
 */
export async function installArchive(o: { readonly pluginsDir: string; readonly workingDir: string }): Promise<ProviderRelease> {
  const r = await writeArchive(packedDir(o.pluginsDir), 'plugins');
  return { ...r, written: [r.zip, recordInLockFile(o.workingDir, r)] };
}

/** The provider's entry of a dependency lock file with the release's hashes (what recordInLockFile writes). */
export function lockBlock(r: Pick<ProviderRelease, 'version' | 'h1' | 'zh'>): string {
  return [
    `provider "${PROVIDER_HOSTNAME}/${PROVIDER_NAMESPACE}/${PROVIDER_TYPE}" {`,
    `  version     = "${r.version}"`,
    `  constraints = "${r.version}"`,
    '  hashes = [',
    `    "${r.h1}",`,
    `    "${r.zh}",`,
    '  ]',
    '}',
    '',
  ].join('\n');
}

/** What `master-key provider package` prints. */
export function describeRelease(r: ProviderRelease, out: string): string {
  const base = resolve(out);
  return [
    `Packaged terraform-provider-${PROVIDER_TYPE} ${r.version} (${r.platform}): ${r.zip} (${r.files} files, ${r.bytes} bytes).`,
    ...r.written.slice(1).map((p) => `Wrote ${p}.`),
    '',
    `Filesystem mirror: provider_installation { filesystem_mirror { path = "${base}" } }.`,
    `Network mirror: serve ${base} as the root of an HTTPS site; provider_installation { network_mirror { url = "https://<host>/<path>/" } }.`,
    `The machine that runs terraform needs Node.js ${MIN_NODE} or later.`,
    '',
    "The release's hashes, for your .terraform.lock.hcl (terraform verifies them, and does not warn about incomplete lock file information):",
    lockBlock(r),
  ].join('\n');
}
