/**
 * Worker threads that run the batch crypto of a walk (`WorkerCrypto`):
 * each worker holds its own `InlineCrypto` (./value-crypto: format checks,
 * base64, AES-GCM by the OpenSSL addon or node:crypto, the digest of what
 * opened) over its own copy of the keys, which it wipes when closed. The
 * calling thread sends each batch of texts (copied by structured clone) to
 * the least busy worker and gets the results back in order; the digests
 * of the workers are summed at the end.
 *
 * A worker that stops (crashes, or exits) fails every batch it was given
 * and every later one: the caller's transaction then rolls back.
 *
 * Tests make each worker exit on its n-th batch with
 * MASTER_KEY_TEST_WORKER_EXIT_AT=<n> (read when the workers start;
 * it does nothing else).
 */
import { Worker } from 'node:worker_threads';
import type { CryptoResult, SealedText } from '../crypto/batch';
import type { CodecName, KeySource } from '../crypto/codec';
import { EngineName, defaultEngine } from '../crypto/gcm-batch';
import type { MasterKey } from '../crypto/key';
import { ErrorCode, MasterKeyError } from '../errors';
import { builtFile } from './built-file';
import { InventoryDigest, ValueDigest } from './digest';
import type { Places, ValueCrypto } from './value-crypto';

/** What a worker starts with (structured clone: the key bytes are the worker's own copies). */
export interface WorkerInit {
  readonly keys: Uint8Array[];
  readonly newKey?: Uint8Array;
  readonly engine: EngineName;
  /** Test hook (MASTER_KEY_TEST_WORKER_EXIT_AT): exit on receiving this many batches. */
  readonly exitAt?: number;
}

export type WorkerRequest =
  | { readonly t: 'job'; readonly id: number; readonly codec: CodecName; readonly sealed: readonly string[]; readonly aad?: ReadonlyArray<Uint8Array | undefined>; readonly places?: Places }
  | { readonly t: 'digest'; readonly id: number }
  | { readonly t: 'close' };

export type WorkerReply =
  | { readonly t: 'done'; readonly id: number; readonly next?: ReadonlyArray<SealedText | undefined>; readonly codes: ReadonlyArray<readonly [number, ErrorCode]> }
  | { readonly t: 'digest'; readonly id: number; readonly digest: InventoryDigest }
  | { readonly t: 'failed'; readonly id: number; readonly message: string };

/** How long a closing worker may take to wipe its keys and stop before it is terminated. */
const CLOSE_GRACE_MS = 5000;

interface Pending {
  resolve(r: WorkerReply): void;
  reject(e: Error): void;
}

interface Slot {
  readonly worker: Worker;
  /** Requests sent and not yet answered. */
  busy: number;
  exited: boolean;
}

export class WorkerCrypto implements ValueCrypto {
  readonly mode = 'workers' as const;
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failed: Error | undefined;
  private closing = false;

  /** Starts `size` workers, or returns undefined when the worker's entry point is not built. */
  static start(from: KeySource, to: MasterKey | undefined, size: number): WorkerCrypto | undefined {
    if (!Number.isInteger(size) || size < 1) throw new MasterKeyError('USAGE', `The number of crypto workers must be a positive integer, got ${size}.`);
    const entry = builtFile(__dirname, 'crypto-worker.js');
    return entry ? new WorkerCrypto(entry, from, to, size) : undefined;
  }

  private constructor(entry: string, from: KeySource, to: MasterKey | undefined, size: number) {
    const engine = defaultEngine().name;
    const exitAt = Number.parseInt(process.env.MASTER_KEY_TEST_WORKER_EXIT_AT ?? '', 10) || undefined;
    for (let i = 0; i < size; i++) {
      const init: WorkerInit = { keys: from.all().map((k) => Uint8Array.from(k.bytes())), ...(to ? { newKey: Uint8Array.from(to.bytes()) } : {}), engine, ...(exitAt ? { exitAt } : {}) };
      let worker: Worker;
      try {
        worker = new Worker(entry, { workerData: init });
      } finally {
        // The worker got its own copy (workerData is cloned at once).
        for (const b of [...init.keys, ...(init.newKey ? [init.newKey] : [])]) b.fill(0);
      }
      const slot: Slot = { worker, busy: 0, exited: false };
      worker.on('message', (m: WorkerReply) => this.reply(slot, m));
      worker.on('error', (e) => this.fail(new MasterKeyError('INTERNAL', `A crypto worker thread failed: ${e.message}.`, {}, { cause: e })));
      worker.on('exit', (code) => {
        slot.exited = true;
        if (!this.closing) this.fail(new MasterKeyError('INTERNAL', `A crypto worker thread stopped unexpectedly (exit code ${code}).`));
      });
      worker.unref();
      this.slots.push(slot);
    }
  }

  /** Two batches per worker: one running, the next one waiting. */
  get depth(): number {
    return 2 * this.slots.length;
  }

  private reply(slot: Slot, m: WorkerReply): void {
    // An idle worker does not keep the process alive; a busy one does (its reply is awaited).
    if (--slot.busy === 0) slot.worker.unref();
    const p = this.pending.get(m.id);
    this.pending.delete(m.id);
    if (m.t === 'failed') p?.reject(new MasterKeyError('INTERNAL', `A crypto worker thread failed: ${m.message}.`));
    else p?.resolve(m);
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const p of this.pending.values()) p.reject(this.failed);
    this.pending.clear();
  }

  private send(slot: Slot, request: WorkerRequest & { id: number }): Promise<WorkerReply> {
    if (this.failed) return Promise.reject(this.failed);
    if (slot.busy++ === 0) slot.worker.ref();
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      slot.worker.postMessage(request);
    });
  }

  async process(codec: CodecName, sealed: readonly string[], aad?: ReadonlyArray<Uint8Array | undefined>, places?: Places): Promise<CryptoResult[]> {
    if (sealed.length === 0) return [];
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const r = await this.send(slot, { t: 'job', id: ++this.seq, codec, sealed, ...(aad ? { aad } : {}), ...(places ? { places } : {}) });
    if (r.t !== 'done') throw new MasterKeyError('INTERNAL', 'A crypto worker thread answered out of turn; this is a bug.');
    const out = new Array<CryptoResult>(sealed.length);
    for (let i = 0; i < out.length; i++) {
      const next = r.next?.[i];
      out[i] = next === undefined ? {} : { next };
    }
    for (const [i, code] of r.codes) out[i] = { code };
    return out;
  }

  async digest(): Promise<InventoryDigest> {
    const sum = new ValueDigest();
    for (const slot of this.slots) {
      const r = await this.send(slot, { t: 'digest', id: ++this.seq });
      if (r.t !== 'digest') throw new MasterKeyError('INTERNAL', 'A crypto worker thread answered out of turn; this is a bug.');
      sum.merge(r.digest);
    }
    return sum.result();
  }

  /** Asks every worker to wipe its keys and stop (after the batches it was given), and waits until they have. */
  async close(): Promise<void> {
    this.closing = true;
    this.fail(new MasterKeyError('INTERNAL', 'The crypto workers were closed; this is a bug in the caller.'));
    await Promise.all(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve) => {
            if (slot.exited) return resolve();
            slot.worker.ref();
            slot.worker.once('exit', () => resolve());
            slot.worker.postMessage({ t: 'close' } satisfies WorkerRequest);
            // A worker that does not stop on its own is stopped.
            setTimeout(() => void slot.worker.terminate(), CLOSE_GRACE_MS).unref();
          }),
      ),
    );
  }
}
