/**
 * A sealing thread (started by ./sealed-backup): seals one backup file to
 * age recipients beside the rotation, so age's ChaCha20-Poly1305 (the
 * library's, in JavaScript) runs on another core than the re-encryption.
 * Either the bytes come as messages (`{ chunk }`, each acknowledged once
 * age wants more, then `{ end: true }`), or the worker seals a whole file
 * by path (`workerData.file`, removed once sealed). It answers `{ done }`
 * with the sealed file's checksum and size, or `{ error }`.
 */
import { createReadStream, rmSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Sealer } from './age';
import type { SealReply, SealRequest, SealWorkerData } from './sealed-backup';

const data = workerData as SealWorkerData;
const port = parentPort!;
const reply = (r: SealReply) => port.postMessage(r);
const fail = (e: unknown) => reply({ error: { code: (e as NodeJS.ErrnoException).code ?? 'EIO', message: (e as Error).message } });

async function sealFile(file: string): Promise<void> {
  const sealer = await Sealer.open(data.recipients, data.path);
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 256 << 10 })) await sealer.push(chunk as Buffer, true);
    const done = await sealer.finish();
    rmSync(file, { force: true });
    reply({ done });
  } catch (e) {
    await sealer.abort();
    throw e;
  }
}

async function sealMessages(): Promise<void> {
  const sealer = await Sealer.open(data.recipients, data.path);
  let chain = Promise.resolve();
  port.on('message', (m: SealRequest) => {
    chain = chain.then(async () => {
      if ('chunk' in m) {
        await sealer.push(m.chunk, true);
        reply({ ack: m.chunk.length });
      } else {
        reply({ done: await sealer.finish() });
      }
    });
    chain.catch(async (e: unknown) => {
      await sealer.abort();
      fail(e);
    });
  });
  reply({ ready: true });
}

(data.file ? sealFile(data.file) : sealMessages()).catch(fail);
