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
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError, isMasterKeyError } from '../../errors';
import { checkDirWritable } from '../../fsutil';
import { Inventory } from '../../inventory/inventory';
import {
  BackupToRestore,
  CanaryRow,
  CanaryUpdate,
  HistoryRow,
  InventoryCounts,
  LockHolder,
  OpenOptions,
  ReadTx,
  RestoreCounts,
  RestoreDecision,
  ScratchCopy,
  Store,
  StoreIdentity,
  WalkOptions,
  VerifyOptions,
  WriteTx,
  canaryNotFound,
} from '../store';
import { ACT_SCHEMA_SQLITE } from './act-schema';
import { countInventory } from './counts';
import { backupBesideWriter, backupDatabase, copyDatabaseFile, drillCopy, restoreValuesFrom } from './backup';
import { Db, connect, fileWritable, translateSqliteError, withTransaction } from './driver';
import { Flusher } from './flush';
import { RotationLock } from './lock';
import { readerAvailable, readerBackup, readerCheckpoint, readerFinish, readerReseal, readerVerifyPart } from './reader';
import { CANARY_TABLE, databaseId, insertCanary, insertHistory, lastHistory, readCanary, replaceCanary, setHistoryOutcome, tableExists } from './meta';
import { sqliteFile } from './url';
import { planTables, reencryptValues, scanValues, verifyValues, worthThreads } from './values';

/** Whether the database is in WAL mode (else a rollback journal). */
function isWal(db: Db): boolean {
  return String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
}

/** Opens a SQLite store on `url` (`sqlite:/absolute/path`; a relative path against the working directory). */
export async function openSqlite(url: string, opts: OpenOptions = {}): Promise<Store> {
  const file = sqliteFile(url);
  const db = connect(file);
  return new SqliteStore(db, realpathSync(file), opts.label ?? 'master-key');
}

/** Reads and writes on the store's connection, inside the transaction `read`/`write` opened. */
class SqliteTx implements WriteTx {
  /** What the open transaction is, and whether it has written yet. */
  state: 'read' | 'write' | 'written' = 'read';

  constructor(
    private readonly db: Db,
    private readonly path: string,
  ) {}

  private writing(): void {
    if (this.state === 'write') this.state = 'written';
  }

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
   * In a read transaction: its snapshot; in the write transaction before it
   * writes: the committed database, which is what it sees. In WAL mode a
   * reader thread copies it (the online backup API) while the transaction
   * writes: no other connection sees those writes before the COMMIT. In a
   * rollback-journal mode the file is copied as it is first, and the
   * transaction's writes wait for that (`settled`), while the copy is
   * finished (checked, counted, fsynced, checksummed) beside them. A few
   * batches of rows: a second connection on this thread copies it first.
   */
  backup(inv: Inventory, dir: string, opts: Pick<WalkOptions, 'batchSize'> = {}) {
    if (this.state === 'read') return backupDatabase(this.db, inv, dir);
    if (this.state === 'written') throw new MasterKeyError('INTERNAL', 'The backup must be taken before the write transaction writes; this is a bug in the caller.');
    if (!readerAvailable() || !worthThreads(this.db, inv, opts.batchSize)) return this.before(backupBesideWriter(this.path, inv, dir));
    if (isWal(this.db)) return readerBackup(this.path, inv, dir);
    const copied = this.before(copyDatabaseFile(this.path, dir));
    return copied.then((copy) => readerFinish(copy, inv));
  }

  /** Work the transaction's writes must wait for (a backup in progress). */
  private beforeWriting?: Promise<unknown>;

  private before<T>(work: Promise<T>): Promise<T> {
    this.beforeWriting = work.catch(() => undefined);
    return work;
  }

  /** Waits for a backup in progress (the transaction must not write before it is done). */
  private async settled(): Promise<void> {
    await this.beforeWriting;
    this.beforeWriting = undefined;
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

  async restoreFrom(backup: BackupToRestore, inv: Inventory, decide: RestoreDecision, opts: Pick<WalkOptions, 'batchSize'> = {}): Promise<RestoreCounts> {
    await this.settled();
    this.writing();
    return restoreValuesFrom(this.db, backup, inv, decide, opts.batchSize);
  }

  /** `BEGIN IMMEDIATE` took the database's write lock: every other writer already waits; this checks the tables. */
  async lockSecretTables(inv: Inventory): Promise<void> {
    if (!this.db.inTransaction) throw new MasterKeyError('INTERNAL', 'The secret tables can only be locked inside the write transaction; this is a bug in the caller.');
    planTables(this.db, inv);
  }

  /**
   * In WAL mode, when this transaction has written nothing yet (and unless
   * `opts.crypto` says where the crypto runs, or the tables hold only a few
   * batches of rows), a reader thread reads the
   * committed database, which is what this transaction sees, and re-seals
   * it, and this connection only writes.
   */
  async reencrypt(inv: Inventory, from: KeySource, to: MasterKey, opts: WalkOptions = {}) {
    await this.settled();
    const wal = isWal(this.db);
    const beside = this.state === 'write' && !opts.crypto && readerAvailable() && wal && worthThreads(this.db, inv, opts.batchSize);
    this.writing();
    const flusher = new Flusher([`${this.path}${wal ? '-wal' : '-journal'}`]);
    return reencryptValues(this.db, inv, from, to, opts, beside ? (_, batchSize) => readerReseal(this.path, inv, from, to, batchSize) : undefined, flusher);
  }

  async replaceCanary(canary: CanaryUpdate): Promise<void> {
    this.writing();
    replaceCanary(this.db, canary);
  }

  async insertHistory(row: HistoryRow): Promise<void> {
    this.writing();
    insertHistory(this.db, row);
  }
}

class SqliteStore implements Store {
  private readonly tx: SqliteTx;
  private readonly lock: RotationLock;

  constructor(
    private readonly db: Db,
    private readonly path: string,
    label: string,
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

  /** A database never initialised has no rotation to lock: CANARY_NOT_FOUND, and no lock file is made beside it. */
  async lockRotation(): Promise<void> {
    if (!tableExists(this.db, CANARY_TABLE)) throw canaryNotFound();
    this.lock.acquire();
  }

  async lockHolder(): Promise<LockHolder | undefined> {
    return this.lock.holder();
  }

  async readCanary(): Promise<CanaryRow | undefined> {
    return readCanary(this.db);
  }

  /** A fresh read: a transaction that was interrupted was rolled back when this connection first read the file. */
  async readCommittedCanary(): Promise<CanaryRow | undefined> {
    return readCanary(this.db);
  }

  async lastHistory(): Promise<HistoryRow | undefined> {
    return lastHistory(this.db);
  }

  async setHistoryOutcome(rotationId: string, outcome: string, verifiedAt?: Date): Promise<void> {
    await withTransaction(this.db, async () => setHistoryOutcome(this.db, rotationId, outcome, verifiedAt), 'write');
  }

  async initialise(canary: CanaryRow, opts: { readonly createActSchema: boolean }): Promise<void> {
    try {
      await withTransaction(
        this.db,
        async () => {
          if (opts.createActSchema) this.db.exec(ACT_SCHEMA_SQLITE);
          insertCanary(this.db, canary);
        },
        'write',
      );
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
    return withTransaction(this.db, () => ((this.tx.state = 'read'), fn(this.tx)), 'read');
  }

  /**
   * In WAL mode the COMMIT makes the WAL durable, and SQLite would then copy
   * its pages into the database file (its automatic checkpoint) before the
   * COMMIT returns: after a large transaction that checkpoint runs in a
   * reader thread instead, while the caller goes on (after a rotation: the
   * config files, the start hooks, verification); `close` waits for it.
   */
  async write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    const wal = isWal(this.db);
    const auto = wal ? Number(this.db.pragma('wal_autocheckpoint', { simple: true })) : 0;
    if (wal) this.db.pragma('wal_autocheckpoint = 0');
    let committed = false;
    try {
      const r = await withTransaction(this.db, () => ((this.tx.state = 'write'), fn(this.tx)), 'write');
      committed = true;
      return r;
    } finally {
      if (wal) {
        this.db.pragma(`wal_autocheckpoint = ${auto}`);
        if (committed) this.checkpoint(auto);
      }
    }
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
  drill<T>(backup: BackupToRestore, inv: Inventory, fn: (tx: ReadTx, copy: ScratchCopy) => Promise<T>): Promise<T> {
    return drillCopy(backup, inv, (db, path, copy) => {
      const tx = new SqliteTx(db, path);
      tx.state = 'read';
      return fn(tx, copy);
    });
  }

  explain(e: unknown, doing: string): MasterKeyError {
    return translateSqliteError(e, doing, this.path);
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
