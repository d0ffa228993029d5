/**
 * Seal-ahead on PostgreSQL stages each row's version as its snapshot read
 * it (the row's `xmin`), for small rows (the staging INSERT's path; one
 * large value goes by COPY, see postgres-large-value.test.ts), and the
 * cut-over swaps a staged row in only while the live row is still that
 * version. Texts with characters outside ASCII (in JSON documents).
 *
 * - The staging table holds, for every row, the live row's `xmin`, and
 *   where it held a value (NULL where a row holds none).
 * - Through the CLI: a frozen row (VACUUM FREEZE after staging) is still the
 *   version staged, and swapped in; every row the stop hook writes is
 *   re-sealed in the window: changed (a value, or a document's text beside
 *   its secret), rewritten with its own texts, or deleted and inserted
 *   again as it was; every value then opens with the new key to what the
 *   server last wrote.
 */
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import type { Inventory } from '../src/inventory/inventory';
import { openStore } from '../src/store/open';
import { scratchDir } from '../scripts/scratch';
import { dropDatabase, freshDatabase, withTestClient } from './support/db';
import { childEnv, keyLine, runCli } from './support/scenario';

const INVENTORY: Inventory = {
  name: 'notes',
  entries: [
    { kind: 'note', table: 'notes', idColumn: 'id', column: 'value', codec: 'act' },
    { kind: 'document secret', table: 'notes', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['secret'] },
  ],
};
const ROWS = 30;
/** Rows the stop hook rewrites with their own texts (UPDATE … SET value = value, doc = doc). */
const REWRITTEN = [1, 2, 3, 4, 5, 9];
/** A row whose value the stop hook changes, and one whose document it changes beside the secret. */
const NEW_VALUE = 6;
const NEW_LABEL = 7;
/** A row the stop hook deletes and inserts again, as it was. */
const INSERTED_AGAIN = 8;
/** A row with no value in `value` (only in its document): staged as holding none there. */
const NO_VALUE = 9;
/** Rows the stop hook writes, one way or another. */
const WRITTEN = new Set([...REWRITTEN, NEW_VALUE, NEW_LABEL, INSERTED_AGAIN]).size;

const label = (id: number) => `héllo wörld ✓ 🎉 №${id} «${'ü'.repeat(id)}»`;
const notePlain = (id: number) => `note ${id} ünïcödé ✓`;
const docPlain = (id: number) => `document secret ${id} ✓`;

async function seed(url: string, key: MasterKey): Promise<void> {
  const codec = actCodec();
  const seal = (text: string) => codec.seal(key, Buffer.from(text, 'utf8'));
  await withTestClient(url, async (c) => {
    await c.query('CREATE TABLE notes (id integer PRIMARY KEY, value text, doc jsonb)');
    for (let id = 1; id <= ROWS; id++) {
      await c.query('INSERT INTO notes (id, value, doc) VALUES ($1, $2, $3)', [id, id === NO_VALUE ? null : seal(notePlain(id)), JSON.stringify({ label: label(id), secret: seal(docPlain(id)) })]);
    }
  });
}

/** Every value, opened with `key`: `id.value` and `id.doc` to their plaintexts, and each document's label. */
async function opened(url: string, key: MasterKey): Promise<Map<string, string | null>> {
  const ring = new Keyring([key]);
  const codec = actCodec();
  const rows = await withTestClient(url, async (c) => (await c.query<{ id: number; value: string | null; doc: { label: string; secret: string } }>('SELECT id, value, doc FROM notes ORDER BY id')).rows);
  const out = new Map<string, string | null>();
  for (const r of rows) {
    out.set(`${r.id}.value`, r.value === null ? null : ring.openText(codec, r.value));
    out.set(`${r.id}.doc`, ring.openText(codec, r.doc.secret));
    out.set(`${r.id}.label`, r.doc.label);
  }
  return out;
}

describe('seal-ahead on PostgreSQL: a staged row is swapped in only while the live row is the version staged', () => {
  const dir = scratchDir('mk-pg-digest-');
  const config = join(dir, 'act.env');
  const inventory = join(dir, 'inventory.json');
  const oldKey = MasterKey.generate();
  let url: string;

  beforeAll(async () => {
    url = await freshDatabase('digest');
    writeFileSync(config, `${keyLine(oldKey)}\n`);
    chmodSync(config, 0o600);
    writeFileSync(inventory, JSON.stringify(INVENTORY));
    await seed(url, oldKey);
    const init = runCli(['init', '--config', config, '--inventory', inventory], childEnv({ DATABASE_URL: url }));
    if (init.code !== 0) throw new Error(`master-key init failed (${init.code}): ${init.stderr}`);
  });

  afterAll(async () => {
    if (url) await dropDatabase(url);
  });

  it('stages, for every row, the version read (its xmin) and where it held a value, in batches', async () => {
    const store = await openStore(url);
    try {
      const staged = await store.sealAhead({ inventory: INVENTORY, from: new Keyring([oldKey]), to: MasterKey.generate(), rotationId: 'digest-check', batchSize: 4 });
      expect(staged.rows).toBe(ROWS);
      const check = await withTestClient(url, async (c) => {
        const tables = (await c.query<{ name: string }>("SELECT relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'master_key' AND c.relkind = 'r' AND relname LIKE 'stage\\_%'")).rows;
        expect(tables).toHaveLength(1);
        const r = await c.query<{ rows: number; same: number; nulls: number }>(
          `SELECT count(*)::int AS rows,
                  count(*) FILTER (WHERE s.ver = t.xmin AND (s.h0 IS NULL) = (t.value IS NULL) AND s.h1)::int AS same,
                  count(*) FILTER (WHERE s.h0 IS NULL)::int AS nulls
             FROM master_key.${tables[0].name} s JOIN notes t ON t.id = s.id`,
        );
        return r.rows[0];
      });
      expect(check).toEqual({ rows: ROWS, same: ROWS, nulls: 1 });
    } finally {
      await store.dropStaging();
      await store.close();
    }
  });

  it('swaps in the rows frozen since, and re-seals in the window every row written since, with its own texts too', async () => {
    const before = await opened(url, oldKey);
    // The server's last writes, in the stop hook: every row frozen (its xmin kept), some rows rewritten with their own texts, one
    // value changed, one document's label changed, one row deleted and inserted again as it was.
    const stop = join(dir, 'stop.js');
    writeFileSync(
      stop,
      `const { Client } = require(${JSON.stringify(require.resolve('pg'))});
       const { actCodec } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'src', 'crypto', 'codec.js'))});
       const { parseKey } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'src', 'crypto', 'key.js'))});
       const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(require('node:fs').readFileSync(${JSON.stringify(config)}, 'utf8'))[1]);
       const c = new Client({ connectionString: process.env.DATABASE_URL });
       (async () => {
         await c.connect();
         await c.query('VACUUM (FREEZE) notes');
         await c.query('UPDATE notes SET value = value, doc = doc WHERE id = ANY($1::int[])', [${JSON.stringify(REWRITTEN)}]);
         await c.query('UPDATE notes SET value = $1 WHERE id = ${NEW_VALUE}', [actCodec().seal(key, Buffer.from('changed ✓', 'utf8'))]);
         await c.query("UPDATE notes SET doc = jsonb_set(doc, '{label}', to_jsonb('geändert ✓'::text)) WHERE id = ${NEW_LABEL}");
         await c.query('BEGIN');
         const row = await c.query('DELETE FROM notes WHERE id = ${INSERTED_AGAIN} RETURNING value, doc');
         await c.query('INSERT INTO notes (id, value, doc) VALUES (${INSERTED_AGAIN}, $1, $2)', [row.rows[0].value, row.rows[0].doc]);
         await c.query('COMMIT');
         await c.end();
       })().catch((e) => { console.error(e); process.exit(1); });`,
    );
    const reports = join(dir, 'reports');
    const r = runCli(
      ['apply', '--seal-ahead', '--batch-size', '4', '--stop-command', `node '${stop}'`, '--backup-dir', join(dir, 'backups'), '--report-dir', reports, '--config', config, '--inventory', inventory],
      childEnv({ DATABASE_URL: url }),
    );
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('.json'))!), 'utf8')) as {
      sealAhead: Record<string, unknown>;
      verification: Record<string, unknown>;
    };
    // Frozen: still the versions staged, so swapped in. Written since, whatever their texts: re-sealed in the window.
    expect(report.sealAhead).toMatchObject({ ran: true, used: true, stagedRows: ROWS, swappedRows: ROWS - WRITTEN, resealedRows: WRITTEN });
    expect(report.verification).toMatchObject({ ok: true, digestMatches: true, failures: 0 });

    const newKey = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(config, 'utf8'))![1]);
    expect(newKey.equals(oldKey)).toBe(false);
    const expected = new Map(before);
    expected.set(`${NEW_VALUE}.value`, 'changed ✓');
    expected.set(`${NEW_LABEL}.label`, 'geändert ✓');
    expect(await opened(url, newKey)).toEqual(expected);
    expect(runCli(['verify', '--config', config, '--inventory', inventory], childEnv({ DATABASE_URL: url })).code).toBe(0);
  });
});
