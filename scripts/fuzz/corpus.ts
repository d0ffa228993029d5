/**
 * The corpus: inputs that once found a bug, one JSON file each under
 * test/fuzz-corpus/<target>/, replayed by jest on every run and by
 * `npm run fuzz` before each campaign. A file is
 * `{ "found": "what it found (and the fix)", "input": <the target's input as JSON> }`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';

/** The corpus directory of the checkout (the nearest folder above this file with a package.json: from the sources or from dist/). */
export function corpusDir(): string {
  let d = __dirname;
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return join(d, 'test', 'fuzz-corpus');
}

export interface CorpusEntry {
  readonly file: string;
  readonly found: string;
  readonly input: unknown;
}

/** The corpus of one target (none yet: empty). */
export function readCorpus(target: string, dir = corpusDir()): CorpusEntry[] {
  const d = join(dir, target);
  if (!existsSync(d)) return [];
  return readdirSync(d)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const j = JSON.parse(readFileSync(join(d, f), 'utf8')) as { found: string; input: unknown };
      return { file: join(d, f), found: j.found, input: j.input };
    });
}

/** Saves an input that broke a target, named by its hash; returns the file. */
export function saveFinding(target: string, input: unknown, found: string, dir = corpusDir()): string {
  const d = join(dir, target);
  mkdirSync(d, { recursive: true });
  // Every character outside printable ASCII escaped: invisible ones (NEL, BOM, NUL) stay visible in the file.
  const body = JSON.stringify({ found, input }, null, 2).replace(/[^\x20-\x7e\n]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n';
  const file = join(d, `found-${createHash('sha256').update(JSON.stringify(input)).digest('hex').slice(0, 12)}.json`);
  writeFileSync(file, body);
  return file;
}
