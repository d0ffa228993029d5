/**
 * Worker thread of the re-encryption: reads rows on its own connection (in
 * the writer's exported snapshot, with COPY), opens and re-seals them, and
 * hands the main thread ready UPDATE parameters, a bounded number at a time
 * (credits). The main thread only writes, so reading, crypto and writing run
 * side by side. Protocol: see ../stream-worker.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MasterKey } from '../../crypto/key';
import { Keyring } from '../../crypto/keyring';
import { isMasterKeyError } from '../../errors';
import { prepareBatches } from '../stream-batch';
import { BatchCrypto } from '../stream-crypto';
import { dbError } from '../stream-plan';
import { Reader, connectReader, copyBatches } from '../stream-source';
import { selectSql } from '../stream-sql';
import type { FromWorker, ToWorker, WorkerInit } from '../stream-worker';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

let credits = 0;
let wake: (() => void) | undefined;
const jobs: number[] = [];
let ended = false;

port.on('message', (m: ToWorker) => {
  if (m.type === 'credit') credits += m.n;
  else if (m.type === 'table') jobs.push(m.index);
  else ended = true;
  const w = wake;
  wake = undefined;
  w?.();
});

const next = () => new Promise<void>((r) => (wake = r));

async function run(): Promise<void> {
  const crypto = new BatchCrypto(new Keyring(init.from.map((b) => MasterKey.fromBytes(b))), MasterKey.fromBytes(init.to));
  let reader: Reader | undefined;
  try {
    reader = await connectReader(init.url, init.snapshot);
    for (;;) {
      while (jobs.length === 0 && !ended) await next();
      const index = jobs.shift();
      if (index === undefined) break;
      const plan = init.plans[index];
      try {
        for await (const b of prepareBatches(copyBatches(reader.client, selectSql(plan), init.batchSize), plan, crypto, true)) {
          while (credits === 0) await next();
          credits--;
          post({ type: 'batch', index, batch: b }, b.message.byteLength > 0 ? [b.message.buffer as ArrayBuffer] : []);
          if (b.failure) return;
        }
      } catch (e) {
        throw dbError(e, `reading ${plan.table}`);
      }
      post({ type: 'tableDone', index });
    }
  } finally {
    await reader?.close();
  }
}

run().then(
  () => post({ type: 'done' }),
  (e: unknown) =>
    post({
      type: 'error',
      code: isMasterKeyError(e) ? e.code : 'INTERNAL',
      message: isMasterKeyError(e) ? e.message : `The re-encryption worker failed (${(e as Error).message ?? String(e)}); this is a bug.`,
      details: isMasterKeyError(e) ? { ...e.details } : {},
    }),
);
