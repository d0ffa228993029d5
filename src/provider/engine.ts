/**
 * The provider's one seam to the rotation engine: everything the provider
 * does to a database or a config file goes through the functions here, which
 * call the same engine code as the CLI (`runApply`, `runStatus`, `runVerify`,
 * and the facts `master-key plan` gathers, `gather`) in this process, on
 * either store: no shell, no argv.
 * When the engine's entry points move, this is the file to re-point.
 *
 * Refresh and plan must stay fast on a large database, so they count sealed
 * values by query (`Store.count`, on either store) and prove the key with
 * the canary instead of opening every row; `verify` asks for the full scan
 * (the CLI's plan).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { configTarget, readConfigEntry } from '../config/config-file';
import { ConfigFormat } from '../config/formats';
import { ErrorCode, MasterKeyError } from '../errors';
import { loadInventory } from '../inventory/inventory';
import { Context, quietProgress } from '../rotation/context';
import { Declared } from '../rotation/decide';
import { FaultPoints } from '../rotation/faults';
import { assertNoPending } from '../rotation/keys';
import { defaultPendingPath } from '../rotation/pending';
import { runApply } from '../rotation/phases';
import { RotationPlan } from '../rotation/plan';
import { gather } from '../rotation/preflight';
import { runRecover } from '../rotation/recover';
import { renderStatus, runStatus, StatusResult } from '../rotation/status';
import { runVerify } from '../rotation/verify';
import { withStore } from '../store/open';
import type { InventoryCounts } from '../store/store';

export { renderStatus, runRecover };
export type { StatusResult };

/** Where an installation is and how to rotate it: the resource's and data source's arguments. */
export interface Installation {
  readonly configFiles: readonly string[];
  readonly configFormat?: ConfigFormat;
  readonly keyName?: string;
  readonly databaseUrlEnv?: string;
  readonly databaseUrlEntry?: string;
  readonly inventory?: string;
  readonly backupDir?: string;
  readonly reportDir?: string;
  readonly stopCommand?: string;
  readonly startCommand?: string;
  readonly healthCommand?: string;
}

/** Builds the engine's context as the CLI does from the same options. */
export function installationContext(a: Installation, log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Context {
  const keyName = a.keyName ?? 'ACT_MASTER_KEY';
  const targets = a.configFiles.map((p) => configTarget(p, keyName, a.configFormat));
  if (targets.length === 0) throw new MasterKeyError('USAGE', 'config_files is empty; list the absolute path of the config file holding the key (one per server node).');
  const primary = targets[0].path;
  let databaseUrl: string;
  if (a.databaseUrlEntry !== undefined) {
    databaseUrl = readConfigEntry(targets[0], a.databaseUrlEntry);
  } else {
    const name = a.databaseUrlEnv ?? 'DATABASE_URL';
    databaseUrl = env[name] ?? '';
    if (!databaseUrl) {
      throw new MasterKeyError('USAGE', `The environment variable ${name} is not set; export the database URL in it in the shell that runs terraform (or name another with database_url_env, or use database_url_entry).`);
    }
  }
  const backupDir = a.backupDir ?? join(dirname(primary), 'master-key-backups');
  return {
    targets,
    databaseUrl,
    inventory: loadInventory(a.inventory ?? 'act'),
    pendingPath: defaultPendingPath(primary),
    backupDir,
    reportDir: a.reportDir ?? (a.backupDir !== undefined ? backupDir : join(dirname(primary), 'master-key-reports')),
    hooks: { stop: a.stopCommand, start: a.startCommand, health: a.healthCommand },
    log,
    progress: quietProgress,
    faults: new FaultPoints(env.MASTER_KEY_TEST_KILL_AT),
    now: () => new Date(),
  };
}

/** The key's real state, as terraform's refresh reads it. */
export interface KeyFacts {
  readonly database: string;
  readonly fingerprint: string;
  readonly generation: number;
  readonly keySetAt: string;
  readonly keyAgeDays: number;
  readonly secrets: InventoryCounts;
  readonly nodesInSync: boolean;
  readonly lastRotationAt?: string;
  /** The last rotation's Markdown report, when it is in the report directory. */
  readonly lastReport?: string;
  readonly status: StatusResult;
  /** Stored values that do not open with the database's key (only when verified). */
  readonly undecryptable?: number;
}

/** The report files of a rotation in `dir` (matched by rotation id), if any. */
function reportOf(dir: string, rotationId: string, toGeneration: number): string | undefined {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  for (const n of names.filter((x) => x.startsWith('rotation-') && x.endsWith(`-gen${toGeneration}.json`))) {
    try {
      const r = JSON.parse(readFileSync(join(dir, n), 'utf8')) as { rotationId?: string };
      if (r.rotationId === rotationId) return join(dir, n.replace(/\.json$/, '.md'));
    } catch {
      // not a report of ours
    }
  }
  return undefined;
}

/** The secrets per kind, counted by the store (aggregate queries: nothing opened, no rotation or write lock taken). */
function counted(ctx: Context): Promise<InventoryCounts> {
  return withStore(ctx.databaseUrl, { doing: 'counting the stored secrets', label: 'terraform-provider-masterkey' }, (store) => store.count(ctx.inventory));
}

/**
 * Refresh: the canary, every node's key, the last rotation and interrupted
 * rotations (`master-key status`), and the secrets counted by query. With
 * `verify`, every secret is opened with the configured key as well
 * (`master-key verify`); with `refusePending`, an interrupted rotation is the
 * CLI's ROTATION_INTERRUPTED error.
 */
export async function readKey(ctx: Context, opts: { verify?: boolean; maxAgeMs?: number; refusePending?: boolean } = {}): Promise<KeyFacts> {
  if (opts.refusePending) assertNoPending(ctx);
  const status = await runStatus(ctx, { maxAgeMs: opts.maxAgeMs });
  const secrets = await counted(ctx);
  let undecryptable: number | undefined;
  if (opts.verify) undecryptable = (await runVerify(ctx)).scan.failureCount;
  const last = status.lastRotation;
  return {
    database: status.database,
    fingerprint: status.fingerprint,
    generation: status.generation,
    keySetAt: status.keySetAt,
    keyAgeDays: status.keyAgeDays,
    secrets,
    nodesInSync: status.mismatchedNodes === 0,
    lastRotationAt: last ? new Date(last.committedAt).toISOString() : undefined,
    lastReport: last ? reportOf(ctx.reportDir, last.rotationId, last.toGeneration) : undefined,
    status,
    undecryptable,
  };
}

/** A problem that makes apply refuse: the CLI's sentence and error code. */
export interface Problem {
  readonly message: string;
  readonly code: ErrorCode;
}

/** What terraform's plan shows: the engine's rotation plan (its secrets counted, or opened with `verify`), with its blockers as coded problems. */
export interface KeyPlan {
  readonly plan: RotationPlan;
  readonly problems: readonly Problem[];
}

/**
 * The data-level dry run: the facts `master-key plan` gathers, with the
 * secrets counted by the store instead of opened (fast). With `verify` it
 * is `master-key plan` itself (every secret opened with the old key).
 * Throws the CLI's errors for what stops a plan (pending rotation, wrong
 * key, missing canary, ...).
 */
export async function planKey(ctx: Context, declared: Declared, opts: { verify?: boolean } = {}): Promise<KeyPlan> {
  assertNoPending(ctx);
  return withStore(ctx.databaseUrl, { doing: 'planning the rotation', label: 'terraform-provider-masterkey' }, async (store) => {
    const g = await gather(ctx, store, declared, { open: opts.verify === true });
    // The plan's blockers in order: undecryptable rows first, then the preflight problems.
    const problems: Problem[] = g.scan && g.scan.failureCount > 0 ? [{ message: g.plan.blockers[0], code: 'UNDECRYPTABLE_ROWS' }] : [];
    for (const p of g.facts.preflight) problems.push({ message: p.problem, code: p.code });
    return { plan: g.plan, problems };
  });
}

/** Apply: `master-key apply` (generating the new key), in this process. */
export async function applyKey(ctx: Context, declared: Declared, newKeyOut?: string): Promise<{ rotated: boolean; reportMarkdown?: string; verificationFailures?: number }> {
  const r = await runApply(ctx, { ...declared, newKey: { kind: 'generate' }, newKeyOut });
  if (r.action === 'none') return { rotated: false };
  return { rotated: true, reportMarkdown: r.reportFiles.markdown, verificationFailures: r.report.verification.failures };
}

/** Counts the secrets now (apply checks them against the plan's before it rotates). */
export function countNow(ctx: Context): Promise<InventoryCounts> {
  return counted(ctx);
}
