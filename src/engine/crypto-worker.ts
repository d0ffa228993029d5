/**
 * A crypto worker thread (started by ./crypto-pool): runs batches with its
 * own `InlineCrypto` over its own copy of the keys, one request at a time
 * in the order sent, and wipes the keys when told to close.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BatchCrypto, CryptoResult, SealedText } from '../crypto/batch';
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { ErrorCode } from '../errors';
import type { WorkerInit, WorkerReply, WorkerRequest } from './crypto-pool';
import { InlineCrypto } from './value-crypto';

const init = workerData as WorkerInit;
const keys = init.keys.map((b) => MasterKey.fromBytes(b));
const to = init.newKey ? MasterKey.fromBytes(init.newKey) : undefined;
for (const b of [...init.keys, ...(init.newKey ? [init.newKey] : [])]) b.fill(0);
const crypto = new InlineCrypto(new BatchCrypto(new Keyring(keys), to, { mode: init.engine }));
const port = parentPort!;

let jobs = 0;

function reply(m: WorkerReply): void {
  port.postMessage(m);
}

function results(id: number, out: readonly CryptoResult[], reseal: boolean): WorkerReply {
  const codes: Array<readonly [number, ErrorCode]> = [];
  const next = reseal ? new Array<SealedText | undefined>(out.length) : undefined;
  for (let i = 0; i < out.length; i++) {
    const r = out[i];
    if (r.code) codes.push([i, r.code]);
    else if (next) next[i] = r.next;
  }
  return { t: 'done', id, ...(next ? { next } : {}), codes };
}

async function handle(m: WorkerRequest): Promise<void> {
  if (m.t === 'close') {
    for (const k of [...keys, ...(to ? [to] : [])]) k.bytes().fill(0);
    port.close();
    return;
  }
  try {
    if (m.t === 'digest') return reply({ t: 'digest', id: m.id, digest: await crypto.digest() });
    // Test hook: stop as a crashed thread would.
    if (++jobs === init.exitAt) process.exit(70);
    reply(results(m.id, await crypto.process(m.codec, m.sealed, m.aad, m.places), to !== undefined));
  } catch (e) {
    reply({ t: 'failed', id: m.id, message: e instanceof Error ? e.message : String(e) });
  }
}

// One request at a time, in order.
let queue = Promise.resolve();
port.on('message', (m: WorkerRequest) => {
  queue = queue.then(() => handle(m));
});
