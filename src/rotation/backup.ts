/**
 * Backups taken by a rotation, in a directory of their own (0700): the
 * store's copy of every value the rotation rewrites (written through the
 * directory as a `BackupSink`: PostgreSQL streams secrets.jsonl, SQLite
 * hands over its copy of the database file), a copy of each config file,
 * and a manifest listing every file with its SHA-256, with the canary row.
 * Files 0600 (config copies hold the old key). The "backup checksum"
 * quoted in reports is the SHA-256 of manifest.json.
 *
 * With age recipients (`BackupDirectory`'s `recipients`), every file is
 * stored sealed to them as `<name>.age` (`./sealed-backup.ts`): the
 * store's values as they stream, its database copy once handed over, the
 * config copies; the manifest stays in clear, lists the sealed files with
 * the checksums of their sealed bytes and every recipient's public string
 * (`sealed`), and never holds a key. A `SealedBackupSource` opens such a
 * backup again with an identity. No store knows the difference.
 */
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, createReadStream, mkdirSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { FileHandle, open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import manifestSchema from '../../docs/schemas/backup-manifest.schema.json';
import { both } from '../both';
import { ConfigTarget } from '../config/config-file';
import { MasterKeyError } from '../errors';
import { SYNC_EVERY, atomicWriteFile, fsyncDir, namesIn, sha256File } from '../fsutil';
import { firstSchemaError, lazyValidator } from '../json-schema';
import { BackupFileWriter, BackupPart, BackupSink, BackupSource, BackupToRestore, CanaryRow, Location, StoreIdentity, StoredFile, backupFileError } from '../store/store';
import { Identities, SEALED_SUFFIX } from './age';
import { sha256FileOffThread } from './file-checksum';
import { SealedBackupSource, Sealing, SealingFileWriter, sealBytes, sealWholeFile } from './sealed-backup';

export const BACKUP_FORMAT = 'cdktf-master-key/backup/v1';
export const MANIFEST_FILE = 'manifest.json';

export interface BackupFile {
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
}

export interface BackupConfig {
  /** Where the config file lives. */
  readonly path: string;
  /** Its copy inside the backup. */
  readonly file: string;
  readonly format: string;
  readonly entry: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

export interface BackupManifest {
  readonly format: typeof BACKUP_FORMAT;
  readonly rotationId: string;
  readonly createdAt: string;
  readonly database: StoreIdentity;
  readonly fingerprint: string;
  readonly generation: number;
  readonly canary: { readonly keyEntry: string; readonly fingerprint: string; readonly generation: number; readonly sealed: string; readonly keyCreatedAt: string };
  readonly locations: readonly Location[];
  readonly values: number;
  readonly files: readonly BackupFile[];
  readonly configs: readonly BackupConfig[];
  /** Present when every file is sealed to age recipients: file `name` (a config copy's `file`, a store's file) is stored as `name.age`. */
  readonly sealed?: Sealing;
}

export interface BackupResult {
  readonly path: string;
  readonly manifestSha256: string;
  readonly values: number;
  readonly bytes: number;
  /** The recipients every file is sealed to (absent: stored as they are, the config copies holding the old key in cleartext). */
  readonly sealedTo?: readonly string[];
}

/** `20261123T233127Z-gen3-mk_3f9a1c02e4b7`: sortable, names the key by fingerprint only. */
export function backupDirName(now: Date, generation: number, fingerprint: string): string {
  const ts = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${ts}-gen${generation}-${fingerprint.replace(':', '_')}`;
}

/** A backup directory created for one rotation, before anything is in it. */
export interface NewBackup {
  /** The backup directory (0700, empty). */
  readonly path: string;
  /** Directories created for it, outermost first (the backup directory last): what `removeBackup` takes away. */
  readonly created: readonly string[];
}

/**
 * Creates a new, empty backup directory (0700) under `dir`, named after the
 * time and the backed-up key (`backupDirName`), or with a suffix `-2`,
 * `-3`, … when an earlier attempt in the same second (e.g. an apply that
 * was interrupted and run again) already used the name.
 */
export function createBackupDir(dir: string, now: Date, canary: Pick<CanaryRow, 'generation' | 'fingerprint'>): NewBackup {
  const base = join(dir, backupDirName(now, canary.generation, canary.fingerprint));
  let first: string | undefined;
  try {
    first = mkdirSync(dirname(base), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw backupFileError(e, base);
  }
  const parents: string[] = [];
  if (first) for (let d = dirname(base); d.length >= first.length; d = dirname(d)) parents.unshift(d);
  for (let n = 1; ; n++) {
    const path = n === 1 ? base : `${base}-${n}`;
    try {
      mkdirSync(path, { mode: 0o700 });
      chmodSync(path, 0o700);
      return { path, created: [...parents, path] };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw backupFileError(e, path);
    }
  }
}

/**
 * Removes a backup that is no longer needed (its rotation rolled back:
 * nothing it saved was ever changed), with the directories created for it
 * when they are empty then. Never throws: what it cannot remove stays.
 */
export function removeBackup(b: NewBackup): void {
  rmSync(b.path, { recursive: true, force: true, maxRetries: 2 });
  for (const d of [...b.created].reverse().slice(1)) {
    try {
      rmdirSync(d);
    } catch {
      return; // not empty (another backup is there) or already gone
    }
  }
}

/**
 * Removes the backups under `dir` that never completed: a directory named
 * like a backup (`backupDirName`) without its manifest. Its rotation died
 * before it could commit (the manifest is written, durably, before the
 * COMMIT), so it saved nothing that changed; a partial sealed file or an
 * unsealed scratch copy in it is never taken for a backup. Only under the
 * rotation lock (`recover`). The directories removed.
 */
export function removeIncompleteBackups(dir: string): string[] {
  const removed: string[] = [];
  for (const n of namesIn(dir)) {
    const p = join(dir, n);
    if (!/^\d{8}T\d{6}Z-gen\d+-mk_[0-9a-f]+(-\d+)?$/.test(n) || !statSync(p).isDirectory() || present(join(p, MANIFEST_FILE))) continue;
    rmSync(p, { recursive: true, force: true });
    removed.push(p);
  }
  if (removed.length) fsyncDir(dir);
  return removed;
}

function present(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A file of a backup directory, written as it streams: 0600, checksummed as written, flushed to disk now and then in the background, fsynced at the end. */
class FileWriter implements BackupFileWriter {
  private readonly hash = createHash('sha256');
  private bytes = 0;
  private unsynced = 0;
  private syncing: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: BackupDirectory,
    private readonly name: string,
    private readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    this.hash.update(bytes);
    await this.wrap(this.fh.writeFile(bytes));
    this.bytes += bytes.length;
    this.unsynced += bytes.length;
    if (this.unsynced >= SYNC_EVERY) {
      this.unsynced = 0;
      await this.syncing;
      this.syncing = this.wrap(this.fh.datasync());
      this.syncing.catch(() => undefined);
    }
  }

  async end(): Promise<StoredFile> {
    await this.syncing;
    await this.wrap(this.fh.sync());
    await this.wrap(this.fh.close());
    this.dir.stored(this.path);
    return { name: this.name, sha256: this.hash.digest('hex'), bytes: this.bytes };
  }

  async abort(): Promise<void> {
    await this.syncing.catch(() => undefined);
    await this.fh.close().catch(() => undefined);
    rmSync(this.path, { force: true });
  }

  private wrap(p: Promise<unknown>): Promise<void> {
    return p.then(
      () => undefined,
      (e: unknown) => {
        throw backupFileError(e, this.path);
      },
    );
  }
}

/**
 * A new backup directory as the sink of a store's part of the backup: every
 * file stored as it is, 0600, durable (the file and the directory entry
 * fsynced) when ended or adopted, with the SHA-256 of its bytes.
 */
export class BackupDirectory implements BackupSink {
  /** When the last file became durable (ms since the epoch): the end of the store's part of the backup. */
  doneAt?: number;

  /**
   * With `recipients`, every file is stored sealed to them (age), as
   * `<name>.age`; `writing` is called as bytes are handed over to be
   * sealed (a fault point of the crash tests).
   */
  constructor(
    readonly path: string,
    readonly recipients: readonly string[] = [],
    private readonly writing: () => void = () => undefined,
  ) {}

  /** How the files are sealed, for the manifest (undefined: stored as they are). */
  get sealing(): Sealing | undefined {
    return this.recipients.length ? { format: 'age', recipients: this.recipients } : undefined;
  }

  async create(name: string): Promise<BackupFileWriter> {
    if (this.recipients.length) {
      const w = await SealingFileWriter.create(name, this.fileOf(name + SEALED_SUFFIX), this.recipients, (p) => this.stored(p));
      const writing = this.writing;
      return {
        write: (bytes) => {
          writing();
          return w.write(bytes);
        },
        end: () => w.end(),
        abort: () => w.abort(),
      };
    }
    const path = this.fileOf(name);
    try {
      return new FileWriter(this, name, path, await open(path, 'wx', 0o600));
    } catch (e) {
      throw backupFileError(e, path);
    }
  }

  async scratch(name: string): Promise<string> {
    const path = this.scratchOf(name);
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (e) {
      throw backupFileError(e, path);
    }
    return path;
  }

  /** The file is already where it belongs: checksummed (off this thread: it can be large) while it is fsynced, stored. */
  async adopt(name: string): Promise<StoredFile> {
    if (this.recipients.length) {
      const sealed = this.fileOf(name + SEALED_SUFFIX);
      this.writing();
      const { sha256, bytes } = await sealWholeFile(this.scratchOf(name), sealed, this.recipients);
      this.stored(sealed);
      return { name: name + SEALED_SUFFIX, sha256, bytes };
    }
    const path = this.fileOf(name);
    let sha256: string;
    let bytes: number;
    const sync = async () => {
      const fh = await open(path, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    };
    try {
      bytes = statSync(path).size;
      [sha256] = await both(sha256FileOffThread(path), sync());
    } catch (e) {
      throw e instanceof MasterKeyError ? e : backupFileError(e, path);
    }
    this.stored(path);
    return { name, sha256, bytes };
  }

  async discard(name: string): Promise<void> {
    for (const f of [this.fileOf(name), this.fileOf(name + SEALED_SUFFIX), this.scratchOf(name)]) {
      try {
        rmSync(f, { force: true });
      } catch (e) {
        throw backupFileError(e, f);
      }
    }
    this.stored(this.fileOf(name));
  }

  /** Writes a small file whole (a config copy). */
  async writeFile(name: string, bytes: Uint8Array): Promise<StoredFile> {
    if (this.recipients.length) {
      const sealed = this.fileOf(name + SEALED_SUFFIX);
      const r = await sealBytes(bytes, sealed, this.recipients);
      this.stored(sealed);
      return { name: name + SEALED_SUFFIX, ...r };
    }
    const w = await this.create(name);
    try {
      await w.write(bytes);
      return await w.end();
    } catch (e) {
      await w.abort();
      throw e;
    }
  }

  /** Called as each file becomes durable: its directory entry too. */
  stored(file: string): void {
    try {
      fsyncDir(dirname(file));
    } catch (e) {
      throw backupFileError(e, file);
    }
    this.doneAt = Date.now();
  }

  /** Where a store has file `name` made by path: the file itself, or, when sealing, a scratch copy beside it (sealed and removed by `adopt`; a crash leaves it in a backup with no manifest, which `recover` removes). */
  private scratchOf(name: string): string {
    return this.recipients.length ? this.fileOf(`${name}.unsealed`) : this.fileOf(name);
  }

  private fileOf(name: string): string {
    if (name !== basename(name) || name.startsWith('.') || name === MANIFEST_FILE) throw new MasterKeyError('INTERNAL', `A store asked for the backup file "${name}", which is not a plain file name of its own; this is a bug.`);
    return join(this.path, name);
  }
}

/** A backup directory as a store reads its files back: each as it is stored. */
export class BackupDirectorySource implements BackupSource {
  constructor(private readonly dir: string) {}

  read(name: string): AsyncIterable<Uint8Array> {
    return createReadStream(join(this.dir, name));
  }

  async path(name: string): Promise<string> {
    return join(this.dir, name);
  }
}

/** Copies the config files into the backup (their old key included: the files are 0600), as they are now. */
export async function backUpConfigs(dir: BackupDirectory, targets: readonly ConfigTarget[]): Promise<Array<BackupConfig & { stored: StoredFile }>> {
  const out: Array<BackupConfig & { stored: StoredFile }> = [];
  for (const [i, t] of targets.entries()) {
    const st = statSync(t.path);
    const file = `config-${i + 1}-${basename(t.path)}`;
    out.push({ path: t.path, file, format: t.format, entry: t.entry, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, stored: await dir.writeFile(file, readFileSync(t.path)) });
  }
  return out;
}

/**
 * Completes a backup: writes the manifest (every file with its checksum,
 * the canary as it was, the store's locations and value count) once the
 * store's part and the config copies are durable, then fsyncs the
 * directories created for it: a rotation that commits after this has a
 * whole backup on disk.
 */
export function writeManifest(
  backup: NewBackup,
  args: {
    rotationId: string;
    now: Date;
    database: StoreIdentity;
    canary: CanaryRow;
  },
  part: BackupPart,
  configs: ReadonlyArray<BackupConfig & { stored: StoredFile }>,
  sealed?: Sealing,
): BackupResult {
  const { path } = backup;
  const files: BackupFile[] = [...part.files, ...configs.map((c) => c.stored)].map(({ name, sha256, bytes }) => ({ name, sha256, bytes }));
  const manifest: BackupManifest = {
    format: BACKUP_FORMAT,
    rotationId: args.rotationId,
    createdAt: args.now.toISOString(),
    database: args.database,
    fingerprint: args.canary.fingerprint,
    generation: args.canary.generation,
    canary: {
      keyEntry: args.canary.keyEntry,
      fingerprint: args.canary.fingerprint,
      generation: args.canary.generation,
      sealed: args.canary.sealed,
      keyCreatedAt: args.canary.keyCreatedAt.toISOString(),
    },
    locations: part.locations,
    values: part.values,
    files,
    configs: configs.map(({ stored: _stored, ...c }) => c),
    ...(sealed ? { sealed } : {}),
  };
  atomicWriteFile(join(path, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600, errorCode: 'BACKUP_UNWRITABLE' });
  try {
    for (const d of [...backup.created].reverse()) fsyncDir(dirname(d));
  } catch (e) {
    throw backupFileError(e, path);
  }
  return {
    path,
    manifestSha256: sha256File(join(path, MANIFEST_FILE)),
    values: part.values,
    bytes: files.reduce((a, f) => a + f.bytes, 0),
    ...(sealed ? { sealedTo: sealed.recipients } : {}),
  };
}

const manifestValidator = lazyValidator(manifestSchema);

/**
 * Reads a backup and checks every checksum; BACKUP_CORRUPT when anything
 * differs, when the manifest does not match its schema
 * (docs/schemas/backup-manifest.schema.json), or when it names a config copy
 * it has no checksum for.
 */
export function readBackup(path: string): BackupManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(path, MANIFEST_FILE), 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MasterKeyError('BACKUP_CORRUPT', `${path} is not a readable backup (${code ?? 'manifest.json is not valid JSON'}); pass the backup directory that a rotation printed.`);
  }
  if ((parsed as Partial<BackupManifest> | null)?.format !== BACKUP_FORMAT) {
    throw new MasterKeyError('BACKUP_CORRUPT', `${path} is not a backup of this tool (unknown format); pass the backup directory that a rotation printed.`);
  }
  const valid = manifestValidator();
  const manifest = parsed as BackupManifest;
  const damaged = (what: string) => new MasterKeyError('BACKUP_CORRUPT', `The backup ${path} has a damaged manifest.json (${what}); it cannot be restored.`);
  if (!valid(parsed)) throw damaged(firstSchemaError(valid.errors));
  if (Number.isNaN(Date.parse(manifest.canary.keyCreatedAt))) throw damaged('the key creation time is not a date');
  const listed = new Set(manifest.files.map((f) => f.name));
  // A sealed backup stores (and checksums) each file as <name>.age.
  const unlisted = manifest.configs.find((c) => !listed.has(manifest.sealed ? c.file + SEALED_SUFFIX : c.file));
  if (unlisted) throw damaged(`its config copy ${JSON.stringify(unlisted.file)} has no checksum`);
  const present = new Set(readdirSync(path));
  for (const f of manifest.files) {
    if (!present.has(f.name)) throw new MasterKeyError('BACKUP_CORRUPT', `The backup ${path} is missing ${JSON.stringify(f.name)}; it cannot be restored.`);
    if (sha256File(join(path, f.name)) !== f.sha256) {
      throw new MasterKeyError('BACKUP_CORRUPT', `The backup file ${JSON.stringify(f.name)} in ${path} fails its SHA-256 checksum (it was altered or damaged); it cannot be restored.`);
    }
  }
  return manifest;
}

/**
 * A verified backup's files as the restore reads them: as they are stored,
 * or, for a sealed backup, opened with the identities given (refused
 * without them, naming the recipients, or when they hold none of them;
 * every sealed file's age header checked), before anything is changed.
 * Close it (`closeBackupFiles`) when the restore ends.
 */
export function openBackupFiles(path: string, manifest: BackupManifest, ids: Identities | undefined): BackupSource {
  if (!manifest.sealed) return new BackupDirectorySource(path);
  const source = SealedBackupSource.open(path, manifest.sealed, ids);
  for (const f of manifest.files) {
    if (!f.name.endsWith(SEALED_SUFFIX)) throw new MasterKeyError('BACKUP_CORRUPT', `The backup ${path} says it is sealed but lists ${f.name}, which is not a sealed file; it cannot be restored.`);
    source.checkHeader(f.name.slice(0, -SEALED_SUFFIX.length));
  }
  return source;
}

/** Removes what opening a sealed backup decrypted to disk. Never throws. */
export function closeBackupFiles(source: BackupSource): void {
  if (source instanceof SealedBackupSource) source.close();
}

/** What the store needs to put a verified backup back. */
export function toRestore(path: string, manifest: BackupManifest, files: BackupSource = new BackupDirectorySource(path)): BackupToRestore {
  const c = manifest.canary;
  const configs = new Set(manifest.configs.map((x) => (manifest.sealed ? x.file + SEALED_SUFFIX : x.file)));
  return {
    dir: path,
    files,
    part: { values: manifest.values, locations: manifest.locations },
    storeFiles: manifest.files.filter((f) => !configs.has(f.name)).map((f) => (manifest.sealed && f.name.endsWith(SEALED_SUFFIX) ? f.name.slice(0, -SEALED_SUFFIX.length) : f.name)),
    canary: { fingerprint: c.fingerprint, generation: c.generation, sealed: c.sealed, keyCreatedAt: new Date(c.keyCreatedAt) },
  };
}
