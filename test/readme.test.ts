/**
 * The README is part of the contract: its two commands match .ci/run, its
 * exit-code table matches src/errors.ts, and the documents it embeds (the
 * sealed-secret format, checked by crypto-format.test.ts) are copied verbatim.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode, errorCodeTable } from '../src/errors';
import { META_SCHEMA, META_SQL } from '../src/store/postgres/meta';
import { CANARY_PLAINTEXT } from '../src/rotation/canary';
import { ACT_PRESET } from '../src/inventory/act-preset';

const root = join(__dirname, '..');
const README = readFileSync(join(root, 'README.md'), 'utf8');

/** A document as embedded in the README: a document with its own `# ` title goes one heading level deeper. */
function embedded(doc: string): string {
  const d = doc.trim();
  return d.startsWith('# ') ? d.replace(/^(#+) /gm, '#$1 ') : d;
}

function block(path: string): string | undefined {
  const begin = `<!-- BEGIN ${path} -->\n`;
  const i = README.indexOf(begin);
  const j = README.indexOf(`\n<!-- END ${path} -->`);
  return i < 0 || j < 0 ? undefined : README.slice(i + begin.length, j).trim();
}

describe('README', () => {
  it('gives the two commands, and .ci/run runs npm ci then exactly the test command', () => {
    const block = /## Two commands[\s\S]*?```sh\n([\s\S]*?)```/.exec(README)![1];
    const commands = block.split('\n').filter(Boolean).map((l) => l.replace(/\s+#.*$/, '').trim());
    expect(commands).toEqual(['npm ci && npm start', 'npm test']);
    const ci = readFileSync(join(root, '.ci', 'run'), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(ci.slice(-2)).toEqual(['npm ci', 'npm test']);
  });

  it('documents every exit code and every error code with the exit code it gets', () => {
    const rows = new Map<number, string>();
    for (const m of README.matchAll(/^\| (\d+) \| ([^\n]*)$/gm)) rows.set(Number(m[1]), m[2]);
    for (const code of Object.values(ExitCode)) expect(rows.has(code)).toBe(true);
    for (const [name, exit] of errorCodeTable()) {
      expect(`${exit}: ${rows.get(exit)}`).toContain(`\`${name}\``);
    }
  });

  it.each(['docs/sealed-secret-format.md', 'docs/constructs.md', 'docs/failure-and-recovery.md', 'docs/provider.md'])('embeds %s verbatim', (path) => {
    expect(block(path)).toBe(embedded(readFileSync(join(root, path), 'utf8')));
  });
});

describe('README: what the database holds and what the JSON looks like', () => {
  /** The rows of the first Markdown table after a heading line, as arrays of cells. */
  function tableAfter(heading: string): string[][] {
    const at = README.indexOf(`\n${heading}\n`);
    expect(at).toBeGreaterThanOrEqual(0);
    const lines = README.slice(at).split('\n');
    const start = lines.findIndex((l) => l.startsWith('| '));
    const rows: string[][] = [];
    for (const l of lines.slice(start + 2)) {
      if (!l.startsWith('|')) break;
      rows.push(l.slice(1, -1).split(' | ').map((c) => c.trim()));
    }
    return rows;
  }
  const code = (cell: string) => /^`([^`]*)`$/.exec(cell)?.[1] ?? cell;

  it('documents the ACT preset exactly: tables, columns, kinds, JSON paths and codec', () => {
    const rows = tableAfter('#### The ACT preset (`--inventory act`)');
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
    expect(tableAfter('#### The integrity canary and the rotation history').map((r) => code(r[0]))).toEqual(columnsOf('canary'));
    expect(README).toContain(`the text \`${CANARY_PLAINTEXT}\` sealed under the current key in the \`v1\` format`);
    const history = columnsOf('history').filter((c) => c !== 'id');
    const section = README.slice(README.indexOf('**History**, `master_key.history`'), README.indexOf('### What a rotation does, in order'));
    for (const c of history) expect(section).toContain(`\`${c}\``);
    expect(META_SCHEMA).toBe('master_key');
  });

  it('lists every JSON Schema file, and links only files that exist', () => {
    const schemas = readdirSync(join(root, 'docs', 'schemas')).sort();
    const listed = tableAfter('## JSON outputs and files').map((r) => /\(docs\/schemas\/([^)]+)\)/.exec(r[1])![1]);
    expect([...listed].sort()).toEqual(schemas);
    for (const m of README.matchAll(/\]\(((?:docs|examples)\/[^)#]*)\)/g)) expect(existsSync(join(root, m[1]))).toBe(true);
  });
});
