/**
 * Worker threads that run batch jobs with the `node` engine (node:crypto
 * per value), so the AES-GCM work of a rotation can use every core beside
 * the database server when the native addon is not built.
 *
 * A job lives in one ArrayBuffer (./gcm-batch `packJob`): it moves to the
 * worker and back without a copy. Each worker takes jobs in turn; the caller
 * keeps several in flight to keep every worker busy.
 */
import { Worker } from 'node:worker_threads';
import { MasterKeyError } from '../errors';
import { PackedJob, runWithNodeCrypto } from './gcm-batch';

/** The worker's whole program: the node engine's loop (self-contained) and a message loop. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const run = ${runWithNodeCrypto.toString()};
parentPort.on('message', (m) => {
  let opened = -1;
  let error;
  try { opened = run(m.job); } catch (e) { error = String(e && e.message); }
  parentPort.postMessage({ id: m.id, job: m.job, opened, error }, [m.job.data.buffer]);
});
`;

interface Pending {
  resolve(job: PackedJob): void;
  reject(e: Error): void;
}

interface Slot {
  readonly worker: Worker;
  busy: number;
}

export class GcmPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failed: Error | undefined;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new MasterKeyError('USAGE', `The number of crypto workers must be a positive integer, got ${size}.`);
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      const slot: Slot = { worker, busy: 0 };
      worker.on('message', (m: { id: number; job: PackedJob; error?: string }) => {
        // An idle worker does not keep the process alive; a busy one does (its reply is awaited).
        if (--slot.busy === 0) worker.unref();
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(new MasterKeyError('INTERNAL', `A crypto worker failed: ${m.error}.`));
        else p?.resolve(m.job);
      });
      worker.on('error', (e) => this.fail(e));
      worker.unref();
      this.slots.push(slot);
    }
  }

  private fail(e: Error): void {
    this.failed ??= new MasterKeyError('INTERNAL', `A crypto worker stopped: ${e.message}.`);
    for (const p of this.pending.values()) p.reject(this.failed);
    this.pending.clear();
  }

  /** Runs a job on the least busy worker; resolves with the job (its views now over the returned buffer). */
  run(job: PackedJob): Promise<PackedJob> {
    if (this.failed) return Promise.reject(this.failed);
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = ++this.seq;
    if (slot.busy++ === 0) slot.worker.ref();
    return new Promise<PackedJob>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ id, job }, [job.buffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
