/**
 * The hot path: scan every sealed value of an inventory (read-only), and
 * re-encrypt them all inside the caller's transaction, streaming rows in
 * batches so memory stays bounded whatever the table size.
 */
import type { ClientBase } from 'pg';
import type { KeySource } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { translatePgError, withTransaction } from '../db/pg';
import { ErrorCode, MasterKeyError } from '../errors';
import { Inventory, inventoryKinds, quoteIdent } from '../inventory/inventory';
import { BatchCrypto } from './stream-crypto';
import { TablePlan, planInventory, processBatch } from './stream-plan';
import { prepareBatches, writeBatches } from './stream-batch';
import { connectReader, copyBatches, cursorBatches, exportSnapshot } from './stream-source';
import { lockTables, rowLayout, selectSql } from './stream-sql';

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
  /** Called after each batch with the number of sealed values done so far (for re-encryption: written). */
  readonly onProgress?: (done: number) => void;
  /** Rows fetched and written per round trip. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
}

/** Options of `reencryptInventory`. */
export interface ReencryptOptions extends StreamOptions {
  /**
   * URL of the same database for a second, read-only connection that reads
   * in this transaction's snapshot while this connection writes (faster).
   * Used only when this transaction has not yet written to a secret table.
   */
  readonly readerUrl?: string;
}

export const DEFAULT_BATCH_SIZE = 2000;
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
function inReadTransaction<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  return client.getTransactionStatus() === 'I' ? withTransaction(client, fn, 'read only') : fn();
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
      await naming(plan, 'reading', async () => {
        const at = rowLayout(plan);
        // Nothing else runs on the connection meanwhile, so COPY can stream the rows (cheaper than FETCH).
        for await (const rows of copyBatches(client, selectSql(plan), batchSize)) {
          const out = processBatch(plan.columns, rows, at.first, crypto, false);
          counter.add(out.byKind);
          storedBytes += out.bytes;
          failureCount += out.failures.length;
          for (const { row, ...f } of out.failures.slice(0, MAX_LISTED_FAILURES - failures.length)) failures.push({ table: plan.table, id: rows[row][at.id] ?? '', ...f });
          opts.onProgress?.(counter.total);
        }
      });
    }
  });
  return { total: counter.total, byKind: counter.byKind, failures, failureCount, storedBytes };
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
  const crypto = new BatchCrypto(from, to);
  let updated = 0;
  let ok = false;
  try {
    for (const plan of plans) {
      const rows = reader ? copyBatches(reader.client, selectSql(plan), batchSize) : cursorBatches(client, selectSql(plan), batchSize);
      const depth = reader ? 2 : 1;
      updated += await naming(plan, 're-encrypting', () => writeBatches(client, plan, prepareBatches(rows, plan, crypto), (byKind) => counter.add(byKind), progress, depth));
    }
    ok = true;
  } finally {
    await (ok ? reader?.close() : reader?.abort());
  }
  return { total: counter.total, byKind: counter.byKind, updated };
}

/** Whether an error comes from the database driver (not from our code or a caller's callback). */
function fromDriver(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const x = e as Error & { severity?: string; code?: unknown };
  return x.severity !== undefined || typeof x.code === 'string' || /Connection terminated|not queryable|connection.*closed/i.test(x.message);
}

/** Runs one table's work, naming the table in a database error (other errors pass unchanged). */
async function naming<T>(plan: TablePlan, doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromDriver(e) ? translatePgError(e, `${doing} ${plan.table}`) : e;
  }
}
