/**
 * The hot path: scan every sealed value of an inventory (read-only), and
 * re-encrypt them all inside the caller's transaction, streaming rows in
 * batches so memory stays bounded whatever the table size.
 */
import type { ClientBase } from 'pg';
import type { KeySource } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { ErrorCode, MasterKeyError } from '../errors';
import type { Inventory } from '../inventory/inventory';
import { inventoryKinds, quoteIdent } from '../inventory/inventory';
import { BatchCrypto } from './stream-crypto';
import { TablePlan, dbError, planInventory, processBatch } from './stream-plan';
import { Row, copyBatches, cursorBatches, openReader } from './stream-source';
import { binaryTextArray, lockTables, pgArray, rowLayout, selectSql, steerPlanner, updateSql } from './stream-sql';

/** A sealed value that does not open with the supplied keys (never the value itself). */
export interface SecretFailure {
  readonly table: string;
  readonly column: string;
  /** The row's primary key, as text. */
  readonly id: string;
  readonly kind: string;
  /** For jsonb documents: where in the document, e.g. "env.2.value". */
  readonly path?: string;
  /** A SEALED_* code saying why it does not open. */
  readonly code: ErrorCode;
}

/** What a scan found. */
export interface ScanResult {
  /** Sealed values found (a jsonb document can hold several). */
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** The values that do not open; at most `MAX_LISTED_FAILURES` listed. */
  readonly failures: readonly SecretFailure[];
  /** How many values do not open (all of them, listed or not). */
  readonly failureCount: number;
  /** Bytes of sealed text read. */
  readonly storedBytes: number;
}

/** What a re-encryption did. */
export interface ReencryptResult {
  /** Sealed values re-sealed. */
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** Table rows rewritten (a row can hold several values). */
  readonly updated: number;
}

/** Options shared by scan and re-encryption. */
export interface StreamOptions {
  /** Called after each batch with the number of sealed values processed so far. */
  readonly onProgress?: (done: number) => void;
  /** Rows fetched and written per round trip. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 5000;
export const MAX_LISTED_FAILURES = 1000;

/** Counts per kind, in a plain record. */
class KindCounter {
  readonly byKind: Record<string, number> = {};
  total = 0;
  /** Starts every kind of the inventory at 0, so reports list them all. */
  constructor(inv: Inventory) {
    for (const k of inventoryKinds(inv)) this.byKind[k] = 0;
  }
  add(counts: ReadonlyMap<string, number>): void {
    for (const [k, n] of counts) {
      this.byKind[k] = (this.byKind[k] ?? 0) + n;
      this.total += n;
    }
  }
}

function batchSizeOf(opts: StreamOptions): number {
  const n = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `The batch size must be a positive integer, got ${n}.`);
  return n;
}

/** Runs fn in a read-only repeatable-read transaction unless the client is already in one. */
async function inReadTransaction<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  if (client.getTransactionStatus() !== 'I') return fn();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const r = await fn();
    await client.query('COMMIT');
    return r;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** Read-only: open every sealed value of every inventory entry with `keys`; never throws for bad values (lists them). */
export async function scanInventory(client: ClientBase, inv: Inventory, keys: KeySource, opts: StreamOptions = {}): Promise<ScanResult> {
  const batchSize = batchSizeOf(opts);
  const plans = await planInventory(client, inv);
  const crypto = new BatchCrypto(keys);
  const counter = new KindCounter(inv);
  const failures: SecretFailure[] = [];
  let failureCount = 0;
  let storedBytes = 0;
  await inReadTransaction(client, async () => {
    for (const plan of plans) {
      try {
        const at = rowLayout(plan);
        for await (const rows of cursorBatches(client, selectSql(plan), batchSize)) {
          const out = processBatch(plan.columns, rows, at.first, crypto, false);
          counter.add(out.byKind);
          storedBytes += out.bytes;
          failureCount += out.failures.length;
          for (const { row, ...f } of out.failures.slice(0, MAX_LISTED_FAILURES - failures.length)) failures.push({ table: plan.table, id: rows[row][at.id] ?? '', ...f });
          opts.onProgress?.(counter.total);
        }
      } catch (e) {
        throw dbError(e, `reading ${plan.table}`);
      }
    }
  });
  return { total: counter.total, byKind: counter.byKind, failures, failureCount, storedBytes };
}


function undecryptable(table: string, id: string, f: { column: string; kind: string; path?: string; code: ErrorCode }, more: number): MasterKeyError {
  const where = `${table}.${f.column}${f.path ? ` at ${f.path}` : ''}`;
  return new MasterKeyError(
    'UNDECRYPTABLE_ROWS',
    `A ${f.kind} in ${where} (id ${id}) does not open with the old key (${f.code})${more > 0 ? ` and ${more} more in the same batch` : ''}; nothing was changed: run \`master-key verify\` to list every such value, then fix or remove them.`,
    { table, column: f.column, id, kind: f.kind, ...(f.path ? { path: f.path } : {}), reason: f.code },
  );
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
  opts: StreamOptions & { readerUrl?: string } = {},
): Promise<ReencryptResult> {
  const batchSize = batchSizeOf(opts);
  if (client.getTransactionStatus() !== 'T') {
    throw new MasterKeyError('INTERNAL', 'Re-encryption must run inside an open transaction; this is a bug in the caller.');
  }
  const plans = await planInventory(client, inv);
  const crypto = new BatchCrypto(from, to);
  const counter = new KindCounter(inv);
  let updated = 0;
  try {
    await lockTables(client, plans);
  } catch (e) {
    throw dbError(e, 'locking the secret tables');
  }
  const reader = opts.readerUrl ? await openReader(client, opts.readerUrl, plans.map((p) => quoteIdent(p.table))) : undefined;
  let ok = false;
  try {
    for (const plan of plans) {
      try {
        const rows = reader ? copyBatches(reader.client, selectSql(plan), batchSize) : cursorBatches(client, selectSql(plan), batchSize);
        updated += await reencryptTable(
          client,
          rows,
          plan,
          crypto,
          (kinds) => counter.add(kinds),
          () => opts.onProgress?.(counter.total),
        );
      } catch (e) {
        throw dbError(e, `re-encrypting ${plan.table}`);
      }
    }
    ok = true;
  } finally {
    await (ok ? reader?.close() : reader?.abort());
  }
  return { total: counter.total, byKind: counter.byKind, updated };
}

/**
 * One table: read batches (from `source`), open and re-seal each, and write it
 * back on `writer` while the next batch is read and sealed. At most one write
 * is in flight. Returns the rows written.
 */
async function reencryptTable(
  writer: ClientBase,
  source: AsyncIterable<Row[]>,
  plan: TablePlan,
  crypto: BatchCrypto,
  count: (kinds: ReadonlyMap<string, number>) => void,
  progress: () => void,
): Promise<number> {
  const sql = updateSql(plan);
  const at = rowLayout(plan);
  const key = at.ctid ?? at.id;
  let inFlight: Promise<void> | undefined;
  let written = 0;
  // Steered only for our writes: set after the read (a cursor on this connection) is planned, reset at the end.
  let restore: (() => Promise<void>) | undefined;
  const write = async (params: unknown[], rows: number): Promise<void> => {
    const r = await writer.query(sql, params);
    if (r.rowCount !== rows) {
      throw new MasterKeyError('DB_ERROR', `${plan.table}: ${rows} rows were read but ${r.rowCount ?? 0} updated (they changed meanwhile); run the rotation again with the server's writers stopped.`);
    }
    written += rows;
    progress();
  };
  try {
    for await (const rows of source) {
      const out = processBatch(plan.columns, rows, at.first, crypto, true);
      if (out.failures.length > 0) {
        const { row, ...f } = out.failures[0];
        throw undecryptable(plan.table, rows[row][at.id] ?? '', f, out.failures.length - 1);
      }
      count(out.byKind);
      // Parameters are built now, so the batch's strings can go before the previous write ends.
      const n = out.rows.length;
      const params = n > 0 ? [pgArray(out.rows.map((i) => rows[i][key]!)), ...out.next!.map(binaryTextArray)] : [];
      await inFlight;
      if (n > 0) restore ??= await steerPlanner(writer);
      inFlight = n > 0 ? write(params, n) : undefined;
      // A failed write is reported by the next await; keep it from being unhandled meanwhile.
      inFlight?.catch(() => undefined);
    }
    await inFlight;
  } finally {
    await inFlight?.catch(() => undefined);
    await restore?.();
  }
  return written;
}
