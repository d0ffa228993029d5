/**
 * A retention of backups (issue 19): keep the newest N, or retire those
 * older than an age. Read from `master-key retire --keep/--older-than` and
 * the provider's `backup_retention`; applied by `./custody.ts`.
 */
import { MasterKeyError } from '../errors';
import { parseDuration } from './decide';

/** How many backups, or how old, a retention keeps. */
export type Retention = { readonly keep: number } | { readonly olderThanMs: number; readonly text: string };

/** Reads a retention as the provider's `backup_retention` spells it: `keep N` (N ≥ 1) or an age such as `30d`, `12w`, `1y`; USAGE naming `setting` otherwise. */
export function parseRetention(text: string, setting: string): Retention {
  const keep = /^\s*keep\s+(\d+)\s*$/i.exec(text);
  if (keep) return keepRetention(Number(keep[1]), setting);
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) throw new MasterKeyError('USAGE', `${setting} must be "keep N" (the newest N backups) or an age such as 30d, 12w or 1y, got ${JSON.stringify(text)}.`);
  return { olderThanMs: ms, text: text.trim() };
}

/** Keep the newest `n` backups (at least 1: the last rotation's backup is the way back). */
export function keepRetention(n: number, setting: string): Retention {
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `${setting} must keep at least 1 backup (the last rotation's is the way back if its new key is lost), got ${n}.`);
  return { keep: n };
}

export function retentionText(r: Retention): string {
  return 'keep' in r ? `keep the newest ${r.keep}` : `older than ${r.text}`;
}

