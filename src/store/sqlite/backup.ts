/**
 * The SQLite store's part of a backup: the whole database file, made at a
 * path the backup's sink gives (`BackupSink.scratch`), then handed over to
 * it (`adopt`). The copy is made through SQLite's online backup API from a
 * connection reading the committed database (a consistent copy even while
 * the server runs, including what a WAL file holds), or, in a
 * rollback-journal mode under the write lock before anything is written,
 * byte for byte (`copyDatabaseFile`); then switched to a rollback journal
 * so the copy is one self-contained file that opens anywhere, read-only too
 * (`finishBackup`).
 *
 * A rotation that sealed ahead makes that copy in seal-ahead's snapshot,
 * with the server still up, and adds in its window only `changes.sqlite`
 * (`ChangesWriter`): the value at the lock of every place whose value is
 * not the copy's any more (added or changed since; NULL where none is left).
 * Together they hold exactly the values at the lock: the copy's, overridden
 * by place by the changes.
 *
 * Restore reads the backed-up values from the copy (and the changes) and
 * writes, in the caller's write transaction, what the runbook decides for
 * each (`restoreValuesFrom`); a drill restores the copy into a scratch
 * database through the same API and applies the changes there (`drillCopy`).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MasterKeyError } from '../../errors';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupSink, BackupToRestore, Location, RestoreCounts, RestoreDecision, ScratchCopy, StoredFile, ValuePair, aadColumnsAt, backupFileError, inventoryLocations } from '../store';
import { Db, connect, translateSqliteError, withTransaction } from './driver';
import { readCanary } from './meta';

/** The database's copy inside a backup directory. */
export const DATABASE_FILE = 'database.sqlite';

/** A backup made ahead: the values at the lock that are not the copy's (see the file's comment). */
export const CHANGES_FILE = 'changes.sqlite';

/** What `changes.sqlite`'s `meta` table names. */
const CHANGES_FORMAT = 'cdktf-master-key/sqlite-changes/v1';

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
  return finishBackup(path, inv, await copyDatabase(source, path));
}

/** Copies the database of `source` (its snapshot, when it is in a read transaction) into `path` through the online backup API; the pages copied. Finish it with `finishBackup`. */
export async function copyDatabase(source: Db, path: string, pagesPerStep = PAGES_PER_STEP): Promise<number> {
  try {
    return (await source.backup(path, { progress: () => pagesPerStep })).totalPages;
  } catch (e) {
    throw sqliteFileError(e, path, 'writing the backup');
  }
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
 * a WAL database is marked WAL), and counts the inventory's values in it
 * (unless the caller counted them as it read the same snapshot: 0).
 * The sink makes it durable when it is handed over.
 */
export function finishBackup(path: string, inv: Inventory, pages?: number, count = true): number {
  let values = 0;
  let copy: Db | undefined;
  try {
    copy = connect(path);
    // The driver reports a copy that SQLite refused as busy as finished: check it holds every page.
    const copied = copy.pragma('page_count', { simple: true });
    if (pages !== undefined && (pages === 0 || copied !== pages)) {
      throw new MasterKeyError('DB_BUSY', `The backup of the SQLite database copied ${String(copied)} of ${pages} pages (the database was busy); nothing was changed: run the command again.`);
    }
    copy.pragma('journal_mode = DELETE');
    if (count) values = countStored(copy, inventoryLocations(inv));
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
    // With changes, the values are counted once they are applied.
    const values = hasChanges(backup) ? backup.part.values : countStored(copy, backup.part.locations);
    if (values !== backup.part.values) throw corrupt(`lists ${backup.part.values} values but its database holds ${values}`);
  } catch (e) {
    if (e instanceof MasterKeyError) throw e.code === 'BACKUP_CORRUPT' ? e : corrupt(`cannot be read as a SQLite database (${e.message})`);
    throw corrupt(`cannot be read as a SQLite database (${(e as Error).message})`);
  } finally {
    copy?.close();
  }
  return path;
}

/** Whether a backup has a changes file (listed in its manifest). */
function hasChanges(backup: BackupToRestore): boolean {
  return backup.storeFiles?.includes(CHANGES_FILE) ?? false;
}

/** One row of `changes.sqlite`: table, column, row id (as stored), the value at the lock (NULL: none), the row's additional-data columns as text (JSON; NULL when the row is gone). */
export interface Change {
  readonly t: string;
  readonly c: string;
  readonly id: unknown;
  readonly v: unknown;
  readonly a: string | null;
}

/**
 * Writes `changes.sqlite` (see the file's comment) through a backup sink:
 * a small SQLite file of its own, made at the sink's scratch path, filled
 * in one transaction as the cut-over finds the changed rows, then handed
 * over (durable, and sealed when the sink seals). `delta` is what the
 * changes add to the copy's count of values.
 */
export class ChangesWriter {
  delta = 0;
  private readonly insert;

  private constructor(
    private readonly sink: BackupSink,
    private readonly path: string,
    private readonly db: Db,
  ) {
    this.insert = db.prepare('INSERT OR REPLACE INTO changes (t, c, id, v, a) VALUES (?, ?, ?, ?, ?)');
  }

  static async open(sink: BackupSink): Promise<ChangesWriter> {
    const path = await sink.scratch(CHANGES_FILE);
    let db: Db | undefined;
    try {
      db = connect(path);
      // Made durable by the sink when handed over; a crash leaves a backup without a manifest, which recover removes.
      db.pragma('journal_mode = OFF');
      db.pragma('synchronous = OFF');
      db.exec(`CREATE TABLE meta (format TEXT NOT NULL); INSERT INTO meta VALUES ('${CHANGES_FORMAT}');
               CREATE TABLE changes (t TEXT NOT NULL, c TEXT NOT NULL, id NOT NULL, v, a TEXT, PRIMARY KEY (t, c, id));
               BEGIN`);
      return new ChangesWriter(sink, path, db);
    } catch (e) {
      db?.close();
      throw sqliteFileError(e, path, 'writing the backup');
    }
  }

  /** The value at the lock of a place whose copy held `had` (a value, or none). */
  add(t: string, c: string, id: unknown, v: unknown, a: string | null, had: boolean): void {
    try {
      this.insert.run(t, c, id, v ?? null, a);
    } catch (e) {
      throw sqliteFileError(e, this.path, 'writing the backup');
    }
    this.delta += (v === null || v === undefined ? 0 : 1) - (had ? 1 : 0);
  }

  /** Commits, closes and hands the file over: durable (sealed) when this resolves. */
  async finish(): Promise<StoredFile> {
    try {
      this.db.exec('COMMIT');
      this.db.close();
    } catch (e) {
      throw sqliteFileError(e, this.path, 'writing the backup');
    }
    return this.sink.adopt(CHANGES_FILE);
  }

  /** Gives the file up (the rotation failed; its backup directory is removed). Never throws. */
  abort(): void {
    try {
      if (this.db.open) this.db.close();
    } catch {
      // closed already
    }
  }
}

/**
 * Opens a backup's changes file (none: undefined), checked: a sound SQLite
 * file of this format whose places are all locations the manifest lists.
 * BACKUP_CORRUPT otherwise. The caller closes it.
 */
async function openChanges(backup: BackupToRestore): Promise<Db | undefined> {
  if (!hasChanges(backup)) return undefined;
  const path = await backup.files.path(CHANGES_FILE);
  const corrupt = (what: string) => new MasterKeyError('BACKUP_CORRUPT', `The backup ${backup.dir} ${what}; it cannot be restored.`);
  let db: Db | undefined;
  try {
    db = connect(path, { readonly: true });
    if (db.pragma('quick_check', { simple: true }) !== 'ok') throw corrupt(`holds a damaged ${CHANGES_FILE}`);
    if (db.prepare('SELECT format FROM meta').pluck().get() !== CHANGES_FORMAT) throw corrupt(`holds a ${CHANGES_FILE} of an unknown format`);
    const known = new Set(backup.part.locations.map((l) => `${l.table}\0${l.column}`));
    for (const { t, c } of db.prepare('SELECT DISTINCT t, c FROM changes').all() as Array<{ t: string; c: string }>) {
      if (!known.has(`${t}\0${c}`)) throw corrupt(`holds changes for ${t}.${c}, which its manifest does not list`);
    }
    return db;
  } catch (e) {
    db?.close();
    if (e instanceof MasterKeyError && e.code === 'BACKUP_CORRUPT') throw e;
    throw corrupt(`holds a ${CHANGES_FILE} that cannot be read as a SQLite database (${(e as Error).message})`);
  }
}

/** Every change of an opened changes file, in order (each location's rows by id). */
function eachChange(changes: Db): Iterable<Change> {
  return changes.prepare('SELECT t, c, id, v, a FROM changes ORDER BY t, c, id').safeIntegers(true).iterate() as Iterable<Change>;
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
  const changes = await openChanges(backup);
  let copy: Db;
  try {
    copy = connect(copyPath, { readonly: true });
  } catch (e) {
    changes?.close();
    throw e;
  }
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
    if (changes) {
      // The values at the lock: each change overrides the copy's value at its place.
      const drop = db.prepare('DELETE FROM temp.mk_backup_values WHERE t = ? AND c = ? AND id = ?');
      for (const ch of eachChange(changes)) {
        backupValues -= drop.run(ch.t, ch.c, ch.id).changes;
        if (ch.v !== null) backupValues += load.run(ch.t, ch.c, ch.id, ch.v).changes;
      }
    }
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
    changes?.close();
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
 * temporary directory (0700), applies its changes there (`applyChanges`),
 * and runs `fn` on a read transaction there; the scratch database is
 * removed afterwards, whatever happens. The live file is not opened.
 */
export async function drillCopy<T>(backup: BackupToRestore, inv: Inventory, fn: (db: Db, path: string, copy: ScratchCopy) => Promise<T>): Promise<T> {
  const copyPath = await checkBackupCopy(backup);
  const changes = await openChanges(backup);
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
      const copy = changes ? applyChanges(db, changes, backup, inv) : { inventory: inv, liveTable: (t: string) => t, values: backup.part.values };
      return await withTransaction(db, () => fn(db, scratch, copy), 'read');
    } finally {
      db.close();
    }
  } finally {
    changes?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The changes of a backup made ahead, applied to a drill's scratch copy:
 * each table they touch is copied into a plain table of its own (its id,
 * value and additional-data columns, no constraints nor triggers, a unique
 * index on the id), the changes are written there by place (a row added
 * since the copy is inserted with its additional data), and the inventory
 * points there. BACKUP_CORRUPT when the values then held are not the
 * manifest's count.
 */
function applyChanges(db: Db, changes: Db, backup: BackupToRestore, inv: Inventory): ScratchCopy {
  const touched = new Map<string, string>();
  const locations = backup.part.locations;
  db.exec('BEGIN');
  try {
    for (const table of changes.prepare('SELECT DISTINCT t FROM changes ORDER BY t').pluck().all() as string[]) {
      const scratch = `mk_drill_${touched.size + 1}`;
      touched.set(table, scratch);
      const idColumn = locations.find((l) => l.table === table)!.idColumn;
      const cols = [...new Set(locations.filter((l) => l.table === table).flatMap((l) => [l.column, ...aadColumnsAt(inv, l)]))].filter((c) => c !== idColumn);
      db.exec(`CREATE TABLE ${quoteIdent(scratch)} AS SELECT ${[idColumn, ...cols].map(quoteIdent).join(', ')} FROM ${quoteIdent(table)}`);
      db.exec(`CREATE UNIQUE INDEX ${quoteIdent(`${scratch}_id`)} ON ${quoteIdent(scratch)} (${quoteIdent(idColumn)})`);
    }
    for (const ch of eachChange(changes)) {
      const loc = locations.find((l) => l.table === ch.t && l.column === ch.c)!;
      const aad = aadColumnsAt(inv, loc).filter((a) => a !== loc.column && a !== loc.idColumn);
      const a = ch.a === null ? {} : (JSON.parse(ch.a) as Record<string, string | null>);
      const set = [loc.column, ...aad.filter((x) => x in a)];
      const vals = [ch.v, ...aad.filter((x) => x in a).map((x) => a[x])];
      db.prepare(
        `INSERT INTO ${quoteIdent(touched.get(ch.t)!)} (${[loc.idColumn, ...set].map(quoteIdent).join(', ')}) VALUES (?${', ?'.repeat(set.length)})
           ON CONFLICT (${quoteIdent(loc.idColumn)}) DO UPDATE SET ${set.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(', ')}`,
      )
        .safeIntegers(true)
        .run(ch.id, ...vals);
    }
    db.exec('COMMIT');
  } catch (e) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup ${backup.dir} holds a ${CHANGES_FILE} that cannot be applied to its database copy (${(e as Error).message}); it cannot be restored.`);
  }
  const at = (table: string) => touched.get(table) ?? table;
  const values = countStored(db, locations.map((l) => ({ ...l, table: at(l.table) })));
  if (values !== backup.part.values) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup ${backup.dir} lists ${backup.part.values} values but its database and changes hold ${values}; it cannot be restored.`);
  }
  const live = new Map([...touched].map(([table, scratch]) => [scratch, table]));
  return {
    inventory: { name: `${inv.name} (scratch copy of a backup)`, entries: inv.entries.map((e) => ({ ...e, table: at(e.table) })) },
    liveTable: (t) => live.get(t) ?? t,
    values,
  };
}
