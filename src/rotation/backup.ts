/**
 * Backups taken by a rotation: the store's copy of every value the
 * rotation rewrites (`ReadTx.backup`; PostgreSQL writes secrets.jsonl), the
 * canary row, and a copy of each config file, with SHA-256 checksums in a
 * manifest. Directory 0700, files 0600 (config copies hold the old key).
 * The "backup checksum" quoted in reports is the SHA-256 of manifest.json.
 */
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import manifestSchema from '../../docs/schemas/backup-manifest.schema.json';
import { ConfigTarget } from '../config/config-file';
import { MasterKeyError } from '../errors';
import { atomicWriteFile, fsyncDir, sha256File } from '../fsutil';
import { firstSchemaError, lazyValidator } from '../json-schema';
import { BackupPart, BackupToRestore, CanaryRow, Location, StoreIdentity, backupFileError } from '../store/store';

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
}

export interface BackupResult {
  readonly path: string;
  readonly manifestSha256: string;
  readonly values: number;
  readonly bytes: number;
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
 * Fills a new backup directory: has the store write its copy of the values
 * there (`storePart`), copies the config files, and writes the manifest with
 * every file's checksum. Every file is fsynced, and the directory entries
 * too, before this resolves: a rotation that commits after it has a backup
 * on disk.
 */
export async function writeBackup(
  backup: NewBackup,
  args: {
    rotationId: string;
    now: Date;
    database: StoreIdentity;
    canary: CanaryRow;
    targets: readonly ConfigTarget[];
  },
  storePart: (dir: string) => Promise<BackupPart>,
): Promise<BackupResult> {
  const { path } = backup;
  const { files: stored, values, locations, checksums = {} } = await storePart(path);
  const configs: BackupConfig[] = [];
  args.targets.forEach((t, i) => {
    const st = statSync(t.path);
    const file = `config-${i + 1}-${basename(t.path)}`;
    try {
      atomicWriteFile(join(path, file), readFileSync(t.path), { mode: 0o600, errorCode: 'BACKUP_UNWRITABLE' });
    } catch (e) {
      throw e instanceof MasterKeyError ? e : backupFileError(e, join(path, file));
    }
    configs.push({ path: t.path, file, format: t.format, entry: t.entry, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
  });
  const files: BackupFile[] = [...stored, ...configs.map((x) => x.file)].map((name) => ({
    name,
    ...(checksums[name] ?? { sha256: sha256File(join(path, name)), bytes: statSync(join(path, name)).size }),
  }));
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
    locations,
    values,
    files,
    configs,
  };
  atomicWriteFile(join(path, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600, errorCode: 'BACKUP_UNWRITABLE' });
  try {
    for (const d of [...backup.created].reverse()) fsyncDir(dirname(d));
  } catch (e) {
    throw backupFileError(e, path);
  }
  return { path, manifestSha256: sha256File(join(path, MANIFEST_FILE)), values, bytes: files.reduce((a, f) => a + f.bytes, 0) };
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
  const unlisted = manifest.configs.find((c) => !listed.has(c.file));
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

/** What the store needs to put a verified backup back. */
export function toRestore(path: string, manifest: BackupManifest): BackupToRestore {
  const c = manifest.canary;
  return {
    dir: path,
    part: { values: manifest.values, locations: manifest.locations },
    canary: { fingerprint: c.fingerprint, generation: c.generation, sealed: c.sealed, keyCreatedAt: new Date(c.keyCreatedAt) },
  };
}
