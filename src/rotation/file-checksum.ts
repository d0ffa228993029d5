/**
 * The SHA-256 of a file that can be large (a backup's copy of a SQLite
 * database), computed in a worker thread so the thread that drives the
 * rotation goes on meanwhile (`./file-checksum-worker`); on this thread when
 * the worker is not built (the tests run the sources; `npm test` builds).
 */
import { Worker } from 'node:worker_threads';
import { builtFile } from '../engine/built-file';
import { MasterKeyError } from '../errors';
import { sha256File } from '../fsutil';

/** What the worker answers: the digest, or the typed error `sha256File` threw. */
export type ChecksumReply = { readonly sha256: string } | { readonly error: { readonly code: string; readonly message: string } };

export async function sha256FileOffThread(path: string): Promise<string> {
  const entry = builtFile(__dirname, 'file-checksum-worker.js');
  if (!entry) return sha256File(path);
  const worker = new Worker(entry, { workerData: path });
  try {
    const reply = await new Promise<ChecksumReply>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new MasterKeyError('INTERNAL', `The checksum thread stopped unexpectedly (exit code ${code}).`)));
    });
    if ('error' in reply) throw new MasterKeyError('FILE_ERROR', reply.error.message);
    return reply.sha256;
  } finally {
    await worker.terminate();
  }
}
