/**
 * The SQLite store's walk over the sealed values of an inventory: scan
 * (open every value) and re-encryption (re-seal every value in the caller's
 * write transaction), in bounded memory whatever the table size.
 *
 * SQLite runs in this process on one connection, so rows are read a batch
 * at a time in key order (`rowid`, or the primary key of a WITHOUT ROWID
 * table) and each batch is written back by key before the next is read.
 * The per-row work (finding values, JSON documents, crypto, failures) is
 * the engine's, shared with PostgreSQL (`processBatch`). JSON documents are
 * text columns read with the engine's lossless JSON reader; only the
 * sealed strings in them change.
 */
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError } from '../../errors';
import { mapAhead, undecryptable } from '../../engine/stream-batch';
import { DEFAULT_BATCH_SIZE, MAX_LISTED_FAILURES, VerifyOptions, VerifyResult, VerifyScan } from '../../engine/stream';
import { ValueDigest } from '../../engine/stream-digest';
import { AadLayout, ColumnPlan, aadLayout, groupInventory, processBatch } from '../../engine/stream-plan';
import { Inventory, inventoryKinds, quoteIdent } from '../../inventory/inventory';
import type { ReencryptResult, ScanResult, SecretFailure, StreamOptions } from '../store';
import { closeCrypto, valueCrypto } from './crypto';
import { Db } from './driver';

/** One table's secret columns and how its rows are walked. */
export interface SqliteTable {
  readonly table: string;
  readonly idColumn: string;
  /** The quoted key rows are read and written by: `rowid`, or the primary key of a WITHOUT ROWID table. */
  readonly key: string;
  readonly columns: ReadonlyArray<Pick<ColumnPlan, 'column' | 'json' | 'entries'>>;
  /** Columns whose text is some entries' additional authenticated data (read after the columns). */
  readonly aadColumns: readonly string[];
  /** Where they are in a batch's rows. */
  readonly aad: AadLayout;
}

/** Splits `schema.table` (an inventory may qualify a table with an attached database's name). */
function schemaAndTable(name: string): [string, string] {
  const dot = name.indexOf('.');
  return dot < 0 ? ['main', name] : [name.slice(0, dot), name.slice(dot + 1)];
}

/** Checks every table and column the inventory names and decides how each table is walked. */
export function planTables(db: Db, inv: Inventory): SqliteTable[] {
  return groupInventory(inv).map((g) => {
    const [schema, table] = schemaAndTable(g.table);
    const listed = db.prepare('SELECT wr FROM pragma_table_list WHERE schema = ? AND name = ? AND type = ?').get(schema, table, 'table') as { wr: number } | undefined;
    if (!listed) throw new MasterKeyError('INVENTORY_INVALID', `The inventory names the table ${g.table}, which does not exist in this database; fix the inventory or the schema.`);
    const names = new Set((db.prepare('SELECT name FROM pragma_table_xinfo(?, ?)').all(table, schema) as Array<{ name: string }>).map((r) => r.name));
    for (const col of [g.idColumn, ...g.columns.map((c) => c.column), ...g.aadColumns]) {
      if (!names.has(col)) throw new MasterKeyError('INVENTORY_INVALID', `The inventory names ${g.table}.${col}, which does not exist in this database; fix the inventory or the schema.`);
    }
    return { table: g.table, idColumn: g.idColumn, key: listed.wr ? quoteIdent(g.idColumn) : 'rowid', columns: g.columns, aadColumns: g.aadColumns, aad: aadLayout(g.aadColumns, 1, g.columns.length) };
  });
}

/**
 * Stands in for a stored value that is not text (a number or a blob): no
 * codec accepts it, so it is reported as malformed, and never written back.
 */
const NOT_TEXT = '\u0000';

/** One batch of rows: their keys, and rows laid out as `processBatch` reads them (id, the columns, then the AAD columns as text). */
interface Batch {
  readonly keys: unknown[];
  readonly rows: Array<Array<string | null>>;
}

/** The rows of a table holding at least one value, a batch at a time in key order. */
function* batches(db: Db, t: SqliteTable, batchSize: number): Generator<Batch> {
  const cols = t.columns.map((c) => quoteIdent(c.column));
  // AAD as text, as PostgreSQL's ::text gives it (an integer user id becomes its digits).
  const aad = t.aadColumns.map((c) => `, CAST(${quoteIdent(c)} AS TEXT)`).join('');
  const select = (after: string) =>
    db
      .prepare(`SELECT ${t.key}, ${quoteIdent(t.idColumn)}, ${cols.join(', ')}${aad} FROM ${quoteIdent(t.table)} WHERE ${after}(${cols.map((c) => `${c} IS NOT NULL`).join(' OR ')}) ORDER BY ${t.key} LIMIT ?`)
      .raw(true)
      .safeIntegers(true);
  const firstBatch = select('');
  const nextBatch = select(`${t.key} > ? AND `);
  let after: unknown;
  for (;;) {
    const raw = (after === undefined ? firstBatch.all(batchSize) : nextBatch.all(after, batchSize)) as unknown[][];
    if (raw.length === 0) return;
    const keys = raw.map((r) => r[0]);
    const rows = raw.map((r) => r.slice(1).map((v) => (v === null || typeof v === 'string' ? v : NOT_TEXT)));
    // Ids as text, as the PostgreSQL store reports them.
    for (let i = 0; i < rows.length; i++) rows[i][0] = String(raw[i][1]);
    yield { keys, rows };
    if (raw.length < batchSize) return;
    after = keys[keys.length - 1];
  }
}

async function* asAsync<T>(it: Iterable<T>): AsyncGenerator<T> {
  yield* it;
}

function batchSizeOf(opts: StreamOptions): number {
  const n = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `The batch size must be a positive integer, got ${n}.`);
  return n;
}

/** Counts per kind, every kind of the inventory listed. */
function kindCounts(inv: Inventory): { byKind: Record<string, number>; add(counts: ReadonlyMap<string, number>): number } {
  const byKind: Record<string, number> = Object.fromEntries(inventoryKinds(inv).map((k) => [k, 0]));
  return {
    byKind,
    add(counts) {
      let n = 0;
      for (const [k, v] of counts) {
        byKind[k] = (byKind[k] ?? 0) + v;
        n += v;
      }
      return n;
    },
  };
}

/** Opens every value with `keys` (in the caller's read transaction); lists, never throws for, values that do not open. */
export async function scanValues(db: Db, inv: Inventory, keys: KeySource, opts: StreamOptions = {}): Promise<ScanResult> {
  const batchSize = batchSizeOf(opts);
  const tables = planTables(db, inv);
  const crypto = valueCrypto(keys, undefined, opts);
  const kinds = kindCounts(inv);
  const failures: SecretFailure[] = [];
  let total = 0;
  let failureCount = 0;
  let storedBytes = 0;
  try {
    for (const t of tables) {
      for (const { rows } of batches(db, t, batchSize)) {
        const out = await processBatch(t.columns, rows, 1, crypto, false, undefined, t.aad);
        total += kinds.add(out.byKind);
        storedBytes += out.bytes;
        failureCount += out.failures.length;
        for (const { row, ...f } of out.failures.slice(0, MAX_LISTED_FAILURES - failures.length)) failures.push({ table: t.table, id: rows[row][0] ?? '', ...f });
        opts.onProgress?.(total);
      }
    }
  } finally {
    await closeCrypto(crypto);
  }
  return { total, byKind: kinds.byKind, failures, failureCount, storedBytes };
}

/**
 * Re-seals every value from `from` to `to` inside the caller's write
 * transaction. Throws UNDECRYPTABLE_ROWS at the first batch holding a value
 * that does not open (the caller rolls back).
 */
export async function reencryptValues(db: Db, inv: Inventory, from: KeySource, to: MasterKey, opts: StreamOptions = {}): Promise<ReencryptResult> {
  if (!db.inTransaction) throw new MasterKeyError('INTERNAL', 'Re-encryption must run inside an open transaction; this is a bug in the caller.');
  const batchSize = batchSizeOf(opts);
  const tables = planTables(db, inv);
  const crypto = valueCrypto(from, to, opts);
  const kinds = kindCounts(inv);
  const digest = new ValueDigest();
  // Worker threads need several batches in flight; SQLite reads and writes on this thread meanwhile.
  const ahead = crypto.mode === 'workers' ? 2 * (opts.workers ?? 2) : 1;
  let total = 0;
  let updated = 0;
  try {
    for (const t of tables) {
      const sets = t.columns.map((c) => `${quoteIdent(c.column)} = coalesce(?, ${quoteIdent(c.column)})`);
      const update = db.prepare(`UPDATE ${quoteIdent(t.table)} SET ${sets.join(', ')} WHERE ${t.key} = ?`).safeIntegers(true);
      const reseal = async ({ keys, rows }: Batch) => ({
        keys,
        rows,
        out: await processBatch(t.columns, rows, 1, crypto, true, (row, column, path, text) => digest.add(t.table, column, path, rows[row][0] ?? '', text), t.aad),
      });
      // Keys only grow, so reading the next batch never meets a row this loop rewrote.
      for await (const { keys, rows, out } of mapAhead(asAsync(batches(db, t, batchSize)), reseal, ahead)) {
        if (out.failures.length > 0) {
          const { row, ...f } = out.failures[0];
          throw undecryptable(t.table, { ...f, id: rows[row][0] ?? '', more: out.failures.length - 1 });
        }
        const next = out.next!;
        out.rows.forEach((row, j) => {
          const changed = update.run(...next.map((col) => col[j]), keys[row]).changes;
          if (changed !== 1) throw new MasterKeyError('DB_ERROR', `${t.table}: the row with id ${rows[row][0]} could not be rewritten (${changed} rows changed); nothing was committed.`);
        });
        updated += out.rows.length;
        total += kinds.add(out.byKind);
        opts.onProgress?.(total);
      }
    }
  } finally {
    await closeCrypto(crypto);
  }
  return { total, byKind: kinds.byKind, updated, digest: digest.result(), crypto: crypto.mode };
}

/**
 * Verification (`ReadTx.verify`), in the caller's read transaction: every
 * stored value digested with its place and counted, a random sample opened
 * with `key` (the engine's `VerifyScan`, as on PostgreSQL).
 */
export async function verifyValues(db: Db, inv: Inventory, key: MasterKey, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const batchSize = batchSizeOf(opts);
  const scan = new VerifyScan(inv, opts);
  for (const t of planTables(db, inv)) for (const { rows } of batches(db, t, batchSize)) scan.add(t.table, t.columns, rows, 1, 0, t.aad);
  return scan.finish(key);
}
