/**
 * The package as someone who installed it would have it: the built CLI and
 * constructs (dist/src, dist/constructs, the JSON Schemas they load) plus
 * ONLY the runtime dependency closure of package.json (`dependencies` and the
 * `optionalDependencies` that are installed, plus the peer dependencies named
 * in `peers`), copied into a folder of its own.
 * Nothing from devDependencies is there, so running from the copy proves the
 * CLI and the constructs do not need them; and the copy is readable by other
 * users even when the checkout sits in a private directory.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const REPO = resolve(__dirname, '..', '..');

interface PackageJson {
  readonly name?: string;
  readonly dependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
}

function readPackage(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/** Where node would find package `name` when required from `fromDir` (walking up node_modules folders). */
export function findPackage(name: string, fromDir: string): string | undefined {
  for (let d = fromDir; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(d) === d) return undefined;
  }
}

/** The installed folders of the runtime dependency closure, from the repository's package.json. */
export function runtimeClosure(opts: { peers?: readonly string[] } = {}): string[] {
  const root = readPackage(REPO);
  const found = new Set<string>();
  const visit = (names: Record<string, string> | undefined, from: string, optional: boolean) => {
    for (const name of Object.keys(names ?? {})) {
      const dir = findPackage(name, from);
      if (!dir) {
        if (optional) continue;
        throw new Error(`${name} (needed by ${relative(REPO, from) || 'the package'}) is not installed: run npm ci.`);
      }
      if (found.has(dir)) continue;
      found.add(dir);
      const pkg = readPackage(dir);
      visit(pkg.dependencies, dir, false);
      visit(pkg.optionalDependencies, dir, true);
      visit(pkg.peerDependencies, dir, true);
    }
  };
  visit(root.dependencies, REPO, false);
  // Installed when it built (better-sqlite3 for sqlite: URLs); the package works without it otherwise.
  visit(root.optionalDependencies, REPO, true);
  const peers = Object.fromEntries(Object.entries(root.peerDependencies ?? {}).filter(([name]) => opts.peers?.includes(name)));
  visit(peers, REPO, false);
  return [...found].sort();
}

/** Copies the built package with its runtime closure into dir; returns the paths to run. */
export function runtimeCopy(dir: string, opts: { peers?: readonly string[] } = {}): { root: string; cli: string; constructs: string } {
  for (const part of ['dist/src', 'dist/constructs', 'dist/docs']) {
    if (!existsSync(join(REPO, part))) throw new Error(`${part} is missing: run \`npm run build\` first (npm test does).`);
    cpSync(join(REPO, part), join(dir, part), { recursive: true });
  }
  writeFileSync(join(dir, 'package.json'), readFileSync(join(REPO, 'package.json')));
  for (const pkg of runtimeClosure(opts)) {
    const target = join(dir, relative(REPO, pkg));
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    cpSync(pkg, target, { recursive: true, verbatimSymlinks: true });
  }
  return { root: dir, cli: join(dir, 'dist/src/cli/main.js'), constructs: join(dir, 'dist/constructs/index.js') };
}
