/**
 * What terraform's provider reads of an installation, computed where its
 * files are (in this process for local nodes, on the primary node's host
 * for nodes reached over SSH): the key's real state for a refresh
 * (`keyFacts`: the status, the secrets counted by query, optionally every
 * secret opened) and the data-level dry run for a plan (`rotationPlan`).
 *
 * Refresh and plan must stay fast on a large database, so they count sealed
 * values by query (`Store.count`, on either store) and prove the key with
 * the canary instead of opening every row; `verify` asks for the full scan.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode } from '../errors';
import { withStore } from '../store/open';
import type { InventoryCounts, SecretFailure } from '../store/store';
import { Context } from './context';
import { Declared } from './decide';
import { assertNoPending } from './keys';
import { RotationPlan } from './plan';
import { gather } from './preflight';
import { removeLeftoverStaging } from './seal-ahead';
import { runStatus, StatusResult } from './status';
import { runVerify, scanWith } from './verify';

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
export function reportOf(dir: string, rotationId: string, toGeneration: number): string | undefined {
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
export function counted(ctx: Context): Promise<InventoryCounts> {
  return withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'counting the stored secrets', label: 'terraform-provider-masterkey' }, (store) => store.count(ctx.inventory));
}

/**
 * Refresh: the canary, every node's key, the last rotation and interrupted
 * rotations (`master-key status`), and the secrets counted by query. With
 * `verify`, every secret is opened with the configured key as well
 * (`master-key verify`); with `refusePending`, an interrupted rotation is the
 * CLI's ROTATION_INTERRUPTED error.
 */
export async function keyFacts(ctx: Context, opts: { verify?: boolean; maxAgeDays?: number; refusePending?: boolean } = {}): Promise<KeyFacts> {
  if (opts.refusePending) assertNoPending(ctx);
  const status = await runStatus(ctx, { maxAgeMs: opts.maxAgeDays !== undefined ? opts.maxAgeDays * 86_400_000 : undefined });
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

/** Stored values that do not open with a key: how many, the first ones (never a value), and the key. */
export interface Undecryptable {
  readonly count: number;
  readonly rows: readonly SecretFailure[];
  readonly fingerprint: string;
}

/** What terraform's plan shows: the runbook's rotation plan (its secrets counted, or opened with `verify`), with what would stop the rotation. */
export interface KeyPlan {
  readonly plan: RotationPlan;
  /** With `verify`: the values that do not open with the database's key (rotation due or not). */
  readonly undecryptable?: Undecryptable;
  /** Preflight problems of a rotation that is due (unwritable files, a full disk, ...). */
  readonly problems: readonly Problem[];
}

/**
 * The data-level dry run: the facts `master-key plan` gathers, with the
 * secrets counted by the store instead of opened (fast). With `verify`,
 * every secret is opened with the database's key as well, whether a
 * rotation is due (`master-key plan`) or not (`master-key verify`).
 * Throws the CLI's errors for what stops a plan (pending rotation, wrong
 * key, missing canary, ...).
 */
export async function rotationPlan(ctx: Context, declared: Declared, opts: { verify?: boolean } = {}): Promise<KeyPlan> {
  assertNoPending(ctx);
  return withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'planning the rotation', label: 'terraform-provider-masterkey' }, async (store) => {
    // A staging area an interrupted seal-ahead left is removed (when the rotation lock is free) and said.
    const removed = await removeLeftoverStaging(store, { holdsLock: false });
    if (removed) ctx.log(removed);
    const g = await gather(ctx, store, declared, { open: opts.verify === true });
    const scan = opts.verify ? (g.scan ?? (await scanWith(ctx, store, g.oldKey))) : undefined;
    const undecryptable = scan && scan.failureCount > 0 ? { count: scan.failureCount, rows: scan.failures, fingerprint: g.oldKey.fingerprint } : undefined;
    const problems: Problem[] = g.facts.preflight.map((p) => ({ message: p.problem, code: p.code }));
    return { plan: g.plan, undecryptable, problems: g.decision.rotate ? problems : [] };
  });
}

