/**
 * The rotation plan: what `plan` prints and what `apply` executes. Facts are
 * gathered through the adapters (config files, the store, file system);
 * `buildPlan` turns them into a plan in pure code, and `renderPlan` into text.
 */
import { createHash } from 'node:crypto';
import { ConfigTarget } from '../config/config-file';
import type { ErrorCode } from '../errors';
import type { CanaryRow, InventoryCounts, ScanResult, SecretFailure, StoreIdentity } from '../store/store';
import { Decision } from './decide';
import { bytes, count } from '../format';
import { Hooks } from './hooks';
import { recipientLabel } from './age';
import { SealAheadPlan, describeSealAhead } from './seal-ahead';

export const PLAN_FORMAT = 'cdktf-master-key/plan/v1';
export const GENERATED_AT_APPLY = 'generated at apply';

export interface ConfigFact {
  readonly target: ConfigTarget;
  readonly fingerprint: string;
}

export interface PreflightFact {
  readonly problem: string;
  /** The error apply fails with for this problem. */
  readonly code: ErrorCode;
}

export interface PlanFacts {
  readonly now: Date;
  readonly database: string;
  readonly databaseIdentity: StoreIdentity;
  readonly canary: CanaryRow;
  readonly oldFingerprint: string;
  readonly newFingerprint?: string;
  readonly decision: Decision;
  readonly inventory: { readonly name: string; readonly digest: string };
  /** What the inventory holds, counted by query: known to plan and apply alike. */
  readonly counts: InventoryCounts;
  /** Every value opened with the old key (`plan` only). */
  readonly scan?: ScanResult;
  readonly configs: readonly ConfigFact[];
  readonly backupDir: string;
  readonly backupEstimateBytes: number;
  readonly backupFreeBytes?: number;
  /** The age recipients the backup will be sealed to (none: it holds the old key in cleartext). */
  readonly backupSealedTo: readonly string[];
  readonly hooks: Hooks;
  readonly preflight: readonly PreflightFact[];
  /** Whether apply seals ahead, and why (rotations only). */
  readonly sealAhead?: SealAheadPlan;
}

export interface RotationPlan {
  readonly format: typeof PLAN_FORMAT;
  readonly createdAt: string;
  readonly database: string;
  /** rotate; sync-config: no rotation, but some node's config does not hold the database key; none. */
  readonly action: 'rotate' | 'sync-config' | 'none';
  readonly reason: string;
  readonly oldFingerprint: string;
  readonly newFingerprint: string;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  readonly keySetAt: string;
  readonly inventory: { readonly name: string; readonly digest: string };
  /**
   * Sealed values to re-encrypt, by kind (what `plan` opened; counted by
   * query when nothing was opened), and the rows holding them, counted by query.
   */
  readonly secrets: { readonly total: number; readonly byKind: Readonly<Record<string, number>>; readonly rows: number };
  readonly undecryptable: { readonly count: number; readonly rows: readonly SecretFailure[] };
  /** Every node's config file; with nodes on other hosts, each names its address and host too. */
  readonly configs: ReadonlyArray<{ readonly path: string; readonly format: string; readonly entry: string; readonly fingerprint: string; readonly change: string; readonly address?: string; readonly host?: string }>;
  readonly backup: { readonly dir: string; readonly estimatedBytes: number; readonly freeBytes?: number; readonly sealedTo: readonly string[]; readonly oldKeyInCleartext: boolean };
  readonly hooks: Hooks;
  /** Whether apply seals every secret under the new key while the server runs, why, and the staging area's disk cost (rotations only). */
  readonly sealAhead?: SealAheadPlan;
  /** Reasons the plan cannot be applied (undecryptable rows, unwritable files, a missing privilege, …). */
  readonly blockers: readonly string[];
  /** For each blocker, the error code apply refuses with (UNDECRYPTABLE_ROWS, DB_PRIVILEGE_MISSING, …). */
  readonly blockerCodes: readonly ErrorCode[];
  /** Digest of the facts apply re-checks: a saved plan is stale when it differs. */
  readonly digest: string;
}

/** `ACT_MASTER_KEY=<mk:old…> -> <mk:new…>`: the change to a config file, redacted. */
export function redactedChange(entry: string, before: string, after: string): string {
  return `${entry}=<${before}…> -> <${after === GENERATED_AT_APPLY ? 'new key' : after}…>`;
}

/**
 * Digest of the facts apply re-checks against a saved plan, computed only
 * from what plan and apply both know without opening a value: the
 * database, its canary, the decision, the inventory, the rows holding
 * secrets (counted by query) and every config file's key. Apply opens the
 * values inside its transaction, which refuses any that do not open.
 */
export function planDigest(f: Pick<PlanFacts, 'databaseIdentity' | 'canary' | 'decision' | 'inventory' | 'configs' | 'counts'>): string {
  const canon = JSON.stringify({
    db: f.databaseIdentity,
    canary: [f.canary.fingerprint, f.canary.generation, f.canary.updatedAt.toISOString()],
    decision: [f.decision.rotate, f.decision.fromGeneration, f.decision.toGeneration],
    inventory: f.inventory.digest,
    rows: f.counts.rows,
    configs: f.configs.map((c) => [c.target.path, c.target.format, c.target.entry, c.fingerprint]),
  });
  return `sha256:${createHash('sha256').update(canon).digest('hex')}`;
}

/**
 * What SEALED_MALFORMED means, when a listed value has it: a JSON document
 * the rotation would damage by rewriting blocks it the same way (see
 * docs/json-documents.md).
 */
export function malformedNote(failures: readonly Pick<SecretFailure, 'code'>[]): string {
  return failures.some((x) => x.code === 'SEALED_MALFORMED')
    ? ' or are malformed (SEALED_MALFORMED: not in the codec\'s format, or in a JSON document that is not JSON, is not UTF-8, or holds a member name twice, which a rewrite would change)'
    : '';
}

export function buildPlan(f: PlanFacts): RotationPlan {
  const secrets = { total: f.scan?.total ?? f.counts.values, byKind: { ...(f.scan?.byKind ?? f.counts.byKind) }, rows: f.counts.rows };
  const newFp = f.decision.rotate ? (f.newFingerprint ?? GENERATED_AT_APPLY) : f.oldFingerprint;
  const blocked: PreflightFact[] = [];
  const outOfStep = f.configs.filter((c) => c.fingerprint !== f.oldFingerprint);
  if (f.scan && f.scan.failureCount > 0) {
    blocked.push({ problem: `${count(f.scan.failureCount)} stored value(s) do not open with the old key ${f.oldFingerprint}${malformedNote(f.scan.failures)}; fix or restore them before rotating (listed above).`, code: 'UNDECRYPTABLE_ROWS' });
  }
  if (f.decision.rotate && f.newFingerprint && f.newFingerprint === f.oldFingerprint) {
    blocked.push({ problem: 'The new key is the same as the old key; supply a different key or let apply generate one.', code: 'KEY_SAME' });
  }
  if (f.decision.rotate) blocked.push(...f.preflight);
  return {
    format: PLAN_FORMAT,
    createdAt: f.now.toISOString(),
    database: f.database,
    action: f.decision.rotate ? 'rotate' : outOfStep.length ? 'sync-config' : 'none',
    reason: f.decision.reason,
    oldFingerprint: f.oldFingerprint,
    newFingerprint: newFp,
    fromGeneration: f.decision.fromGeneration,
    toGeneration: f.decision.toGeneration,
    keySetAt: f.canary.keyCreatedAt.toISOString(),
    inventory: f.inventory,
    secrets,
    undecryptable: { count: f.scan?.failureCount ?? 0, rows: f.scan?.failures ?? [] },
    configs: f.configs.map((c) => ({
      path: c.target.path,
      format: c.target.format,
      entry: c.target.entry,
      fingerprint: c.fingerprint,
      change: f.decision.rotate || c.fingerprint !== f.oldFingerprint ? redactedChange(c.target.entry, c.fingerprint, newFp) : 'no change',
    })),
    backup: { dir: f.backupDir, estimatedBytes: f.backupEstimateBytes, freeBytes: f.backupFreeBytes, sealedTo: f.backupSealedTo, oldKeyInCleartext: f.backupSealedTo.length === 0 },
    hooks: f.hooks,
    ...(f.decision.rotate && f.sealAhead ? { sealAhead: f.sealAhead } : {}),
    blockers: blocked.map((b) => b.problem),
    blockerCodes: blocked.map((b) => b.code),
    digest: planDigest(f),
  };
}

export function renderPlan(p: RotationPlan): string {
  const out: string[] = [];
  const row = (k: string, v: string) => out.push(`  ${k.padEnd(15)} ${v}`);
  out.push('cdktf-master-key rotation plan', '');
  row('database', `${p.database} (key ${p.oldFingerprint}, generation ${p.fromGeneration}, set ${p.keySetAt})`);
  row('action', p.action === 'rotate' ? `ROTATE: ${p.reason}` : p.action === 'sync-config' ? `SET NODE CONFIG: no rotation (${p.reason}), but some config files do not hold the database's key` : `nothing to do: ${p.reason}`);
  if (p.action === 'sync-config') {
    for (const c of p.configs.filter((x) => x.change !== 'no change')) out.push(`      ${c.address ?? c.path} (${c.format}): ${c.change}`);
  }
  if (p.action === 'rotate') {
    row('old key', p.oldFingerprint);
    row('new key', p.newFingerprint);
    row('generation', `${p.fromGeneration} -> ${p.toGeneration}`);
    row('secrets', `${count(p.secrets.total)} to re-encrypt in one transaction, in ${count(p.secrets.rows)} rows (inventory ${p.inventory.name}, ${p.inventory.digest})`);
    for (const [k, v] of Object.entries(p.secrets.byKind)) out.push(`      ${k.padEnd(34)} ${count(v).padStart(10)}`);
    row('undecryptable', `${count(p.undecryptable.count)}`);
    for (const r of p.undecryptable.rows) out.push(`      ${r.table}.${r.column}${r.path ? `#${r.path}` : ''} id=${r.id} (${r.kind}): ${r.code}`);
    if (p.undecryptable.count > p.undecryptable.rows.length) out.push(`      … and ${count(p.undecryptable.count - p.undecryptable.rows.length)} more`);
    row('config files', '');
    for (const c of p.configs) out.push(`      ${c.address ?? c.path} (${c.format}): ${c.change}`);
    row('backup', `under ${p.backup.dir} (about ${bytes(p.backup.estimatedBytes)}${p.backup.freeBytes !== undefined ? `; ${bytes(p.backup.freeBytes)} free` : ''})`);
    out.push(
      p.backup.oldKeyInCleartext
        ? '      WARNING: the backup will hold the old key in cleartext (no backup recipients): declare --backup-recipient to seal it'
        : `      sealed (age) to ${p.backup.sealedTo.map(recipientLabel).join(', ')}`,
    );
    const hooks = (['stop', 'start', 'health'] as const).filter((h) => p.hooks[h]).map((h) => `${h}: ${p.hooks[h]}`);
    row('hooks', hooks.length ? hooks.join('; ') : 'none');
    if (p.sealAhead) row('seal-ahead', describeSealAhead(p.sealAhead));
  }
  out.push('');
  if (p.blockers.length) {
    out.push('Blocked: apply would refuse to run:');
    for (const b of p.blockers) out.push(`  - ${b}`);
  } else if (p.action === 'sync-config') {
    const n = p.configs.filter((x) => x.change !== 'no change').length;
    out.push(`Plan: 0 keys to rotate, ${n} config file${n === 1 ? '' : 's'} to set to the database's key.`);
  } else if (p.action === 'rotate') {
    out.push(`Plan: 1 key to rotate, ${count(p.secrets.total)} secrets to re-encrypt, ${p.configs.length} config file${p.configs.length === 1 ? '' : 's'} to update.`);
  } else {
    out.push('No changes. The master key is up to date.');
  }
  return out.join('\n');
}
