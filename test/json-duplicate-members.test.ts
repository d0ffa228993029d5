/**
 * A JSON document holding a member name twice, through the real CLI: a
 * SQLite text column and a PostgreSQL json column keep such a document as
 * written, and a rewrite (which keeps one member per name) would drop the
 * other sealed value, silently. So plan lists the row as a blocker
 * (SEALED_MALFORMED at the duplicated member) and apply refuses before the
 * stop hook, changing nothing. A PostgreSQL jsonb column keeps only the
 * last member when the document is stored: there is nothing to lose, and
 * the rotation runs. (docs/json-documents.md.)
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { Keyring } from '../src/crypto/keyring';
import { ExitCode } from '../src/errors';
import { Scenario, actScenario, dbSnapshot, keyLeaks } from './support/scenario';
import { sqlQuery } from './support/sql';
import { POSTGRES, SQLITE_WAL, StoreFixture } from './support/stores';

const act = actCodec();

/** Stores a storage provider whose settings document names TOKEN twice (text as written); its id. */
async function duplicateDocument(s: Scenario): Promise<string> {
  const seal = (plain: string) => act.seal(s.key, Buffer.from(plain, 'utf8'));
  const text = `{"credentials":{"TOKEN":${JSON.stringify(seal('first token'))},"TOKEN":${JSON.stringify(seal('second token'))},"OTHER":${JSON.stringify(seal('other'))}}}`;
  const [row] = await sqlQuery<{ id: unknown }>(s.url, "INSERT INTO storage_providers (name, settings) VALUES ('dup', $1) RETURNING id", [text]);
  return String(row.id);
}

describe.each([
  { name: 'SQLite (a text column)', store: SQLITE_WAL as StoreFixture, column: 'text' },
  { name: 'PostgreSQL (a json column)', store: POSTGRES as StoreFixture, column: 'json' },
])('on $name, a document with a member name twice', ({ store, column }) => {
  let s: Scenario;
  let id: string;
  beforeAll(async () => {
    s = await actScenario({ perKind: 1, store });
    if (column === 'json') await sqlQuery(s.url, 'ALTER TABLE storage_providers ALTER COLUMN settings TYPE json USING settings::json');
    id = await duplicateDocument(s);
  });

  it('plan lists its row as a blocker at the duplicated member', () => {
    const r = s.cli(['plan']);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stdout).toContain(`storage_providers.settings#credentials.TOKEN id=${id} (storage provider secret): SEALED_MALFORMED`);
    expect(r.stdout).toMatch(/Blocked: apply would refuse to run:\n {2}- 1 stored value\(s\) do not open with the old key mk:[0-9a-f]{12} or are malformed \(SEALED_MALFORMED: .*holds a member name twice/);
    const json = JSON.parse(s.cli(['plan', '--json']).stdout) as { undecryptable: { count: number; rows: unknown[] } };
    expect(json.undecryptable).toEqual({ count: 1, rows: [{ table: 'storage_providers', column: 'settings', id, kind: 'storage provider secret', path: 'credentials.TOKEN', code: 'SEALED_MALFORMED' }] });
  });

  it('apply refuses before the stop hook and changes nothing', async () => {
    const before = await dbSnapshot(s.url);
    const config = readFileSync(s.configPath, 'utf8');
    const stopped = join(s.dir, 'stopped');
    const r = s.cli(['apply', '--stop-command', `touch ${stopped}`]);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stderr).toMatch(new RegExp(`^master-key: 1 stored value\\(s\\) do not open with the old key mk:[0-9a-f]{12} or are malformed .*\\(storage_providers\\.settings#credentials\\.TOKEN id=${id} \\(storage provider secret, SEALED_MALFORMED\\)\\); nothing was changed.* \\[UNDECRYPTABLE_ROWS\\]\\n$`));
    expect(keyLeaks(r.stdout + r.stderr, [s.key])).toEqual([]);
    expect(existsSync(stopped)).toBe(false);
    expect(await dbSnapshot(s.url)).toBe(before);
    expect(readFileSync(s.configPath, 'utf8')).toBe(config);
    const [row] = await sqlQuery<{ settings: unknown }>(s.url, 'SELECT CAST(settings AS TEXT) AS settings FROM storage_providers WHERE id = $1', [Number(id)]);
    expect((String(row.settings).match(/"TOKEN"/g) ?? []).length).toBe(2);
  });

  it('once one of the two is removed, the rotation runs and keeps every member', async () => {
    const [row] = await sqlQuery<{ settings: unknown }>(s.url, 'SELECT CAST(settings AS TEXT) AS settings FROM storage_providers WHERE id = $1', [Number(id)]);
    const fixed = String(row.settings).replace(/"TOKEN":"[^"]*",/, '');
    await sqlQuery(s.url, 'UPDATE storage_providers SET settings = $1 WHERE id = $2', [fixed, Number(id)]);
    const r = s.cli(['apply']);
    expect(r.code).toBe(ExitCode.OK);
    const [after] = await sqlQuery<{ settings: unknown }>(s.url, 'SELECT CAST(settings AS TEXT) AS settings FROM storage_providers WHERE id = $1', [Number(id)]);
    const creds = (JSON.parse(String(after.settings)) as { credentials: Record<string, string> }).credentials;
    const ring = new Keyring([s.configKey()]);
    expect(Object.fromEntries(Object.entries(creds).map(([k, v]) => [k, ring.openText(act, v)]))).toEqual({ TOKEN: 'second token', OTHER: 'other' });
  });
});

describe('on PostgreSQL, a jsonb column', () => {
  it('keeps only the last member of a name when the document is stored: nothing to lose, and the rotation runs', async () => {
    const s = await actScenario({ perKind: 1, store: POSTGRES });
    const id = await duplicateDocument(s);
    const [row] = await sqlQuery<{ settings: string }>(s.url, 'SELECT CAST(settings AS TEXT) AS settings FROM storage_providers WHERE id = $1', [Number(id)]);
    expect((row.settings.match(/"TOKEN"/g) ?? []).length).toBe(1);
    const plan = s.cli(['plan']);
    expect(plan.code).toBe(ExitCode.OK);
    expect(s.cli(['apply']).code).toBe(ExitCode.OK);
    const [after] = await sqlQuery<{ settings: string }>(s.url, 'SELECT CAST(settings AS TEXT) AS settings FROM storage_providers WHERE id = $1', [Number(id)]);
    const creds = (JSON.parse(after.settings) as { credentials: Record<string, string> }).credentials;
    const ring = new Keyring([s.configKey()]);
    expect(Object.fromEntries(Object.entries(creds).map(([k, v]) => [k, ring.openText(act, v)]))).toEqual({ TOKEN: 'second token', OTHER: 'other' });
  });
});
