/**
 * The rotation's pending-key file: written (0600, atomically) before anything
 * in the database changes and removed only after every config file holds the
 * new key. While it exists, the new key is on disk even if the process dies,
 * so some key on disk always opens every secret. `recover` reads it, and
 * refuses one that does not match docs/schemas/pending.schema.json.
 */
import { readFileSync, unlinkSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import pendingSchema from '../../docs/schemas/pending.schema.json';
import { ConfigTarget } from '../config/config-file';
import { parseKey, MasterKey } from '../crypto/key';
import { MasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { firstSchemaError, lazyValidator } from '../json-schema';
import { StoreIdentity } from '../store/store';

export const PENDING_FORMAT = 'cdktf-master-key/pending/v1';

export interface PendingRotation {
  readonly format: typeof PENDING_FORMAT;
  readonly rotationId: string;
  readonly startedAt: string;
  readonly database: StoreIdentity;
  readonly oldFingerprint: string;
  readonly newFingerprint: string;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  readonly reason: string;
  readonly targets: readonly ConfigTarget[];
  readonly backupPath?: string;
  /** Where the rotation puts its backup (recover removes one that never completed). */
  readonly backupDir?: string;
}

export function defaultPendingPath(primaryConfig: string): string {
  return join(dirname(primaryConfig), `.${basename(primaryConfig)}.mk-pending`);
}

export function writePending(path: string, p: PendingRotation, newKey: MasterKey): void {
  const body = JSON.stringify({ ...p, newKey: newKey.toHex() }, null, 2) + '\n';
  atomicWriteFile(path, body, { mode: 0o600, errorCode: 'FILE_ERROR' });
}

export function readPending(path: string): { pending: PendingRotation; newKey: MasterKey } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MasterKeyError('FILE_ERROR', `Cannot read the pending-rotation file ${path} (${(e as NodeJS.ErrnoException).code}); fix its permissions and run \`master-key recover\`.`);
  }
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new MasterKeyError('FILE_ERROR', `The pending-rotation file ${path} is not valid JSON; it was not written by this tool or was edited: restore it from the report/backup or remove it after checking \`master-key status\`.`);
  }
  if (o?.format !== PENDING_FORMAT) {
    throw new MasterKeyError('FILE_ERROR', `The pending-rotation file ${path} has an unknown format; it was not written by this version of cdktf-master-key.`);
  }
  const damaged = (what: string) =>
    new MasterKeyError('FILE_ERROR', `The pending-rotation file ${path} is damaged (${what}); it was edited or corrupted: restore it from the report/backup or remove it after checking \`master-key status\`.`);
  const valid = pendingValidator();
  if (!valid(o)) throw damaged(firstSchemaError(valid.errors));
  const newKey = parseKey(o.newKey as string, `the new key in ${path}`);
  if (newKey.fingerprint !== o.newFingerprint) throw damaged(`its new key is not ${String(o.newFingerprint)}, the key it names`);
  delete o.newKey;
  return { pending: o as unknown as PendingRotation, newKey };
}

const pendingValidator = lazyValidator(pendingSchema);

/** Removes the pending file and makes the removal durable. */
export function removePending(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const fd = openSync(dirname(path), 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
