/**
 * The one place the SQLite store gets its batch crypto from: the engine's
 * (`src/engine/value-crypto.ts`), shared with PostgreSQL. SQLite runs in
 * this process on this thread, so by default the crypto runs in a worker
 * thread beside it (one: SQLite's side of a batch costs more than its
 * crypto), and reading, writing and crypto overlap.
 */
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { CryptoOptions, ValueCrypto, valueCrypto } from '../../engine/value-crypto';

/** Crypto that opens with `from` and, given `to`, re-seals under it, where `opts` says it runs (default: one worker thread when `threads` says it pays, else this thread). */
export function storeCrypto(from: KeySource, to: MasterKey | undefined, opts: CryptoOptions, threads: boolean): ValueCrypto {
  if (!opts.crypto && !threads) return valueCrypto({ from, to });
  return valueCrypto({ from, to }, { crypto: opts.crypto ?? 'workers', workers: opts.workers ?? 1 });
}
