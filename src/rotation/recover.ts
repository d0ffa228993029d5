/**
 * `master-key recover`: decides from the canary, the config files and the
 * rotation's pending-key file what an interrupted rotation had done, and
 * finishes it (database committed under the new key: write the config files)
 * or undoes it (not committed: discard the pending key). Every step is
 * atomic and the pending file goes last, so recovery itself can be
 * interrupted and run again. It reuses apply's phases for the config
 * files, the start hooks and verification.
 */
import { unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { readConfigKey } from '../config/config-file';
import { removeIncompleteBackups } from './backup';
import { MasterKeyError } from '../errors';
import { leftoverTempFiles, removeDeadTempFiles } from '../fsutil';
import { withStore } from '../store/open';
import { isSqliteUrl, sqliteFile } from '../store/sqlite/url';
import { CanaryRow, Store, sameDatabase } from '../store/store';
import { canaryOpensWith, requireCanary } from './canary';
import { Context } from './context';
import { count } from '../format';
import { startServer } from './hooks';
import { targetsWithout, writeKeyInto } from './keys';
import { readPending, removePending } from './pending';
import { scanWith } from './verify';
import type { ReportNode } from './report';
import { removedSentence } from './seal-ahead';

export interface RecoverResult {
  readonly action: 'none' | 'finished' | 'undone';
  readonly message: string;
  readonly fingerprint: string;
  readonly configsWritten: readonly string[];
  readonly tempFilesRemoved: readonly string[];
  /** Nodes on other hosts: how each ended up. */
  readonly nodes?: ReadonlyArray<ReportNode>;
  /** Nodes on other hosts: the jobs of earlier runs this recover finished. */
  readonly jobsFinished?: ReadonlyArray<{ readonly host: string; readonly id: string; readonly op: string; readonly state: string }>;
  /** Staging areas of an interrupted seal-ahead removed (where each was). */
  readonly stagingRemoved: readonly string[];
}

/**
 * Under the rotation lock: every temp file next to the config files and the
 * pending-key file (no other process writes those while we hold the lock),
 * and, in every directory a run writes to (config, backup and report
 * directories), the temp and probe files of processes that are gone.
 */
function removeLeftovers(paths: readonly string[], dirs: readonly string[]): string[] {
  const removed: string[] = [];
  for (const p of paths) {
    for (const tmp of leftoverTempFiles(p)) {
      unlinkSync(tmp);
      removed.push(tmp);
    }
  }
  for (const dir of new Set([...paths.map((p) => dirname(p)), ...dirs])) removed.push(...removeDeadTempFiles(dir));
  return removed.sort();
}

/** The leftovers, and the backups that never completed (`removeIncompleteBackups`) where the interrupted rotation put its backup and in the backup directory given. */
function removeLeftoversAndIncompleteBackups(ctx: Context, pendingBackupDir: string | undefined, paths: readonly string[], dirs: readonly string[]): string[] {
  const backupDirs = [...new Set([ctx.backupDir, ...(pendingBackupDir ? [pendingBackupDir] : [])])];
  return [...removeLeftovers(paths, dirs), ...backupDirs.flatMap((d) => removeIncompleteBackups(d))].sort();
}

/**
 * A rotation killed after its commit but before its verification leaves its
 * history row at "committed": open every secret with the database's key from
 * the primary config now, and record the outcome.
 */
async function verifyUnverifiedRotation(ctx: Context, store: Store, canary: CanaryRow): Promise<string> {
  const last = await store.lastHistory();
  if (!last || !last.outcome.startsWith('committed') || last.newFingerprint !== canary.fingerprint) return '';
  const key = readConfigKey(ctx.targets[0]);
  if (!canaryOpensWith(canary, key)) return '';
  const scan = await scanWith(ctx, store, key);
  const ok = scan.failureCount === 0;
  await store.setHistoryOutcome(last.rotationId, ok ? 'verified (by recover)' : 'verify-failed', ctx.now());
  return ok
    ? ` Verified the last rotation, which was never verified: all ${count(scan.total)} secrets open with ${key.fingerprint}.`
    : ` The last rotation was never verified and ${count(scan.failureCount)} of ${count(scan.total)} secrets do NOT open with ${key.fingerprint}: run \`master-key verify\` and restore from its backup (${last.backupPath ?? 'see the history table'}).`;
}

export async function runRecover(ctx: Context): Promise<RecoverResult> {
  const session = { lockTimeoutMs: ctx.lockTimeoutMs, label: `master-key recover ${ctx.now().toISOString()}`, doing: 'recovering the rotation' };
  return withStore(ctx.databaseUrl, session, async (store) => {
    await store.lockRotation();
    // Read only under the lock: a rotation that held it may have created or removed the file meanwhile.
    const p = readPending(ctx.pendingPath);
    const targets = p ? p.pending.targets : ctx.targets;
    const tempFilesRemoved = removeLeftoversAndIncompleteBackups(ctx, typeof p?.pending.backupDir === 'string' ? p.pending.backupDir : undefined, [...targets.map((t) => t.path), ctx.pendingPath], [ctx.backupDir, ctx.reportDir, ...(isSqliteUrl(ctx.databaseUrl) ? [dirname(sqliteFile(ctx.databaseUrl))] : [])]);
    const canary = requireCanary(await store.readCanary());
    // A staging area is never used by a later run: whatever the rotation's outcome, it goes.
    const staging = await store.dropStaging();
    const stagingRemoved = staging.map((a) => a.where);
    if (staging.length) ctx.log(removedSentence(staging));
    if (!p) {
      const verified = await verifyUnverifiedRotation(ctx, store, canary);
      const msg = `Nothing to recover: no interrupted rotation at ${ctx.pendingPath}; the database key is ${canary.fingerprint} (generation ${canary.generation}).${verified}`;
      ctx.log(msg);
      return { action: 'none' as const, message: msg, fingerprint: canary.fingerprint, configsWritten: [], tempFilesRemoved, stagingRemoved };
    }
    const id = await store.identity();
    if (!sameDatabase(id, p.pending.database)) {
      throw new MasterKeyError('KEY_NOT_FOR_DATABASE', `The interrupted rotation in ${ctx.pendingPath} belongs to database "${p.pending.database.name}", not this one ("${id.name}"); point the database URL at the database it rotated and run recover again.`);
    }
    if (canaryOpensWith(canary, p.newKey)) {
      // Committed: every config file must hold the new key.
      const configsWritten = writeKeyInto(targetsWithout(targets, p.newKey), p.newKey, { written: () => ctx.faults.reached('recover-config-written') });
      await store.setHistoryOutcome(p.pending.rotationId, 'committed (config finished by recover)');
      removePending(ctx.pendingPath);
      const verified = await verifyUnverifiedRotation(ctx, store, canary);
      startServer(ctx.hooks, ctx.log);
      const msg = `Finished the interrupted rotation ${p.pending.oldFingerprint} -> ${p.pending.newFingerprint}: the database was committed under the new key; ${configsWritten.length} config file(s) updated.${verified} Back up the new key.`;
      ctx.log(msg);
      return { action: 'finished' as const, message: msg, fingerprint: p.newKey.fingerprint, configsWritten, tempFilesRemoved, stagingRemoved };
    }
    // Not committed: the database is still under the old key. Configs are only written after commit, but check.
    const oldKey = targets.map((t) => readConfigKey(t)).find((k) => canaryOpensWith(canary, k));
    if (!oldKey) {
      throw new MasterKeyError(
        'OLD_KEY_INCORRECT',
        `Neither the pending key (${p.pending.newFingerprint}) nor any config file's key opens the integrity canary (${canary.fingerprint}); nothing was changed: restore the config from the rotation's backup with \`master-key restore\`.`,
      );
    }
    const configsWritten = writeKeyInto(targetsWithout(targets, oldKey), oldKey);
    removePending(ctx.pendingPath);
    startServer(ctx.hooks, ctx.log);
    const msg = `Undid the interrupted rotation ${p.pending.oldFingerprint} -> ${p.pending.newFingerprint}: it never committed, so the database and config files keep ${oldKey.fingerprint}; the pending key was discarded. Run apply again when ready.`;
    ctx.log(msg);
    return { action: 'undone' as const, message: msg, fingerprint: oldKey.fingerprint, configsWritten, tempFilesRemoved, stagingRemoved };
  });
}
