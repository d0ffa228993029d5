/**
 * Config files on disk (I/O adapter over formats.ts): read the master key or
 * another entry, replace the key atomically keeping the file's mode and
 * owner, and check beforehand that the file can be replaced. Symlinks are
 * refused: replacing one by rename would cut it loose from its target.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, realpathSync, Stats } from 'node:fs';
import { resolve } from 'node:path';
import { MasterKey, parseKey } from '../crypto/key';
import { MasterKeyError } from '../errors';
import { atomicWriteFile, checkReplaceable, errnoOf, fsReason, WriteOptions } from '../fsutil';
import { ConfigFormat, formatFromPath, isConfigFormat, readEntry, replaceEntry } from './formats';

/** One config file: where, in which format, and the entry holding the master key. */
export interface ConfigTarget {
  readonly path: string;
  readonly format: ConfigFormat;
  readonly entry: string;
}

/** Resolves a CLI path (made absolute) with an optional explicit format (else derived from the extension). */
export function configTarget(path: string, entry: string, format?: ConfigFormat): ConfigTarget {
  if (path.length === 0) throw new MasterKeyError('USAGE', 'The config file path is empty; give the path of the server config file that holds the master key.');
  if (entry.length === 0) throw new MasterKeyError('USAGE', `The entry name for ${path} is empty; give the name of the entry that holds the master key (e.g. ACT_MASTER_KEY).`, { path });
  if (format !== undefined && !isConfigFormat(format)) {
    throw new MasterKeyError('USAGE', `"${String(format)}" is not a config format; use dotenv, json or xml.`, { path });
  }
  return { path: resolve(path), format: format ?? formatFromPath(path), entry };
}

function symlinkError(path: string): MasterKeyError {
  let real = '';
  try {
    real = ` (${realpathSync(path)})`;
  } catch {
    // dangling link: nothing to point at
  }
  return new MasterKeyError('CONFIG_SYMLINK', `${path} is a symbolic link; configure the real file${real} instead, so it can be replaced safely.`, { path });
}

function openError(path: string, e: unknown): MasterKeyError {
  const errno = errnoOf(e);
  if (errno === 'ELOOP') return symlinkError(path);
  if (errno === 'ENOENT') {
    return new MasterKeyError('CONFIG_MISSING', `The config file ${path} does not exist; check the path (and the node it belongs to).`, { path }, { cause: e });
  }
  return new MasterKeyError('CONFIG_UNREADABLE', `Cannot read the config file ${path}: ${fsReason(e)}; check the path and that this user can read it.`, { path, errno }, { cause: e });
}

/** The file's bytes and status, read through one descriptor that refuses symlinks and does not block on FIFOs. */
function readConfig(t: ConfigTarget): { readonly text: string; readonly stat: Stats } {
  let fd: number;
  try {
    fd = openSync(t.path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    throw openError(t.path, e);
  }
  let stat: Stats;
  let bytes: Buffer;
  try {
    stat = fstatSync(fd);
    if (!stat.isFile()) {
      const what = stat.isDirectory() ? 'a directory' : 'not a regular file';
      throw new MasterKeyError('CONFIG_UNREADABLE', `The config file ${t.path} is ${what}; give the path of the config file itself.`, { path: t.path });
    }
    bytes = readFileSync(fd);
  } catch (e) {
    throw e instanceof MasterKeyError ? e : openError(t.path, e);
  } finally {
    closeSync(fd);
  }
  const text = bytes.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(bytes)) {
    // Rewriting would change bytes we do not understand: refuse.
    throw new MasterKeyError('CONFIG_INVALID', `${t.path} is not valid UTF-8 text; save it as UTF-8 and try again.`, { path: t.path });
  }
  return { text, stat };
}

/**
 * Reads the file and returns the raw text. Errors: CONFIG_MISSING (ENOENT),
 * CONFIG_SYMLINK (the path is a symlink), CONFIG_UNREADABLE (EACCES, a
 * directory, anything else), CONFIG_INVALID (not UTF-8).
 */
export function readConfigText(t: ConfigTarget): string {
  return readConfig(t).text;
}

/** The master key from the entry, parsed with parseKey(value, `the ${entry} entry in ${path}`). */
export function readConfigKey(t: ConfigTarget): MasterKey {
  return parseKey(readEntry(readConfigText(t), t.format, t.entry, t.path), `the ${t.entry} entry in ${t.path}`);
}

/** Any other entry's value (e.g. a DATABASE_URL line) from the same file and format. */
export function readConfigEntry(t: ConfigTarget, entry: string): string {
  return readEntry(readConfigText(t), t.format, entry, t.path);
}

function keepOwnership(stat: Stats): WriteOptions {
  return { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, errorCode: 'CONFIG_UNWRITABLE' };
}

/**
 * Replaces the key atomically (see atomicWriteFile), keeping the file's mode
 * and owner and every other byte. Refuses symlinks. Errors: those of
 * readConfigText and replaceEntry, CONFIG_UNWRITABLE, DISK_FULL.
 */
export function writeConfigKey(t: ConfigTarget, key: MasterKey): void {
  const { text, stat } = readConfig(t);
  atomicWriteFile(t.path, replaceEntry(text, t.format, t.entry, key.toHex(), t.path), keepOwnership(stat));
}

/**
 * Preflight: throws CONFIG_UNWRITABLE unless the file can be replaced. Really
 * tries (as root, permission bits alone lie): creates, fills, fsyncs,
 * chowns/chmods to the file's owner and mode, and removes a temp file next to
 * it, so EROFS, EACCES/EPERM and ENOSPC all show up. Also throws the errors
 * of readConfigText for a missing file, a symlink or a directory.
 */
export function checkConfigWritable(t: ConfigTarget): void {
  checkReplaceable(t.path, keepOwnership(readConfig(t).stat));
}
