/**
 * Who may import what, proved by walking the imports of the sources (every
 * `import … from`, `export … from`, `require(…)` and `import(…)` with a
 * literal module name, followed through relative paths):
 *
 * - the engine (`src/engine/`) imports no database driver and nothing of
 *   a store: stores call it, never the other way;
 * - the SQLite store, and everything it loads (its worker threads too),
 *   never loads PostgreSQL's driver (`pg`, `pg-copy-streams`, …) or the
 *   PostgreSQL store;
 * - the PostgreSQL store never loads the SQLite driver or store.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = join(__dirname, '..');
const SRC = join(ROOT, 'src');

/** Every TypeScript source file under dir. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The module names a file imports (type-only imports included: they name what a file depends on). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const names: string[] = [];
  for (const re of [/\bfrom\s+'([^']+)'/g, /\brequire\(\s*'([^']+)'\s*\)/g, /\bimport\(\s*'([^']+)'\s*\)/g, /^\s*import\s+'([^']+)'/gm]) {
    for (const m of text.matchAll(re)) names.push(m[1]);
  }
  return names;
}

/** A relative import as the file it names, or undefined for a package (or a JSON file). */
function resolveLocal(from: string, name: string): string | undefined {
  if (!name.startsWith('.')) return undefined;
  const base = resolve(dirname(from), name);
  for (const f of [`${base}.ts`, join(base, 'index.ts')]) if (existsSync(f) && statSync(f).isFile()) return f;
  return undefined;
}

/** Every file and package reachable from `roots` through imports: files as paths relative to the checkout, packages by name. */
function reach(roots: readonly string[]): { files: Set<string>; packages: Map<string, string> } {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const todo = [...roots];
  while (todo.length) {
    const f = todo.pop()!;
    const rel = relative(ROOT, f);
    if (files.has(rel)) continue;
    files.add(rel);
    for (const name of importsOf(f)) {
      const local = resolveLocal(f, name);
      if (local) todo.push(local);
      else if (!name.startsWith('.') && !packages.has(name)) packages.set(name, rel);
    }
  }
  return { files, packages };
}

const under = (dir: string) => sources(join(SRC, dir));
const isPg = (pkg: string) => pkg === 'pg' || pkg.startsWith('pg-') || pkg.startsWith('pg/');

describe('layering, by the imports of the sources', () => {
  it('finds the imports it walks (the walk itself works)', () => {
    const { files, packages } = reach([join(SRC, 'store', 'open.ts')]);
    expect(files).toContain('src/store/postgres/store.ts');
    expect(files).toContain('src/store/sqlite/store.ts');
    expect([...packages.keys()]).toEqual(expect.arrayContaining(['pg', 'pg-copy-streams']));
  });

  it('the engine imports no database driver and nothing of a store', () => {
    const engine = under('engine');
    expect(engine.length).toBeGreaterThan(5);
    const { files, packages } = reach(engine);
    expect([...files].filter((f) => f.startsWith('src/store/'))).toEqual([]);
    expect([...packages].filter(([p]) => isPg(p) || p === 'better-sqlite3').map(([p, by]) => `${p} (imported by ${by})`)).toEqual([]);
  });

  it('nothing the SQLite store loads (its worker threads included) loads pg or the PostgreSQL store', () => {
    const { files, packages } = reach(under('store/sqlite'));
    expect(files).toContain('src/store/sqlite/reader-worker.ts');
    expect([...files].filter((f) => f.startsWith('src/store/postgres/') || f === 'src/store/open.ts' || f.startsWith('src/db/'))).toEqual([]);
    expect([...packages].filter(([p]) => isPg(p)).map(([p, by]) => `${p} (imported by ${by})`)).toEqual([]);
  });

  it('nothing the PostgreSQL store loads loads the SQLite driver or store', () => {
    const { files, packages } = reach(under('store/postgres'));
    expect([...files].filter((f) => f.startsWith('src/store/sqlite/') || f === 'src/store/open.ts')).toEqual([]);
    expect(packages.has('better-sqlite3')).toBe(false);
  });
});
