/**
 * `master-key status`: the database's key, its generation and age against
 * the policy, every node's key, the last rotation, an interrupted one.
 */
import { readConfigKey } from '../config/config-file';
import { ExitCode, ExitCodeValue, isMasterKeyError } from '../errors';
import { withStore } from '../store/open';
import { HistoryRow, RETIRED_OUTCOME } from '../store/store';
import { recipientLabel } from './age';
import { heldBackups } from './custody';
import { canaryOpensWith, requireCanary } from './canary';
import { Context } from './context';
import { count } from '../format';
import { readPending } from './pending';

export interface NodeStatus {
  /** The config file's path on its host. */
  readonly path: string;
  /** The node's address as given (a local path or `ssh://…`), when known. */
  readonly address?: string;
  /** Its host: `local`, or `user@host:port` for a node reached over SSH. */
  readonly host?: string;
  readonly fingerprint?: string;
  readonly error?: string;
  readonly matchesDatabase: boolean;
}

export interface StatusResult {
  readonly database: string;
  readonly fingerprint: string;
  readonly generation: number;
  readonly keySetAt: string;
  readonly keyAgeDays: number;
  readonly maxAgeDays?: number;
  readonly overdue: boolean;
  readonly nodes: readonly NodeStatus[];
  readonly mismatchedNodes: number;
  readonly lastRotation?: Omit<HistoryRow, 'byKind'> & { byKind: Readonly<Record<string, number>> };
  /** The backups under the backup directory that still hold an old key (newest first): where, since when, sealed to whom (none: in cleartext). */
  readonly backupsHoldingOldKeys: ReadonlyArray<{ readonly path: string; readonly fingerprint: string; readonly generation: number; readonly createdAt: string; readonly ageDays: number; readonly sealedTo: readonly string[] }>;
  /** The latest retirements recorded in the history (newest first, at most 20). */
  readonly retirements: ReadonlyArray<{ readonly fingerprint: string; readonly backup?: string; readonly at: string; readonly actor: string }>;
  readonly interruptedRotation?: { readonly pendingFile: string; readonly startedAt: string; readonly oldFingerprint: string; readonly newFingerprint: string; readonly inProgress: boolean };
  /** Nodes on other hosts: jobs an earlier run left on a host (a rotation, a hook), which `recover` finishes. */
  readonly unfinishedJobs?: ReadonlyArray<{ readonly host: string; readonly id: string; readonly op: string; readonly startedAt: string; readonly state: string }>;
  readonly exitCode: ExitCodeValue;
}

/** `master-key status`: key, generation, age vs policy, every node's key, interrupted rotations. */
export async function runStatus(ctx: Context, opts: { maxAgeMs?: number }): Promise<StatusResult> {
  const pending = readPending(ctx.pendingPath);
  return withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'reading the key status' }, async (store) => {
    const canary = requireCanary(await store.readCanary());
    let fileProblem = false;
    const nodes: NodeStatus[] = ctx.targets.map((t) => {
      try {
        const k = readConfigKey(t);
        return { path: t.path, fingerprint: k.fingerprint, matchesDatabase: canaryOpensWith(canary, k) };
      } catch (e) {
        // A config file that is missing or cannot be read is a file problem (exit 8); one holding no usable key is a node out of step (13).
        if (isMasterKeyError(e, 'CONFIG_MISSING') || isMasterKeyError(e, 'CONFIG_UNREADABLE')) fileProblem = true;
        return { path: t.path, error: (e as Error).message, matchesDatabase: false };
      }
    });
    const ageMs = ctx.now().getTime() - canary.keyCreatedAt.getTime();
    const overdue = opts.maxAgeMs !== undefined && ageMs > opts.maxAgeMs;
    const last = await store.lastHistory();
    const held = heldBackups(ctx.backupDir, ctx.now(), await store.identity()).filter((b) => b.fingerprint !== canary.fingerprint);
    const retired = await store.historyWith(RETIRED_OUTCOME, 20);
    const holder = pending ? await store.lockHolder() : undefined;
    const mismatched = nodes.filter((n) => !n.matchesDatabase).length;
    const exitCode = pending ? ExitCode.INTERRUPTED : fileProblem ? ExitCode.FILES : mismatched ? ExitCode.NODE_MISMATCH : overdue ? ExitCode.OVERDUE : ExitCode.OK;
    return {
      database: store.description,
      fingerprint: canary.fingerprint,
      generation: canary.generation,
      keySetAt: canary.keyCreatedAt.toISOString(),
      keyAgeDays: Math.floor(ageMs / 86_400_000),
      maxAgeDays: opts.maxAgeMs !== undefined ? opts.maxAgeMs / 86_400_000 : undefined,
      overdue,
      nodes,
      mismatchedNodes: mismatched,
      lastRotation: last,
      backupsHoldingOldKeys: held.map(({ path, fingerprint, generation, createdAt, ageDays, sealedTo }) => ({ path, fingerprint, generation, createdAt, ageDays, sealedTo })),
      retirements: retired.map((r) => ({ fingerprint: r.oldFingerprint, backup: r.backupPath, at: r.committedAt.toISOString(), actor: r.actor })),
      interruptedRotation: pending
        ? {
            pendingFile: ctx.pendingPath,
            startedAt: pending.pending.startedAt,
            oldFingerprint: pending.pending.oldFingerprint,
            newFingerprint: pending.pending.newFingerprint,
            inProgress: holder !== undefined,
          }
        : undefined,
      exitCode,
    };
  });
}

export function renderStatus(s: StatusResult): string {
  const out: string[] = [];
  out.push(`database      ${s.database}`);
  out.push(`key           ${s.fingerprint} (generation ${s.generation})`);
  out.push(`set at        ${s.keySetAt} (${count(s.keyAgeDays)} days ago)${s.maxAgeDays !== undefined ? `; policy allows ${s.maxAgeDays} days: ${s.overdue ? 'OVERDUE, rotate now' : 'ok'}` : ''}`);
  if (s.lastRotation) {
    const r = s.lastRotation;
    out.push(`last rotation ${r.committedAt.toISOString?.() ?? String(r.committedAt)}: ${r.oldFingerprint} -> ${r.newFingerprint}, ${count(r.updated)} secrets, ${r.outcome}`);
  } else {
    out.push('last rotation none recorded');
  }
  for (const n of s.nodes) {
    const where = n.host && n.host !== 'local' ? `${n.path} on ${n.host}` : n.path;
    const address = n.address ?? n.path;
    out.push(`config        ${where}: ${n.error ? `unreadable: ${n.error}` : `${n.fingerprint} ${n.matchesDatabase ? '(matches the database)' : '(DIFFERS from the database: run `master-key set --config ' + address + '` with the current key, or `master-key recover`)'}`}`);
  }
  for (const j of s.unfinishedJobs ?? []) {
    out.push(`job           ${j.op} ${j.id} on ${j.host} (${j.state}, started ${j.startedAt}): run \`master-key recover\``);
  }
  for (const b of s.backupsHoldingOldKeys) {
    out.push(`backup        ${b.path}: holds ${b.fingerprint} (generation ${b.generation}), ${count(b.ageDays)} days old, ${b.sealedTo.length ? `sealed to ${b.sealedTo.map(recipientLabel).join(', ')}` : 'the old key in CLEARTEXT (no backup recipients)'}`);
  }
  if (s.backupsHoldingOldKeys.length === 0) out.push('backups       none holding an old key');
  for (const r of s.retirements) out.push(`retired       ${r.fingerprint} at ${r.at} by ${r.actor}${r.backup ? ` (${r.backup})` : ''}`);
  if (s.interruptedRotation) {
    const i = s.interruptedRotation;
    out.push(
      i.inProgress
        ? `rotation      in progress since ${i.startedAt} (${i.oldFingerprint} -> ${i.newFingerprint})`
        : `rotation      INTERRUPTED (started ${i.startedAt}, ${i.oldFingerprint} -> ${i.newFingerprint}): run \`master-key recover\``,
    );
  }
  return out.join('\n');
}
