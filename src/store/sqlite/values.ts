/**
 * The SQLite store's walk over the sealed values of an inventory: scan
 * (open every value) and re-encryption (re-seal every value in the caller's
 * write transaction), in bounded memory whatever the table size.
 *
 * SQLite runs in this process on one connection, so rows are read a batch
 * at a time in key order (`rowid`, or the primary key of a WITHOUT ROWID
 * table) and each batch is written back by key before the next is read.
 * The per-row work (finding values, JSON documents, crypto, failures) is
 * the engine's, shared with PostgreSQL (`openBatch`, `resealBatch`). JSON documents are
 * text columns read with the engine's lossless JSON reader; only the
 * sealed strings in them change.
 */
import type { SealedText } from '../../crypto/batch';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError } from '../../errors';
import type { InventoryDigest } from '../../engine/digest';
import { LARGE_BATCH, releaseLarge, textIn } from '../../engine/memory';
import { BATCH_TEXT, TextBudget, mapAhead, withinBudget } from '../../engine/pipeline';
import { RowFailure, openBatch, resealBatch, undecryptable } from '../../engine/reseal';
import { RowShape, rowShape } from '../../engine/rows';
import { groupInventory } from '../../engine/tables';
import { PlaceFilter, VerifyOptions, VerifyPart, VerifyResult, VerifyScan, inGroups } from '../../engine/verify';
import { Keyring } from '../../crypto/keyring';
import { DEFAULT_BATCH_SIZE, KindCounter, ScanTally, batchSizeOf } from '../../engine/walk';
import type { ValueCrypto } from '../../engine/value-crypto';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import type { ReencryptResult, ScanResult, WalkOptions } from '../store';
import { storeCrypto } from './crypto';
import type { Flusher } from './flush';
import { Db } from './driver';

/** One table's secret columns and how its rows are walked: read as [key, id as text, the value columns, the AAD columns] (its `RowShape`). */
export interface SqliteTable extends RowShape {
  readonly idColumn: string;
  /** The quoted key rows are read and written by: `rowid`, or the primary key of a WITHOUT ROWID table. */
  readonly key: string;
  /** Columns whose text is some entries' additional authenticated data (read after the columns). */
  readonly aadColumns: readonly string[];
}

/** Splits `schema.table` (an inventory may qualify a table with an attached database's name). */
function schemaAndTable(name: string): [string, string] {
  const dot = name.indexOf('.');
  return dot < 0 ? ['main', name] : [name.slice(0, dot), name.slice(dot + 1)];
}

/** Where a batch's rows hold their key (to write back by), the row id as text, and the first value column (then the AAD columns). */
const KEY_AT = 0;
const ID_AT = 1;
const FIRST = 2;

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
    return { ...rowShape(g, ID_AT, FIRST), idColumn: g.idColumn, key: listed.wr ? quoteIdent(g.idColumn) : 'rowid', aadColumns: g.aadColumns };
  });
}

/**
 * The rows of a table holding at least one value, a batch at a time in key
 * order (a batch is `batchSize` rows or `BATCH_TEXT` of stored text,
 * whichever comes first, measured from the rows' record headers before the
 * rows are read), as the engine reads them (`SqliteTable` is their `RowShape`): [key, id as text, the value columns
 * (a value that is not text stands for a malformed one), the AAD columns
 * as text (as PostgreSQL's ::text gives them: an integer user id becomes
 * its digits)]. Nothing is copied or converted here, except that a JSON
 * document whose bytes are not UTF-8 comes as those bytes (`notUtf8Documents`).
 */
export function* batches(db: Db, t: SqliteTable, batchSize: number, range: KeyRange = {}): Generator<unknown[][]> {
  const cols = t.columns.map((c) => quoteIdent(c.column));
  const aad = t.aadColumns.map((c) => `, CAST(${quoteIdent(c)} AS TEXT)`).join('');
  // One lower bound only (SQLite seeks by one and would filter by the other): `from` for the first batch, then the last key read.
  const below = range.below !== undefined ? [range.below] : [];
  const query = (what: string, lower: string) =>
    db.prepare(
      `SELECT ${what} FROM ${quoteIdent(t.table)} WHERE ${lower}${below.length ? `${t.key} < ? AND ` : ''}(${cols.map((c) => `${c} IS NOT NULL`).join(' OR ')}) ORDER BY ${t.key} LIMIT ?`,
    );
  const select = (lower: string) => query(`${t.key}, CAST(${quoteIdent(t.idColumn)} AS TEXT), ${cols.join(', ')}${aad}`, lower).raw(true).safeIntegers(true);
  // Each row's size, from its record header alone (octet_length reads no value): where a batch of BATCH_TEXT ends.
  const sizes = (lower: string) => query(cols.map((c) => `coalesce(octet_length(${c}), 0)`).join(' + '), lower).pluck();
  const lower = { first: range.from !== undefined ? `${t.key} >= ? AND ` : '', next: `${t.key} > ? AND ` };
  const [firstBatch, nextBatch, firstSizes, nextSizes] = [select(lower.first), select(lower.next), sizes(lower.first), sizes(lower.next)];
  const first = range.from !== undefined ? [range.from] : [];
  const documentsAsStored = notUtf8Documents(db, t);
  let after: unknown;
  for (;;) {
    const ahead = (after === undefined ? firstSizes.all(...first, ...below, batchSize) : nextSizes.all(after, ...below, batchSize)) as number[];
    if (ahead.length === 0) return;
    let n = 1;
    for (let chars = ahead[0]; n < ahead.length && chars + ahead[n] <= BATCH_TEXT; n++) chars += ahead[n];
    const rows = (after === undefined ? firstBatch.all(...first, ...below, n) : nextBatch.all(after, ...below, n)) as unknown[][];
    if (rows.length === 0) return;
    const more = ahead.length === batchSize || n < ahead.length;
    after = rows[rows.length - 1][KEY_AT];
    documentsAsStored(rows);
    // The consumer may empty the batch once done with it (so a large value does not stay while the next is read).
    yield rows;
    if (!more) return;
  }
}

/**
 * For rows of `t` read with its key first (as `batches` reads them, or a
 * row by key as the cut-over does): a JSON document whose stored bytes are
 * not UTF-8 is handed on as those bytes, not as the text the driver decoded
 * (each invalid sequence as U+FFFD): the engine then takes it for a
 * malformed value, and the rotation refuses its row before anything
 * changes, where rewriting the document would have replaced those bytes
 * outside its sealed values. Only a text holding U+FFFD is read again, as
 * bytes, to tell.
 */
export function notUtf8Documents(db: Db, t: SqliteTable): (rows: unknown[][]) => void {
  const documents = t.columns.flatMap((c, k) => (c.json ? [{ at: t.first + k, bytes: db.prepare(`SELECT CAST(${quoteIdent(c.column)} AS BLOB) FROM ${quoteIdent(t.table)} WHERE ${t.key} = ?`).pluck().safeIntegers(true) }] : []));
  return (rows) => {
    for (const d of documents) for (const row of rows) notUtf8AsBytes(row, d.at, d.bytes);
  };
}

function notUtf8AsBytes(row: unknown[], at: number, bytes: { get(key: unknown): unknown }): void {
  const v = row[at];
  if (typeof v !== 'string' || !v.includes('\uFFFD')) return;
  const stored = bytes.get(row[KEY_AT]);
  if (Buffer.isBuffer(stored) && !stored.equals(Buffer.from(v, 'utf8'))) row[at] = stored;
}

/** Rows with a key at or above `from` and below `below` (either absent: unbounded). */
export interface KeyRange {
  readonly from?: bigint;
  readonly below?: bigint;
}

/**
 * Where to split each table between two readers: the middle of its integer
 * keys (undefined for a table with other keys, or none: not split). Rows
 * below it are one part, the others the other.
 */
export function middleKeys(db: Db, tables: readonly SqliteTable[]): Array<bigint | undefined> {
  return tables.map((t) => {
    // Two queries: SQLite finds a lone min() or max() of a key by one seek, both together by a scan.
    const [lo, hi] = ['min', 'max'].map((f) => db.prepare(`SELECT ${f}(${t.key}) FROM ${quoteIdent(t.table)}`).pluck().safeIntegers(true).get());
    return typeof lo === 'bigint' && typeof hi === 'bigint' && hi > lo ? lo + (hi - lo + 1n) / 2n : undefined;
  });
}

/**
 * Whether the inventory's tables hold more than two batches of rows with
 * values: only then does work beside this thread pay for starting a thread
 * (a worker thread loads its modules in about a tenth of a second), so a
 * smaller walk runs on this thread alone. Counts at most that many rows.
 */
export function worthThreads(db: Db, inv: Inventory, batchSize = DEFAULT_BATCH_SIZE): boolean {
  const enough = 2 * batchSize;
  let rows = 0;
  for (const t of planTables(db, inv)) {
    const held = t.columns.map((c) => `${quoteIdent(c.column)} IS NOT NULL`).join(' OR ');
    rows += db.prepare(`SELECT count(*) FROM (SELECT 1 FROM ${quoteIdent(t.table)} WHERE ${held} LIMIT ?)`).pluck().get(enough + 1 - rows) as number;
    if (rows > enough) return true;
  }
  return false;
}

/**
 * One turn of the event loop. Reading, re-sealing and writing a large
 * batch each keep this thread for a while; between them, what waits for
 * this thread runs (a backup made beside the rotation hands its copy over
 * to be checksummed and synced, off this thread), instead of after the
 * whole batch.
 */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function* asAsync<T>(it: Iterable<T>): AsyncGenerator<T> {
  yield* it;
}

/**
 * `fn` of each batch of `t` (`batches`), in order, with up to `depth` calls
 * running at once: the next batches are read on this thread while the
 * crypto of the earlier ones runs elsewhere. Each batch's text is taken
 * from `budget` as it is read; the consumer gives it back once done with it.
 */
export function readAhead<U>(db: Db, t: SqliteTable, batchSize: number, budget: TextBudget, fn: (rows: unknown[][]) => Promise<U>, depth: number): AsyncGenerator<U> {
  return mapAhead(withinBudget(asAsync(batches(db, t, batchSize)), budget, textIn), fn, depth);
}

/** A row's id as text, as failures name it. */
const idOf = (row: readonly unknown[]) => (row[ID_AT] as string | null) ?? '';

/** Opens every value with `keys` (given `only`: those at its places), in the caller's read transaction; lists, never throws for, values that do not open. */
export async function scanValues(db: Db, inv: Inventory, keys: KeySource, opts: WalkOptions = {}, only?: PlaceFilter): Promise<ScanResult> {
  const batchSize = batchSizeOf(opts);
  const tables = planTables(db, inv);
  const crypto = storeCrypto(keys, undefined, opts, worthThreads(db, inv, batchSize));
  const tally = new ScanTally(inv);
  const budget = new TextBudget();
  try {
    for (const t of tables) {
      const opened = async (rows: unknown[][]) => ({ chars: textIn(rows), out: await openBatch(rows, { shape: t, crypto, ...(only ? { only } : {}) }) });
      for await (const { chars, out } of readAhead(db, t, batchSize, budget, opened, crypto.depth)) {
        const done = tally.add(t.table, out);
        budget.give(chars);
        opts.onProgress?.(done);
        releaseLarge(chars);
      }
    }
  } finally {
    await crypto.close();
  }
  return tally.result();
}

/** A batch of a table re-sealed, ready to write back. */
export interface Resealed {
  /** Index of its table in `planTables`' list. */
  readonly table: number;
  /** The rows that change: their keys (to write back by) and ids. */
  readonly keys: readonly unknown[];
  readonly ids: readonly string[];
  /** Per column, each row's new text (null: unchanged; a large one as its bytes, `SealedText`). */
  readonly next: ReadonlyArray<ReadonlyArray<SealedText | null>>;
  /** Sealed values in the batch, by kind. */
  readonly byKind: ReadonlyArray<readonly [string, number]>;
  /** Characters of text the batch's rows held (`releaseLarge`). */
  readonly chars: number;
  /** The first value of the batch that does not open (then nothing of it is to be written, and no batch follows), and how many more do not. */
  readonly failure?: { readonly first: RowFailure & { readonly id: string }; readonly more: number };
}

/**
 * Reads every table a batch at a time and re-seals each batch with
 * `crypto`, which digests every new value at its place; stops after a batch
 * with a value that does not open. `crypto.depth` batches are in flight,
 * and no more text than `budget` allows: the consumer gives each batch's
 * `chars` back once done with it.
 */
export async function* resealedBatches(db: Db, tables: readonly SqliteTable[], crypto: ValueCrypto, batchSize: number, budget: TextBudget): AsyncGenerator<Resealed> {
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i];
    const reseal = async (rows: unknown[][]): Promise<Resealed> => {
      const chars = textIn(rows);
      if (chars >= LARGE_BATCH) await turn();
      const out = await resealBatch(rows, { shape: t, crypto });
      const byKind = [...out.byKind];
      if (out.failures.length > 0) return { table: i, keys: [], ids: [], next: [], byKind, chars, failure: { first: out.failures[0], more: out.failures.length - 1 } };
      const b = { table: i, keys: out.rows.map((r) => rows[r][KEY_AT]), ids: out.rows.map((r) => idOf(rows[r])), next: out.next, byKind, chars };
      // The old texts and what the crypto made on the way go before the new ones are written.
      rows.length = 0;
      releaseLarge(chars);
      return b;
    };
    // Keys only grow, so reading the next batch never meets a row the caller rewrote.
    for await (const b of readAhead(db, t, batchSize, budget, reseal, crypto.depth)) {
      yield b;
      if (b.failure) return;
    }
  }
}

/** Writes a batch's new texts back by key; every row must change. */
function writer(db: Db, t: SqliteTable): (b: Resealed) => void {
  // A new text may come as its bytes (a large re-sealed value, `SealedText`): bound as a blob, stored as the same text.
  const sets = t.columns.map((c) => `${quoteIdent(c.column)} = coalesce(CAST(? AS TEXT), ${quoteIdent(c.column)})`);
  const update = db.prepare(`UPDATE ${quoteIdent(t.table)} SET ${sets.join(', ')} WHERE ${t.key} = ?`);
  const lost = (id: string, changed: number) => new MasterKeyError('DB_ERROR', `${t.table}: the row with id ${id} could not be rewritten (${changed} rows changed); nothing was committed.`);
  if (t.columns.length === 1) {
    return ({ keys, ids, next: [texts] }) => {
      for (let j = 0; j < keys.length; j++) {
        const changed = update.run(texts[j], keys[j]).changes;
        if (changed !== 1) throw lost(ids[j], changed);
      }
    };
  }
  return ({ keys, ids, next }) => {
    for (let j = 0; j < keys.length; j++) {
      const changed = update.run(...next.map((col) => col[j]), keys[j]).changes;
      if (changed !== 1) throw lost(ids[j], changed);
    }
  };
}

/** Batches written between two flushes of what SQLite wrote (`Flusher`: a few MiB at the default batch size). */
const FLUSH_EVERY = 8;

/** Where re-sealed batches come from, and the digest of what they hold once they are all read. */
export interface ResealSource {
  readonly batches: AsyncIterable<Resealed>;
  digest(): Promise<InventoryDigest>;
  readonly mode: ReencryptResult['crypto'];
  close(): Promise<void>;
}

/**
 * Re-seals every value from `from` to `to` inside the caller's write
 * transaction. Throws UNDECRYPTABLE_ROWS at the first batch holding a value
 * that does not open (the caller rolls back).
 *
 * This thread writes each re-sealed batch back by key while the next ones
 * are read and re-sealed: by default on this connection with the crypto in
 * a worker thread, or, given `source` (./reader: a worker thread reading
 * the same snapshot on a connection of its own), all of that beside it.
 * `flusher` writes what SQLite wrote out to disk as it goes (./flush).
 */
export async function reencryptValues(
  db: Db,
  inv: Inventory,
  from: KeySource,
  to: MasterKey,
  opts: WalkOptions = {},
  source?: (tables: readonly SqliteTable[], batchSize: number) => ResealSource,
  flusher?: Flusher,
): Promise<ReencryptResult> {
  if (!db.inTransaction) throw new MasterKeyError('INTERNAL', 'Re-encryption must run inside an open transaction; this is a bug in the caller.');
  const batchSize = batchSizeOf(opts);
  const tables = planTables(db, inv);
  const budget = new TextBudget();
  const src = source ? source(tables, batchSize) : inlineSource(db, tables, storeCrypto(from, to, opts, worthThreads(db, inv, batchSize)), batchSize, budget);
  const writers = tables.map((t) => writer(db, t));
  const kinds = new KindCounter(inv);
  let updated = 0;
  let batches = 0;
  let digest: InventoryDigest;
  try {
    for await (const b of src.batches) {
      if (b.failure) throw undecryptable(tables[b.table].table, b.failure.first, b.failure.more);
      if (b.chars >= LARGE_BATCH) await turn();
      writers[b.table](b);
      budget.give(b.chars);
      if (b.chars >= LARGE_BATCH) {
        // Its texts go now: the generators that made the batch hold it until resumed.
        for (const col of b.next) (col as unknown[]).length = 0;
        releaseLarge(b.chars);
      }
      if (++batches % FLUSH_EVERY === 0) flusher?.tick();
      updated += b.keys.length;
      kinds.add(b.byKind);
      opts.onProgress?.(kinds.total);
    }
    digest = await src.digest();
  } finally {
    await src.close();
    await flusher?.close();
  }
  return { total: kinds.total, byKind: kinds.byKind, updated, digest, crypto: src.mode };
}

/** Batches read on this connection and re-sealed by `crypto`. */
function inlineSource(db: Db, tables: readonly SqliteTable[], crypto: ValueCrypto, batchSize: number, budget: TextBudget): ResealSource {
  return { batches: resealedBatches(db, tables, crypto, batchSize, budget), digest: () => crypto.digest(), mode: crypto.mode, close: () => crypto.close() };
}

/**
 * Verification (`ReadTx.verify`), in the caller's read transaction: every
 * stored value digested with its place and counted, a random sample opened
 * with `key` (the engine's `VerifyScan`, as on PostgreSQL).
 */
export async function verifyValues(db: Db, inv: Inventory, key: MasterKey, opts: VerifyOptions = {}, other?: (middle: Array<bigint | undefined>) => Promise<VerifyPart>): Promise<VerifyResult> {
  const tables = planTables(db, inv);
  const middle = other ? middleKeys(db, tables) : [];
  // The other part (rows from the middle on) is read meanwhile, elsewhere.
  const rest = other?.(middle);
  rest?.catch(() => undefined);
  const scan = await verifyScan(db, tables, inv, opts, (i) => ({ below: middle[i] }));
  if (rest) scan.absorb(await rest);
  // Where the stored values differ from the written ones, every value there is opened (on this connection, in its snapshot).
  const differing = scan.differingGroups();
  const reopened = differing.length > 0 ? await scanValues(db, inv, new Keyring([key]), { batchSize: opts.batchSize }, inGroups(differing)) : undefined;
  return scan.finish(key, reopened);
}

/**
 * The verification scan of the rows of each table in `range(i)` (its index
 * in `tables`; undefined: none of them): every stored value digested with
 * its place, counted, and offered to the sample. Lets other work run
 * between batches.
 */
export async function verifyScan(db: Db, tables: readonly SqliteTable[], inv: Inventory, opts: VerifyOptions, range: (i: number) => KeyRange | undefined = () => ({})): Promise<VerifyScan> {
  const batchSize = batchSizeOf(opts);
  const scan = new VerifyScan(inv, opts);
  for (let i = 0; i < tables.length; i++) {
    const t = tables[i];
    const r = range(i);
    if (!r) continue;
    for (const rows of batches(db, t, batchSize, r)) {
      scan.add(rows, t);
      const chars = textIn(rows);
      // Emptied: the batch's texts go before the next is read.
      rows.length = 0;
      releaseLarge(chars);
      await turn();
    }
  }
  return scan;
}
