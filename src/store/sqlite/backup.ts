/**
 * The SQLite store's part of a backup: the whole database file, made at a
 * path the backup's sink gives (`BackupSink.scratch`), then handed over to
 * it (`adopt`). The copy is made through SQLite's online backup API from a
 * connection reading the committed database (a consistent copy even while
 * the server runs, including what a WAL file holds), or, in a
 * rollback-journal mode under the write lock before anything is written,
 * byte for byte (`copyDatabaseFile`); then switched to a rollback journal
 * so the copy is one self-contained file that opens anywhere, read-only too
 * (`finishBackup`). Restore reads
 * the backed-up values from that copy and writes, in the caller's write
 * transaction, what the runbook decides for each (`restoreValuesFrom`); a
 * drill restores the copy into a scratch database through the same API
 * (`drillCopy`).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MasterKeyError } from '../../errors';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupToRestore, Location, RestoreCounts, RestoreDecision, ScratchCopy, ValuePair, aadColumnsAt, backupFileError, inventoryLocations } from '../store';
import { Db, connect, translateSqliteError, withTransaction } from './driver';
import { readCanary } from './meta';

/** The database's copy inside a backup directory. */
export const DATABASE_FILE = 'database.sqlite';

/** Pages copied per step of the backup API (a step runs between turns of the event loop). */
const PAGES_PER_STEP = 16384;

/** Bytes read and written at a time when the file is copied as it is. */
const COPY_CHUNK = 4 << 20;

/**
 * Copies the database into `path` (an empty file, 0600, which keeps its
 * mode) and finishes the copy (`finishBackup`); the values of the inventory
 * it holds. `source` is a connection in a read transaction: the copy is its
 * snapshot.
 */
export async function backupDatabase(source: Db, inv: Inventory, path: string): Promise<number> {
  let pages: number;
  try {
    pages = (await source.backup(path, { progress: () => PAGES_PER_STEP })).totalPages;
  } catch (e) {
    throw sqliteFileError(e, path, 'writing the backup');
  }
  return finishBackup(path, inv, pages);
}

/**
 * Copies the database file byte for byte into `path` (an empty file, 0600).
 * Only for a database in a rollback-journal mode whose write lock the
 * caller holds and which it has not written yet: then the file is exactly
 * the committed database (no other connection can write, and a journal a
 * crashed writer left was rolled back when this connection first read).
 * Finish it with `finishBackup`.
 *
 * The copy is made by a child process: closing a descriptor of the file in
 * this process would drop every POSIX lock this process holds on it, the
 * write lock SQLite holds for the caller included.
 */
export async function copyDatabaseFile(source: string, path: string): Promise<void> {
  const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', COPY_SCRIPT, source, path], { stdio: ['ignore', 'ignore', 'pipe'], env: {} });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (c) => resolve({ code: c, stderr }));
  }).catch((e: unknown) => {
    throw backupFileError(e, path);
  });
  if (code !== 0) {
    const errno = /^(E[A-Z]+)\b/.exec(stderr.trim())?.[1];
    throw backupFileError(Object.assign(new Error(stderr.trim() || `the copy exited with code ${code}`), errno ? { code: errno } : {}), path);
  }
}

/** The copying child's program: source to destination (which exists, 0600, and keeps its mode), 4 MiB at a time; an error's errno code first on stderr. */
const COPY_SCRIPT = `const fs = require('node:fs');
const [from, to] = process.argv.slice(1);
try {
  const a = fs.openSync(from, 'r'), b = fs.openSync(to, 'r+'), buf = Buffer.allocUnsafe(${COPY_CHUNK});
  for (let at = 0, n; (n = fs.readSync(a, buf, 0, buf.length, at)) > 0; at += n) fs.writeSync(b, buf, 0, n, at);
  fs.closeSync(b);
} catch (e) {
  process.stderr.write((e.code || 'EIO') + ' ' + e.message);
  process.exit(1);
}`;

/**
 * Finishes a backup's copy of the database: checks it holds every page
 * copied (`pages`, when known), makes it one self-contained file (a copy of
 * a WAL database is marked WAL), and counts the inventory's values in it.
 * The sink makes it durable when it is handed over.
 */
export function finishBackup(path: string, inv: Inventory, pages?: number): number {
  let values: number;
  let copy: Db | undefined;
  try {
    copy = connect(path);
    // The driver reports a copy that SQLite refused as busy as finished: check it holds every page.
    const copied = copy.pragma('page_count', { simple: true });
    if (pages !== undefined && (pages === 0 || copied !== pages)) {
      throw new MasterKeyError('DB_BUSY', `The backup of the SQLite database copied ${String(copied)} of ${pages} pages (the database was busy); nothing was changed: run the command again.`);
    }
    copy.pragma('journal_mode = DELETE');
    values = countStored(copy, inventoryLocations(inv));
  } catch (e) {
    throw sqliteFileError(e, path, 'finishing the backup');
  } finally {
    copy?.close();
  }
  return values;
}

/**
 * The backup of a write transaction that holds the write lock and has not
 * written yet: a second, read-only connection copies the committed
 * database, which is exactly what the transaction sees (SQLite's backup
 * API refuses a source connection in a write transaction).
 */
export async function backupBesideWriter(path: string, inv: Inventory, dest: string): Promise<number> {
  const reader = connect(path, { readonly: true });
  try {
    return await withTransaction(reader, () => backupDatabase(reader, inv, dest), 'read');
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

/**
 * Checks a backup's copy before it is put back: a sound SQLite file whose
 * canary and value count are what the manifest says. BACKUP_CORRUPT otherwise.
 */
export async function checkBackupCopy(backup: BackupToRestore): Promise<string> {
  const path = await backup.files.path(DATABASE_FILE);
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

/** A value as restore hands it on: text, or a stand-in no codec accepts for a value that is not text (a number or a blob). */
function asText(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  return typeof v === 'string' ? v : '\u0000';
}

/** Identity of a key value for maps (an integer 1 and a text '1' are different rows). */
const keyOf = (v: unknown) => `${typeof v}:${String(v)}`;

/**
 * Restore, store side (`WriteTx.restore`), inside the caller's write
 * transaction: checks the backup's database copy (BACKUP_CORRUPT before
 * anything is written), loads its values of the backed-up locations into a
 * temporary table, then for each location walks every row id that holds a
 * value live or in the backup, in key order a batch at a time, hands the
 * pairs (with the live row's additional-data columns) to `decide`, and
 * writes back what it returns, by id.
 */
export async function restoreValuesFrom(db: Db, backup: BackupToRestore, inv: Inventory, decide: RestoreDecision, batchSize = 2000): Promise<RestoreCounts> {
  const copyPath = await checkBackupCopy(backup);
  const copy = connect(copyPath, { readonly: true });
  db.exec('CREATE TEMP TABLE IF NOT EXISTS mk_backup_values (t TEXT NOT NULL, c TEXT NOT NULL, id NOT NULL, v NOT NULL)');
  db.exec('DELETE FROM temp.mk_backup_values');
  let backupValues = 0;
  let pairs = 0;
  let written = 0;
  try {
    const load = db.prepare('INSERT INTO temp.mk_backup_values (t, c, id, v) VALUES (?, ?, ?, ?)');
    for (const loc of backup.part.locations) {
      const col = quoteIdent(loc.column);
      for (const row of copy.prepare(`SELECT ${quoteIdent(loc.idColumn)} AS id, ${col} AS v FROM ${quoteIdent(loc.table)} WHERE ${col} IS NOT NULL`).safeIntegers(true).iterate() as Iterable<{ id: unknown; v: unknown }>) {
        load.run(loc.table, loc.column, row.id, row.v);
        backupValues++;
      }
    }
    db.exec('CREATE INDEX IF NOT EXISTS temp.mk_backup_values_at ON mk_backup_values (t, c, id)');
    for (const loc of backup.part.locations) {
      const id = quoteIdent(loc.idColumn);
      const col = quoteIdent(loc.column);
      const table = quoteIdent(loc.table);
      const aad = aadColumnsAt(inv, loc);
      const ids = (after: boolean) =>
        db
          .prepare(
            `SELECT id FROM (SELECT ${id} AS id FROM ${table} WHERE ${col} IS NOT NULL${after ? ` AND ${id} > ?` : ''}
                 UNION SELECT id FROM temp.mk_backup_values WHERE t = ? AND c = ?${after ? ' AND id > ?' : ''}) ORDER BY id LIMIT ?`,
          )
          .pluck()
          .safeIntegers(true);
      const first = ids(false);
      const next = ids(true);
      const live = (n: number) =>
        db.prepare(`SELECT ${id} AS id, ${col} AS v${aad.map((a, i) => `, CAST(${quoteIdent(a)} AS TEXT) AS a${i}`).join('')} FROM ${table} WHERE ${col} IS NOT NULL AND ${id} IN (${new Array(n).fill('?').join(', ')})`).safeIntegers(true);
      const saved = (n: number) => db.prepare(`SELECT id, v FROM temp.mk_backup_values WHERE t = ? AND c = ? AND id IN (${new Array(n).fill('?').join(', ')})`).safeIntegers(true);
      const update = db.prepare(`UPDATE ${table} SET ${col} = ? WHERE ${id} = ?`).safeIntegers(true);
      let after: unknown;
      for (;;) {
        const keys = (after === undefined ? first.all(loc.table, loc.column, batchSize) : next.all(after, loc.table, loc.column, after, batchSize)) as unknown[];
        if (keys.length === 0) break;
        const liveRows = new Map((live(keys.length).all(...keys) as Array<Record<string, unknown>>).map((r) => [keyOf(r.id), r]));
        const savedRows = new Map((saved(keys.length).all(loc.table, loc.column, ...keys) as Array<{ id: unknown; v: unknown }>).map((r) => [keyOf(r.id), r.v]));
        const batch: ValuePair[] = keys.map((k) => {
          const l = liveRows.get(keyOf(k));
          const lv = asText(l?.v);
          const bv = asText(savedRows.get(keyOf(k)));
          return {
            id: String(k),
            ...(lv !== undefined ? { live: lv } : {}),
            ...(bv !== undefined ? { backup: bv } : {}),
            ...(aad.length && l ? { aad: Object.fromEntries(aad.map((a, i) => [a, (l[`a${i}`] as string | null) ?? null])) } : {}),
          };
        });
        pairs += batch.length;
        const texts = await decide(loc, batch);
        texts.forEach((text, i) => {
          if (text !== undefined) written += update.run(text, keys[i]).changes;
        });
        if (keys.length < batchSize) break;
        after = keys[keys.length - 1];
      }
    }
  } finally {
    copy.close();
    db.exec('DROP TABLE IF EXISTS temp.mk_backup_values');
  }
  if (backupValues !== backup.part.values) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup lists ${backup.part.values} values but its database holds ${backupValues}; it cannot be restored.`);
  }
  return { backupValues, pairs, written };
}

/**
 * A restore drill (`Store.drill`): checks the backup's database copy,
 * restores it through SQLite's backup API into a scratch database in a new
 * temporary directory (0700), and runs `fn` on a read transaction there; the
 * scratch database is removed afterwards, whatever happens. The live file is
 * not opened.
 */
export async function drillCopy<T>(backup: BackupToRestore, inv: Inventory, fn: (db: Db, path: string, copy: ScratchCopy) => Promise<T>): Promise<T> {
  const copyPath = await checkBackupCopy(backup);
  const dir = mkdtempSync(join(tmpdir(), 'mk-drill-'));
  try {
    chmodSync(dir, 0o700);
    const scratch = join(dir, 'drill.sqlite');
    const source = connect(copyPath, { readonly: true });
    try {
      await source.backup(scratch);
    } catch (e) {
      throw translateSqliteError(e, 'restoring the backup into a scratch database', scratch);
    } finally {
      source.close();
    }
    const db = connect(scratch);
    try {
      return await withTransaction(db, () => fn(db, scratch, { inventory: inv, liveTable: (t) => t, values: backup.part.values }), 'read');
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
