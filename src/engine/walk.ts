/**
 * What every walk over the sealed values of an inventory takes and gives,
 * whichever store reads the rows: options (batch size, where the crypto
 * runs, progress), the results of a scan and of a re-encryption, and the
 * counts per kind they add up.
 *
 * "The engine" is `src/engine/` and nothing else: the store-independent
 * hot path that stores call with the rows they read (finding values,
 * opening and re-sealing them in batches, digests, verification's sample,
 * memory bounds). It imports no database driver and nothing of a store;
 * the runbook is `src/rotation/`, the stores `src/store/`
 * (docs/stores.md).
 */
import { MasterKeyError, ErrorCode } from '../errors';
import { Inventory, inventoryKinds } from '../inventory/inventory';
import type { InventoryDigest } from './digest';
import type { BatchOutcome } from './reseal';
import type { CryptoMode, CryptoOptions } from './value-crypto';

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
  /** Order-independent digest of every value written, where it was written (for `verifyInventory`). */
  readonly digest: InventoryDigest;
  /** Where the AES-GCM work ran (`native`: the OpenSSL EVP addon, `node`: node:crypto, on the calling thread; `workers`: in worker threads). */
  readonly crypto: CryptoMode;
}

/** Options shared by scan and re-encryption; `crypto` and `workers` say where the AES-GCM work runs (see ./value-crypto; each store has its default). */
export interface WalkOptions extends CryptoOptions {
  /** Called after each batch with the number of sealed values done so far (for re-encryption: written). */
  readonly onProgress?: (done: number) => void;
  /** Rows fetched and written per round trip. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 2000;
export const MAX_LISTED_FAILURES = 1000;

/** Counts per kind, in a plain record. */
export class KindCounter {
  readonly byKind: Record<string, number> = {};
  total = 0;
  /** Starts every kind of the inventory at 0, so reports list them all. */
  constructor(inv: Inventory) {
    for (const k of inventoryKinds(inv)) this.byKind[k] = 0;
  }
  /** Adds counts per kind; returns how many values they are. */
  add(counts: Iterable<readonly [string, number]>): number {
    let added = 0;
    for (const [k, n] of counts) {
      this.byKind[k] = (this.byKind[k] ?? 0) + n;
      added += n;
    }
    this.total += added;
    return added;
  }
}

/** Adds up the batches of a scan: counts per kind, the values that do not open (listed up to `MAX_LISTED_FAILURES`), bytes read. */
export class ScanTally {
  private readonly counter: KindCounter;
  private readonly failures: SecretFailure[] = [];
  private failureCount = 0;
  private storedBytes = 0;

  constructor(inv: Inventory) {
    this.counter = new KindCounter(inv);
  }

  /** One batch of `table` opened; returns the values counted so far. */
  add(table: string, out: BatchOutcome): number {
    this.counter.add(out.byKind);
    this.storedBytes += out.bytes;
    this.failureCount += out.failures.length;
    for (const { row: _row, ...f } of out.failures.slice(0, MAX_LISTED_FAILURES - this.failures.length)) this.failures.push({ table, ...f });
    return this.counter.total;
  }

  result(): ScanResult {
    return { total: this.counter.total, byKind: this.counter.byKind, failures: this.failures, failureCount: this.failureCount, storedBytes: this.storedBytes };
  }
}

export function batchSizeOf(opts: WalkOptions): number {
  const n = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `The batch size must be a positive integer, got ${n}.`);
  return n;
}

