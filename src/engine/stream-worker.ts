/**
 * Main-thread side of the re-encryption worker (./workers/stream-reader):
 * starts it, asks it for one table at a time, and turns its messages into
 * the `PreparedBatch` stream `writeBatches` consumes, granting a credit per
 * batch taken so at most `AHEAD` batches wait in memory.
 *
 * The worker exists only in the build output (JavaScript); when its file is
 * not there (running from TypeScript sources, as the unit tests do), the
 * caller prepares batches on the main thread instead.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { KeySource } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { ErrorCode, MasterKeyError } from '../errors';
import type { PreparedBatch } from './stream-batch';
import type { TablePlan } from './stream-plan';

/** What the worker starts with (structured-cloned; key bytes never leave the process). */
export interface WorkerInit {
  readonly url: string;
  readonly snapshot: string;
  readonly plans: readonly TablePlan[];
  readonly batchSize: number;
  readonly from: readonly Uint8Array[];
  readonly to: Uint8Array;
}

export type ToWorker = { type: 'table'; index: number } | { type: 'credit'; n: number } | { type: 'end' };
export type FromWorker =
  | { type: 'batch'; index: number; batch: PreparedBatch }
  | { type: 'tableDone'; index: number }
  | { type: 'done' }
  | { type: 'error'; code: ErrorCode; message: string; details: Record<string, unknown> };

/** Batches prepared ahead of the writer (memory bound: AHEAD x batch size rows). */
const AHEAD = 2;

/** The compiled worker script next to this module, if there is one. */
export function workerScript(): string | undefined {
  const p = join(__dirname, 'workers', 'stream-reader.js');
  return __filename.endsWith('.js') && existsSync(p) ? p : undefined;
}

/** A running worker, read table by table. */
export class ReencryptWorker {
  private readonly worker: Worker;
  private readonly inbox: FromWorker[] = [];
  private wake: (() => void) | undefined;
  private failed: Error | undefined;

  constructor(script: string, init: Omit<WorkerInit, 'from' | 'to'>, from: KeySource, to: MasterKey) {
    const data: WorkerInit = { ...init, from: from.all().map((k) => k.bytes()), to: to.bytes() };
    this.worker = new Worker(script, { workerData: data });
    this.worker.on('message', (m: FromWorker) => this.push(m));
    this.worker.on('error', (e) => this.fail(new MasterKeyError('INTERNAL', `The re-encryption worker failed (${e.message}); this is a bug.`, {}, { cause: e })));
    this.worker.on('exit', (code) => {
      if (code !== 0) this.fail(new MasterKeyError('INTERNAL', `The re-encryption worker stopped (exit code ${code}); this is a bug.`));
    });
  }

  private push(m: FromWorker): void {
    this.inbox.push(m);
    this.poke();
  }

  private fail(e: Error): void {
    this.failed ??= e;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async receive(): Promise<FromWorker> {
    for (;;) {
      const m = this.inbox.shift();
      if (m) {
        if (m.type === 'error') throw new MasterKeyError(m.code, m.message, m.details);
        return m;
      }
      if (this.failed) throw this.failed;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  /** The prepared batches of plan `index`, in order. */
  async *table(index: number): AsyncGenerator<PreparedBatch> {
    this.send({ type: 'table', index });
    this.send({ type: 'credit', n: AHEAD });
    for (;;) {
      const m = await this.receive();
      if (m.type === 'tableDone' && m.index === index) return;
      if (m.type !== 'batch' || m.index !== index) throw new MasterKeyError('INTERNAL', `The re-encryption worker sent an unexpected message (${m.type}); this is a bug.`);
      yield m.batch;
      this.send({ type: 'credit', n: 1 });
    }
  }

  /** Lets the worker finish (closes its reader) and waits for it. */
  async end(): Promise<void> {
    this.send({ type: 'end' });
    for (;;) {
      const m = await this.receive();
      if (m.type === 'done') break;
    }
    await this.worker.terminate();
  }

  /** Stops the worker at once (its connection closes with it). */
  async abort(): Promise<void> {
    await this.worker.terminate();
  }
}
