/**
 * The package as someone who installed it would have it: the built CLI and
 * constructs (dist/src, dist/constructs, the JSON Schemas they load, the
 * prebuilt addon) plus
 * ONLY the runtime dependency closure of package.json (`dependencies` and the
 * `optionalDependencies` that are installed, plus the peer dependencies named
 * in `peers`), copied into a folder of its own.
 * Nothing from devDependencies is there, so running from the copy proves the
 * CLI and the constructs do not need them; and the copy is readable by other
 * users even when the checkout sits in a private directory.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dependencyClosure } from '../../src/provider/release';
import { dirname, join, relative, resolve } from 'node:path';

const REPO = resolve(__dirname, '..', '..');

/** The installed folders of the runtime dependency closure, from the repository's package.json (src/provider/release.ts, which packages the provider the same way). */
export function runtimeClosure(opts: { peers?: readonly string[] } = {}): string[] {
  return dependencyClosure(REPO, opts);
}

/** Copies the built package with its runtime closure into dir; returns the paths to run. */
export function runtimeCopy(dir: string, opts: { peers?: readonly string[] } = {}): { root: string; cli: string; constructs: string } {
  for (const part of ['dist/src', 'dist/constructs', 'dist/docs']) {
    if (!existsSync(join(REPO, part))) throw new Error(`${part} is missing: run \`npm run build\` first (npm test does).`);
    cpSync(join(REPO, part), join(dir, part), { recursive: true });
  }
  writeFileSync(join(dir, 'package.json'), readFileSync(join(REPO, 'package.json')));
  // The addon as the package ships it: its gyp file and the prebuilds (no build folder).
  for (const part of ['native/binding.gyp', 'native/prebuilds']) cpSync(join(REPO, part), join(dir, part), { recursive: true });
  for (const pkg of runtimeClosure(opts)) {
    const target = join(dir, relative(REPO, pkg));
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    cpSync(pkg, target, { recursive: true, verbatimSymlinks: true });
  }
  return { root: dir, cli: join(dir, 'dist/src/cli/main.js'), constructs: join(dir, 'dist/constructs/index.js') };
}
