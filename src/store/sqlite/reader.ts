/**
 * A second, read-only connection to the database file, in a worker thread
 * (./reader-worker), for the work that only reads: SQLite runs in this
 * process, so what the store's own connection does costs this thread, and
 * a reader beside it lets both cores work.
 *
 * - `reseal`: in WAL mode, while the rotation's write transaction holds the
 *   write lock and has not committed, every other connection reads exactly
 *   the committed database, which is what the transaction started from: the
 *   reader reads each batch there and re-seals it, the store's connection
 *   only writes the new texts back (./values `reencryptValues`). Batches
 *   are asked for a few at a time, so memory stays bounded.
 * - `backup`: in WAL mode, the online backup API copies that same committed
 *   database while the transaction writes; `finish`: in a rollback-journal
 *   mode, the checks, count, fsync and checksum of a copy the store made of
 *   the file before it wrote (./backup `finishBackup`).
 * - `checkpoint`: after a large transaction in WAL mode, the checkpoint
 *   SQLite would have run inside its COMMIT (copying the WAL's pages into
 *   the database file and syncing it), on a connection of its own while the
 *   store goes on (with whatever follows the COMMIT: verification).
 * - `verify`: after the commit, the verification scan (the engine's
 *   `VerifyScan`) of the rows of each table from the middle of its keys on,
 *   in a snapshot of its own, while the store's connection scans the rows
 *   below (./values `verifyValues`); the sample is opened there.
 *
 * The worker holds its own copy of the keys it is given and wipes it when
 * done. It translates its failures into typed errors, which are thrown
 * here. A worker that stops fails what was asked of it (tests make it exit
 * on its n-th batch with MASTER_KEY_TEST_WORKER_EXIT_AT=<n>).
 */
import { Worker } from 'node:worker_threads';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { builtFile } from '../../engine/built-file';
import type { InventoryDigest } from '../../engine/digest';
import type { VerifyOptions, VerifyPart } from '../../engine/verify';
import { ErrorCode, MasterKeyError } from '../../errors';
import type { Inventory } from '../../inventory/inventory';
import { IN_FLIGHT_TEXT } from '../../engine/pipeline';
import type { ResealSource, Resealed } from './values';

export type ReaderJob =
  | { readonly kind: 'reseal'; readonly inventory: Inventory; readonly from: Uint8Array[]; readonly to: Uint8Array; readonly batchSize: number }
  | { readonly kind: 'backup'; readonly inventory: Inventory; readonly dest: string }
  | { readonly kind: 'finish'; readonly inventory: Inventory; readonly copy: string; readonly pages?: number }
  | { readonly kind: 'checkpoint' }
  | { readonly kind: 'verify'; readonly inventory: Inventory; readonly middle: Array<bigint | undefined>; readonly opts: Pick<VerifyOptions, 'batchSize' | 'sampleSize'> };

export interface ReaderInit {
  readonly path: string;
  readonly job: ReaderJob;
  /** Test hook (MASTER_KEY_TEST_WORKER_EXIT_AT): exit when about to send this many batches. */
  readonly exitAt?: number;
}

/** A typed error, as it crosses threads. */
export interface ErrorData {
  readonly code: ErrorCode;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

export type FromReader =
  | { readonly t: 'batch'; readonly batch: Resealed }
  | { readonly t: 'progress'; readonly done: number }
  | { readonly t: 'done'; readonly result: unknown }
  | { readonly t: 'failed'; readonly error: ErrorData };

/** Asks for this many more batches. */
export type ToReader = { readonly t: 'credit'; readonly n: number };

/** Batches asked for ahead of the one being written: one being re-sealed, one ready. */
const CREDIT = 2;

/** The reader worker's entry point, or undefined when it is not built (then callers read on their own connection). */
function entry(): string | undefined {
  return builtFile(__dirname, 'reader-worker.js');
}

/** Whether a reader can be started. */
export function readerAvailable(): boolean {
  return entry() !== undefined;
}

/** One job on a reader: started at once; `result` settles when it is done (or failed). */
class Reader {
  private readonly worker: Worker;
  private settled = false;
  readonly result: Promise<unknown>;
  private onBatch?: (b: Resealed) => void;
  private onProgress?: (done: number) => void;
  private failure?: (e: Error) => void;

  constructor(path: string, job: ReaderJob, hooks: { batch?: (b: Resealed) => void; progress?: (done: number) => void } = {}) {
    this.onBatch = hooks.batch;
    this.onProgress = hooks.progress;
    const exitAt = Number.parseInt(process.env.MASTER_KEY_TEST_WORKER_EXIT_AT ?? '', 10) || undefined;
    const file = entry();
    if (!file) throw new MasterKeyError('INTERNAL', 'The SQLite reader worker is not built (dist/src/store/sqlite/reader-worker.js); run `npm run build`.');
    const init: ReaderInit = { path, job, ...(exitAt ? { exitAt } : {}) };
    try {
      this.worker = new Worker(file, { workerData: init });
    } finally {
      // The worker got its own copy of the keys (workerData is cloned at once).
      wipeJob(job);
    }
    this.result = new Promise<unknown>((resolve, reject) => {
      this.failure = (e) => {
        if (this.settled) return;
        this.settled = true;
        reject(e);
      };
      this.worker.on('message', (m: FromReader) => {
        if (m.t === 'batch') this.onBatch?.(m.batch);
        else if (m.t === 'progress') this.onProgress?.(m.done);
        else if (!this.settled) {
          this.settled = true;
          if (m.t === 'done') resolve(m.result);
          else reject(new MasterKeyError(m.error.code, m.error.message, m.error.details));
        }
      });
      this.worker.on('error', (e) => this.failure!(new MasterKeyError('INTERNAL', `The SQLite reader thread failed: ${e.message}.`, {}, { cause: e })));
      this.worker.on('exit', (code) => this.failure!(new MasterKeyError('INTERNAL', `The SQLite reader thread stopped unexpectedly (exit code ${code}).`)));
    });
    // Seen by whoever awaits it; never unhandled meanwhile.
    this.result.catch(() => undefined);
  }

  credit(n: number): void {
    this.worker.postMessage({ t: 'credit', n } satisfies ToReader);
  }

  /** Stops the worker (at once, when it is still working) and waits until it has stopped. */
  async stop(): Promise<void> {
    this.settled = true;
    await this.worker.terminate();
  }
}

function wipeJob(job: ReaderJob): void {
  if (job.kind === 'reseal') for (const b of [...job.from, job.to]) b.fill(0);
}

const copyKey = (k: MasterKey) => Uint8Array.from(k.bytes());

/** Re-sealed batches read by a reader of the committed database (WAL mode, beside a write transaction that has not committed). */
export function readerReseal(path: string, inv: Inventory, from: KeySource, to: MasterKey, batchSize: number): ResealSource {
  const ready: Resealed[] = [];
  let wake: (() => void) | undefined;
  // Text of the batches received and not yet written (the one being written included); a batch asked for only while below the bound.
  let held = 0;
  let owed = 0;
  const ask = () => {
    for (; owed > 0 && held < IN_FLIGHT_TEXT; owed--) reader.credit(1);
  };
  const received = (b: Resealed) => {
    held += b.chars;
    ready.push(b);
    wake?.();
  };
  const reader = new Reader(path, { kind: 'reseal', inventory: inv, from: from.all().map(copyKey), to: copyKey(to), batchSize }, { batch: received });
  let ended = false;
  const done = reader.result.then(
    (r) => ((ended = true), wake?.(), r as InventoryDigest),
    (e: unknown) => ((ended = true), wake?.(), Promise.reject(e)),
  );
  done.catch(() => undefined);
  async function* batches(): AsyncGenerator<Resealed> {
    reader.credit(CREDIT);
    let writing = 0;
    for (;;) {
      // The consumer asks for the next batch once it has written the last: what it held goes, and owed batches may be asked for.
      held -= writing;
      writing = 0;
      ask();
      while (ready.length === 0 && !ended) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      const b = ready.shift();
      if (!b) {
        // Ended: a failure is thrown here, before any digest is trusted.
        await done;
        return;
      }
      writing = b.chars;
      owed++;
      ask();
      yield b;
    }
  }
  return { batches: batches(), digest: () => done, mode: 'workers', close: () => reader.stop() };
}

/** The copy of the committed database at `dest` made by a reader (WAL mode: beside a write transaction that has not committed); the values it holds. */
export async function readerBackup(path: string, inv: Inventory, dest: string): Promise<number> {
  const reader = new Reader(path, { kind: 'backup', inventory: inv, dest });
  try {
    return (await reader.result) as number;
  } finally {
    await reader.stop();
  }
}

/** Finishes a backup's copy of the database file (`finishBackup`, checking `pages` when given) in a worker thread; the values it holds. */
export async function readerFinish(copy: string, inv: Inventory, pages?: number): Promise<number> {
  const reader = new Reader(copy, { kind: 'finish', inventory: inv, copy, ...(pages !== undefined ? { pages } : {}) });
  try {
    return (await reader.result) as number;
  } finally {
    await reader.stop();
  }
}

/** The WAL checkpoint (PASSIVE: never waits for, nor blocks, anyone) on a connection of its own. */
export async function readerCheckpoint(path: string): Promise<void> {
  const reader = new Reader(path, { kind: 'checkpoint' });
  try {
    await reader.result;
  } finally {
    await reader.stop();
  }
}

/** The part of a verification scan from the middle key of each table on (`middle`), by a reader in a snapshot of its own; `progress` sees its count. */
export async function readerVerifyPart(path: string, inv: Inventory, middle: Array<bigint | undefined>, opts: VerifyOptions, progress?: (done: number) => void): Promise<VerifyPart> {
  const { batchSize, sampleSize } = opts;
  const job: ReaderJob = { kind: 'verify', inventory: inv, middle, opts: { ...(batchSize ? { batchSize } : {}), ...(sampleSize !== undefined ? { sampleSize } : {}) } };
  const reader = new Reader(path, job, { progress });
  try {
    return (await reader.result) as VerifyPart;
  } finally {
    await reader.stop();
  }
}
