/**
 * `plan` and `apply`: the runbook in one command. Both start from the same
 * facts and the same rotation plan; apply then executes it, crash-safely:
 *
 *   lock → preflight (everything plan checks) → new key → pending file (0600)
 *   → backup → stop hook → ONE transaction (re-encrypt every secret, canary,
 *   history) → commit → config files (atomic) → new-key file → remove pending
 *   → start/health hooks → verify → report.
 *
 * At every instant some key on disk (config or pending file) opens every
 * secret; `recover` finishes or undoes a rotation interrupted at any point.
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Client } from 'pg';
import { checkConfigWritable, readConfigKey, writeConfigKey } from '../config/config-file';
import { parseKey, MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import {
  CanaryRow,
  acquireRotationLock,
  assertKeyOpensCanary,
  canaryOpensWith,
  databaseIdentity,
  insertHistory,
  replaceCanary,
  requireCanary,
  setHistoryOutcome,
} from '../db/meta';
import { describeUrl, translatePgError, withClient, withTransaction, assertWritable } from '../db/pg';
import { MasterKeyError } from '../errors';
import { atomicWriteFile, checkDirWritable, freeBytes } from '../fsutil';
import { inventoryDigest, quoteIdent } from '../inventory/inventory';
import { writeBackup } from './backup';
import { Context, NewKeySource } from './context';
import { Declared, Decision, decideRotation } from './decide';
import { reached } from './faults';
import { runHook } from './hooks';
import { defaultPendingPath, readPending, removePending, writePending } from './pending';
import { ConfigFact, PlanFacts, PreflightFact, RotationPlan, buildPlan } from './plan';
import { RotationReport, REPORT_FORMAT, writeReport } from './report';
import { ScanResult, reencryptInventory, scanInventory } from './stream';

export { defaultPendingPath };

/** Reads the key of every config target; all must agree (one key per server). */
export function readConfiguredKey(ctx: Pick<Context, 'targets'>): { key: MasterKey; facts: ConfigFact[] } {
  const keys = ctx.targets.map((t) => ({ target: t, key: readConfigKey(t) }));
  const primary = keys[0];
  for (const k of keys.slice(1)) {
    if (!k.key.equals(primary.key)) {
      throw new MasterKeyError(
        'CONFIG_DISAGREE',
        `The config files disagree: ${k.target.path} holds ${k.key.fingerprint} but ${primary.target.path} holds ${primary.key.fingerprint}; run \`master-key status\` to see which matches the database, then \`master-key set --config ${k.target.path}\` (or \`master-key recover\` after an interrupted rotation).`,
      );
    }
  }
  return { key: primary.key, facts: keys.map((k) => ({ target: k.target, fingerprint: k.key.fingerprint })) };
}

/** Marks a node whose config entry holds no usable key (e.g. a placeholder for a new HA node). */
export const NO_KEY = 'no key';

/**
 * The primary config's key, and what every node holds. Unlike
 * readConfiguredKey, another node may hold a different key or a placeholder:
 * apply sets it (the primary's key must open the canary, which gather proves).
 */
export function readNodeKeys(ctx: Pick<Context, 'targets'>): { key: MasterKey; facts: ConfigFact[] } {
  const primary = readConfigKey(ctx.targets[0]);
  const facts = ctx.targets.map((t, i) => {
    if (i === 0) return { target: t, fingerprint: primary.fingerprint };
    try {
      return { target: t, fingerprint: readConfigKey(t).fingerprint };
    } catch (e) {
      if (e instanceof MasterKeyError && e.code === 'KEY_MALFORMED') return { target: t, fingerprint: NO_KEY };
      throw e;
    }
  });
  return { key: primary, facts };
}

/** Refuses to go on while an interrupted rotation's pending file exists. */
export function assertNoPending(ctx: Pick<Context, 'pendingPath'>): void {
  const p = readPending(ctx.pendingPath);
  if (p) {
    throw new MasterKeyError(
      'ROTATION_INTERRUPTED',
      `An interrupted rotation (started ${p.pending.startedAt}, ${p.pending.oldFingerprint} -> ${p.pending.newFingerprint}) left ${ctx.pendingPath}; run \`master-key recover\` with the same --config options before anything else.`,
      { pendingFile: ctx.pendingPath, oldFingerprint: p.pending.oldFingerprint, newFingerprint: p.pending.newFingerprint },
    );
  }
}

/** Reads a new key from a file, stdin or an environment variable (never argv), or generates one. */
export function obtainNewKey(src: NewKeySource): MasterKey {
  switch (src.kind) {
    case 'generate':
      return MasterKey.generate();
    case 'file': {
      let text: string;
      try {
        text = readFileSync(src.path, 'utf8');
      } catch (e) {
        throw new MasterKeyError('FILE_ERROR', `Cannot read the new key file ${src.path} (${(e as NodeJS.ErrnoException).code}); check the path and its permissions.`);
      }
      return parseKey(text, `the new key in ${src.path}`);
    }
    case 'stdin': {
      let text: string;
      try {
        text = readFileSync(0, 'utf8');
      } catch {
        throw new MasterKeyError('USAGE', 'Could not read the new key from standard input; pipe it in, e.g. `openssl rand -hex 32 | master-key apply --new-key-stdin`.');
      }
      return parseKey(text, 'the new key on standard input');
    }
    case 'env': {
      const v = process.env[src.name];
      if (v === undefined) throw new MasterKeyError('USAGE', `The environment variable ${src.name} (named by --new-key-env) is not set; export it or let apply generate the key.`);
      return parseKey(v, `the new key in $${src.name}`);
    }
  }
}

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

/** Config files, backup and report directories writable, and room for the backup. */
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
      problems.push({ problem: `The backup directory ${ctx.backupDir} has ${free} bytes free but the backup needs about ${estimateBytes}; free space or choose another --backup-dir.`, code: 'DISK_FULL' });
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

/** Backup size estimate: stored bytes plus JSON framing, plus the config copies. */
function backupEstimate(scan: ScanResult | undefined, ctx: Context): number {
  const cfg = ctx.targets.reduce((a, t) => a + readFileSync(t.path).length, 0);
  return Math.ceil((scan?.storedBytes ?? 0) * 1.2 + (scan?.total ?? 0) * 64 + cfg + 65536);
}

interface Gathered {
  readonly oldKey: MasterKey;
  readonly canary: CanaryRow;
  readonly decision: Decision;
  readonly scan?: ScanResult;
  readonly facts: PlanFacts;
  readonly plan: RotationPlan;
}

async function gather(ctx: Context, c: Client, declared: Declared, newKey?: MasterKey): Promise<Gathered> {
  const { key: oldKey, facts: configFacts } = readNodeKeys(ctx);
  const canary = await requireCanary(c);
  assertKeyOpensCanary(canary, oldKey, `the key in ${ctx.targets[0].path}`);
  const decision = decideRotation(canary, declared);
  let scan: ScanResult | undefined;
  if (decision.rotate) {
    ctx.progress.start('checking every secret opens with the old key');
    try {
      scan = await scanInventory(c, ctx.inventory, new Keyring([oldKey]), { onProgress: (d) => ctx.progress.tick(d), batchSize: ctx.batchSize });
    } finally {
      ctx.progress.stop();
    }
  }
  const estimate = backupEstimate(scan, ctx);
  const pre = decision.rotate ? preflight(ctx, estimate) : { problems: [], free: undefined };
  const facts: PlanFacts = {
    now: ctx.now(),
    database: describeUrl(ctx.databaseUrl),
    databaseIdentity: await databaseIdentity(c),
    canary,
    oldFingerprint: oldKey.fingerprint,
    newFingerprint: newKey?.fingerprint,
    decision,
    inventory: { name: ctx.inventory.name, digest: inventoryDigest(ctx.inventory) },
    scan,
    configs: configFacts,
    backupDir: ctx.backupDir,
    backupEstimateBytes: estimate,
    backupFreeBytes: pre.free,
    hooks: ctx.hooks,
    preflight: pre.problems,
  };
  return { oldKey, canary, decision, scan, facts, plan: buildPlan(facts) };
}

/** `master-key plan`: read-only; returns the plan. */
export async function runPlan(ctx: Context, declared: Declared): Promise<RotationPlan> {
  assertNoPending(ctx);
  return withClient(ctx.databaseUrl, async (c) => {
    try {
      return (await withTransaction(c, () => gather(ctx, c, declared), 'read only')).plan;
    } catch (e) {
      throw translatePgError(e, 'planning the rotation', ctx.databaseUrl);
    }
  });
}

export interface ApplyOptions extends Declared {
  readonly newKey: NewKeySource;
  /** Also write the new key to this file (0600), as Octopus does. */
  readonly newKeyOut?: string;
  /** A plan saved by `plan --out`: refuse when the facts changed since. */
  readonly savedPlan?: RotationPlan;
}

export type ApplyResult =
  | { readonly action: 'none'; readonly plan: RotationPlan }
  | { readonly action: 'rotated'; readonly plan: RotationPlan; readonly report: RotationReport; readonly reportFiles: { markdown: string; json: string } };

function actor(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry
  }
  return `${user}@${hostname()}`;
}

/** `master-key apply`. */
export async function runApply(ctx: Context, opts: ApplyOptions): Promise<ApplyResult> {
  const startedAt = ctx.now();
  const rotationId = randomUUID();
  const phases: Record<string, number> = {};
  let t = Date.now();
  const lap = (name: string) => {
    const now = Date.now();
    phases[name] = (phases[name] ?? 0) + (now - t);
    t = now;
  };
  return withClient<ApplyResult>(
    ctx.databaseUrl,
    async (c) => {
      await assertWritable(c, ctx.databaseUrl);
      await acquireRotationLock(c);
      reached('locked');
      assertNoPending(ctx);
      const newKey = obtainNewKey(opts.newKey);
      const g = await withTransaction(c, () => gather(ctx, c, opts, newKey), 'read only');
      lap('preflight');
      if (opts.savedPlan && opts.savedPlan.digest !== g.plan.digest) {
        throw new MasterKeyError('PLAN_STALE', `The saved plan (${opts.savedPlan.createdAt}) no longer matches the database or config files; run \`master-key plan\` again and review it.`);
      }
      if (!g.decision.rotate) {
        ctx.log(`Nothing to do: ${g.decision.reason}.`);
        for (const f of g.facts.configs) {
          if (f.fingerprint === g.oldKey.fingerprint) continue;
          writeConfigKey(f.target, g.oldKey);
          ctx.log(`Set ${f.target.path} to the database's key: ${f.target.entry}=<${f.fingerprint}…> -> <${g.oldKey.fingerprint}…> (this node was out of step).`);
        }
        return { action: 'none' as const, plan: g.plan };
      }
      if (newKey.equals(g.oldKey)) {
        throw new MasterKeyError('KEY_SAME', `The new key is the same as the old key (${g.oldKey.fingerprint}); supply a different key, or omit the new-key option to generate one.`);
      }
      if (g.scan && g.scan.failureCount > 0) {
        const first = g.scan.failures.slice(0, 5).map((f) => `${f.table}.${f.column}${f.path ? `#${f.path}` : ''} id=${f.id} (${f.kind}, ${f.code})`);
        throw new MasterKeyError(
          'UNDECRYPTABLE_ROWS',
          `${g.scan.failureCount} stored value(s) do not open with the old key ${g.oldKey.fingerprint} (${first.join('; ')}${g.scan.failureCount > first.length ? '; …' : ''}); nothing was changed: restore or fix those rows (see \`master-key plan\`), then run apply again.`,
          { failures: g.scan.failures },
        );
      }
      if (g.plan.blockers.length) {
        const first = g.facts.preflight[0] ?? { problem: g.plan.blockers[0], code: 'CONFIG_UNWRITABLE' as const };
        throw new MasterKeyError(first.code, `${first.problem} Nothing was changed.`, { blockers: g.plan.blockers });
      }
      reached('preflight-done');
      ctx.log(`Rotating ${g.oldKey.fingerprint} -> ${newKey.fingerprint} (generation ${g.decision.fromGeneration} -> ${g.decision.toGeneration}): ${g.decision.reason}.`);

      const dbId = g.facts.databaseIdentity;
      writePending(
        ctx.pendingPath,
        {
          format: 'cdktf-master-key/pending/v1',
          rotationId,
          startedAt: startedAt.toISOString(),
          database: dbId,
          oldFingerprint: g.oldKey.fingerprint,
          newFingerprint: newKey.fingerprint,
          fromGeneration: g.decision.fromGeneration,
          toGeneration: g.decision.toGeneration,
          reason: g.decision.reason,
          targets: ctx.targets,
        },
        newKey,
      );
      reached('pending-written');
      lap('pending key');
      let committed = false;
      // Set just before withTransaction sends COMMIT: from then on a lost connection leaves the outcome unknown.
      let commitSent = false;
      try {
        ctx.log(`Backing up ${g.scan?.total ?? 0} stored values and ${ctx.targets.length} config file(s) under ${ctx.backupDir} ...`);
        reached('backup-started');
        const backup = await writeBackup(c, {
          dir: ctx.backupDir,
          rotationId,
          now: startedAt,
          database: dbId,
          canary: g.canary,
          inventory: ctx.inventory,
          targets: ctx.targets,
          batchSize: ctx.batchSize,
        });
        reached('backup-written');
        lap('backup');
        ctx.log(`Backup: ${backup.path} (manifest sha256 ${backup.manifestSha256}).`);
        const hooks: Array<{ which: string; command: string; ms: number }> = [];
        if (ctx.hooks.stop) hooks.push({ which: 'stop', command: ctx.hooks.stop, ms: runHook('stop', ctx.hooks.stop, ctx.log) });
        reached('stop-hook-done');
        lap('stop hook');

        const total = g.scan?.total ?? 0;
        ctx.log(`Re-encrypting ${total} secrets in one transaction ...`);
        const re = await withTransaction(c, async () => {
          reached('transaction-begun');
          const canary = await requireCanary(c, true);
          if (canary.fingerprint !== g.canary.fingerprint || canary.generation !== g.canary.generation) {
            throw new MasterKeyError('PLAN_STALE', 'The database key changed while this rotation was being prepared; nothing was changed: run the command again.');
          }
          await lockInventoryTables(c, ctx);
          ctx.progress.start('re-encrypting', total);
          let r;
          try {
            r = await reencryptInventory(c, ctx.inventory, new Keyring([g.oldKey]), newKey, {
              batchSize: ctx.batchSize,
              readerUrl: ctx.databaseUrl,
              onProgress: (d) => {
                ctx.progress.tick(d);
                reached('reencrypt-batch');
              },
            });
          } finally {
            ctx.progress.stop();
          }
          reached('reencrypted');
          const committedAt = ctx.now();
          await replaceCanary(c, newKey, g.decision.toGeneration, committedAt);
          await insertHistory(c, {
            rotationId,
            startedAt,
            committedAt,
            fromGeneration: g.decision.fromGeneration,
            toGeneration: g.decision.toGeneration,
            oldFingerprint: g.oldKey.fingerprint,
            newFingerprint: newKey.fingerprint,
            reason: g.decision.reason,
            processed: total,
            updated: r.total,
            unchangedDueToErrors: total - r.total,
            byKind: r.byKind,
            backupPath: backup.path,
            backupSha256: backup.manifestSha256,
            actor: actor(),
            outcome: 'committed',
          });
          reached('canary-updated');
          commitSent = true;
          return r;
        });
        committed = true;
        reached('committed');
        lap('re-encrypt (transaction)');
        ctx.log(`Committed: ${re.total} secrets (${re.updated} rows) now sealed under ${newKey.fingerprint}.`);

        for (const target of ctx.targets) {
          try {
            writeConfigKey(target, newKey);
          } catch (e) {
            throw new MasterKeyError(
              'ROTATION_INTERRUPTED',
              `The database now uses ${newKey.fingerprint} but writing ${target.path} failed (${(e as Error).message}); the new key is safe in ${ctx.pendingPath}: fix the file and run \`master-key recover\`.`,
            );
          }
          reached('config-written');
          ctx.log(`Updated ${target.path}: ${target.entry}=<${g.oldKey.fingerprint}…> -> <${newKey.fingerprint}…>`);
        }
        if (opts.newKeyOut) {
          atomicWriteFile(opts.newKeyOut, newKey.toHex() + '\n', { mode: 0o600 });
          ctx.log(`New key also written to ${opts.newKeyOut} (0600). Back it up now.`);
        }
        removePending(ctx.pendingPath);
        reached('pending-removed');
        lap('config files');

        if (ctx.hooks.start) hooks.push({ which: 'start', command: ctx.hooks.start, ms: runHook('start', ctx.hooks.start, ctx.log) });
        if (ctx.hooks.health) hooks.push({ which: 'health', command: ctx.hooks.health, ms: runHook('health', ctx.hooks.health, ctx.log) });
        reached('start-hook-done');
        lap('start hooks');

        const verification = await verifyAfterRotation(ctx, c, newKey, g.oldKey);
        reached('verified');
        lap('verify');
        await setHistoryOutcome(c, rotationId, verification.ok ? 'verified' : 'verify-failed', ctx.now());
        const report: RotationReport = {
          format: REPORT_FORMAT,
          rotationId,
          startedAt: startedAt.toISOString(),
          finishedAt: ctx.now().toISOString(),
          database: describeUrl(ctx.databaseUrl),
          reason: g.decision.reason,
          fromGeneration: g.decision.fromGeneration,
          toGeneration: g.decision.toGeneration,
          oldFingerprint: g.oldKey.fingerprint,
          newFingerprint: newKey.fingerprint,
          processed: total,
          updated: re.total,
          unchangedDueToErrors: total - re.total,
          rowsUpdated: re.updated,
          byKind: re.byKind,
          backup: { path: backup.path, manifestSha256: backup.manifestSha256, values: backup.values, bytes: backup.bytes },
          configs: ctx.targets.map((x) => ({ path: x.path, before: g.oldKey.fingerprint, after: newKey.fingerprint })),
          newKeyFile: opts.newKeyOut,
          hooks,
          phases,
          verification,
          outcome: verification.ok ? 'verified' : 'verify-failed',
        };
        const reportFiles = writeReport(ctx.reportDir, report);
        reached('report-written');
        if (!verification.ok) {
          throw new MasterKeyError('VERIFY_FAILED', `${verification.failures} secrets do not open with the new key after the rotation; see ${reportFiles.markdown}, run \`master-key verify\`, and restore from ${backup.path} if needed.`);
        }
        return { action: 'rotated' as const, plan: g.plan, report, reportFiles };
      } catch (e) {
        if (!committed) {
          if (commitSent && !(await provenNotCommitted(ctx, g.oldKey))) {
            // The COMMIT may have been applied (e.g. its reply was lost): keep the new key on disk.
            throw new MasterKeyError(
              'ROTATION_INTERRUPTED',
              `The connection to the database was lost during the COMMIT, so the database may already use ${newKey.fingerprint}; the new key is kept in ${ctx.pendingPath}: run \`master-key recover\` (once the database is reachable) to finish or undo the rotation.`,
              { pendingFile: ctx.pendingPath, newFingerprint: newKey.fingerprint },
              { cause: e },
            );
          }
          // Nothing changed in the database: the pending key is not needed.
          removePending(ctx.pendingPath);
        }
        throw e;
      }
    },
    { applicationName: `master-key apply ${startedAt.toISOString()}` },
  ).catch((e: unknown) => {
    throw translatePgError(e, 'rotating the master key', ctx.databaseUrl);
  });
}

/**
 * After a failure during COMMIT: true only when a fresh connection shows the
 * canary still under the old key. Reading it FOR UPDATE waits until the
 * interrupted transaction has really ended (committed or rolled back).
 */
async function provenNotCommitted(ctx: Context, oldKey: MasterKey): Promise<boolean> {
  try {
    return await withClient(ctx.databaseUrl, async (c) => {
      await c.query("SET lock_timeout = '30s'");
      return canaryOpensWith(await requireCanary(c, true), oldKey);
    });
  } catch {
    return false;
  }
}

/** Blocks writers to the inventory's tables for the transaction (readers go on). */
async function lockInventoryTables(c: Client, ctx: Context): Promise<void> {
  const tables = [...new Set(ctx.inventory.entries.map((e) => e.table))].map(quoteIdent);
  if (tables.length) await c.query(`LOCK TABLE ${tables.join(', ')} IN SHARE ROW EXCLUSIVE MODE`);
}

async function verifyAfterRotation(ctx: Context, c: Client, newKey: MasterKey, oldKey: MasterKey): Promise<RotationReport['verification']> {
  ctx.progress.start('verifying with the new key');
  let withNew: ScanResult;
  let withOld: ScanResult;
  try {
    withNew = await withTransaction(c, () => scanInventory(c, ctx.inventory, new Keyring([newKey]), { onProgress: (d) => ctx.progress.tick(d), batchSize: ctx.batchSize }), 'read only');
    withOld = await withTransaction(c, () => scanInventory(c, ctx.inventory, new Keyring([oldKey]), { batchSize: ctx.batchSize }), 'read only');
  } finally {
    ctx.progress.stop();
  }
  return { ok: withNew.failureCount === 0, checked: withNew.total, failures: withNew.failureCount, openWithOldKey: withOld.total - withOld.failureCount };
}

/** Opens every secret with the configured key (`master-key verify`). */
export async function runVerify(ctx: Context): Promise<{ fingerprint: string; scan: ScanResult }> {
  const { key } = readConfiguredKey(ctx);
  return withClient(ctx.databaseUrl, async (c) => {
    try {
      const canary = await requireCanary(c);
      assertKeyOpensCanary(canary, key, `the key in ${ctx.targets[0].path}`);
      ctx.progress.start('verifying');
      try {
        const scan = await withTransaction(c, () => scanInventory(c, ctx.inventory, new Keyring([key]), { onProgress: (d) => ctx.progress.tick(d), batchSize: ctx.batchSize }), 'read only');
        return { fingerprint: key.fingerprint, scan };
      } finally {
        ctx.progress.stop();
      }
    } catch (e) {
      throw translatePgError(e, 'verifying secrets', ctx.databaseUrl);
    }
  });
}
