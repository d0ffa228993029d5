/**
 * The README is part of the contract: its two commands match .ci/run, its
 * exit-code table matches src/errors.ts, and the documents it embeds (the
 * sealed-secret format, checked by crypto-format.test.ts) are copied verbatim.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode, errorCodeTable } from '../src/errors';

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

  it.each(['docs/sealed-secret-format.md', 'docs/constructs.md', 'docs/failure-and-recovery.md'])('embeds %s verbatim', (path) => {
    expect(block(path)).toBe(embedded(readFileSync(join(root, path), 'utf8')));
  });
});
