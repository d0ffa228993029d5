/**
 * The SQLite store (ACT's default: `ACT_DATABASE_URL=sqlite:/var/lib/act/act.db`):
 * one connection to an existing database file per store. Reads run in one
 * deferred transaction (one snapshot), the rotation in one `BEGIN IMMEDIATE`
 * transaction (the write lock first, so every other writer waits or fails
 * and nothing changes between what it reads, backs up and rewrites). The
 * rotation lock is a lock file beside the database (`./lock.ts`); backups
 * are the whole file (`./backup.ts`).
 */
import { realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { both } from '../../both';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError, isMasterKeyError } from '../../errors';
import { checkDirWritable } from '../../fsutil';
import { Inventory } from '../../inventory/inventory';
import {
  BackupPart,
  CanaryRow,
  CanaryUpdate,
  Drill,
  HistoryRow,
  InventoryCounts,
  LockHolder,
  OpenOptions,
  ReadTx,
  ReencryptResult,
  RestoreCounts,
  Restoration,
  RotationBlocker,
  Rotation,
  RotationResult,
  ScratchCopy,
  SealAhead,
  SealAheadSupport,
  Staged,
  StagingArea,
  Store,
  StoreIdentity,
  WalkOptions,
  VerifyOptions,
  WriteTx,
  assertSameBackup,
  canaryNotFound,
  inventoryLocations,
} from '../store';
import { ACT_SCHEMA_SQLITE } from './act-schema';
import { countInventory } from './counts';
import { ChangesWriter, DATABASE_FILE, backupBesideWriter, copyDatabaseFile, drillCopy, restoreValuesFrom } from './backup';
import { Db, connect, fileWritable, translateSqliteError, withTransaction } from './driver';
import { Flusher } from './flush';
import { RotationLock } from './lock';
import { readerAvailable, readerBackup, readerCheckpoint, readerFinish, readerReseal, readerVerifyPart } from './reader';
import { CANARY_TABLE, databaseId, insertCanary, historyWith, insertHistory, lastHistory, readCanary, replaceCanary, setHistoryOutcome, tableExists } from './meta';
import { sqliteFile } from './url';
import { processesLocking } from './holders';
import { DEFAULT_LOCK_TIMEOUT_MS, describeLockTimeout } from '../../lock-timeout';
import { cutOverSqlite, dropStagingSqlite, intactStagingSqlite, sealAheadSqlite, sealAheadSupportSqlite, stagingAreasSqlite } from './staging';
import { planTables, reencryptValues, scanValues, verifyValues, worthThreads } from './values';

/** Whether the database is in WAL mode (else a rollback journal). */
function isWal(db: Db): boolean {
  return String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
}

/** Opens a SQLite store on `url` (`sqlite:/absolute/path`; a relative path against the working directory). */
export async function openSqlite(url: string, opts: OpenOptions = {}): Promise<SqliteStore> {
  const file = sqliteFile(url);
  const lockTimeoutMs = opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const db = connect(file, { timeout: lockTimeoutMs });
  return new SqliteStore(db, realpathSync(file), opts.label ?? 'master-key', lockTimeoutMs);
}

/** Reads and writes on the store's connection, inside the transaction `read`/`write` opened. */
class SqliteTx implements WriteTx {
  /** Rows this connection had changed when the write transaction began (`total_changes()`), to tell whether the transaction has written since. */
  changesAtBegin?: number;

  constructor(
    private readonly db: Db,
    private readonly path: string,
  ) {}

  async canary(): Promise<CanaryRow | undefined> {
    return readCanary(this.db);
  }

  /** The write transaction already holds the database's write lock. */
  async canaryForUpdate(): Promise<CanaryRow | undefined> {
    return readCanary(this.db);
  }

  scan(inv: Inventory, keys: KeySource, opts?: WalkOptions) {
    return scanValues(this.db, inv, keys, opts);
  }

  /**
   * This connection scans the rows below the middle key of each table
   * while a reader thread scans the others (more than a few batches), in a snapshot of its own (after
   * a COMMIT, or in a read transaction that does nothing else, both see
   * the same database unless another process writes meanwhile, which the
   * digest then shows).
   */
  verify(inv: Inventory, key: MasterKey, opts: VerifyOptions = {}) {
    if (!readerAvailable() || !worthThreads(this.db, inv, opts.batchSize)) return verifyValues(this.db, inv, key, opts);
    const done = [0, 0];
    const progress = (part: number) => (n: number) => {
      done[part] = n;
      opts.onProgress?.(done[0] + done[1]);
    };
    return verifyValues(this.db, inv, key, { ...opts, onProgress: progress(0) }, (middle) => readerVerifyPart(this.path, inv, middle, opts, progress(1)));
  }

  restore(r: Restoration): Promise<RestoreCounts> {
    return restoreValuesFrom(this.db, r.backup, r.inventory, r.decide, r.batchSize);
  }

  /** `BEGIN IMMEDIATE` took the database's write lock: every other writer already waits; this checks the tables. */
  async lockSecretTables(inv: Inventory): Promise<void> {
    if (!this.db.inTransaction) throw new MasterKeyError('INTERNAL', 'The secret tables can only be locked inside the write transaction; this is a bug in the caller.');
    planTables(this.db, inv);
  }

  /**
   * The backup is a copy of the database file, made from the committed
   * database, which is exactly what this transaction sees as long as it has
   * not written (checked: the rotation must come first). In WAL mode a
   * reader thread copies it (the online backup API) while this connection
   * rewrites: no other connection sees those writes before the COMMIT. In
   * a rollback-journal mode the file is copied as it is first, and the
   * rewriting starts once that copy is made, while it is finished (checked,
   * counted, handed to the sink) beside it. A few batches of rows in a file
   * under `COPY_BESIDE_BYTES`: a second connection on this thread copies it
   * first (a file that large, even of two rows, is copied beside). After a seal-ahead that
   * copied the database in its snapshot (`Staged.backedUp`), only the values
   * changed since go into the backup, from the cut-over (`changes.sqlite`).
   */
  async rotate(r: Rotation): Promise<RotationResult> {
    assertSameBackup(r);
    if (this.changesAtBegin === undefined || totalChanges(this.db) !== this.changesAtBegin) {
      throw new MasterKeyError('INTERNAL', 'The rotation must be the first write of its transaction (its backup copies the committed database); this is a bug in the caller.');
    }
    const { backup: sink, staged, ...rotation } = r;
    const inv = r.inventory;
    const token = staged ? intactStagingSqlite(this.db, r) : undefined;
    let sealAhead: RotationResult['sealAhead'];
    let changes: ChangesWriter | undefined;
    const reseal = async (): Promise<ReencryptResult> => {
      if (!token) {
        const re = await reencryptBeside(this.db, this.path, rotation);
        if (staged) sealAhead = { used: false, swappedRows: 0, resealedRows: re.updated };
        return re;
      }
      const { swappedRows, resealedRows, ...re } = await cutOverSqlite(this.db, r, token, new Flusher([`${this.path}${isWal(this.db) ? '-wal' : '-journal'}`]), changes);
      sealAhead = { used: true, swappedRows, resealedRows };
      return re;
    };
    if (token?.backup) {
      // The copy was made in seal-ahead's snapshot: only the values changed since are written here.
      changes = await ChangesWriter.open(sink);
      try {
        const re = await reseal();
        const file = await changes.finish();
        return { reencrypted: re, backup: { files: [...token.backup.files, file], values: token.backup.values + changes.delta, locations: inventoryLocations(inv) }, ...(sealAhead ? { sealAhead } : {}) };
      } finally {
        changes?.abort();
      }
    }
    // A copy made ahead that cannot be used (the staging area is no longer intact): the backup is made here, as in one pass.
    if (staged?.backedUp) await sink.discard(DATABASE_FILE);
    const dest = await sink.scratch(DATABASE_FILE);
    const handOver = async (values: number): Promise<BackupPart> => ({ files: [await sink.adopt(DATABASE_FILE)], values, locations: inventoryLocations(inv) });
    if (!readerAvailable() || !(worthThreads(this.db, inv, r.batchSize) || copyWorthThread(this.db))) {
      const backup = await handOver(await backupBesideWriter(this.path, inv, dest));
      return { backup, reencrypted: await reseal(), ...(sealAhead ? { sealAhead } : {}) };
    }
    if (isWal(this.db)) {
      const [reencrypted, backup] = await both(reseal(), readerBackup(this.path, inv, dest).then(handOver));
      return { reencrypted, backup, ...(sealAhead ? { sealAhead } : {}) };
    }
    // The copy is made before this transaction writes; it is finished beside the rewriting.
    await copyDatabaseFile(this.path, dest);
    const [reencrypted, backup] = await both(reseal(), readerFinish(dest, inv).then(handOver));
    return { reencrypted, backup, ...(sealAhead ? { sealAhead } : {}) };
  }

  async replaceCanary(canary: CanaryUpdate): Promise<void> {
    replaceCanary(this.db, canary);
  }

  async insertHistory(row: HistoryRow): Promise<void> {
    insertHistory(this.db, row);
  }
}

/** A lock another connection holds, beyond the busy timeout. */
function isBusy(e: unknown): boolean {
  const code = String((e as { code?: unknown })?.code ?? '');
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

/** Bytes of database from which its copy is made in a reader thread, whatever its rows: copying it takes longer than starting the thread. */
const COPY_BESIDE_BYTES = 8 << 20;

/** Whether the database file is large enough that its backup copy pays for a thread of its own (a few rows can hold a large value). */
function copyWorthThread(db: Db): boolean {
  return Number(db.pragma('page_count', { simple: true })) * Number(db.pragma('page_size', { simple: true })) >= COPY_BESIDE_BYTES;
}

/** Rows changed by this connection so far. */
function totalChanges(db: Db): number {
  return Number(db.prepare('SELECT total_changes()').pluck().get());
}

/**
 * The re-encryption of a rotation, in the write transaction on `db` (the
 * database file at `path`), which has not written yet: in WAL mode, unless
 * `r.crypto` says where the crypto runs or the tables hold only a few
 * batches of rows, a reader thread reads the committed database (what this
 * transaction sees) and re-seals it, and this connection only writes; else
 * this connection reads, with the crypto in a worker thread (or, for a few
 * batches, on this thread). What SQLite writes into its WAL or journal is
 * flushed to disk as it goes. Also the benchmark's "ours".
 */
export function reencryptBeside(db: Db, path: string, r: Omit<Rotation, 'backup'>): Promise<ReencryptResult> {
  const { inventory: inv, from, to, ...walk } = r;
  const wal = isWal(db);
  const beside = !r.crypto && readerAvailable() && wal && worthThreads(db, inv, r.batchSize);
  const flusher = new Flusher([`${path}${wal ? '-wal' : '-journal'}`]);
  return reencryptValues(db, inv, from, to, walk, beside ? (_, batchSize) => readerReseal(path, inv, from, to, batchSize) : undefined, flusher);
}

export class SqliteStore implements Store {
  private readonly tx: SqliteTx;
  private readonly lock: RotationLock;

  constructor(
    private readonly db: Db,
    private readonly path: string,
    label: string,
    private readonly lockTimeoutMs: number = DEFAULT_LOCK_TIMEOUT_MS,
  ) {
    this.tx = new SqliteTx(db, path);
    this.lock = new RotationLock(path, label);
  }

  get description(): string {
    return this.path;
  }

  async identity(): Promise<StoreIdentity> {
    return { name: this.path, systemIdentifier: databaseId(this.db) };
  }

  /** The file and its directory (where SQLite writes its journal) must be writable: really tried, as permission bits say nothing to root. */
  async assertWritable(): Promise<void> {
    const file = fileWritable(this.path);
    if (!file.ok) {
      throw new MasterKeyError('DB_READ_ONLY', `The SQLite database ${this.path} cannot be written by this user (${file.reason}); nothing was changed: run as the user that owns it, or make it writable.`);
    }
    try {
      checkDirWritable(dirname(this.path), 'DB_READ_ONLY', "the SQLite database's directory (SQLite writes its journal there)");
    } catch (e) {
      throw isMasterKeyError(e) ? new MasterKeyError('DB_READ_ONLY', `${e.message.replace(/\.$/, '')}; nothing was changed.`, e.details, { cause: e }) : e;
    }
  }

  /** The file and its directory writable (DB_READ_ONLY otherwise); SQLite has no privileges of its own. */
  async rotationBlockers(): Promise<readonly RotationBlocker[]> {
    try {
      await this.assertWritable();
      return [];
    } catch (e) {
      // Plan lists it, and apply's refusal says that nothing was changed.
      if (isMasterKeyError(e, 'DB_READ_ONLY')) return [{ problem: e.message.replace('; nothing was changed', ''), code: e.code }];
      throw e;
    }
  }

  /** A database never initialised has no rotation to lock: CANARY_NOT_FOUND, and no lock file is made beside it. */
  async lockRotation(): Promise<void> {
    if (!tableExists(this.db, CANARY_TABLE)) throw canaryNotFound();
    this.lock.acquire();
  }

  async lockHolder(): Promise<LockHolder | undefined> {
    return this.lock.holder();
  }

  /** Nothing to wait for: a transaction that was interrupted was rolled back when this connection first read the file. */
  async readCanary(): Promise<CanaryRow | undefined> {
    return readCanary(this.db);
  }

  async lastHistory(): Promise<HistoryRow | undefined> {
    return lastHistory(this.db);
  }

  async historyWith(outcome: string, limit: number): Promise<HistoryRow[]> {
    return historyWith(this.db, outcome, limit);
  }

  async setHistoryOutcome(rotationId: string, outcome: string, verifiedAt?: Date): Promise<void> {
    await withTransaction(this.db, async () => setHistoryOutcome(this.db, rotationId, outcome, verifiedAt), 'write');
  }

  async initialise(canary: CanaryRow): Promise<void> {
    try {
      await withTransaction(this.db, async () => insertCanary(this.db, canary), 'write');
    } catch (e) {
      // A concurrent init may have won the race for the canary's row.
      if (String((e as { code?: unknown }).code).startsWith('SQLITE_CONSTRAINT')) {
        throw new MasterKeyError('CANARY_EXISTS', 'This database was initialised by another process just now; nothing was changed: use `master-key status`.');
      }
      throw e;
    }
  }

  /** In one read transaction (`./counts`). */
  count(inv: Inventory): Promise<InventoryCounts> {
    return withTransaction(this.db, async () => countInventory(this.db, inv), 'read');
  }

  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    return withTransaction(this.db, () => fn(this.tx), 'read');
  }

  /**
   * In WAL mode the COMMIT makes the WAL durable, and SQLite would then copy
   * its pages into the database file (its automatic checkpoint) before the
   * COMMIT returns: after a large transaction that checkpoint runs in a
   * reader thread instead, while the caller goes on (after a rotation: the
   * config files, the start hooks, verification); `close` waits for it.
   */
  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    return this.writeDb(() => ((this.tx.changesAtBegin = totalChanges(this.db)), fn(this.tx)));
  }

  /** The write transaction of `write` around fn, on this session's connection (`reencryptAlone` runs in it too). */
  async writeDb<T>(fn: (db: Db, path: string) => Promise<T>): Promise<T> {
    const wal = isWal(this.db);
    const auto = wal ? Number(this.db.pragma('wal_autocheckpoint', { simple: true })) : 0;
    if (wal) this.db.pragma('wal_autocheckpoint = 0');
    let committed = false;
    try {
      const r = await withTransaction(this.db, () => fn(this.db, this.path), 'write');
      committed = true;
      return r;
    } catch (e) {
      throw isBusy(e) ? this.busy(e) : e;
    } finally {
      if (wal) {
        this.db.pragma(`wal_autocheckpoint = ${auto}`);
        if (committed) this.checkpoint(auto);
      }
    }
  }

  /** The write transaction could not have the database within the lock timeout: TABLES_BUSY, naming the processes holding its write lock where the kernel tells. */
  private busy(e: unknown): MasterKeyError {
    const holders = processesLocking(this.path);
    const who = holders.length
      ? `${holders.length === 1 ? 'process' : 'processes'} ${holders.map((h) => `pid ${h.pid}${h.command ? ` ("${h.command}")` : ''}`).join(', ')}`
      : 'another process';
    return new MasterKeyError(
      'TABLES_BUSY',
      `The rotation could not lock the SQLite database ${this.path} within the lock timeout of ${describeLockTimeout(this.lockTimeoutMs)}: ${who} held its write lock (a server still running, or a transaction left open); nothing was changed: stop that process or end its transaction and run the command again, or raise the lock timeout.`,
      { lockTimeoutMs: this.lockTimeoutMs, holders },
      { cause: e },
    );
  }

  /** The checkpoint SQLite skipped at the COMMIT: here when the WAL is short, else in a reader thread. */
  private checkpoint(pages: number): void {
    if (pages <= 0) return;
    let size = 0;
    try {
      size = statSync(`${this.path}-wal`).size;
    } catch {
      return; // no WAL: nothing to copy
    }
    if (!readerAvailable() || size < pages * Number(this.db.pragma('page_size', { simple: true }))) {
      this.db.pragma('wal_checkpoint(PASSIVE)');
      return;
    }
    // A failed checkpoint leaves the WAL as it is: SQLite checkpoints it later.
    this.checkpointing = Promise.all([this.checkpointing, readerCheckpoint(this.path).catch(() => undefined)]).then(() => undefined);
  }

  /** A checkpoint running in a reader thread. */
  private checkpointing?: Promise<void>;

  /** Restores the backup's database into a scratch file of its own and reads it there; the live file is not opened. */
  drill<T>(d: Drill, fn: (tx: ReadTx, copy: ScratchCopy) => Promise<T>): Promise<T> {
    return drillCopy(d.backup, d.inventory, (db, path, copy) => fn(new SqliteTx(db, path), copy));
  }

  async sealAheadSupport(inv: Inventory, bytes: number): Promise<SealAheadSupport> {
    return sealAheadSupportSqlite(this.db, this.path, inv, bytes);
  }

  sealAhead(s: SealAhead): Promise<Staged> {
    return sealAheadSqlite(this.db, this.path, s);
  }

  async stagingAreas(): Promise<StagingArea[]> {
    return stagingAreasSqlite(this.db, this.path);
  }

  async dropStaging(): Promise<StagingArea[]> {
    return dropStagingSqlite(this.db, this.path);
  }

  /** Detaching and removing a file is done before this returns: nothing of it runs beside the session. */
  dropStagingBeside(): Promise<StagingArea[]> {
    return this.dropStaging();
  }

  async close(): Promise<void> {
    await this.checkpointing;
    this.lock.release();
    try {
      this.db.close();
    } catch {
      // already closed
    }
  }
}

/** Creates the ACT preset's tables where missing (`master-key init --create-act-schema`), in a transaction of its own. */
export async function createActSchemaSqlite(url: string): Promise<void> {
  const file = sqliteFile(url);
  const db = connect(file);
  try {
    await withTransaction(db, async () => db.exec(ACT_SCHEMA_SQLITE), 'write');
  } catch (e) {
    throw translateSqliteError(e, 'creating the ACT tables', file);
  } finally {
    db.close();
  }
}

/**
 * The re-encryption of a rotation without its backup, in a write
 * transaction of its own on a new session, exactly as `rotate` runs it
 * (the benchmark's "ours", measured apart from the backup).
 */
export async function reencryptAlone(url: string, r: Omit<Rotation, 'backup'>): Promise<ReencryptResult> {
  const store = await openSqlite(url);
  try {
    return await store.writeDb(async (db, path) => {
      planTables(db, r.inventory);
      return reencryptBeside(db, path, r);
    });
  } finally {
    await store.close();
  }
}
