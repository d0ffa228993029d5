/** A checksum thread (started by ./file-checksum): the SHA-256 of the file named by its worker data. */
import { parentPort, workerData } from 'node:worker_threads';
import { sha256File } from '../fsutil';
import type { ChecksumReply } from './file-checksum';

let reply: ChecksumReply;
try {
  reply = { sha256: sha256File(workerData as string) };
} catch (e) {
  reply = { error: { code: (e as { code?: string }).code ?? 'FILE_ERROR', message: (e as Error).message } };
}
parentPort!.postMessage(reply);
