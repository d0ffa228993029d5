/**
 * The crypto of a walk over stored values (scan, re-encryption, a
 * verification's sample): opening, and re-sealing, the values of one codec
 * a batch at a time (`BatchCrypto`: OpenSSL through the addon, or
 * node:crypto), and for a re-encryption the digest of every value that
 * opened, at its place (what verification compares the stored values
 * with; see ./digest).
 *
 * It runs on the calling thread (`InlineCrypto`) or in worker threads
 * (`WorkerCrypto`, ./crypto-pool): there the decoding, AES-GCM, encoding
 * and hashing of a batch run beside the thread that reads and writes the
 * database, which then only hands batches of texts over and back.
 */
import { BatchCrypto, CryptoResult } from '../crypto/batch';
import type { CodecName, KeySource } from '../crypto/codec';
import { EngineName, defaultEngine } from '../crypto/gcm-batch';
import type { MasterKey } from '../crypto/key';
import { InventoryDigest, ValueDigest } from './digest';
import { WorkerCrypto } from './crypto-pool';

/** Where the AES-GCM work runs: `native` (the OpenSSL addon) or `node` (node:crypto) on this thread, or `workers` (worker threads). */
export type CryptoMode = EngineName | 'workers';

export interface CryptoOptions {
  /** @default `native` when the addon is built, else `node` */
  readonly crypto?: CryptoMode;
  /** Worker threads for `workers`. @default 2 */
  readonly workers?: number;
}

/** Where the values of one `process` call are stored: what the digest names each one by. */
export interface Places {
  readonly table: string;
  readonly column: string;
  /** Each value's row id, as text. */
  readonly ids: readonly string[];
  /** Each value's path in its JSON document (JSON columns only). */
  readonly paths?: ReadonlyArray<string | undefined>;
}

export interface ValueCrypto {
  /** Where the work runs (what reports show). */
  readonly mode: CryptoMode;
  /** Batches a caller should keep in flight to keep it busy (1: it works while called). */
  readonly depth: number;
  /**
   * Opens (and re-seals) every value; results in input order, never throws
   * for a bad value. `aad[i]`: value i's own additional data. With
   * `places`, every value that opens is added to the digest at its place,
   * with the text now stored there (re-sealed, or as read).
   */
  process(codec: CodecName, sealed: readonly string[], aad?: ReadonlyArray<Uint8Array | undefined>, places?: Places): Promise<CryptoResult[]>;
  /** The digest of every value `process` placed (call once every call is done). */
  digest(): Promise<InventoryDigest>;
  /** Releases what it holds (worker threads, which wipe their copies of the keys). */
  close(): Promise<void>;
}

/** Adds each value that opened to `digest`, at its place. */
export function digestOpened(digest: ValueDigest, places: Places, sealed: readonly string[], results: readonly CryptoResult[]): void {
  for (let i = 0; i < results.length; i++) {
    const r = results[i];
    if (r.code) continue;
    const text = r.next ?? sealed[i];
    if (typeof text === 'string') digest.add(places.table, places.column, places.paths?.[i], places.ids[i], text);
    else digest.addTextBytes(places.table, places.column, places.paths?.[i], places.ids[i], text);
  }
}

/** On the calling thread. */
export class InlineCrypto implements ValueCrypto {
  readonly depth = 1;
  private readonly sums = new ValueDigest();

  constructor(private readonly batch: BatchCrypto) {}

  get mode(): CryptoMode {
    return this.batch.mode;
  }

  async process(codec: CodecName, sealed: readonly string[], aad?: ReadonlyArray<Uint8Array | undefined>, places?: Places): Promise<CryptoResult[]> {
    const out = await this.batch.process(codec, sealed, aad);
    if (places) digestOpened(this.sums, places, sealed, out);
    return out;
  }

  async digest(): Promise<InventoryDigest> {
    return this.sums.result();
  }

  async close(): Promise<void> {}
}

/** The crypto `opts` asks for: opening with the keys `from` holds and, given `to`, re-sealing under it. */
export function valueCrypto({ from, to }: { readonly from: KeySource; readonly to?: MasterKey }, opts: CryptoOptions = {}): ValueCrypto {
  if (opts.crypto === 'workers') return WorkerCrypto.start(from, to, opts.workers ?? 2) ?? new InlineCrypto(new BatchCrypto(from, to));
  return new InlineCrypto(new BatchCrypto(from, to, opts.crypto ? { mode: opts.crypto } : {}));
}

/** The mode used when none is given (for reports). */
export function defaultCryptoMode(): CryptoMode {
  return defaultEngine().name;
}
