/**
 * A JSON document whose stored bytes are not UTF-8, through the real CLI,
 * on the two stores that keep whatever bytes they are given: SQLite (a text
 * column) and PostgreSQL in the SQL_ASCII server encoding.
 *
 * - SQLite's driver reads each invalid sequence as U+FFFD, so a rewrite of
 *   the document would replace those bytes outside its sealed values.
 * - PostgreSQL checks what it sends a UTF-8 client, so reading such a
 *   document failed the whole statement ("invalid byte sequence for
 *   encoding UTF8"): plan and apply stopped with DB_ERROR naming no row.
 *
 * So plan lists the row as a blocker (SEALED_MALFORMED), apply refuses
 * before the stop hook and changes nothing, a document the server makes so
 * after seal-ahead (or in one pass, before the lock) makes the transaction
 * roll back, and a document that holds U+FFFD itself (valid UTF-8) rotates
 * and keeps it.
 */
import { isUtf8 } from 'node:buffer';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { actCodec } from '../src/crypto/codec';
import { Keyring } from '../src/crypto/keyring';
import { ExitCode } from '../src/errors';
import { valueText } from '../src/store/postgres/statements';
import type { TablePlan } from '../src/store/postgres/tables';
import { sqliteFile } from '../src/store/sqlite/url';
import { freshDatabase } from './support/db';
import { Scenario, actScenario, dbSnapshot } from './support/scenario';
import { sqlQuery } from './support/sql';
import { POSTGRES, SQLITE_WAL, StoreFixture } from './support/stores';

const act = actCodec();

/** PostgreSQL with databases in the SQL_ASCII server encoding. */
const SQL_ASCII: StoreFixture = { ...POSTGRES, name: 'PostgreSQL (SQL_ASCII)', create: () => freshDatabase('ascii', { encoding: 'SQL_ASCII' }) };

/** How a test reaches a document's bytes on each store. */
interface Bytes {
  readonly store: StoreFixture;
  /** SQL of the document's stored bytes (`b`) by id (`$1`). */
  readonly read: string;
  /** SQL setting the document (`$1`, its bytes) of row `$2`. */
  readonly write: string;
  /** SQL storing a row named `$1` with the document `$2` (its bytes), returning its id. */
  readonly insert: string;
  /** The server's write of `doc` into row `id` as a script (its stop command): the driver the store's server would use. */
  lastWrite(url: string, doc: Buffer, id: string): string;
  /** Every row of every table, comparable: equal snapshots mean nothing changed. */
  snapshot(url: string): Promise<string>;
}

const ON_SQLITE: Bytes = {
  store: SQLITE_WAL,
  read: 'SELECT CAST(settings AS BLOB) AS b FROM storage_providers WHERE id = $1',
  write: 'UPDATE storage_providers SET settings = CAST($1 AS TEXT) WHERE id = $2',
  insert: 'INSERT INTO storage_providers (name, settings) VALUES ($1, CAST($2 AS TEXT)) RETURNING id',
  lastWrite: (url, doc, id) => `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
const db = new Database(${JSON.stringify(sqliteFile(url))}, { timeout: 5000 });
db.prepare('UPDATE storage_providers SET settings = CAST(? AS TEXT) WHERE id = ?').run(Buffer.from(${JSON.stringify(doc.toString('hex'))}, 'hex'), ${id});
db.close();
`,
  snapshot: dbSnapshot,
};

const ON_SQL_ASCII: Bytes = {
  store: SQL_ASCII,
  // jsonb's text, in the database's encoding (none).
  read: "SELECT convert_to(settings::text, 'SQL_ASCII') AS b FROM storage_providers WHERE id = $1",
  write: "UPDATE storage_providers SET settings = convert_from($1::bytea, 'SQL_ASCII')::jsonb WHERE id = $2",
  insert: "INSERT INTO storage_providers (name, settings) VALUES ($1, convert_from($2::bytea, 'SQL_ASCII')::jsonb) RETURNING id",
  lastWrite: (url, doc, id) => `const { Client } = require(${JSON.stringify(require.resolve('pg'))});
(async () => {
  const c = new Client({ connectionString: ${JSON.stringify(url)} });
  await c.connect();
  await c.query("UPDATE storage_providers SET settings = convert_from(decode($1, 'hex'), 'SQL_ASCII')::jsonb WHERE id = $2", [${JSON.stringify(doc.toString('hex'))}, ${id}]);
  await c.end();
})().catch((e) => { console.error(e); process.exit(1); });
`,
  // As bytes: a row read as text would not reach a UTF-8 client.
  snapshot: async (url) => {
    const tables = await sqlQuery<{ t: string }>(url, "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema IN ('public', 'master_key') ORDER BY 1");
    const parts: string[] = [];
    for (const { t } of tables) {
      const rows = await sqlQuery<{ b: Buffer }>(url, `SELECT convert_to(x::text, 'SQL_ASCII') AS b FROM ${t} x`);
      parts.push(`${t}: ${rows.map((r) => r.b.toString('hex')).sort().join(',')}`);
    }
    return parts.join('\n');
  },
};

describe.each([ON_SQLITE, ON_SQL_ASCII])('a JSON document whose bytes are not UTF-8 ($store.name)', (on) => {
  let s: Scenario;
  let bad: string;
  let good: string;
  const bytesOf = async (id: string) => (await sqlQuery<{ b: Buffer }>(s.url, on.read, [Number(id)]))[0].b;
  const insert = async (name: string, doc: Buffer) => String((await sqlQuery<{ id: unknown }>(s.url, on.insert, [name, doc]))[0].id);
  const seal = (plain: string) => JSON.stringify(act.seal(s.key, Buffer.from(plain, 'utf8')));
  /** `{"credentials":{"TOKEN":<token>},"note":"caf\xE9"}`: Latin-1, not UTF-8, beside a sealed token. */
  const latin1 = (token: string) => Buffer.concat([Buffer.from(`{"credentials":{"TOKEN":${token}},"note":"caf`), Buffer.from([0xe9]), Buffer.from('"}')]);

  beforeAll(async () => {
    s = await actScenario({ perKind: 1, store: on.store });
    if (on.store === SQL_ASCII) expect((await sqlQuery(s.url, 'SHOW server_encoding'))[0]).toEqual({ server_encoding: 'SQL_ASCII' });
    bad = await insert('latin1', latin1(seal('latin1 token')));
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
    const before = await on.snapshot(s.url);
    const bytes = await bytesOf(bad);
    expect(bytes.includes(0xe9)).toBe(true);
    const config = readFileSync(s.configPath, 'utf8');
    const stopped = join(s.dir, 'stopped');
    const r = s.cli(['apply', '--stop-command', `touch ${stopped}`]);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stderr).toContain(`storage_providers.settings id=${bad}`);
    expect(existsSync(stopped)).toBe(false);
    expect(await on.snapshot(s.url)).toBe(before);
    expect((await bytesOf(bad)).equals(bytes)).toBe(true);
    expect(readFileSync(s.configPath, 'utf8')).toBe(config);
  });

  it.each(['--seal-ahead', '--no-seal-ahead'])('a document the server makes so before it stops (%s): the transaction refuses it and rolls back', async (mode) => {
    // Without the row, the preflight no longer refuses.
    await sqlQuery(s.url, 'DELETE FROM storage_providers WHERE id = $1', [Number(bad)]);
    const before = await bytesOf(good);
    const token = seal('good token');
    const stop = join(s.dir, 'last-write.js');
    writeFileSync(stop, on.lastWrite(s.url, latin1(token), good));
    const r = s.cli(['apply', mode, '--stop-command', `node '${stop}'`, '--start-command', 'true']);
    expect(/Sealed ahead/.test(r.stdout)).toBe(mode === '--seal-ahead');
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stderr).toContain(`storage_providers.settings id=${good}`);
    expect(r.stdout).toMatch(/Nothing was changed; starting the server again\./);
    // The server's write stands (jsonb keeps its own layout of it): its byte, and its token under the old key; the key is the old one.
    const now = await bytesOf(good);
    expect(now.includes(0xe9)).toBe(true);
    expect(now.toString('latin1')).toContain(token);
    expect(s.configKey().equals(s.key)).toBe(true);
    // Put back as it was, for the case below.
    await sqlQuery(s.url, on.write, [before, Number(good)]);
  });

  it('with no such document, the rotation runs; U+FFFD written as UTF-8 is kept byte for byte', async () => {
    const goodBefore = await bytesOf(good);
    expect(s.cli(['apply']).code).toBe(ExitCode.OK);
    const after = await bytesOf(good);
    const doc = JSON.parse(after.toString('utf8')) as { credentials: { TOKEN: string }; note: string };
    expect(new Keyring([s.configKey()]).openText(act, doc.credentials.TOKEN)).toBe('good token');
    expect(doc.note).toBe('\uFFFD kept');
    // Everything but the sealed value is the same bytes (jsonb writes a space after the colon).
    const token = (b: Buffer) => b.toString('utf8').replace(/"TOKEN": ?"[^"]*"/, '"TOKEN":""');
    expect(token(after)).toBe(token(goodBefore));
  });
});

describe("on PostgreSQL in SQL_ASCII, the reads' test of a document's bytes", () => {
  let url: string;
  beforeAll(async () => {
    url = await SQL_ASCII.create();
  });
  afterAll(async () => {
    if (url) await SQL_ASCII.drop(url);
  });

  it("takes exactly the byte strings Node's own check takes for UTF-8", async () => {
    const col = { column: 'd', json: true, type: 'jsonb', entries: [] };
    const plan = { table: 'x', idColumn: 'id', idType: 'bigint', idIndexed: true, columns: [col], aadColumns: [], sqlAscii: true } as unknown as TablePlan;
    const hex = (h: string) => Buffer.from(h.replace(/ /g, ''), 'hex');
    // Each kind of sequence at its edges: the largest of each length, overlong forms, surrogates, past U+10FFFF, cut short, stray continuation bytes.
    const edges = ['41', '7f', 'c2 80', 'df bf', 'c0 80', 'c1 bf', 'e0 a0 80', 'e0 9f bf', 'ed 9f bf', 'ed a0 80', 'ef bf bd', 'ef bf', 'f0 90 80 80', 'f0 8f bf bf', 'f4 8f bf bf', 'f4 90 80 80', 'f5 80 80 80', 'ff', '80', '41 e9 42', 'e2 82 ac 41'].map(hex);
    // And random strings, most bytes from the upper half.
    const byte = fc.oneof({ arbitrary: fc.integer({ min: 0x80, max: 0xff }), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 0x7f }), weight: 1 });
    const random = fc.sample(fc.array(byte, { minLength: 1, maxLength: 6 }), { numRuns: 2000, seed: 20261206 }).map((b) => Buffer.from(b));
    const cases = [...edges, ...random];
    const rows = await sqlQuery<{ bad: boolean }>(
      url,
      `SELECT (${valueText(plan, plan.columns[0], 'x')}) = '' AS bad FROM unnest($1::bytea[]) WITH ORDINALITY AS u(b, i), LATERAL (SELECT convert_from(u.b, 'SQL_ASCII') AS d) x ORDER BY u.i`,
      [cases],
    );
    expect(rows.map((r) => r.bad)).toEqual(cases.map((b) => !isUtf8(b)));
    // Both kinds are there.
    expect(cases.filter((b) => isUtf8(b)).length).toBeGreaterThan(100);
    expect(cases.filter((b) => !isUtf8(b)).length).toBeGreaterThan(100);
  });
});
