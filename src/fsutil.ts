/**
 * Safe file writes: crash-safe replacement (temp file, fsync, rename, fsync
 * of the directory), real writability probes (as root, permission bits lie),
 * free space and checksums. Errors are MasterKeyErrors naming the path and
 * what to do; they never contain the data written.
 */
import { randomBytes, createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, MasterKeyError } from './errors';
import { FaultPoints } from './rotation/faults';

/** Marks the temp files of atomicWriteFile and of the probes: `.<basename>.mk-tmp-<pid>-<random>` (older versions: `.mk-tmp-<random>`). */
export const TEMP_INFIX = '.mk-tmp-';

/** Bytes a streamed backup file is written between two flushes to disk started in the background, so the last one, at its end, has little left to do. */
export const SYNC_EVERY = 64 * 1024 * 1024;

/** Mode, owner and error code for a replacement file. */
export interface WriteOptions {
  /** Permission bits of the new file (default 0600). */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  /** Code for failures (default FILE_ERROR); atomicWriteFile reports a full disk as DISK_FULL instead. */
  readonly errorCode?: ErrorCode;
}

const DISK_FULL_ERRNOS = new Set(['ENOSPC', 'EDQUOT']);
/** What a writability probe writes: enough to need a data block. */
const PROBE_BYTES = new Uint8Array(4096);

/** The errno name of a Node.js system error, if it is one. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A short human phrase for a system error, in our own words (for messages that already name the path). */
export function fsReason(e: unknown): string {
  const errno = errnoOf(e);
  switch (errno) {
    case 'ENOSPC':
      return 'the disk is full';
    case 'EDQUOT':
      return 'the disk quota is exhausted';
    case 'EROFS':
      return 'the file system is read-only';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOENT':
      return 'the file or its directory does not exist';
    case 'ENOTDIR':
      return 'a part of the path is not a directory';
    case 'EISDIR':
      return 'it is a directory';
    case 'ELOOP':
      return 'it is a symbolic link';
    case undefined:
      return `an unexpected error (${e instanceof Error ? e.name : 'unknown'})`;
    default:
      return `system error ${errno}`;
  }
}

function adviceFor(e: unknown, dir: string): string {
  return DISK_FULL_ERRNOS.has(errnoOf(e) ?? '')
    ? `free some space on the file system holding ${dir} and try again`
    : `check that this user can create and rename files in ${dir} (and that it is not read-only) and try again`;
}

function writeError(path: string, e: unknown, code: ErrorCode, verb: string): MasterKeyError {
  const dir = dirname(path);
  return new MasterKeyError(code, `Cannot ${verb} ${path}: ${fsReason(e)}; ${adviceFor(e, dir)}.`, { path, errno: errnoOf(e) }, { cause: e });
}

function codeForWrite(e: unknown, errorCode: ErrorCode): ErrorCode {
  return DISK_FULL_ERRNOS.has(errnoOf(e) ?? '') ? 'DISK_FULL' : errorCode;
}

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}${TEMP_INFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** A temp file's name with the pid of the process that wrote it. */
const OUR_TEMP = /^\..+\.mk-tmp-(\d+)-[0-9a-f]+$/;

/** True while a process with this pid runs on this host (one of another user counts as running). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) !== 'ESRCH';
  }
}

/**
 * Removes the temp and probe files in `dir` whose writer is gone (a process
 * killed between creating and renaming or removing them: their names carry
 * its pid); returns their paths. Files of running processes are left
 * alone, so this is safe without any lock. Every write of a temp file does
 * it for its directory first, so the next run cleans up after a killed one;
 * `recover` does it too.
 */
/** The names in a directory; none when it cannot be read (or does not exist). */
export function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function removeDeadTempFiles(dir: string): string[] {
  const removed: string[] = [];
  for (const n of namesIn(dir).sort()) {
    const m = OUR_TEMP.exec(n);
    if (!m || Number(m[1]) === process.pid || processRuns(Number(m[1]))) continue;
    try {
      unlinkSync(join(dir, n));
      removed.push(join(dir, n));
    } catch {
      // gone meanwhile, or not ours to remove: leftoverTempFiles reports it
    }
  }
  return removed;
}

let faults: FaultPoints | undefined;
/** The fault point `temp-written` (MASTER_KEY_TEST_KILL_AT=temp-written[@n]): a kill -9 while a temp file exists. */
function tempFaults(): FaultPoints {
  return (faults ??= new FaultPoints(process.env.MASTER_KEY_TEST_KILL_AT));
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone, or we cannot remove it: leftoverTempFiles reports it later
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
}

/**
 * Creates a fully written, fsynced temp file next to `path` with the given
 * mode and owner, and returns its path. On failure the temp file is removed
 * and the system error is rethrown as it is.
 */
function writeTemp(path: string, data: string | Uint8Array, opts: WriteOptions): string {
  removeDeadTempFiles(dirname(path));
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeAll(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
    tempFaults().reached('temp-written');
    // chown first: it clears set-id bits that the chmod then restores.
    if (opts.uid !== undefined || opts.gid !== undefined) fchownSync(fd, opts.uid ?? -1, opts.gid ?? -1);
    fchmodSync(fd, opts.mode ?? 0o600);
    closeSync(fd);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    removeQuietly(tmp);
    throw e;
  }
  return tmp;
}

/** fsync a directory so a rename (or a new entry) in it survives a crash. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write to a temp file in the same directory (created with mode 0600 via open
 * flags 'wx'), write all, fsync, then fchmod/fchown to opts.mode/uid/gid when
 * given, rename over `path`, fsync the directory. On any failure remove the
 * temp file and throw a MasterKeyError (ENOSPC/EDQUOT -> DISK_FULL, anything
 * else -> opts.errorCode, default FILE_ERROR), naming the path and what to do.
 * Temp names: `.<basename>.mk-tmp-<random>` so `recover` can find leftovers.
 */
export function atomicWriteFile(path: string, data: string | Uint8Array, opts: WriteOptions = {}): void {
  let tmp: string | undefined;
  try {
    tmp = writeTemp(path, data, opts);
    renameSync(tmp, path);
    tmp = undefined;
    fsyncDir(dirname(path));
  } catch (e) {
    if (tmp !== undefined) removeQuietly(tmp);
    throw writeError(path, e, codeForWrite(e, opts.errorCode ?? 'FILE_ERROR'), 'write');
  }
}

/**
 * Preflight for atomicWriteFile: really creates, fills, fsyncs, chmods/chowns
 * and removes a temp file next to `path` (without renaming it), so a
 * read-only file system, a full disk or a missing permission shows up before
 * anything is changed. Every failure throws `opts.errorCode` (default FILE_ERROR).
 */
export function checkReplaceable(path: string, opts: WriteOptions = {}): void {
  try {
    unlinkSync(writeTemp(path, PROBE_BYTES, opts));
  } catch (e) {
    throw writeError(path, e, opts.errorCode ?? 'FILE_ERROR', 'replace');
  }
}

/** Leftover temp files of atomicWriteFile next to `path` (absolute, sorted). */
export function leftoverTempFiles(path: string): string[] {
  const dir = dirname(path);
  const prefix = `.${basename(path)}${TEMP_INFIX}`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return [];
    throw new MasterKeyError('FILE_ERROR', `Cannot list ${dir} to look for leftover temp files: ${fsReason(e)}; check that this user can read it.`, { path: dir, errno: errnoOf(e) }, { cause: e });
  }
  return names.filter((n) => n.startsWith(prefix)).sort().map((n) => join(dir, n));
}

/** Bytes available to an unprivileged user on the filesystem holding `dir` (fs.statfsSync). */
export function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch (e) {
    throw new MasterKeyError('FILE_ERROR', `Cannot measure the free space of ${dir}: ${fsReason(e)}; check that the directory exists and is readable.`, { path: dir, errno: errnoOf(e) }, { cause: e });
  }
}

/**
 * Throws `code` (e.g. BACKUP_UNWRITABLE) unless a file can be created in dir
 * (created with `mkdir -p` first, mode 0700). Really tries: creates, writes,
 * fsyncs and removes a probe file.
 *
 * @param what words naming the directory, e.g. "the backup directory"
 */
export function checkDirWritable(dir: string, code: ErrorCode, what: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    unlinkSync(writeTemp(join(dir, 'mk-probe'), PROBE_BYTES, {}));
  } catch (e) {
    throw new MasterKeyError(code, `Cannot create files in ${what} ${dir}: ${fsReason(e)}; ${adviceFor(e, dir)}.`, { path: dir, errno: errnoOf(e) }, { cause: e });
  }
}

/** SHA-256 of a file's bytes as lowercase hex (read in chunks: bounded memory). */
export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) {
      hash.update(buf.subarray(0, n));
    }
  } catch (e) {
    throw new MasterKeyError('FILE_ERROR', `Cannot read ${path} to checksum it: ${fsReason(e)}; check that it exists and is readable.`, { path, errno: errnoOf(e) }, { cause: e });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return hash.digest('hex');
}
