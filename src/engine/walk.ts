/**
 * What every walk over the sealed values of an inventory takes and gives,
 * whichever store reads the rows: options (batch size, where the crypto
 * runs, progress), the results of a scan and of a re-encryption, and the
 * counts per kind they add up.
 */
import { MasterKeyError, ErrorCode } from '../errors';
import { Inventory, inventoryKinds } from '../inventory/inventory';
import type { InventoryDigest } from './digest';
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
export interface StreamOptions extends CryptoOptions {
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
  add(counts: ReadonlyMap<string, number>): void {
    for (const [k, n] of counts) {
      this.byKind[k] = (this.byKind[k] ?? 0) + n;
      this.total += n;
    }
  }
}

export function batchSizeOf(opts: StreamOptions): number {
  const n = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `The batch size must be a positive integer, got ${n}.`);
  return n;
}

