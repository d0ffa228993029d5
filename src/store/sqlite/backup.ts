/**
 * The SQLite store's part of a backup: the whole database file, copied
 * through SQLite's online backup API in the caller's transaction (a
 * consistent copy even while the server runs, including what a WAL file
 * holds), then switched to a rollback journal so the copy is one
 * self-contained file that opens anywhere, read-only too. Restore puts it
 * back through the same API (all or nothing: a crash mid-restore leaves a
 * journal that rolls the live file back), only while no other process has
 * the live file open.
 */
import { closeSync, constants, fsyncSync, openSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKeyError } from '../../errors';
import { fsReason } from '../../fsutil';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupPart, BackupToRestore, Location, backupFileError, inventoryLocations } from '../store';
import { BUSY_TIMEOUT_MS, Db, connect, sqliteModule, translateSqliteError, withTransaction } from './driver';
import { readCanary } from './meta';

/** The database's copy inside a backup directory. */
export const DATABASE_FILE = 'database.sqlite';

/** Pages copied per step of the backup API (a step runs between turns of the event loop). */
const PAGES_PER_STEP = 16384;

function fsyncPath(path: string, flags = constants.O_RDONLY): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Copies the database into `dir/database.sqlite` (0600, fsynced) and counts
 * the values of the inventory the copy holds. `source` is a connection in a
 * read transaction: the copy is its snapshot.
 */
export async function backupDatabase(source: Db, inv: Inventory, dir: string): Promise<BackupPart> {
  const path = join(dir, DATABASE_FILE);
  try {
    // Created empty first, so the copy is 0600 from its first byte (SQLite keeps an existing file's mode).
    closeSync(openSync(path, 'wx', 0o600));
  } catch (e) {
    throw backupFileError(e, path);
  }
  let pages: number;
  try {
    pages = (await source.backup(path, { progress: () => PAGES_PER_STEP })).totalPages;
  } catch (e) {
    throw sqliteFileError(e, path, 'writing the backup');
  }
  let values: number;
  let copy: Db | undefined;
  try {
    copy = connect(path);
    // The driver reports a copy that SQLite refused as busy as finished: check it holds every page.
    const copied = copy.pragma('page_count', { simple: true });
    if (pages === 0 || copied !== pages) {
      throw new MasterKeyError('DB_BUSY', `The backup of the SQLite database copied ${String(copied)} of ${pages} pages (the database was busy); nothing was changed: run the command again.`);
    }
    // A copy of a WAL database is marked WAL: make it one self-contained file.
    copy.pragma('journal_mode = DELETE');
    values = countStored(copy, inventoryLocations(inv));
    copy.close();
    copy = undefined;
    fsyncPath(path);
    fsyncPath(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    throw sqliteFileError(e, path, 'finishing the backup');
  } finally {
    copy?.close();
  }
  return { files: [DATABASE_FILE], values, locations: inventoryLocations(inv) };
}

/**
 * The backup of a write transaction that holds the write lock and has not
 * written yet: a second, read-only connection copies the committed
 * database, which is exactly what the transaction sees (SQLite's backup
 * API refuses a source connection in a write transaction).
 */
export async function backupBesideWriter(path: string, inv: Inventory, dir: string): Promise<BackupPart> {
  const reader = connect(path, { readonly: true });
  try {
    return await withTransaction(reader, () => backupDatabase(reader, inv, dir), 'read');
  } finally {
    reader.close();
  }
}

/** Stored values at the locations: every non-NULL column value (a JSON document counts once). */
function countStored(db: Db, locations: readonly Location[]): number {
  let n = 0;
  for (const loc of locations) n += (db.prepare(`SELECT count(*) AS n FROM ${quoteIdent(loc.table)} WHERE ${quoteIdent(loc.column)} IS NOT NULL`).get() as { n: number }).n;
  return n;
}

/** A failure writing a backup file: a full disk or an unwritable place as for any backup file, else the driver's error. */
function sqliteFileError(e: unknown, path: string, doing: string): MasterKeyError {
  if (e instanceof MasterKeyError) return e;
  const code = String((e as { code?: unknown }).code ?? '');
  if (code === 'SQLITE_FULL') return backupFileError(Object.assign(new Error('full'), { code: 'ENOSPC' }), path);
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_READONLY') || code.startsWith('E')) return backupFileError(e, path);
  return translateSqliteError(e, doing, path);
}

/** Other processes that have `path` (or its -wal, -shm or -journal file) open, as `pid (command)`; processes this user may not inspect are not seen. */
export function otherProcessesWithFileOpen(path: string): string[] {
  const targets = new Set<string>();
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      const st = statSync(p);
      targets.add(`${st.dev}:${st.ino}`);
    } catch {
      // absent
    }
  }
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid);
  } catch (e) {
    throw new MasterKeyError('DB_BUSY', `Cannot tell whether another process has ${path} open (/proc: ${fsReason(e)}); stop the server and restore with its files copied by hand.`);
  }
  const holders: string[] = [];
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to inspect
    }
    for (const fd of fds) {
      try {
        const st = statSync(`/proc/${pid}/fd/${fd}`);
        if (!targets.has(`${st.dev}:${st.ino}`)) continue;
      } catch {
        continue;
      }
      let cmd = '';
      try {
        cmd = readlinkSync(`/proc/${pid}/exe`);
      } catch {
        cmd = '?';
      }
      holders.push(`pid ${pid} (${cmd})`);
      break;
    }
  }
  return holders;
}

/**
 * Checks a backup's copy before it is put back: a sound SQLite file whose
 * canary and value count are what the manifest says. BACKUP_CORRUPT otherwise.
 */
export function checkBackupCopy(backup: BackupToRestore): string {
  const path = join(backup.dir, DATABASE_FILE);
  let copy: Db | undefined;
  const corrupt = (what: string) => new MasterKeyError('BACKUP_CORRUPT', `The backup ${backup.dir} ${what}; it cannot be restored.`);
  try {
    copy = connect(path, { readonly: true });
    const check = copy.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw corrupt(`holds a damaged database (${String(check)})`);
    const canary = readCanary(copy);
    const want = backup.canary;
    if (!canary || canary.fingerprint !== want.fingerprint || canary.generation !== want.generation || canary.sealed !== want.sealed) {
      throw corrupt(`holds a database whose integrity canary (${canary?.fingerprint ?? 'none'}) is not the one its manifest names (${want.fingerprint}, generation ${want.generation})`);
    }
    const values = countStored(copy, backup.part.locations);
    if (values !== backup.part.values) throw corrupt(`lists ${backup.part.values} values but its database holds ${values}`);
  } catch (e) {
    if (e instanceof MasterKeyError) throw e.code === 'BACKUP_CORRUPT' ? e : corrupt(`cannot be read as a SQLite database (${e.message})`);
    throw corrupt(`cannot be read as a SQLite database (${(e as Error).message})`);
  } finally {
    copy?.close();
  }
  return path;
}

/**
 * Puts the backup's database file back over the live one at `livePath`,
 * through the backup API into the live file (its journal mode is kept),
 * after checking that no other process has it open. Resolves to the
 * number of values the restored file holds.
 */
export async function restoreDatabase(livePath: string, backup: BackupToRestore): Promise<number> {
  const copyPath = checkBackupCopy(backup);
  const holders = otherProcessesWithFileOpen(livePath);
  if (holders.length > 0) {
    throw new MasterKeyError(
      'DB_BUSY',
      `Another process has the SQLite database ${livePath} open (${holders.join(', ')}); nothing was changed: stop the server and run restore again.`,
      { holders },
    );
  }
  const busy = () =>
    new MasterKeyError('DB_BUSY', `The SQLite database ${livePath} stayed locked by another process while the backup was put back; nothing was changed: stop the server and run restore again.`);
  const Database = sqliteModule();
  const copy = new Database(copyPath, { readonly: true, fileMustExist: true });
  let since = Date.now();
  let left = Infinity;
  let pages = 0;
  try {
    ({ totalPages: pages } = await copy.backup(livePath, {
      // The driver retries a step that found the live file locked without end: give up after the busy timeout.
      progress: ({ remainingPages }) => {
        if (remainingPages < left) [left, since] = [remainingPages, Date.now()];
        else if (Date.now() - since > BUSY_TIMEOUT_MS) throw busy();
        return PAGES_PER_STEP;
      },
    }));
  } catch (e) {
    throw translateSqliteError(e, 'putting the backup back', livePath);
  } finally {
    copy.close();
  }
  // The driver also reports a copy refused at the first step as finished: the live file must now hold the backup's canary.
  const live = connect(livePath, { readonly: true });
  try {
    const canary = readCanary(live);
    if (pages === 0 || !canary || canary.sealed !== backup.canary.sealed) throw busy();
  } finally {
    live.close();
  }
  return backup.part.values;
}
