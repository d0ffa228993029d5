/**
 * Custody of old keys (issue 19): which backups under a backup directory
 * still hold an old key (each backup's config copies hold the key its
 * rotation replaced), sealed to whom or in cleartext, and since when; and
 * their retirement (`master-key retire`, the provider's
 * `backup_retention`): the backups beyond a retention removed (every file
 * unlinked, the directory fsynced, then removed and its parent fsynced),
 * each removal recorded in the rotation history (outcome "retired": the
 * fingerprint it ends, the backup, when, user and host) in the same
 * transaction.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { MasterKeyError } from '../errors';
import { fsyncDir, namesIn, sha256File } from '../fsutil';
import { CanaryRow, HistoryRow, RETIRED_OUTCOME, Store, StoreIdentity, sameDatabase } from '../store/store';
import { BACKUP_FORMAT, BackupManifest, MANIFEST_FILE } from './backup';
import { requireCanary } from './canary';
import { Context } from './context';
import { assertNoPending } from './keys';
import { Retention, retentionText } from './retention';
import { withStore } from '../store/open';

const DAY = 86_400_000;

/** A complete backup (one with a manifest) and the key it holds. */
export interface HeldBackup {
  readonly path: string;
  /** When its rotation took it (ISO). */
  readonly createdAt: string;
  readonly ageDays: number;
  /** The key its config copies hold (the one its rotation replaced). */
  readonly fingerprint: string;
  readonly generation: number;
  /** The age recipients its files are sealed to; empty: the old key is in cleartext in it. */
  readonly sealedTo: readonly string[];
  readonly manifestSha256: string;
  /** Bytes of its files as stored. */
  readonly bytes: number;
  readonly database: StoreIdentity;
}

/** The manifest of the backup at `path`, or undefined when it has none that this tool wrote (an incomplete or foreign directory). */
function manifestOf(path: string): BackupManifest | undefined {
  try {
    const m = JSON.parse(readFileSync(join(path, MANIFEST_FILE), 'utf8')) as BackupManifest;
    return m.format === BACKUP_FORMAT ? m : undefined;
  } catch {
    return undefined;
  }
}

/** The complete backups under `dir` of the database `database` (all when undefined), newest first. */
export function heldBackups(dir: string, now: Date, database?: StoreIdentity): HeldBackup[] {
  const out: HeldBackup[] = [];
  for (const name of namesIn(dir)) {
    const path = join(dir, name);
    const m = manifestOf(path);
    if (!m || (database && !sameDatabase(database, m.database))) continue;
    out.push({
      path,
      createdAt: m.createdAt,
      ageDays: Math.floor((now.getTime() - new Date(m.createdAt).getTime()) / DAY),
      fingerprint: m.fingerprint,
      generation: m.generation,
      sealedTo: m.sealed?.recipients ?? [],
      manifestSha256: sha256File(join(path, MANIFEST_FILE)),
      bytes: m.files.reduce((a, f) => a + f.bytes, 0),
      database: m.database,
    });
  }
  return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.path.localeCompare(a.path));
}

/** A backup retired: what it held, and when and by whom it was removed. */
export interface Retired {
  readonly path: string;
  readonly fingerprint: string;
  readonly generation: number;
  readonly createdAt: string;
  readonly sealedTo: readonly string[];
  readonly retiredAt: string;
  readonly actor: string;
}

/** What a retirement did: the backups removed and those kept (with why, for one kept against the retention). */
export interface RetireResult {
  readonly action: 'retired';
  readonly retention: string;
  readonly retired: readonly Retired[];
  readonly kept: ReadonlyArray<HeldBackup & { readonly note?: string }>;
}

/** Removes a backup's files (unlink each, fsync the directory), then the directory (fsync its parent). */
function removeBackupFiles(path: string): void {
  for (const n of namesIn(path)) unlinkSync(join(path, n));
  fsyncDir(path);
  rmdirSync(path);
  fsyncDir(join(path, '..'));
}

/**
 * Retires the backups of the store's database under `backupDir` beyond
 * `retention`, under the caller's rotation lock. The backup of the last
 * rotation is kept while that rotation is not verified. Each removal and
 * its history row are one transaction: the row commits only once the files
 * are gone (a failure to remove rolls it back and stops with FILE_ERROR).
 */
export async function retireBackups(store: Store, canary: CanaryRow, o: { backupDir: string; retention: Retention; now: Date; actor: string }): Promise<RetireResult> {
  const id = await store.identity();
  const backups = heldBackups(o.backupDir, o.now, id);
  const last = await store.lastHistory();
  const unverified = last && !last.outcome.startsWith('verified') ? last.backupPath : undefined;
  const cutoff = 'olderThanMs' in o.retention ? o.now.getTime() - o.retention.olderThanMs : undefined;
  const retired: Retired[] = [];
  const kept: Array<HeldBackup & { note?: string }> = [];
  for (const [i, b] of backups.entries()) {
    const beyond = 'keep' in o.retention ? i >= o.retention.keep : new Date(b.createdAt).getTime() < cutoff!;
    if (!beyond) {
      kept.push(b);
      continue;
    }
    if (b.path === unverified) {
      kept.push({ ...b, note: 'the backup of the last rotation, which is not verified: kept until it is' });
      continue;
    }
    const retiredAt = o.now;
    const row: HistoryRow = {
      rotationId: randomUUID(),
      startedAt: retiredAt,
      committedAt: retiredAt,
      fromGeneration: b.generation,
      toGeneration: canary.generation,
      oldFingerprint: b.fingerprint,
      newFingerprint: canary.fingerprint,
      reason: `backup retired (${retentionText(o.retention)}), taken ${b.createdAt}${b.sealedTo.length ? `, sealed to ${b.sealedTo.length} age recipient(s)` : ', holding the old key in cleartext'}`,
      processed: 0,
      updated: 0,
      unchangedDueToErrors: 0,
      byKind: {},
      backupPath: b.path,
      backupSha256: b.manifestSha256,
      actor: o.actor,
      outcome: RETIRED_OUTCOME,
    };
    await store.write(async (tx) => {
      await tx.insertHistory(row);
      try {
        removeBackupFiles(b.path);
      } catch (e) {
        throw new MasterKeyError('FILE_ERROR', `Cannot remove the backup ${b.path} (${(e as NodeJS.ErrnoException).code ?? 'error'}); its retirement was not recorded: make it removable by this user and run the command again.`);
      }
    });
    retired.push({ path: b.path, fingerprint: b.fingerprint, generation: b.generation, createdAt: b.createdAt, sealedTo: b.sealedTo, retiredAt: retiredAt.toISOString(), actor: o.actor });
  }
  return { action: 'retired', retention: retentionText(o.retention), retired, kept };
}

/** Who runs this: `user@host`, as the history records it. */
export function actor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry
  }
  return `${user}@${hostname()}`;
}

/** `master-key retire`: under the rotation lock, with no rotation interrupted, retires the backups beyond the retention. */
export async function runRetire(ctx: Context, retention: Retention): Promise<RetireResult> {
  const session = { label: `master-key retire ${ctx.now().toISOString()}`, doing: 'retiring backups' };
  return withStore(ctx.databaseUrl, session, async (store) => {
    await store.assertWritable();
    await store.lockRotation();
    assertNoPending(ctx);
    const canary = requireCanary(await store.readCanary());
    const r = await retireBackups(store, canary, { backupDir: ctx.backupDir, retention, now: ctx.now(), actor: actor() });
    for (const x of r.retired) ctx.log(`Retired ${x.path}: the backup of ${x.fingerprint} (generation ${x.generation}, taken ${x.createdAt}) is removed; recorded in the rotation history.`);
    for (const k of r.kept) if (k.note) ctx.log(`Kept ${k.path}: ${k.note}.`);
    ctx.log(`${r.retired.length} backup(s) retired (${r.retention}); ${r.kept.length} kept in ${ctx.backupDir}.`);
    return r;
  });
}
