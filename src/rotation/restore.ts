/**
 * `master-key restore`: puts a backup back without stranding a secret.
 * Under the rotation lock, after checking every checksum, that the backup is
 * of this database and that its config copies hold its key, it compares the
 * live values with the backup's in one transaction (`reconcile.ts` says
 * what happens to each), puts the canary and the config files back, and
 * proves that every stored value opens with the key now in the config.
 *
 * `master-key restore --drill` restores the backup into a scratch copy
 * instead (`Store.drill`), opens every value there with the backup's key,
 * and leaves the live database and the config files untouched.
 */
import { readFileSync } from 'node:fs';
import { ConfigTarget, readConfigKey } from '../config/config-file';
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { MasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { withStore } from '../store/open';
import { BackupSource, CanaryRow, SecretFailure, inventoryLocations, sameDatabase } from '../store/store';
import { readIdentityFile } from './age';
import { BackupManifest, closeBackupFiles, openBackupFiles, readBackup, toRestore } from './backup';
import { assertKeyOpensCanary, canaryOpensWith, requireCanary } from './canary';
import { Context, withProgress } from './context';
import { count } from '../format';
import { assertNoPending } from './keys';
import { ReconcileTally, Reconciler } from './reconcile';
import { Verification } from './report';
import { verifyAfterCommit } from './verify';

/** What `master-key restore` did. */
export interface RestoreResult {
  readonly action: 'restored';
  readonly backup: string;
  /** The backup's key, now in the config files and sealing every stored value. */
  readonly fingerprint: string;
  readonly generation: number;
  /** Stored values (a JSON document counts once): the backup's, and what happened to each live one. */
  readonly values: ReconcileTally & { readonly inBackup: number };
  /** The key the live config held: used to open values written after the backup only when it opened the database's canary. */
  readonly liveKey: { readonly fingerprint?: string; readonly used: boolean; readonly note: string };
  readonly configs: readonly string[];
  readonly verification: Verification;
}

/** What `master-key restore --drill` found. */
export interface DrillResult {
  readonly action: 'drill';
  readonly backup: string;
  readonly fingerprint: string;
  readonly generation: number;
  /** Stored values restored into the scratch copy (a JSON document counts once). */
  readonly values: number;
  /** Sealed values opened there with the backup's key, by kind. */
  readonly byKind: Readonly<Record<string, number>>;
  readonly verification: Verification;
  /** Values that do not open (at most 1,000 listed; never a value). */
  readonly failures: readonly SecretFailure[];
}

/** The backup's key: every config copy holds the backed-up key, and it opens the backed-up canary. */
export async function backupKey(path: string, manifest: BackupManifest, files: BackupSource): Promise<MasterKey> {
  let key: MasterKey | undefined;
  for (const cf of manifest.configs) {
    const k = readConfigKey({ path: await files.path(cf.file), format: cf.format, entry: cf.entry } as ConfigTarget);
    if (k.fingerprint !== manifest.canary.fingerprint) {
      throw new MasterKeyError('BACKUP_CORRUPT', `The backup's copy of ${cf.path} holds ${k.fingerprint}, not the backed-up key ${manifest.canary.fingerprint}; this backup cannot be restored safely.`);
    }
    key = k;
  }
  if (!key || !canaryOpensWith(manifest.canary, key)) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup ${path} holds no config copy whose key opens its canary (${manifest.canary.fingerprint}); it cannot be restored safely.`);
  }
  return key;
}

/** The backup must cover exactly the inventory's locations: a location it lacks would keep values under a key restore takes away. */
function assertSameLocations(ctx: Context, manifest: BackupManifest, path: string): void {
  const name = (l: { table: string; column: string }) => `${l.table}.${l.column}`;
  const inv = inventoryLocations(ctx.inventory).map(name).sort();
  const saved = manifest.locations.map(name).sort();
  if (inv.join('\n') !== saved.join('\n')) {
    const missing = inv.filter((x) => !saved.includes(x));
    const extra = saved.filter((x) => !inv.includes(x));
    throw new MasterKeyError(
      'USAGE',
      `The backup ${path} covers other columns than the inventory ${ctx.inventory.name}${missing.length ? ` (not in the backup: ${missing.join(', ')})` : ''}${extra.length ? ` (not in the inventory: ${extra.join(', ')})` : ''}; pass the --inventory the rotation used.`,
    );
  }
}

/** The key in the live config, usable only when it opens the live canary (then it is the database's key). */
function liveKeyOf(ctx: Context, canary: CanaryRow): { key?: MasterKey; info: RestoreResult['liveKey'] } {
  const primary = ctx.targets[0].path;
  let key: MasterKey;
  try {
    key = readConfigKey(ctx.targets[0]);
  } catch (e) {
    return { info: { used: false, note: `the key in ${primary} could not be read (${(e as Error).message})` } };
  }
  if (!canaryOpensWith(canary, key)) {
    return { info: { fingerprint: key.fingerprint, used: false, note: `the key in ${primary} (${key.fingerprint}) does not open the database's canary (${canary.fingerprint}), so it was not used` } };
  }
  return { key, info: { fingerprint: key.fingerprint, used: true, note: `the key in ${primary} (${key.fingerprint}) opens the database's canary` } };
}

function place(f: SecretFailure): string {
  return `${f.table}.${f.column}${f.path ? `#${f.path}` : ''} id=${f.id} (${f.kind}, ${f.code})`;
}

/** How a backup is opened: the identity file for a sealed one. */
export interface OpenBackupOptions {
  /** An age identity file (0600) holding the identity of one of the backup's recipients. */
  readonly identityFile?: string;
}

/**
 * Reads and checks a backup (every checksum; for a sealed one the identity,
 * every header, and the config copies opened), then runs fn with its files
 * and key; what was decrypted to disk is removed afterwards, whatever happens.
 */
async function withBackup<T>(backupPath: string, opts: OpenBackupOptions, fn: (manifest: BackupManifest, files: BackupSource, key: MasterKey) => Promise<T>): Promise<T> {
  const manifest = readBackup(backupPath);
  const ids = manifest.sealed && opts.identityFile ? await readIdentityFile(opts.identityFile) : undefined;
  const files = openBackupFiles(backupPath, manifest, ids);
  try {
    return await fn(manifest, files, await backupKey(backupPath, manifest, files));
  } finally {
    closeBackupFiles(files);
  }
}

/** `master-key restore --backup <dir>`. */
export function runRestore(ctx: Context, backupPath: string, opts: OpenBackupOptions = {}): Promise<RestoreResult> {
  return withBackup(backupPath, opts, (manifest, files, key) => restoreBackup(ctx, backupPath, manifest, files, key));
}

async function restoreBackup(ctx: Context, backupPath: string, manifest: BackupManifest, files: BackupSource, key: MasterKey): Promise<RestoreResult> {
  assertSameLocations(ctx, manifest, backupPath);
  const session = { lockTimeoutMs: ctx.lockTimeoutMs, label: `master-key restore ${ctx.now().toISOString()}`, doing: 'restoring the backup' };
  return withStore(ctx.databaseUrl, session, async (store) => {
    await store.assertWritable();
    await store.lockRotation();
    assertNoPending(ctx);
    const id = await store.identity();
    if (!sameDatabase(id, manifest.database)) {
      throw new MasterKeyError('KEY_NOT_FOR_DATABASE', `The backup ${backupPath} is of database "${manifest.database.name}", not this one ("${id.name}"); point the database URL at the right database.`);
    }
    const live = liveKeyOf(ctx, requireCanary(await store.readCanary()));
    const rec = new Reconciler(ctx.inventory, live.key ? [live.key] : [], key);
    const counts = await store.write(async (tx) => {
      const canary = requireCanary(await tx.canaryForUpdate());
      if (live.key && !canaryOpensWith(canary, live.key)) throw new MasterKeyError('PLAN_STALE', 'The database key changed while the restore was being prepared; nothing was changed: run the command again.');
      await tx.lockSecretTables(ctx.inventory);
      const c = await withProgress(ctx.progress, 'comparing live values with the backup', undefined, () =>
        tx.restore({ backup: toRestore(backupPath, manifest, files), inventory: ctx.inventory, decide: rec.decide, batchSize: ctx.batchSize }),
      );
      if (rec.refusedCount > 0) {
        const first = rec.refused.slice(0, 5).map(place);
        throw new MasterKeyError(
          'UNDECRYPTABLE_ROWS',
          `${rec.refusedCount} stored value(s) open with no key on disk (${live.info.used ? `the live key ${live.info.fingerprint}` : live.info.note}, nor the backup's key ${key.fingerprint}) and the backup holds no usable value for them (${first.join('; ')}${rec.refusedCount > first.length ? '; …' : ''}); restoring would strand them, so nothing was changed: put the database's current key into ${ctx.targets[0].path} (see \`master-key recover\`), or remove those values, then restore again.`,
          { failures: rec.refused },
        );
      }
      const c0 = manifest.canary;
      await tx.replaceCanary({ fingerprint: c0.fingerprint, generation: c0.generation, sealed: c0.sealed, keyCreatedAt: new Date(c0.keyCreatedAt), updatedAt: ctx.now() });
      return c;
    });
    const configs: string[] = [];
    for (const cf of manifest.configs) {
      atomicWriteFile(cf.path, readFileSync(await files.path(cf.file)), { mode: cf.mode, uid: cf.uid, gid: cf.gid, errorCode: 'CONFIG_UNWRITABLE' });
      configs.push(cf.path);
    }
    const restored = manifest.configs[0];
    const nowKey = readConfigKey({ path: restored.path, format: restored.format, entry: restored.entry } as ConfigTarget);
    assertKeyOpensCanary(requireCanary(await store.readCanary()), nowKey, `the restored key in ${restored.path}`);
    const verification = await verifyAfterCommit(ctx, store, nowKey);
    const t = rec.tally;
    ctx.log(
      [
        `Restored ${backupPath}: the canary (${c0Text(manifest)}) and ${configs.length} config file(s).`,
        `Stored values: ${count(t.unchanged)} as backed up; ${count(t.changed)} changed and ${count(t.added)} added since the backup, re-sealed under ${key.fingerprint} and kept; ` +
          `${count(t.putBack)} that no key on disk opened, put back from the backup; ${count(t.removed)} removed since, left removed.`,
        `Live key: ${live.info.note}${live.info.used ? '; used to open values written since the backup' : ''}.`,
        `Verification: ${verification.proved}`,
        'Restart the server.',
      ].join('\n'),
    );
    return {
      action: 'restored' as const,
      backup: backupPath,
      fingerprint: key.fingerprint,
      generation: manifest.canary.generation,
      values: { inBackup: counts.backupValues, ...t },
      liveKey: live.info,
      configs,
      verification,
    };
  });
}

function c0Text(m: BackupManifest): string {
  return `${m.canary.fingerprint}, generation ${m.canary.generation}`;
}

/** `master-key restore --drill --backup <dir>`: restore into a scratch copy, open every value with the backup's key; nothing live changes. */
export function runDrill(ctx: Context, backupPath: string, opts: OpenBackupOptions = {}): Promise<DrillResult> {
  return withBackup(backupPath, opts, (manifest, files, key) => drillBackup(ctx, backupPath, manifest, files, key));
}

async function drillBackup(ctx: Context, backupPath: string, manifest: BackupManifest, files: BackupSource, key: MasterKey): Promise<DrillResult> {
  assertSameLocations(ctx, manifest, backupPath);
  const session = { lockTimeoutMs: ctx.lockTimeoutMs, label: `master-key restore --drill ${ctx.now().toISOString()}`, doing: 'restoring the backup into a scratch copy' };
  const r = await withStore(ctx.databaseUrl, session, (store) =>
    store.drill({ backup: toRestore(backupPath, manifest, files), inventory: ctx.inventory, batchSize: ctx.batchSize }, async (tx, copy) => {
      const scan = await withProgress(ctx.progress, 'opening every restored value', undefined, (tick) => tx.scan(copy.inventory, new Keyring([key]), { onProgress: tick, batchSize: ctx.batchSize }));
      return { values: copy.values, scan, failures: scan.failures.map((f) => ({ ...f, table: copy.liveTable(f.table) })) };
    }),
  );
  const ok = r.scan.failureCount === 0;
  const proved = ok
    ? `The backup restores: its ${count(r.values)} stored values were put into a scratch copy and all ${count(r.scan.total)} sealed values in them open with its key ${key.fingerprint}, which its config copies hold and which opens its canary; the live database and config files were not touched.`
    : `${count(r.scan.failureCount)} of the ${count(r.scan.total)} sealed values restored into a scratch copy do not open with the backup's key ${key.fingerprint}; the live database and config files were not touched.`;
  ctx.log(`Drill of ${backupPath} (${c0Text(manifest)}): ${proved}`);
  return {
    action: 'drill',
    backup: backupPath,
    fingerprint: key.fingerprint,
    generation: manifest.canary.generation,
    values: r.values,
    byKind: r.scan.byKind,
    verification: { ok, checked: r.scan.total, failures: r.scan.failureCount, proved },
    failures: r.failures,
  };
}
