/**
 * A reader worker thread (started by ./reader): opens the database file
 * read-only, does one job in one read transaction (or finishes a backup's
 * copy), and reports batches, progress and the result (or a typed error)
 * to the thread that started it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isMasterKeyError } from '../../errors';
import { backupDatabase, finishBackup } from './backup';
import { Db, connect, translateSqliteError, withTransaction } from './driver';
import type { FromReader, ReaderInit, ToReader } from './reader';

/**
 * The walk and its crypto, loaded only by the jobs that read values
 * (reseal, verify): a thread that copies, finishes or checkpoints the
 * database starts without them (loading them costs about 0.1 s of CPU).
 */
const walk = () => require('./values') as typeof import('./values');

const { path, job, exitAt } = workerData as ReaderInit;

/** The reader connection's page cache, in KiB (negative: SQLite's unit for a size rather than a page count). */
const READER_CACHE_KIB = -2048;
const port = parentPort!;

function post(m: FromReader): void {
  port.postMessage(m);
}

/** Batches the other thread asked for and has not been sent yet; `waiting` resolves when it asks for more. */
let credit = 0;
let waiting: (() => void) | undefined;
port.on('message', (m: ToReader) => {
  credit += m.n;
  waiting?.();
});

async function reseal(db: Db): Promise<unknown> {
  if (job.kind !== 'reseal') return undefined;
  const { MasterKey } = require('../../crypto/key') as typeof import('../../crypto/key');
  const { Keyring } = require('../../crypto/keyring') as typeof import('../../crypto/keyring');
  const { BatchCrypto } = require('../../crypto/batch') as typeof import('../../crypto/batch');
  const { InlineCrypto } = require('../../engine/value-crypto') as typeof import('../../engine/value-crypto');
  const { TextBudget } = require('../../engine/pipeline') as typeof import('../../engine/pipeline');
  const { planTables, resealedBatches } = walk();
  const keys = job.from.map((b) => MasterKey.fromBytes(b));
  const to = MasterKey.fromBytes(job.to);
  for (const b of [...job.from, job.to]) b.fill(0);
  const crypto = new InlineCrypto(new BatchCrypto(new Keyring(keys), to));
  // What this thread holds (read, being re-sealed, waiting for credit); a batch posted is the other thread's to hold.
  const budget = new TextBudget();
  try {
    let sent = 0;
    for await (const batch of resealedBatches(db, planTables(db, job.inventory), crypto, job.batchSize, budget)) {
      while (credit === 0) await new Promise<void>((resolve) => (waiting = resolve));
      credit--;
      // Test hook: stop as a crashed thread would.
      if (++sent === exitAt) process.exit(70);
      post({ t: 'batch', batch });
      budget.give(batch.chars);
    }
    return await crypto.digest();
  } finally {
    for (const k of [...keys, to]) k.bytes().fill(0);
  }
}

async function run(db: Db): Promise<unknown> {
  switch (job.kind) {
    case 'finish':
    case 'checkpoint':
      return undefined;
    case 'reseal':
      return reseal(db);
    case 'backup':
      return backupDatabase(db, job.inventory, job.dest);
    case 'verify': {
      const { middle } = job;
      const { planTables, verifyScan } = walk();
      const scan = await verifyScan(db, planTables(db, job.inventory), job.inventory, { ...job.opts, onProgress: (done) => post({ t: 'progress', done }) }, (i) =>
        middle[i] === undefined ? undefined : { from: middle[i] },
      );
      return scan.part();
    }
  }
}

async function main(): Promise<void> {
  let db: Db | undefined;
  try {
    if (job.kind === 'finish') return post({ t: 'done', result: finishBackup(job.copy, job.inventory, job.pages) });
    if (job.kind === 'checkpoint') {
      db = connect(path);
      db.pragma('wal_checkpoint(PASSIVE)');
      return post({ t: 'done', result: undefined });
    }
    db = connect(path, { readonly: true });
    // It reads each page once, in order: a small page cache does (the default is 16 MB per connection).
    db.pragma(`cache_size = ${READER_CACHE_KIB}`);
    const conn = db;
    post({ t: 'done', result: await withTransaction(conn, () => run(conn), 'read') });
  } catch (e) {
    const err = isMasterKeyError(e) ? e : translateSqliteError(e, `reading it beside the rotation (${job.kind})`, path);
    post({ t: 'failed', error: { code: err.code, message: err.message, details: { ...err.details } } });
  } finally {
    db?.close();
    port.close();
  }
}

void main();
