/**
 * Where a worker thread's entry module is: compiled JavaScript beside the
 * calling module when that runs compiled (dist/), else the same place in
 * the build output (the test runner runs the TypeScript sources, and
 * `npm test` builds first).
 */
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

/** `name` (a .js file) in directory `dir` of a module, or in the build output's copy of it; undefined when neither exists. */
export function builtFile(dir: string, name: string): string | undefined {
  const here = join(dir, name);
  if (existsSync(here)) return here;
  for (let root = dirname(dir), i = 0; i < 4 && root !== dirname(root); i++, root = dirname(root)) {
    const built = join(root, 'dist', relative(root, dir), name);
    if (existsSync(built)) return built;
  }
  return undefined;
}
