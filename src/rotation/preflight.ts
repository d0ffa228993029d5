/**
 * The facts `plan` shows and `apply` checks before it changes anything:
 * the keys in the config files, the canary, whether a rotation is due,
 * whether every secret opens with the old key, whether files and
 * directories are writable and the backup fits. Gathered through the store
 * and the file system; the plan itself is built in pure code (`plan.ts`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { checkConfigWritable } from '../config/config-file';
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { MasterKeyError } from '../errors';
import { checkDirWritable, freeBytes } from '../fsutil';
import { inventoryDigest } from '../inventory/inventory';
import { defaultCryptoMode } from '../engine/value-crypto';
import { CanaryRow, InventoryCounts, ScanResult, Store } from '../store/store';
import { assertKeyOpensCanary, requireCanary } from './canary';
import { Context, withProgress } from './context';
import { bytes, count } from '../format';
import { Declared, Decision, decideRotation } from './decide';
import { readNodeKeys } from './keys';
import { PlanFacts, PreflightFact, RotationPlan, buildPlan, malformedNote } from './plan';
import { planSealAhead } from './seal-ahead';

/**
 * Where to probe a directory without creating it (plan and a refused apply
 * must leave no trace): the directory itself, or, when it does not exist
 * yet, the nearest existing folder above it, where apply will create it.
 */
function probeDir(dir: string): { path: string; what: (name: string) => string } {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return d === dir ? { path: d, what: (name) => name } : { path: d, what: (name) => `${name} ${dir} (not created yet), that is in` };
}

/** A failed preflight check as a plan fact; a full disk is DISK_FULL whichever check met it. */
function problemOf(e: unknown): PreflightFact {
  const err = e instanceof MasterKeyError ? e : undefined;
  const errno = err?.details.errno;
  return { problem: (e as Error).message, code: errno === 'ENOSPC' || errno === 'EDQUOT' ? 'DISK_FULL' : (err?.code ?? 'FILE_ERROR') };
}

/** Config files, backup and report directories writable, and room for the backup (the database's preconditions: `Store.rotationBlockers`). */
export function preflight(ctx: Context, estimateBytes: number): { problems: PreflightFact[]; free?: number } {
  const problems: PreflightFact[] = [];
  for (const t of ctx.targets) {
    try {
      checkConfigWritable(t);
    } catch (e) {
      problems.push(problemOf(e));
    }
  }
  let free: number | undefined;
  try {
    const dir = probeDir(ctx.backupDir);
    checkDirWritable(dir.path, 'BACKUP_UNWRITABLE', dir.what('backup directory'));
    free = freeBytes(dir.path);
    if (free < estimateBytes) {
      problems.push({ problem: `The backup directory ${ctx.backupDir} has ${bytes(free)} free but the backup needs about ${bytes(estimateBytes)}; free space or choose another --backup-dir.`, code: 'DISK_FULL' });
    }
  } catch (e) {
    problems.push(problemOf(e));
  }
  try {
    const dir = probeDir(ctx.reportDir);
    checkDirWritable(dir.path, 'FILE_ERROR', dir.what('report directory'));
  } catch (e) {
    problems.push(problemOf(e));
  }
  return { problems, free };
}

/** Backup size estimate: the stored text (whole documents for JSON columns) plus JSON framing, plus the config copies. */
function backupEstimate(counts: InventoryCounts, ctx: Context): number {
  const cfg = ctx.targets.reduce((a, t) => a + readFileSync(t.path).length, 0);
  return Math.ceil(counts.storedBytes * 1.2 + counts.rows * 64 + cfg + 65536);
}

/** What preflight found, and the plan built from it. */
export interface Gathered {
  readonly oldKey: MasterKey;
  readonly canary: CanaryRow;
  readonly decision: Decision;
  /** What the inventory holds, counted by query (plan and apply both know it). */
  readonly counts: InventoryCounts;
  /** Every value opened with the old key (plan only: apply opens them inside its transaction). */
  readonly scan?: ScanResult;
  readonly facts: PlanFacts;
  readonly plan: RotationPlan;
}

/** How much preflight reads: `plan` opens every value with the old key; `apply` only counts (it opens them in its transaction). */
export interface GatherOptions {
  readonly newKey?: MasterKey;
  /** Open every value with the old key (the zero-downtime dry run). */
  readonly open: boolean;
}

/** Gathers the plan's facts; changes nothing, creates nothing. */
export async function gather(ctx: Context, store: Store, declared: Declared, opts: GatherOptions): Promise<Gathered> {
  const g = await store.read(async (tx) => {
    const { key: oldKey, facts: configFacts } = readNodeKeys(ctx);
    const canary = requireCanary(await tx.canary());
    assertKeyOpensCanary(canary, oldKey, `the key in ${ctx.targets[0].path}`);
    const decision = decideRotation(canary, declared);
    const scan =
      decision.rotate && opts.open
        ? await withProgress(ctx.progress, 'checking every secret opens with the old key', undefined, (tick) =>
            tx.scan(ctx.inventory, new Keyring([oldKey]), { onProgress: tick, batchSize: ctx.batchSize }),
          )
        : undefined;
    return { oldKey, configFacts, canary, decision, scan };
  });
  const { oldKey, canary, decision, scan } = g;
  // Counted once the canary proved this is the right database (a wrong one may lack the inventory's tables).
  const counts = await store.count(ctx.inventory);
  const estimate = backupEstimate(counts, ctx);
  const pre = decision.rotate ? preflight(ctx, estimate) : { problems: [], free: undefined };
  // What the transaction needs of the database (a writable database, its privileges), first: apply refuses with the first blocker.
  const database: PreflightFact[] = decision.rotate ? [...(await store.rotationBlockers(ctx.inventory))] : [];
  const sealAhead = decision.rotate ? await planSealAhead(ctx, store, counts) : undefined;
  const facts: PlanFacts = {
    now: ctx.now(),
    database: store.description,
    databaseIdentity: await store.identity(),
    canary,
    oldFingerprint: oldKey.fingerprint,
    newFingerprint: opts.newKey?.fingerprint,
    decision,
    inventory: { name: ctx.inventory.name, digest: inventoryDigest(ctx.inventory) },
    counts,
    scan,
    configs: g.configFacts,
    backupDir: ctx.backupDir,
    backupEstimateBytes: estimate,
    backupFreeBytes: pre.free,
    hooks: ctx.hooks,
    preflight: [...database, ...pre.problems],
    ...(sealAhead ? { sealAhead } : {}),
  };
  return { oldKey, canary, decision, counts, scan, facts, plan: buildPlan(facts) };
}

/** Refuses, naming the first reason, a rotation that must not start; changes nothing. */
export function refuseUnlessReady(g: Gathered, newKey: MasterKey): void {
  if (newKey.equals(g.oldKey)) {
    throw new MasterKeyError('KEY_SAME', `The new key is the same as the old key (${g.oldKey.fingerprint}); supply a different key, or omit the new-key option to generate one.`);
  }
  if (g.scan && g.scan.failureCount > 0) throw undecryptableRows(g.scan, g.oldKey);
  if (g.plan.blockers.length) {
    const first = g.facts.preflight[0] ?? { problem: g.plan.blockers[0], code: 'CONFIG_UNWRITABLE' as const };
    throw new MasterKeyError(first.code, `${first.problem} Nothing was changed.`, { blockers: g.plan.blockers });
  }
}

/**
 * Apply opens the secrets as it re-encrypts them, after the stop hook; the
 * values in JSON documents it opens here, before: a document the rotation
 * cannot rewrite without losing something (a member name twice, text that
 * is not JSON: SEALED_MALFORMED) or a value in one that does not open
 * refuses the rotation while nothing has changed. Only the inventory's
 * JSON entries are read.
 */
export async function refuseBadDocuments(ctx: Context, store: Store, oldKey: MasterKey): Promise<void> {
  const entries = ctx.inventory.entries.filter((e) => e.jsonPath !== undefined);
  if (entries.length === 0) return;
  const documents = { name: ctx.inventory.name, entries };
  // The crypto on this thread: no worker threads to start for what is usually a small part of the secrets.
  const opts = (tick: (n: number) => void) => ({ onProgress: tick, batchSize: ctx.batchSize, crypto: defaultCryptoMode() });
  const scan = await store.read((tx) => withProgress(ctx.progress, 'checking the secrets in JSON documents', undefined, (tick) => tx.scan(documents, new Keyring([oldKey]), opts(tick))));
  if (scan.failureCount > 0) throw undecryptableRows(scan, oldKey);
}

/** The refusal for values that do not open with the old key, naming the first few (never a value). */
export function undecryptableRows(scan: Pick<ScanResult, 'failures' | 'failureCount'>, oldKey: MasterKey): MasterKeyError {
  const first = scan.failures.slice(0, 5).map((f) => `${f.table}.${f.column}${f.path ? `#${f.path}` : ''} id=${f.id} (${f.kind}, ${f.code})`);
  return new MasterKeyError(
    'UNDECRYPTABLE_ROWS',
    `${count(scan.failureCount)} stored value(s) do not open with the old key ${oldKey.fingerprint}${malformedNote(scan.failures)} (${first.join('; ')}${scan.failureCount > first.length ? '; …' : ''}); nothing was changed: restore or fix those rows (see \`master-key plan\`), then run apply again.`,
    { failures: scan.failures, failureCount: scan.failureCount },
  );
}

