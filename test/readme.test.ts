/**
 * The README and the reference in docs/ are part of the contract:
 *
 * - the README's two commands match .ci/run (which runs `npm ci`, then the
 *   README's test command);
 * - docs/cli.md's exit-code table matches src/errors.ts;
 * - docs/inventory.md documents the ACT preset and the canary and history
 *   tables exactly as the code has them; docs/json-schemas.md lists every
 *   schema file;
 * - no text is written twice: no paragraph of the README or of a document
 *   appears in another one (the README links to the reference instead);
 * - every relative link of the README and of docs/ names a file that exists;
 * - the README stays short enough for a newcomer.
 * The sealed-secret format's worked example is checked by
 * crypto-format.test.ts, the install section by consumer-install.test.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { ExitCode, errorCodeTable } from '../src/errors';
import { META_SCHEMA, META_SQL } from '../src/store/postgres/meta';
import { CANARY_PLAINTEXT } from '../src/rotation/canary';
import { ACT_PRESET } from '../src/inventory/act-preset';

const root = join(__dirname, '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const README = read('README.md');
const DOCS = readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`).sort();

describe('README', () => {
  it('gives the two commands, and .ci/run runs npm ci then exactly the test command', () => {
    const block = /## Two commands[\s\S]*?```sh\n([\s\S]*?)```/.exec(README)![1];
    const commands = block.split('\n').filter(Boolean).map((l) => l.replace(/\s+#.*$/, '').trim());
    expect(commands).toEqual(['npm ci && npm start', 'npm test']);
    const ci = read('.ci/run').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(ci.slice(-2)).toEqual(['npm ci', 'npm test']);
  });

  it('is short (about 300 lines) and links every reference document in docs/', () => {
    expect(README.split('\n').length).toBeLessThanOrEqual(320);
    for (const doc of DOCS) expect(README).toContain(`](${doc})`);
  });
});

describe('no text is written twice', () => {
  /** Paragraphs of prose (no code, tables or headings) of at least 120 characters, whitespace collapsed. */
  const paragraphs = (text: string) =>
    text
      .replace(/```[\s\S]*?```/g, '')
      .split(/\n\s*\n/)
      .map((p) => p.replace(/\s+/g, ' ').trim())
      .filter((p) => p.length >= 120 && !p.startsWith('|') && !p.startsWith('#'));

  it('no paragraph of the README or of a document in docs/ appears in another one', () => {
    const seen = new Map<string, string>();
    const twice: string[] = [];
    for (const file of ['README.md', ...DOCS]) {
      for (const p of new Set(paragraphs(read(file)))) {
        const first = seen.get(p);
        if (first) twice.push(`${file} repeats ${first}: "${p.slice(0, 80)}…"`);
        else seen.set(p, file);
      }
    }
    expect(twice).toEqual([]);
  });
});

describe('links', () => {
  it('every relative link of the README and of docs/ names a file that exists', () => {
    const missing: string[] = [];
    for (const file of ['README.md', ...DOCS]) {
      for (const m of read(file).matchAll(/\]\((?!https?:|#|mailto:)([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = normalize(join(dirname(file), m[1]));
        if (!existsSync(join(root, target))) missing.push(`${file} -> ${m[1]}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('docs/cli.md: exit codes', () => {
  it('documents every exit code and every error code with the exit code it gets', () => {
    const rows = new Map<number, string>();
    for (const m of read('docs/cli.md').matchAll(/^\| (\d+) \| ([^\n]*)$/gm)) rows.set(Number(m[1]), m[2]);
    for (const code of Object.values(ExitCode)) expect(rows.has(code)).toBe(true);
    for (const [name, exit] of errorCodeTable()) {
      expect(`${exit}: ${rows.get(exit)}`).toContain(`\`${name}\``);
    }
  });
});

describe('docs/inventory.md and docs/json-schemas.md: what the database holds and what the JSON looks like', () => {
  /** The rows of the first Markdown table after a heading line, as arrays of cells. */
  function tableAfter(text: string, heading: string): string[][] {
    const at = `\n${text}`.indexOf(`\n${heading}\n`);
    expect(at).toBeGreaterThanOrEqual(0);
    const lines = `\n${text}`.slice(at).split('\n');
    const start = lines.findIndex((l) => l.startsWith('| '));
    const rows: string[][] = [];
    for (const l of lines.slice(start + 2)) {
      if (!l.startsWith('|')) break;
      rows.push(l.slice(1, -1).split(' | ').map((c) => c.trim()));
    }
    return rows;
  }
  const code = (cell: string) => /^`([^`]*)`$/.exec(cell)?.[1] ?? cell;
  const INVENTORY = read('docs/inventory.md');

  it('documents the ACT preset exactly: tables, columns, kinds, JSON paths and codec', () => {
    const rows = tableAfter(INVENTORY, '## The ACT preset (`--inventory act`)');
    const documented = rows.map(([kind, table, idColumn, column, what, codec]) => {
      const m = /^jsonb: `([^`]+)`(?: where `(\w+)` is `true`)?$/.exec(what);
      if (!m) expect(what).toBe('the whole value');
      return {
        kind,
        table: code(table),
        idColumn: code(idColumn),
        column: code(column),
        codec: code(codec),
        ...(m ? { jsonPath: m[1].split('.') } : {}),
        ...(m?.[2] ? { where: { key: m[2], equals: true } } : {}),
      };
    });
    expect(documented).toEqual(ACT_PRESET.entries);
  });

  it('documents the canary table column by column, its sealed text, and every history column', () => {
    const columnsOf = (table: string) => {
      const body = new RegExp(`CREATE TABLE IF NOT EXISTS ${META_SCHEMA}\\.${table} \\(([\\s\\S]*?)\\n\\);`).exec(META_SQL)![1];
      return body.split('\n').map((l) => l.trim().split(' ')[0]).filter(Boolean);
    };
    expect(tableAfter(INVENTORY, '## The integrity canary and the rotation history').map((r) => code(r[0]))).toEqual(columnsOf('canary'));
    expect(INVENTORY).toContain(`the text \`${CANARY_PLAINTEXT}\` sealed under the current key in the \`v1\` format`);
    const history = columnsOf('history').filter((c) => c !== 'id');
    const section = INVENTORY.slice(INVENTORY.indexOf('**History**, `master_key.history`'));
    for (const c of history) expect(section).toContain(`\`${c}\``);
    expect(META_SCHEMA).toBe('master_key');
  });

  it('lists every JSON Schema file', () => {
    const schemas = readdirSync(join(root, 'docs', 'schemas')).sort();
    const listed = tableAfter(read('docs/json-schemas.md'), '# JSON outputs and files').map((r) => /\(schemas\/([^)]+)\)/.exec(r[1])![1]);
    expect([...listed].sort()).toEqual(schemas);
  });
});
