/**
 * `master-key recover`: decides from the canary, the config files and the
 * rotation's pending-key file what an interrupted rotation had done, and
 * finishes it (database committed under the new key: write the config files)
 * or undoes it (not committed: discard the pending key). Every step is
 * atomic and the pending file goes last, so recovery itself can be
 * interrupted and run again.
 */
import { unlinkSync } from 'node:fs';
import { readConfigKey, writeConfigKey } from '../config/config-file';
import { MasterKey } from '../crypto/key';
import { Client } from 'pg';
import { Keyring } from '../crypto/keyring';
import { CanaryRow, acquireRotationLock, canaryOpensWith, databaseIdentity, lastHistory, requireCanary, setHistoryOutcome } from '../db/meta';
import { translatePgError, withClient, withTransaction } from '../db/pg';
import { MasterKeyError } from '../errors';
import { leftoverTempFiles } from '../fsutil';
import { Context } from './context';
import { reached } from './faults';
import { runHook } from './hooks';
import { scanInventory } from './stream';
import { readPending, removePending } from './pending';

export interface RecoverResult {
  readonly action: 'none' | 'finished' | 'undone';
  readonly message: string;
  readonly fingerprint: string;
  readonly configsWritten: readonly string[];
  readonly tempFilesRemoved: readonly string[];
}

function removeLeftovers(paths: readonly string[]): string[] {
  const removed: string[] = [];
  for (const p of paths) {
    for (const tmp of leftoverTempFiles(p)) {
      unlinkSync(tmp);
      removed.push(tmp);
    }
  }
  return removed;
}

/** The server may have been stopped by the interrupted rotation: start it again when asked to. */
function runStartHooks(ctx: Context): void {
  if (ctx.hooks.start) runHook('start', ctx.hooks.start, ctx.log);
  if (ctx.hooks.health) runHook('health', ctx.hooks.health, ctx.log);
}

/**
 * A rotation killed after its commit but before its verification leaves its
 * history row at "committed": open every secret with the database's key from
 * the primary config now, and record the outcome.
 */
async function verifyUnverifiedRotation(ctx: Context, c: Client, canary: CanaryRow): Promise<string> {
  const last = await lastHistory(c);
  if (!last || !last.outcome.startsWith('committed') || last.newFingerprint !== canary.fingerprint) return '';
  const key = readConfigKey(ctx.targets[0]);
  if (!canaryOpensWith(canary, key)) return '';
  const scan = await withTransaction(c, () => scanInventory(c, ctx.inventory, new Keyring([key]), { batchSize: ctx.batchSize }), 'read only');
  const ok = scan.failureCount === 0;
  await setHistoryOutcome(c, last.rotationId, ok ? 'verified (by recover)' : 'verify-failed', ctx.now());
  return ok
    ? ` Verified the last rotation, which was never verified: all ${scan.total} secrets open with ${key.fingerprint}.`
    : ` The last rotation was never verified and ${scan.failureCount} of ${scan.total} secrets do NOT open with ${key.fingerprint}: run \`master-key verify\` and restore from its backup (${last.backupPath ?? 'see the history table'}).`;
}

export async function runRecover(ctx: Context): Promise<RecoverResult> {
  return withClient(
    ctx.databaseUrl,
    async (c) => {
      try {
        await acquireRotationLock(c);
        // Read only under the lock: a rotation that held it may have created or removed the file meanwhile.
        const p = readPending(ctx.pendingPath);
        const targets = p ? p.pending.targets : ctx.targets;
        const tempFilesRemoved = removeLeftovers([...targets.map((t) => t.path), ctx.pendingPath]);
        const canary = await requireCanary(c);
        if (!p) {
          const verified = await verifyUnverifiedRotation(ctx, c, canary);
          const msg = `Nothing to recover: no interrupted rotation at ${ctx.pendingPath}; the database key is ${canary.fingerprint} (generation ${canary.generation}).${verified}`;
          ctx.log(msg);
          return { action: 'none' as const, message: msg, fingerprint: canary.fingerprint, configsWritten: [], tempFilesRemoved };
        }
        const id = await databaseIdentity(c);
        if (id.name !== p.pending.database.name || (id.systemIdentifier !== 'unknown' && p.pending.database.systemIdentifier !== 'unknown' && id.systemIdentifier !== p.pending.database.systemIdentifier)) {
          throw new MasterKeyError('KEY_NOT_FOR_DATABASE', `The interrupted rotation in ${ctx.pendingPath} belongs to database "${p.pending.database.name}", not this one ("${id.name}"); point the database URL at the database it rotated and run recover again.`);
        }
        const configsWritten: string[] = [];
        if (canaryOpensWith(canary, p.newKey)) {
          // Committed: every config file must hold the new key.
          for (const t of targets) {
            let current: MasterKey | undefined;
            try {
              current = readConfigKey(t);
            } catch (e) {
              if (!(e instanceof MasterKeyError) || e.code !== 'KEY_MALFORMED') throw e;
            }
            if (!current || !current.equals(p.newKey)) {
              writeConfigKey(t, p.newKey);
              configsWritten.push(t.path);
              reached('recover-config-written');
            }
          }
          await setHistoryOutcome(c, p.pending.rotationId, 'committed (config finished by recover)');
          removePending(ctx.pendingPath);
          const verified = await verifyUnverifiedRotation(ctx, c, canary);
          runStartHooks(ctx);
          const msg = `Finished the interrupted rotation ${p.pending.oldFingerprint} -> ${p.pending.newFingerprint}: the database was committed under the new key; ${configsWritten.length} config file(s) updated.${verified} Back up the new key.`;
          ctx.log(msg);
          return { action: 'finished' as const, message: msg, fingerprint: p.newKey.fingerprint, configsWritten, tempFilesRemoved };
        }
        // Not committed: the database is still under the old key. Configs are only written after commit, but check.
        const holders = targets.map((t) => ({ t, key: readConfigKey(t) }));
        const oldKey = holders.find((h) => canaryOpensWith(canary, h.key))?.key;
        if (!oldKey) {
          throw new MasterKeyError(
            'OLD_KEY_INCORRECT',
            `Neither the pending key (${p.pending.newFingerprint}) nor any config file's key opens the integrity canary (${canary.fingerprint}); nothing was changed: restore the config from the rotation's backup with \`master-key restore\`.`,
          );
        }
        for (const h of holders) {
          if (!h.key.equals(oldKey)) {
            writeConfigKey(h.t, oldKey);
            configsWritten.push(h.t.path);
          }
        }
        removePending(ctx.pendingPath);
        runStartHooks(ctx);
        const msg = `Undid the interrupted rotation ${p.pending.oldFingerprint} -> ${p.pending.newFingerprint}: it never committed, so the database and config files keep ${oldKey.fingerprint}; the pending key was discarded. Run apply again when ready.`;
        ctx.log(msg);
        return { action: 'undone' as const, message: msg, fingerprint: oldKey.fingerprint, configsWritten, tempFilesRemoved };
      } catch (e) {
        throw translatePgError(e, 'recovering the rotation', ctx.databaseUrl);
      }
    },
    { applicationName: `master-key recover ${ctx.now().toISOString()}` },
  );
}
