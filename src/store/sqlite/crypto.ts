/**
 * The one place the SQLite store gets its batch crypto from (opening and
 * re-sealing values of one codec at a time): the production crypto module
 * (`src/crypto/batch.ts`: OpenSSL through the native batch addon, or
 * node:crypto), shared with PostgreSQL.
 */
import { BatchCrypto } from '../../crypto/batch';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import type { StreamOptions } from '../store';

export type ValueCrypto = BatchCrypto;

/** Crypto that opens with `from` and, given `to`, re-seals under it, where `opts` says it runs. */
export function valueCrypto(from: KeySource, to?: MasterKey, opts: Pick<StreamOptions, 'crypto' | 'workers'> = {}): ValueCrypto {
  return new BatchCrypto(from, to, { ...(opts.crypto ? { mode: opts.crypto } : {}), ...(opts.workers ? { workers: opts.workers } : {}) });
}

/** Releases what the crypto holds (worker threads). */
export function closeCrypto(crypto: ValueCrypto): Promise<void> {
  return crypto.close();
}
