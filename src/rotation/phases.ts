/**
 * `master-key apply`: the runbook, phase by phase (`APPLY`), run by the
 * runner (`runner.ts`), which reaches each phase's fault points, times it
 * for the report, and on failure asks the phases with an `undo`, latest
 * first, to secure what they did.
 *
 * At every instant some key on disk (config or pending file) opens every
 * secret; `recover` finishes or undoes a rotation interrupted at any point,
 * reusing the phases it shares with apply (config files, start hooks,
 * verification).
 */
import { randomUUID } from 'node:crypto';
import { writeConfigKey } from '../config/config-file';
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { MasterKeyError, isMasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { withStore } from '../store/open';
import { BackupPart, CanaryRow, ReencryptResult, Staged, Store } from '../store/store';
import { BackupDirectory, BackupResult, NewBackup, backUpConfigs, createBackupDir, removeBackup, writeManifest } from './backup';
import { checkRecipients, recipientLabel } from './age';
import { RetireResult, actor, heldBackups, retireBackups } from './custody';
import { Retention, retentionText } from './retention';
import { canaryFor, canaryOpensWith, requireCanary } from './canary';
import { Context, NewKeySource, withProgress } from './context';
import { Declared } from './decide';
import { HookRun, runHook, startServer } from './hooks';
import { assertNoPending, obtainNewKey, writeKeyInto } from './keys';
import { removePending, writePending } from './pending';
import { RotationPlan } from './plan';
import { Gathered, gather, refuseBadDocuments, refuseUnlessReady, undecryptableRows } from './preflight';
import { KeyCustody, RotationReport, REPORT_FORMAT, SealAheadOutcome, timingSummary, writeReport } from './report';
import { dropStagingBesideQuietly, dropStagingQuietly, removeLeftoverStaging } from './seal-ahead';
import { aesGcmEngineDescription } from '../crypto/gcm-batch';
import { Phase, Runner, Runtime } from './runner';
import { scanWith, verifyRotation } from './verify';
import { bytes, count } from '../format';

const SEAL_AHEAD = 'seal-ahead (server up)';
const STOP_HOOK = 'stop hook';
const START_HOOKS = 'start hooks';
const TRANSACTION = 'transaction: back up and re-encrypt';
/** The timing rows from the stop hook to the start hooks: while they run, the server is down. */
const SERVER_DOWN = [STOP_HOOK, TRANSACTION, 'config files', START_HOOKS];

/**
 * What apply does, in order. The backup is taken inside the one write
 * transaction, after the secret tables are locked against writers, so it
 * holds exactly the values the transaction re-encrypts; the values are
 * opened there too (a value that does not open rolls everything back).
 */
export const APPLY: readonly Phase<ApplyState>[] = [
  { name: 'lock the database for this rotation', timing: 'preflight', done: 'locked', run: lock },
  { name: 'preflight: what plan checks (counting the secrets, opening only those in JSON documents), or set out-of-step nodes and stop', timing: 'preflight', done: 'preflight-done', run: preflight },
  { name: 'write the new key to the pending file (0600)', timing: 'pending key', done: 'pending-written', run: writePendingKey, undo: discardPendingKey },
  {
    name: 'seal ahead while the server runs: every secret opened with the old key and sealed under the new one into a staging area (no live row changes)',
    timing: SEAL_AHEAD,
    starts: 'seal-ahead-started',
    done: 'sealed-ahead',
    run: sealAhead,
    undo: dropStaging,
  },
  { name: 'stop the server', timing: STOP_HOOK, done: 'stop-hook-done', run: stopServer, undo: restartIfNothingChanged },
  {
    name: 'one transaction: lock the secret tables, rotate (back up and re-encrypt in one call), replace the canary, add history',
    timing: TRANSACTION,
    done: 'committed',
    run: rotateInOneTransaction,
    undo: settleTransaction,
  },
  { name: 'write the new key into every config file, drop the pending file', timing: 'config files', done: 'pending-removed', run: writeConfigFiles },
  { name: 'start the server and check its health', timing: START_HOOKS, done: 'start-hook-done', run: startServerPhase },
  { name: 'remove the staging area of seal-ahead', timing: SEAL_AHEAD, done: 'staging-removed', run: removeStaging },
  { name: 'verify: the database stores exactly what was written, and a random sample opens with the new key', timing: 'verify', done: 'verified', run: verify },
  { name: 'retire the backups beyond the declared retention (only once the rotation is verified)', run: retireAfterVerified },
  { name: 'record the outcome, write the report', done: 'report-written', run: report },
  { name: 'fail unless verified', run: failUnlessVerified },
];

export interface ApplyOptions extends Declared {
  readonly newKey: NewKeySource;
  /** Also write the new key to this file (0600), as Octopus does. */
  readonly newKeyOut?: string;
  /** A plan saved by `plan --out`: refuse when the facts changed since. */
  readonly savedPlan?: RotationPlan;
  /** Retire the backups beyond this after a verified rotation (provider `backup_retention`); never before verification. */
  readonly retention?: Retention;
}

export type ApplyResult =
  | { readonly action: 'none'; readonly plan: RotationPlan }
  | { readonly action: 'rotated'; readonly plan: RotationPlan; readonly report: RotationReport; readonly reportFiles: { markdown: string; json: string } };

/** What the phases of one apply share; each fills in what it found or did. */
export interface ApplyState {
  readonly ctx: Context;
  readonly opts: ApplyOptions;
  readonly store: Store;
  readonly rotationId: string;
  readonly startedAt: Date;
  /** Known from preflight on. */
  rotation?: Gathered & { readonly newKey: MasterKey };
  pendingKeyWritten: boolean;
  /** The stop hook ran (the server is down). */
  stopped: boolean;
  /** The backup directory, from the moment it exists. */
  backupDir?: NewBackup;
  /** Its sink, when seal-ahead had the store write the bulk of the backup (the transaction adds the rest to it). */
  backupSink?: BackupDirectory;
  backup?: BackupResult;
  /** How long the backup took (its store part alongside the re-encryption), until every file of it was on disk. */
  backupMs?: number;
  readonly hooks: HookRun[];
  /** 'sent' from the moment COMMIT may reach the database: a lost connection leaves the outcome unknown. */
  commit: 'none' | 'sent' | 'done';
  /** The staging area seal-ahead made (bound to the new key), until it is removed. */
  staged?: Staged;
  /** Its removal beside verification, which waits for it: false when it could not be done beside (then verification removes it when done). */
  stagingRemoval?: Promise<boolean>;
  /** What seal-ahead did, for the report (also when it fell back to one pass). */
  sealAhead?: SealAheadOutcome;
  reencrypted?: ReencryptResult;
  verification?: RotationReport['verification'];
  /** What the retention retired after verification. */
  retired?: RetireResult;
  result?: ApplyResult;
}

/** `master-key apply`. */
export async function runApply(ctx: Context, opts: ApplyOptions): Promise<ApplyResult> {
  const startedAt = ctx.now();
  const runner = new Runner(ctx);
  const session = { lockTimeoutMs: ctx.lockTimeoutMs, label: `master-key apply ${startedAt.toISOString()}`, doing: 'rotating the master key' };
  return withStore(ctx.databaseUrl, session, async (store) => {
    const s: ApplyState = { ctx, opts, store, rotationId: randomUUID(), startedAt, pendingKeyWritten: false, stopped: false, hooks: [], commit: 'none' };
    await runner.run(APPLY, s);
    return s.result!;
  });
}

/** The rotation preflight decided on (an INTERNAL error if a phase runs before it). */
function rotation(s: ApplyState): NonNullable<ApplyState['rotation']> {
  if (!s.rotation) throw new MasterKeyError('INTERNAL', 'A rotation phase ran before preflight; this is a bug.');
  return s.rotation;
}

async function lock(s: ApplyState): Promise<void> {
  await s.store.assertWritable();
  await s.store.lockRotation();
}

async function preflight(s: ApplyState): Promise<void | 'stop'> {
  const { ctx, opts } = s;
  assertNoPending(ctx);
  const removed = await removeLeftoverStaging(s.store, { holdsLock: true });
  if (removed) ctx.log(removed);
  const newKey = obtainNewKey(opts.newKey);
  const g = await gather(ctx, s.store, opts, { newKey, open: false });
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
    s.result = { action: 'none', plan: g.plan };
    return 'stop';
  }
  refuseUnlessReady(g, newKey);
  // Every recipient the library accepts, before anything changes (the shapes were checked when the options were read).
  await checkRecipients(ctx.backupRecipients ?? [], (i) => `Backup recipient ${i + 1} (${recipientLabel(ctx.backupRecipients![i])})`);
  await refuseBadDocuments(ctx, s.store, g.oldKey);
  s.rotation = { ...g, newKey };
}

function writePendingKey(s: ApplyState): void {
  const { ctx } = s;
  const { oldKey, newKey, decision, facts } = rotation(s);
  ctx.log(`Rotating ${oldKey.fingerprint} -> ${newKey.fingerprint} (generation ${decision.fromGeneration} -> ${decision.toGeneration}): ${decision.reason}.`);
  writePending(
    ctx.pendingPath,
    {
      format: 'cdktf-master-key/pending/v1',
      rotationId: s.rotationId,
      startedAt: s.startedAt.toISOString(),
      database: facts.databaseIdentity,
      oldFingerprint: oldKey.fingerprint,
      newFingerprint: newKey.fingerprint,
      fromGeneration: decision.fromGeneration,
      toGeneration: decision.toGeneration,
      reason: decision.reason,
      targets: ctx.targets,
      backupDir: ctx.backupDir,
    },
    newKey,
  );
  s.pendingKeyWritten = true;
}

/** Nothing changed in the database (or that was proven): the pending key is not needed. */
function discardPendingKey(s: ApplyState, e: unknown): unknown {
  if (s.pendingKeyWritten && s.commit === 'none') removePending(s.ctx.pendingPath);
  return e;
}

function stopServer(s: ApplyState): void {
  if (!s.ctx.hooks.stop) return;
  s.stopped = true;
  s.hooks.push({ which: 'stop', command: s.ctx.hooks.stop, ms: runHook('stop', s.ctx.hooks.stop, s.ctx.log) });
}

/** The transaction rolled back (or never began): the server was stopped for nothing, so start it again when apply knows how. */
function restartIfNothingChanged(s: ApplyState, e: unknown): unknown {
  if (!s.stopped || s.commit !== 'none' || !s.ctx.hooks.start) return e;
  s.ctx.log('Nothing was changed; starting the server again.');
  try {
    const ran = startServer(s.ctx.hooks, s.ctx.log);
    s.hooks.push(...ran);
    s.ctx.log('The server was started again; the database and the config files are as they were.');
    // What apply reports (--json, the provider's diagnostic): nothing changed, and the server runs again.
    return isMasterKeyError(e) ? withDetails(e, { nothingChanged: true, serverStartedAgain: ran.map((h) => ({ which: h.which, ms: h.ms })) }) : e;
  } catch (started) {
    s.ctx.log(`${(started as Error).message} Start the server yourself.`);
  }
  return e;
}

/** The same error with more details. */
function withDetails(e: MasterKeyError, details: Record<string, unknown>): MasterKeyError {
  return new MasterKeyError(e.code, e.message, { ...e.details, ...details }, { cause: e.cause });
}

/**
 * Seal-ahead, when the plan says so: the pending key is on disk already,
 * so everything sealed under it can be recovered. A value that does not
 * open refuses here, before the stop hook; a staging area without room
 * falls back to one pass, saying so.
 */
async function sealAhead(s: ApplyState, rt: Runtime): Promise<void> {
  const { ctx } = s;
  const { oldKey, newKey, counts, facts } = rotation(s);
  const plan = facts.sealAhead;
  if (!plan) return;
  if (!plan.run) {
    s.sealAhead = { ran: false, reason: plan.reason, ms: 0 };
    ctx.log(`Seal-ahead: no; ${plan.reason}.`);
    return;
  }
  ctx.log(`Sealing ahead while the server runs: ${count(counts.values)} secrets opened with ${oldKey.fingerprint} and sealed under ${newKey.fingerprint} into a staging area (about ${bytes(plan.stagingBytes)}) ...`);
  const started = Date.now();
  try {
    s.staged = await withProgress(ctx.progress, 'sealing ahead', counts.values, (tick) =>
      s.store.sealAhead({
        inventory: ctx.inventory,
        from: new Keyring([oldKey]),
        to: newKey,
        rotationId: s.rotationId,
        batchSize: ctx.batchSize,
        backup: async () => (s.backupSink = openBackupDir(s, rt, rotation(s).canary)),
        onBackup: (step) => rt.reached(step === 'copied' ? 'backup-ahead-copied' : 'backup-ahead-written'),
        onProgress: (done) => {
          tick(done);
          rt.reached('seal-ahead-batch');
        },
      }),
    );
  } catch (e) {
    // What the store wrote of the backup is of no use now (a fallback to one pass makes a whole backup in the transaction).
    dropEarlyBackup(s);
    // A full backup disk is no reason to rotate in one pass: that pass would need the same room, with the server stopped.
    if (isMasterKeyError(e, 'DISK_FULL') && e.details.backupPath === undefined) {
      const reason = `no room for the staging area (${e.message.replace(/\.$/, '')}), so one pass with the server stopped`;
      s.sealAhead = { ran: false, reason, ms: Date.now() - started };
      ctx.log(`Seal-ahead: falling back: ${reason}.`);
      return;
    }
    if (isMasterKeyError(e, 'UNDECRYPTABLE_ROWS')) throw await everyUndecryptable(s, oldKey, e);
    throw e;
  }
  const st = s.staged;
  if (st.backedUp) ctx.log(`Backed up ahead: ${count(st.backedUp.values)} stored values as they were staged, in ${s.backupDir!.path}; the transaction adds only what changes since.`);
  s.sealAhead = { ran: true, reason: plan.reason, ms: Date.now() - started, stagedValues: st.values, stagedRows: st.rows, stagingBytes: st.bytes };
  ctx.log(`Sealed ahead: ${count(st.values)} secrets in ${count(st.rows)} rows staged under ${st.fingerprint} (${bytes(st.bytes)}), in ${count(Date.now() - started)} ms; the server kept running.`);
}

/** The staging area is never needed once the rotation committed or failed: removed (a failure to remove is said, and left to the next run). */
async function dropStaging(s: ApplyState, e: unknown): Promise<unknown> {
  if (s.staged) await dropStagingQuietly(s.store, s.ctx.log);
  s.staged = undefined;
  dropEarlyBackup(s);
  return e;
}

/** A backup begun by seal-ahead whose rotation did not commit: it saved nothing that changed, so it is removed. */
function dropEarlyBackup(s: ApplyState): void {
  if (!s.backupSink || s.commit !== 'none' || !s.backupDir) return;
  removeBackup(s.backupDir);
  s.backupDir = undefined;
  s.backupSink = undefined;
}

/**
 * Starts removing the staging area beside verification, next, which waits
 * for it (on PostgreSQL a large staging table takes a moment to drop, on a
 * connection of its own; with none to be had, it is dropped once
 * verification is done with the session's).
 */
async function removeStaging(s: ApplyState): Promise<void> {
  if (!s.staged) return;
  s.stagingRemoval = dropStagingBesideQuietly(s.store, s.ctx.log);
  s.staged = undefined;
}

async function rotateInOneTransaction(s: ApplyState, rt: Runtime): Promise<void> {
  const { ctx } = s;
  const { oldKey, newKey, decision, canary: planned, counts } = rotation(s);
  ctx.log(
    s.staged
      ? `Backing up and swapping in the staged secrets of ${count(counts.rows)} rows in one transaction (re-sealing only what changed since seal-ahead) ...`
      : `Backing up and re-encrypting the secrets of ${count(counts.rows)} rows in one transaction ...`,
  );
  let re: ReencryptResult;
  try {
    re = await s.store.write(async (tx) => {
      rt.reached('transaction-begun');
      const canary = requireCanary(await tx.canaryForUpdate());
      if (canary.fingerprint !== planned.fingerprint || canary.generation !== planned.generation) {
        throw new MasterKeyError('PLAN_STALE', 'The database key changed while this rotation was being prepared; nothing was changed: run the command again.');
      }
      await tx.lockSecretTables(ctx.inventory);
      const backup = await startBackup(s, rt, canary);
      // One call: the store backs up exactly the values it re-encrypts, as the locked tables hold them, durable before it returns.
      const rotated = await withProgress(ctx.progress, 're-encrypting', undefined, (tick) =>
        tx.rotate({
          inventory: ctx.inventory,
          from: new Keyring([oldKey]),
          to: newKey,
          backup: backup.dir,
          batchSize: ctx.batchSize,
          ...(s.staged ? { staged: s.staged } : {}),
          onProgress: (done) => {
            tick(done);
            rt.reached('reencrypt-batch');
          },
        }),
      );
      rt.reached('reencrypted');
      if (rotated.sealAhead && s.sealAhead?.ran) {
        s.sealAhead = { ...s.sealAhead, used: rotated.sealAhead.used, swappedRows: rotated.sealAhead.swappedRows, resealedRows: rotated.sealAhead.resealedRows };
        if (!rotated.sealAhead.used) ctx.log('Seal-ahead: the staging area was no longer intact (the database restarted?), so every secret was re-sealed in the transaction.');
      }
      completeBackup(s, rt, backup, rotated.backup, canary);
      const r = rotated.reencrypted;
      const committedAt = ctx.now();
      await tx.replaceCanary(canaryFor(newKey, decision.toGeneration, committedAt));
      await tx.insertHistory({
        rotationId: s.rotationId,
        startedAt: s.startedAt,
        committedAt,
        fromGeneration: decision.fromGeneration,
        toGeneration: decision.toGeneration,
        oldFingerprint: oldKey.fingerprint,
        newFingerprint: newKey.fingerprint,
        reason: decision.reason,
        processed: r.total,
        updated: r.total,
        unchangedDueToErrors: 0,
        byKind: r.byKind,
        backupPath: s.backup?.path,
        backupSha256: s.backup?.manifestSha256,
        actor: actor(),
        outcome: 'committed',
      });
      rt.reached('canary-updated');
      s.commit = 'sent';
      return r;
    });
  } catch (e) {
    // Rolled back at a value that does not open: list every such value, as plan does.
    if (isMasterKeyError(e, 'UNDECRYPTABLE_ROWS') && s.commit === 'none') throw await everyUndecryptable(s, oldKey, e);
    throw e;
  }
  s.commit = 'done';
  s.reencrypted = re;
  ctx.log(`Committed: ${count(re.total)} secrets (${count(re.updated)} rows) now sealed under ${newKey.fingerprint}.`);
}

/** A backup being written: its directory (the store's sink), the config copies already in it, and when it began. */
interface BackupInProgress {
  readonly dir: BackupDirectory;
  readonly configs: Awaited<ReturnType<typeof backUpConfigs>>;
  readonly startedAt: number;
}

/**
 * The backup's start, inside the transaction after the secret tables are
 * locked: its directory, and the config files copied into it (they still
 * hold the old key). The store writes its part during `rotate`.
 */
async function startBackup(s: ApplyState, rt: Runtime, canary: CanaryRow): Promise<BackupInProgress> {
  const { ctx } = s;
  const startedAt = Date.now();
  rt.reached('backup-started');
  const dir = s.backupSink ?? openBackupDir(s, rt, canary);
  ctx.log(`Backing up ${s.backupSink ? 'the values changed since seal-ahead' : 'the stored values'} and ${ctx.targets.length} config file(s) into ${dir.path} ...`);
  return { dir, configs: await backUpConfigs(dir, ctx.targets), startedAt };
}

/** The rotation's backup directory, new, as the store's sink (sealing to the recipients, if any). */
function openBackupDir(s: ApplyState, rt: Runtime, canary: Pick<CanaryRow, 'generation' | 'fingerprint'>): BackupDirectory {
  const { ctx } = s;
  s.backupDir = createBackupDir(ctx.backupDir, s.startedAt, canary);
  const recipients = ctx.backupRecipients ?? [];
  ctx.log(recipients.length ? `Sealing the backup to ${recipients.length} age recipient(s): ${recipients.map(recipientLabel).join(', ')}.` : 'The backup is not sealed (no backup recipients): its config copies hold the old key in cleartext.');
  return new BackupDirectory(s.backupDir.path, recipients, () => rt.reached('backup-sealing'));
}

/** The backup's end, before the COMMIT: the manifest, once every file is on disk (fsynced). */
function completeBackup(s: ApplyState, rt: Runtime, b: BackupInProgress, part: BackupPart, canary: CanaryRow): void {
  const args = { rotationId: s.rotationId, now: s.startedAt, database: rotation(s).facts.databaseIdentity, canary };
  s.backup = writeManifest(s.backupDir!, args, part, b.configs, b.dir.sealing);
  s.backupMs = (b.dir.doneAt ?? Date.now()) - b.startedAt;
  rt.reached('backup-written');
  s.ctx.log(`Backup: ${s.backup.path} (${count(s.backup.values)} stored values; manifest sha256 ${s.backup.manifestSha256}).`);
}

/** After a rollback at an undecryptable value: the same refusal plan gives, listing every such value (one read-only scan with the old key). */
async function everyUndecryptable(s: ApplyState, oldKey: MasterKey, first: MasterKeyError): Promise<MasterKeyError> {
  try {
    const scan = await scanWith(s.ctx, s.store, oldKey, 'listing the values that do not open');
    return scan.failureCount > 0 ? undecryptableRows(scan, oldKey) : first;
  } catch {
    return first;
  }
}

/** A failed transaction: proves whether it committed; if it did not, its backup saved nothing that changed and is removed. */
async function settleTransaction(s: ApplyState, e: unknown): Promise<unknown> {
  const err = await proveCommitOrKeepKey(s, e);
  if (s.commit === 'none' && s.backupDir) {
    removeBackup(s.backupDir);
    s.backupDir = undefined;
    s.backupSink = undefined;
    s.backup = undefined;
  }
  return err;
}

/**
 * A failure after COMMIT was sent: unless a fresh session proves the canary
 * still under the old key (the COMMIT did not apply), the database may use
 * the new key, which must then stay on disk for `recover`.
 */
async function proveCommitOrKeepKey(s: ApplyState, e: unknown): Promise<unknown> {
  if (s.commit !== 'sent') return e;
  const { oldKey, newKey } = rotation(s);
  if (await provenNotCommitted(s.ctx, oldKey)) {
    s.commit = 'none';
    return e;
  }
  return new MasterKeyError(
    'ROTATION_INTERRUPTED',
    `The connection to the database was lost during the COMMIT, so the database may already use ${newKey.fingerprint}; the new key is kept in ${s.ctx.pendingPath}: run \`master-key recover\` (once the database is reachable) to finish or undo the rotation.`,
    { pendingFile: s.ctx.pendingPath, newFingerprint: newKey.fingerprint },
    { cause: e },
  );
}

/** True only when a fresh session shows the committed canary still opening with the old key. */
async function provenNotCommitted(ctx: Context, oldKey: MasterKey): Promise<boolean> {
  try {
    return await withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'checking whether the COMMIT applied' }, async (store) => canaryOpensWith(requireCanary(await store.readCanary({ waitForWriters: true })), oldKey));
  } catch {
    return false;
  }
}

function writeConfigFiles(s: ApplyState, rt: Runtime): void {
  const { ctx, opts } = s;
  const { oldKey, newKey } = rotation(s);
  writeKeyInto(ctx.targets, newKey, {
    written: (t) => {
      rt.reached('config-written');
      ctx.log(`Updated ${t.path}: ${t.entry}=<${oldKey.fingerprint}…> -> <${newKey.fingerprint}…>`);
    },
    failed: (t, e) =>
      new MasterKeyError(
        'ROTATION_INTERRUPTED',
        `The database now uses ${newKey.fingerprint} but writing ${t.path} failed (${(e as Error).message}); the new key is safe in ${ctx.pendingPath}: fix the file and run \`master-key recover\`.`,
      ),
  });
  if (opts.newKeyOut) {
    atomicWriteFile(opts.newKeyOut, newKey.toHex() + '\n', { mode: 0o600 });
    ctx.log(`New key also written to ${opts.newKeyOut} (0600). Back it up now.`);
  }
  removePending(ctx.pendingPath);
}

function startServerPhase(s: ApplyState): void {
  s.hooks.push(...startServer(s.ctx.hooks, s.ctx.log));
}

async function verify(s: ApplyState): Promise<void> {
  try {
    s.verification = await verifyRotation(s.ctx, s.store, rotation(s).newKey, s.reencrypted!.digest);
  } finally {
    const removal = s.stagingRemoval;
    s.stagingRemoval = undefined;
    if (removal && !(await removal)) await dropStagingQuietly(s.store, s.ctx.log);
  }
}

/** The declared retention, applied only after a verified rotation (a failed one keeps every way back). */
async function retireAfterVerified(s: ApplyState): Promise<void> {
  const { ctx, opts } = s;
  if (!opts.retention) return;
  if (!s.verification?.ok) {
    ctx.log('Backups were not retired: the rotation is not verified.');
    return;
  }
  s.retired = await retireBackups(s.store, requireCanary(await s.store.readCanary()), { backupDir: ctx.backupDir, retention: opts.retention, now: ctx.now(), actor: actor() });
  ctx.log(`Retention (${s.retired.retention}): ${s.retired.retired.length} backup(s) retired, each recorded in the rotation history.`);
}

/** The report's key custody: the new key's places, the backups holding old keys now, what was retired. */
async function custody(s: ApplyState): Promise<KeyCustody> {
  const { ctx, opts } = s;
  const { newKey } = rotation(s);
  const held = heldBackups(ctx.backupDir, ctx.now(), await s.store.identity()).filter((b) => b.fingerprint !== newKey.fingerprint);
  return {
    newKey: { fingerprint: newKey.fingerprint, writtenTo: [...ctx.targets.map((t) => t.path), ...(opts.newKeyOut ? [opts.newKeyOut] : [])] },
    backups: held.map(({ path, fingerprint, generation, createdAt, sealedTo }) => ({ path, fingerprint, generation, createdAt, sealedTo })),
    ...(opts.retention ? { retention: retentionText(opts.retention) } : {}),
    retired: (s.retired?.retired ?? []).map(({ path, fingerprint, generation, createdAt, retiredAt, actor: who }) => ({ path, fingerprint, generation, createdAt, retiredAt, actor: who })),
  };
}

async function report(s: ApplyState, rt: Runtime): Promise<void> {
  const { ctx, opts } = s;
  const { oldKey, newKey, decision, plan } = rotation(s);
  const verification = s.verification!;
  const re = s.reencrypted!;
  const backup = s.backup!;
  const outcome = verification.ok ? 'verified' : 'verify-failed';
  // Seal-ahead's row only when it ran (else it is the moment it took to decide not to).
  const { [SEAL_AHEAD]: sealMs, ...others } = rt.timings;
  const phases = s.sealAhead?.ran ? { ...rt.timings } : others;
  await s.store.setHistoryOutcome(s.rotationId, outcome, ctx.now());
  const report: RotationReport = {
    format: REPORT_FORMAT,
    rotationId: s.rotationId,
    startedAt: s.startedAt.toISOString(),
    finishedAt: ctx.now().toISOString(),
    database: s.store.description,
    aesGcm: aesGcmEngineDescription(),
    reason: decision.reason,
    fromGeneration: decision.fromGeneration,
    toGeneration: decision.toGeneration,
    oldFingerprint: oldKey.fingerprint,
    newFingerprint: newKey.fingerprint,
    processed: re.total,
    updated: re.total,
    unchangedDueToErrors: 0,
    rowsUpdated: re.updated,
    byKind: re.byKind,
    backup: { path: backup.path, manifestSha256: backup.manifestSha256, values: backup.values, bytes: backup.bytes, ms: s.backupMs ?? 0, ...(backup.sealedTo ? { sealedTo: backup.sealedTo } : {}) },
    configs: ctx.targets.map((x) => ({ path: x.path, before: oldKey.fingerprint, after: newKey.fingerprint })),
    newKeyFile: opts.newKeyOut,
    hooks: s.hooks,
    phases,
    timing: { ...timingSummary(phases, SERVER_DOWN), serverUpSealAheadMs: s.sealAhead?.ran ? (sealMs ?? 0) : 0 },
    ...(s.sealAhead ? { sealAhead: s.sealAhead } : {}),
    verification,
    custody: await custody(s),
    outcome,
  };
  s.result = { action: 'rotated', plan, report, reportFiles: writeReport(ctx.reportDir, report) };
}

function failUnlessVerified(s: ApplyState): void {
  if (s.result?.action !== 'rotated' || s.result.report.verification.ok) return;
  const { report, reportFiles } = s.result;
  throw new MasterKeyError(
    'VERIFY_FAILED',
    `The verification after the rotation failed: ${report.verification.proved} See ${reportFiles.markdown}, run \`master-key verify\`, and restore from ${report.backup.path} if needed.`,
  );
}
