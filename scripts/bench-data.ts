/**
 * Benchmark data: N secrets of 100-300 byte plaintexts sealed with the ACT
 * codec in one table, seeded once with COPY into pristine copies, and
 * restored from those copies before every measurement so each method starts
 * from the same fresh state.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { ClientBase } from 'pg';
import { actCodec } from '../src/crypto/codec';
import type { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import type { Inventory } from '../src/inventory/inventory';
import { copyField, copyIn } from '../src/store/postgres/copy';

/** The table every method rewrites. */
export const BENCH_TABLE = 'bench_secrets';

/** The inventory `reencryptInventory` and `master-key apply` get. */
export const BENCH_INVENTORY: Inventory = {
  name: 'bench',
  entries: [{ kind: 'bench secret', table: BENCH_TABLE, idColumn: 'id', column: 'value', codec: 'act' }],
};

const SEED_CHUNK = 10_000;

/** A random 100-300 character plaintext. */
export function plaintext(): string {
  const len = randomInt(100, 301);
  return randomBytes(len).toString('base64').slice(0, len);
}

/** COPY text chunks of seed rows (id, name, sealed value, plaintext), generated lazily. */
function* seedChunks(rows: number, key: MasterKey): Generator<string> {
  const codec = actCodec();
  for (let start = 1; start <= rows; start += SEED_CHUNK) {
    const lines: string[] = [];
    for (let id = start; id < start + SEED_CHUNK && id <= rows; id++) {
      const pt = plaintext();
      lines.push(`${id}\tsecret-${id}\t${codec.seal(key, Buffer.from(pt, 'utf8'))}\t${copyField(pt)}\n`);
    }
    yield lines.join('');
  }
}

/**
 * Creates the pristine copies: `bench_seed` (ACT/AES-GCM under `oldKey`),
 * `bench_seed_cbc` (the same plaintexts as pgcrypto AES-CBC, for the
 * in-database baseline) and `bench_plain` (plaintexts, to verify results).
 */
export async function seedBench(c: ClientBase, rows: number, oldKey: MasterKey): Promise<void> {
  await c.query('CREATE EXTENSION IF NOT EXISTS pgcrypto');
  await c.query('DROP TABLE IF EXISTS bench_seed, bench_seed_cbc, bench_plain, bench_seed_full');
  await c.query('CREATE UNLOGGED TABLE bench_seed_full (id bigint NOT NULL, name text NOT NULL, value text NOT NULL, plaintext text NOT NULL)');
  await copyIn(c, 'COPY bench_seed_full FROM STDIN', seedChunks(rows, oldKey));
  await c.query('CREATE TABLE bench_seed AS SELECT id, name, value FROM bench_seed_full');
  await c.query('CREATE TABLE bench_plain AS SELECT id, plaintext FROM bench_seed_full');
  await c.query('ALTER TABLE bench_plain ADD PRIMARY KEY (id)');
  await c.query(
    `CREATE TABLE bench_seed_cbc AS SELECT id, name,
       encode(iv || encrypt_iv(convert_to(plaintext, 'UTF8'), $1::bytea, iv, 'aes-cbc'), 'base64') AS value
     FROM (SELECT *, gen_random_bytes(16) AS iv FROM bench_seed_full) s`,
    [Buffer.from(oldKey.bytes())],
  );
  await c.query('DROP TABLE bench_seed_full');
  // Vacuumed now: else autovacuum comes to these three fresh tables of a million rows each during the first measurements (seen
  // vacuuming bench_seed_cbc inside an apply's window), and times one method against a busier server than the next.
  await c.query('VACUUM ANALYZE bench_seed, bench_seed_cbc, bench_plain');
}

/** Puts `bench_secrets` back to its pristine state (from `bench_seed` or `bench_seed_cbc`), at most `limit` rows. */
export async function restoreBench(c: ClientBase, from: 'gcm' | 'cbc', limit?: number): Promise<number> {
  const src = from === 'gcm' ? 'bench_seed' : 'bench_seed_cbc';
  await c.query(`DROP TABLE IF EXISTS ${BENCH_TABLE}`);
  await c.query(`CREATE TABLE ${BENCH_TABLE} (id bigint NOT NULL, name text NOT NULL, value text NOT NULL)`);
  const r = await c.query(`INSERT INTO ${BENCH_TABLE} SELECT id, name, value FROM ${src}${limit !== undefined ? ` WHERE id <= ${Math.floor(limit)}` : ''}`);
  await c.query(`ALTER TABLE ${BENCH_TABLE} ADD PRIMARY KEY (id)`);
  await c.query(`VACUUM ANALYZE ${BENCH_TABLE}`);
  await c.query('CHECKPOINT');
  return r.rowCount ?? 0;
}

/** Checks that every row of `bench_secrets` opens with `newKey` alone and equals its original plaintext. */
export async function verifyBench(c: ClientBase, newKey: MasterKey): Promise<{ rows: number; ok: number; failures: number }> {
  const ring = new Keyring([newKey]);
  const codec = actCodec();
  let rows = 0;
  let ok = 0;
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await c.query(`DECLARE bench_verify NO SCROLL CURSOR FOR SELECT s.value, p.plaintext FROM ${BENCH_TABLE} s LEFT JOIN bench_plain p USING (id)`);
    for (;;) {
      const r = await c.query<[string, string | null]>({ text: 'FETCH 20000 FROM bench_verify', rowMode: 'array' });
      for (const [value, pt] of r.rows) {
        rows++;
        try {
          if (pt !== null && ring.openText(codec, value) === pt) ok++;
        } catch {
          // counted as a failure below
        }
      }
      if (r.rows.length < 20000) break;
    }
  } finally {
    await c.query('ROLLBACK');
  }
  return { rows, ok, failures: rows - ok };
}
