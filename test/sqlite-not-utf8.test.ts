/**
 * A JSON document in a SQLite text column whose bytes are not UTF-8 (SQLite
 * stores what it is given), through the real CLI. The driver reads such a
 * text with U+FFFD in place of each invalid sequence, so a rewrite of the
 * document would replace those bytes outside its sealed values. So plan
 * lists the row as a blocker (SEALED_MALFORMED) and apply refuses before
 * the stop hook, changing nothing; a document that holds U+FFFD itself
 * (valid UTF-8) rotates and keeps it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { Keyring } from '../src/crypto/keyring';
import { ExitCode } from '../src/errors';
import { Scenario, actScenario, dbSnapshot } from './support/scenario';
import { sqlQuery } from './support/sql';
import { SQLITE_WAL } from './support/stores';

const act = actCodec();

describe('on SQLite, a JSON document whose bytes are not UTF-8', () => {
  let s: Scenario;
  let bad: string;
  let good: string;
  const bytesOf = async (id: string) => (await sqlQuery<{ b: Buffer }>(s.url, 'SELECT CAST(settings AS BLOB) AS b FROM storage_providers WHERE id = $1', [Number(id)]))[0].b;
  const insert = async (name: string, doc: Buffer) =>
    String((await sqlQuery<{ id: unknown }>(s.url, 'INSERT INTO storage_providers (name, settings) VALUES ($1, CAST($2 AS TEXT)) RETURNING id', [name, doc]))[0].id);
  const seal = (plain: string) => JSON.stringify(act.seal(s.key, Buffer.from(plain, 'utf8')));

  beforeAll(async () => {
    s = await actScenario({ perKind: 1, store: SQLITE_WAL });
    // "caf\xE9": Latin-1, not UTF-8, beside a sealed token.
    bad = await insert('latin1', Buffer.concat([Buffer.from(`{"credentials":{"TOKEN":${seal('latin1 token')}},"note":"caf`), Buffer.from([0xe9]), Buffer.from('"}')]));
    // U+FFFD written as UTF-8 (EF BF BD): a valid document.
    good = await insert('replacement', Buffer.from(`{"credentials":{"TOKEN":${seal('good token')}},"note":"\uFFFD kept"}`, 'utf8'));
  });

  it('plan lists its row as a blocker, and only that row', () => {
    const r = s.cli(['plan', '--json']);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    const json = JSON.parse(r.stdout) as { undecryptable: { count: number; rows: Array<{ id: string; code: string }> } };
    expect(json.undecryptable.count).toBe(1);
    expect(json.undecryptable.rows).toEqual([expect.objectContaining({ table: 'storage_providers', column: 'settings', id: bad, code: 'SEALED_MALFORMED' })]);
    expect(s.cli(['plan']).stdout).toContain('is not UTF-8');
  });

  it('apply refuses before the stop hook and changes nothing, its bytes included', async () => {
    const before = await dbSnapshot(s.url);
    const bytes = await bytesOf(bad);
    const config = readFileSync(s.configPath, 'utf8');
    const stopped = join(s.dir, 'stopped');
    const r = s.cli(['apply', '--stop-command', `touch ${stopped}`]);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stderr).toContain(`storage_providers.settings id=${bad}`);
    expect(existsSync(stopped)).toBe(false);
    expect(await dbSnapshot(s.url)).toBe(before);
    expect((await bytesOf(bad)).equals(bytes)).toBe(true);
    expect(readFileSync(s.configPath, 'utf8')).toBe(config);
  });

  it('once that row is fixed, the rotation runs; U+FFFD written as UTF-8 is kept byte for byte', async () => {
    const goodBefore = await bytesOf(good);
    await sqlQuery(s.url, 'DELETE FROM storage_providers WHERE id = $1', [Number(bad)]);
    expect(s.cli(['apply']).code).toBe(ExitCode.OK);
    const after = await bytesOf(good);
    const doc = JSON.parse(after.toString('utf8')) as { credentials: { TOKEN: string }; note: string };
    expect(new Keyring([s.configKey()]).openText(act, doc.credentials.TOKEN)).toBe('good token');
    expect(doc.note).toBe('\uFFFD kept');
    // Everything but the sealed value is the same bytes.
    const token = (b: Buffer) => b.toString('utf8').replace(/"TOKEN":"[^"]*"/, '"TOKEN":""');
    expect(token(after)).toBe(token(goodBefore));
  });
});
