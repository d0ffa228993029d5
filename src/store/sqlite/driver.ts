/**
 * The SQLite connection: loading the optional `better-sqlite3` module,
 * opening an existing database file (never creating one), scoped
 * transactions, and translating driver errors into typed errors.
 *
 * Every connection waits at most the lock timeout (`OpenOptions.lockTimeoutMs`,
 * SQLite's busy timeout) for a lock another process holds, then fails with
 * DB_BUSY (the rotation's write transaction: TABLES_BUSY); it keeps
 * the file's journal mode (WAL or rollback journal) and commits with
 * `synchronous = FULL`, so a COMMIT that returned survives a power loss
 * before the config files are rewritten.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { MasterKeyError, isMasterKeyError } from '../../errors';
import { errnoOf, fsReason } from '../../fsutil';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../lock-timeout';

export type Db = BetterSqlite3.Database;
type DatabaseConstructor = typeof BetterSqlite3;

/** The lock timeout of a connection opened without one: how long a statement waits for a lock held by another process before failing. */
export const BUSY_TIMEOUT_MS = DEFAULT_LOCK_TIMEOUT_MS;

let loaded: DatabaseConstructor | undefined;

/** The better-sqlite3 constructor, or one sentence saying what to install. */
export function sqliteModule(): DatabaseConstructor {
  if (loaded) return loaded;
  try {
    // Optional dependency: required only when a sqlite: URL is used.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const Database = require('better-sqlite3') as DatabaseConstructor;
    // Its JavaScript installs even when its install script did not run; the native part loads at the first open.
    new Database(':memory:').close();
    loaded = Database;
  } catch (e) {
    throw new MasterKeyError(
      'DB_UNREACHABLE',
      'SQLite support needs the optional package better-sqlite3 (12.x), which is not installed or did not build (npm skips its install script unless your package.json approves it): add `"allowScripts": { "better-sqlite3": true }` to your package.json, run `npm rebuild better-sqlite3` (or `npm install better-sqlite3@12`; it builds with python3, make and a C++ compiler), and try again.',
      {},
      { cause: e },
    );
  }
  return loaded;
}

/** What a driver error means, in our words, for a database file at `path`. */
export function translateSqliteError(e: unknown, doing: string, path: string): MasterKeyError {
  if (isMasterKeyError(e)) return e;
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  const c = typeof code === 'string' ? code : '';
  if (c.startsWith('SQLITE_BUSY') || c.startsWith('SQLITE_LOCKED')) {
    return new MasterKeyError(
      'DB_BUSY',
      `The SQLite database ${path} stayed locked by another process for longer than the lock timeout while ${doing} (${c}); nothing was changed: stop the server (or wait until it is idle) and run the command again, or raise the lock timeout.`,
      { sqlite: c },
      { cause: e },
    );
  }
  if (c.startsWith('SQLITE_READONLY')) {
    return new MasterKeyError(
      'DB_READ_ONLY',
      `The SQLite database ${path} is read-only for this user while ${doing} (${c}); nothing was changed: run as a user who can write the file and its directory ${dirname(path)}.`,
      { sqlite: c },
      { cause: e },
    );
  }
  if (c === 'SQLITE_NOTADB') {
    return new MasterKeyError('DB_ERROR', `${path} is not a SQLite database (${c}); check the database URL.`, { sqlite: c }, { cause: e });
  }
  if (c.startsWith('SQLITE_CORRUPT')) {
    return new MasterKeyError('DB_ERROR', `The SQLite database ${path} is damaged (${c}) while ${doing}; nothing was changed: restore it from a backup.`, { sqlite: c }, { cause: e });
  }
  if (c === 'SQLITE_FULL') {
    return new MasterKeyError('DISK_FULL', `The disk holding the SQLite database ${path} is full while ${doing}; nothing was committed: free space and run the command again.`, { sqlite: c }, { cause: e });
  }
  if (c.startsWith('SQLITE_CANTOPEN') || c.startsWith('SQLITE_PERM') || c.startsWith('SQLITE_AUTH')) {
    return new MasterKeyError(
      'DB_UNREACHABLE',
      `Cannot open the SQLite database ${path} or its journal while ${doing} (${c}); check that the file and its directory ${dirname(path)} exist and this user may read and write them.`,
      { sqlite: c },
      { cause: e },
    );
  }
  if (c.startsWith('SQLITE_')) {
    return new MasterKeyError('DB_ERROR', `The SQLite database ${path} reported an error while ${doing}: ${msg} (${c}).`, { sqlite: c }, { cause: e });
  }
  return new MasterKeyError('DB_ERROR', `Unexpected failure of the SQLite database ${path} while ${doing}: ${msg}.`, {}, { cause: e });
}

/** The file must exist and be a regular file: a missing file is an error, never a new empty database. */
function requireFile(path: string): void {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') {
      throw new MasterKeyError(
        'DB_UNREACHABLE',
        `The SQLite database ${path} does not exist; check the database URL (sqlite:/absolute/path, or a path relative to the config file's directory). A new database is never created.`,
      );
    }
    throw new MasterKeyError('DB_UNREACHABLE', `Cannot reach the SQLite database ${path}: ${fsReason(e)}; check the database URL and the permissions of its directories.`, { errno: errnoOf(e) }, { cause: e });
  }
  if (!isFile) throw new MasterKeyError('DB_UNREACHABLE', `The SQLite database URL names ${path}, which is not a regular file; check the database URL.`);
}

export interface ConnectOptions {
  /** Open read-only (the file is never written through this connection). */
  readonly readonly?: boolean;
  /** Busy timeout in ms. @default BUSY_TIMEOUT_MS */
  readonly timeout?: number;
}

/** Opens an existing SQLite database file and checks that it is one; the caller closes it. */
export function connect(path: string, opts: ConnectOptions = {}): Db {
  const Database = sqliteModule();
  requireFile(path);
  let db: Db | undefined;
  try {
    db = new Database(path, { fileMustExist: true, readonly: !!opts.readonly, timeout: opts.timeout ?? BUSY_TIMEOUT_MS });
    // The first read of the schema: fails here for a file that is not SQLite, and recovers a WAL left by a crashed server.
    db.prepare('SELECT count(*) FROM sqlite_schema').get();
    if (!opts.readonly) db.pragma('synchronous = FULL');
    return db;
  } catch (e) {
    db?.close();
    throw translateSqliteError(e, 'opening it', path);
  }
}

/**
 * Whether this process may write the file, as the kernel decides it
 * (access(2): for root too, a read-only mount or an immutable file says
 * no; permission bits alone say nothing to root). Without opening it:
 * closing a descriptor of the database file drops every POSIX lock this
 * process holds on it, SQLite's included (in WAL mode a connection holds a
 * shared lock on the file for as long as it is open).
 */
export function fileWritable(path: string): { ok: true } | { ok: false; reason: string } {
  try {
    accessSync(path, constants.W_OK);
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: fsReason(e) };
  }
}

/** BEGIN … COMMIT around fn (`BEGIN IMMEDIATE` for writes: the write lock first); ROLLBACK on any error, rethrown. */
export async function withTransaction<T>(db: Db, fn: () => Promise<T>, mode: 'read' | 'write'): Promise<T> {
  db.exec(mode === 'write' ? 'BEGIN IMMEDIATE' : 'BEGIN');
  try {
    // A read transaction's snapshot starts at its first read: take it now.
    if (mode === 'read') db.prepare('SELECT count(*) FROM sqlite_schema').get();
    const r = await fn();
    db.exec('COMMIT');
    return r;
  } catch (e) {
    // A failed COMMIT (e.g. SQLITE_BUSY) leaves the transaction open: end it, changing nothing.
    if (db.inTransaction) {
      try {
        db.exec('ROLLBACK');
      } catch {
        // the connection is gone: SQLite rolls the journal back on the next open
      }
    }
    throw e;
  }
}
