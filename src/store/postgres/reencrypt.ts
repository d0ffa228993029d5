/**
 * The PostgreSQL store's re-encryption, inside the caller's transaction:
 * rows read in batches (COPY on a second connection in this transaction's
 * snapshot, or a cursor on this one), re-sealed by the engine with the
 * crypto a few batches ahead (`prepareBatches`), and written back by batch
 * UPDATEs with binary array parameters (a batch of one row, such as a
 * large value, by an UPDATE of that row), the next write queued while the
 * following batch is prepared (`writeBatches`), so the client and the
 * server work at the same time.
 */
import type { ClientBase } from 'pg';
import type { SealedText } from '../../crypto/batch';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError } from '../../errors';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import type { InventoryDigest } from '../../engine/digest';
import { releaseLarge, textIn } from '../../engine/memory';
import { TextBudget, WritesInFlight, mapAhead, withinBudget } from '../../engine/pipeline';
import { RowFailure, resealBatch, undecryptable } from '../../engine/reseal';
import { ValueCrypto, valueCrypto } from '../../engine/value-crypto';
import { KindCounter, ReencryptResult, WalkOptions, batchSizeOf } from '../../engine/walk';
import { binaryTextArray, binaryTidArray, pgArray } from './arrays';
import { naming, translatePgError } from './client';
import { Row, connectReader, copyBatches, cursorBatches, exportSnapshot } from './row-source';
import { lockTables, rowLayout, selectSql, steerPlanner, updateOneSql, updateSql } from './statements';
import { TablePlan, planInventory } from './tables';

/** Options of `reencryptInventory`. */
export interface ReencryptOptions extends WalkOptions {
  /**
   * URL of the same database for a second, read-only connection that reads
   * in this transaction's snapshot while this connection writes (faster).
   * Used only when this transaction has not yet written to a secret table.
   */
  readonly readerUrl?: string;
  /**
   * Sees each batch of rows as it is read, before it is re-sealed (laid
   * out as `rowLayout(plan)` says), and may write them somewhere (a
   * backup of exactly what this transaction rewrites). Awaited before the
   * batch goes on; an error ends the re-encryption with it.
   */
  readonly onRead?: (plan: TablePlan, rows: readonly Row[]) => void | Promise<void>;
}

/**
 * Runs INSIDE the caller's open transaction on `client` (the caller did
 * BEGIN, holds the advisory lock, and will COMMIT or ROLLBACK). Re-seals
 * every value of every entry from the old key(s) in `from` to `to`, with the
 * entry's codec. If any value does not open, throws
 * MasterKeyError('UNDECRYPTABLE_ROWS') naming table/id/kind (never a value),
 * and the caller rolls back. Memory stays bounded whatever the table size.
 */
export async function reencryptInventory(
  client: ClientBase,
  inv: Inventory,
  from: KeySource,
  to: MasterKey,
  opts: ReencryptOptions = {},
): Promise<ReencryptResult> {
  const batchSize = batchSizeOf(opts);
  if (client.getTransactionStatus() !== 'T') {
    throw new MasterKeyError('INTERNAL', 'Re-encryption must run inside an open transaction; this is a bug in the caller.');
  }
  const plans = await planInventory(client, inv);
  const counter = new KindCounter(inv);
  let written = 0;
  const progress = (values: number) => opts.onProgress?.((written += values));
  try {
    await lockTables(client, plans);
  } catch (e) {
    throw translatePgError(e, 'locking the secret tables');
  }
  const snapshot = opts.readerUrl ? await exportSnapshot(client, plans.map((p) => quoteIdent(p.table))) : undefined;
  const reader = snapshot ? await connectReader(opts.readerUrl!, snapshot) : undefined;
  const crypto = valueCrypto({ from, to }, opts);
  const budget = new TextBudget();
  let updated = 0;
  let digest: InventoryDigest;
  let ok = false;
  try {
    for (const plan of plans) {
      // Batches read and not yet written hold at most about IN_FLIGHT_TEXT of text, however large a row.
      const read = withinBudget(reader ? copyBatches(reader.client, selectSql(plan), batchSize) : cursorBatches(client, selectSql(plan), batchSize), budget, textIn);
      const rows = opts.onRead ? observed(read, (batch) => opts.onRead!(plan, batch)) : read;
      const depth = reader ? 2 : 1;
      const batches = prepareBatches(rows, plan, crypto);
      updated += await naming(plan, 're-encrypting', () => writeBatches(client, plan, batches, (byKind) => counter.add(byKind), progress, depth, budget));
    }
    digest = await crypto.digest();
    ok = true;
  } finally {
    await (ok ? reader?.close() : reader?.abort());
    await crypto.close();
  }
  return { total: counter.total, byKind: counter.byKind, updated, digest, crypto: crypto.mode };
}

/** Passes each item of `source` on after `fn` has seen it. */
async function* observed<T>(source: AsyncIterable<T>, fn: (item: T) => void | Promise<void>): AsyncGenerator<T> {
  for await (const item of source) {
    await fn(item);
    yield item;
  }
}

/** A batch ready to write: the UPDATE's parameters, and what it holds. */
export interface PreparedBatch {
  /** Rows the UPDATE must change (0: nothing to write). */
  readonly rows: number;
  /**
   * The UPDATE's parameters: of a batch of one row (`one`), its key then
   * each column's new text (`updateOneSql`); else row keys, then one binary
   * text[] per column (`updateSql`).
   */
  readonly params: Array<SealedText | null>;
  readonly one?: boolean;
  /** Sealed values in the batch, by kind. */
  readonly byKind: ReadonlyMap<string, number>;
  /** Characters of text the batch's rows held (`releaseLarge`). */
  readonly chars: number;
  /** The first value of the batch that does not open (then the batch is not to be written), and how many more do not. */
  readonly failure?: { readonly first: RowFailure & { readonly id: string }; readonly more: number };
}


/**
 * Opens and re-seals each batch of rows and builds its UPDATE parameters;
 * the crypto digests every new value at its place. Stops after a batch with
 * a failure. Keeps `crypto.depth` batches in flight (more than 1 when the
 * crypto runs off this thread).
 */
export async function* prepareBatches(source: AsyncIterable<Row[]>, plan: TablePlan, crypto: ValueCrypto): AsyncGenerator<PreparedBatch> {
  const shape = rowLayout(plan);
  const key = shape.ctid ?? shape.idAt;
  // A large batch's texts each go as soon as they are no longer needed (`releaseLarge`): what reading it let go of, the old
  // texts once re-sealed (emptied from the rows, which the generators that read them hold until resumed), the new ones once
  // in the UPDATE's parameters.
  const build = async (rows: Row[], chars: number): Promise<PreparedBatch> => {
    const out = await resealBatch(rows, { shape, crypto });
    const byKind = out.byKind;
    if (out.failures.length > 0) return { rows: 0, params: [], byKind, chars, failure: { first: out.failures[0], more: out.failures.length - 1 } };
    const n = out.rows.length;
    if (n === 0) return { rows: 0, params: [], byKind, chars };
    const keys = out.rows.map((i) => rows[i][key]!);
    rows.length = 0;
    releaseLarge(chars);
    if (n === 1) return { rows: 1, one: true, params: [keys[0], ...out.next.map((col) => col[0])], byKind, chars };
    return { rows: n, params: [shape.ctid ? binaryTidArray(keys) : pgArray(keys), ...out.next.map(binaryTextArray)], byKind, chars };
  };
  const prepare = async (rows: Row[]): Promise<PreparedBatch> => {
    const chars = textIn(rows);
    releaseLarge(chars);
    const b = await build(rows, chars);
    rows.length = 0;
    releaseLarge(chars);
    return b;
  };
  for await (const b of mapAhead(source, prepare, crypto.depth)) {
    yield b;
    if (b.failure) return;
  }
}


/**
 * Writes prepared batches of one table on `writer` (in its transaction),
 * with up to `depth` writes outstanding (the next one queued in pg's
 * client, which sends it as soon as the server is ready, so the server goes
 * straight on to it), while the following batch is prepared. Use depth 1 when the connection also reads (a cursor).
 * Throws UNDECRYPTABLE_ROWS at a batch with a failure.
 * `count` sees each batch's values as it is prepared, `progress` the number
 * of values of each batch once written. Returns the rows written.
 */
export async function writeBatches(
  writer: ClientBase,
  plan: TablePlan,
  batches: AsyncIterable<PreparedBatch>,
  count: (byKind: ReadonlyMap<string, number>) => void,
  progress: (values: number) => void,
  depth = 1,
  budget?: TextBudget,
): Promise<number> {
  const writes = new WritesInFlight(depth);
  let written = 0;
  // Steered only for our writes: set after a read on this connection (a cursor) is planned, reset at the end.
  let restore: (() => Promise<void>) | undefined;
  const sql = { many: updateSql(plan), one: updateOneSql(plan) };
  const write = async (b: PreparedBatch): Promise<void> => {
    const changed = (await writer.query({ text: b.one ? sql.one : sql.many, values: b.params })).rowCount ?? 0;
    // Written: the parameters (a large batch's texts) go, though the batch itself is still referred to.
    b.params.length = 0;
    if (changed !== b.rows) {
      throw new MasterKeyError('DB_ERROR', `${plan.table}: ${b.rows} rows were read but ${changed} updated (they changed meanwhile); run the rotation again with the server's writers stopped.`);
    }
    written += b.rows;
    let values = 0;
    for (const n of b.byKind.values()) values += n;
    progress(values);
    budget?.give(b.chars);
    releaseLarge(b.chars);
  };
  try {
    for await (const b of batches) {
      if (b.failure) throw undecryptable(plan.table, b.failure.first, b.failure.more);
      count(b.byKind);
      if (b.rows === 0) {
        budget?.give(b.chars);
        continue;
      }
      restore ??= await steerPlanner(writer);
      await writes.add(() => write(b));
    }
    await writes.drain();
  } finally {
    await writes.settle();
    await restore?.();
  }
  return written;
}
