/**
 * The store seam: everything the runbook needs from the database that holds
 * the secrets, and nothing more. A store is one session on one database,
 * opened from a URL by `openStore`/`withStore` (`./open.ts`, the one place
 * that knows which stores exist: PostgreSQL in `./postgres`, SQLite in
 * `./sqlite`). It never sees a config file, a pending file or a master key
 * except the keys handed to `scan`, `verify` and `rotate`.
 *
 * What must happen together is one call with one argument list: a
 * rotation (`WriteTx.rotate`: backup and re-encryption), a restore
 * (`WriteTx.restore`), a drill (`Store.drill`). Each member's comment states
 * the guarantee every store must give; the contract tests
 * (`test/support/store-contract.ts`) check them on every store.
 * `docs/stores.md` says how to add a store.
 */
import type { KeySource } from '../crypto/codec';
import type { InventoryDigest } from '../engine/digest';
import type { MasterKey } from '../crypto/key';
import type { VerifyOptions, VerifyResult } from '../engine/verify';
import type { ReencryptResult, ScanResult, WalkOptions } from '../engine/walk';
import { ErrorCode, MasterKeyError } from '../errors';
import { Inventory, inventoryKinds } from '../inventory/inventory';

export type { VerifyOptions, VerifyResult } from '../engine/verify';
export type { ReencryptResult, ScanResult, SecretFailure, WalkOptions } from '../engine/walk';
export type { InventoryDigest } from '../engine/digest';

/** Which database this is: recorded in pending files and backups so they are never applied to another one. */
export interface StoreIdentity {
  /** PostgreSQL: the database name; a file store: the file. */
  readonly name: string;
  /** Tells two databases of the same name apart (PostgreSQL: the cluster's system identifier), or 'unknown'. */
  readonly systemIdentifier: string;
}

/** True unless the two identities name different databases (an unknown system identifier matches any). */
export function sameDatabase(a: StoreIdentity, b: StoreIdentity): boolean {
  return a.name === b.name && (a.systemIdentifier === 'unknown' || b.systemIdentifier === 'unknown' || a.systemIdentifier === b.systemIdentifier);
}

/** The integrity canary: a known text sealed under the current key, with that key's fingerprint and generation. */
export interface CanaryRow {
  /** The config entry the key lives in (e.g. ACT_MASTER_KEY), for people reading the table. */
  readonly keyEntry: string;
  readonly fingerprint: string;
  readonly generation: number;
  readonly sealed: string;
  readonly keyCreatedAt: Date;
  readonly updatedAt: Date;
}

/** A new canary for `WriteTx.replaceCanary` (the key entry is kept). */
export type CanaryUpdate = Omit<CanaryRow, 'keyEntry'>;

/** One row of the rotation history, for auditors. */
export interface HistoryRow {
  readonly rotationId: string;
  readonly startedAt: Date;
  readonly committedAt: Date;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  readonly oldFingerprint: string;
  readonly newFingerprint: string;
  readonly reason: string;
  readonly processed: number;
  readonly updated: number;
  readonly unchangedDueToErrors: number;
  readonly byKind: Readonly<Record<string, number>>;
  readonly backupPath?: string;
  readonly backupSha256?: string;
  readonly actor: string;
  readonly outcome: string;
  readonly verifiedAt?: Date;
}

/**
 * The outcome of a history row recording a retirement (`master-key
 * retire`): a backup removed, with the old key it held (`oldFingerprint`),
 * the backup (`backupPath`, `backupSha256`), when, and who (`actor`).
 */
export const RETIRED_OUTCOME = 'retired';

/** Who holds the rotation lock. */
export interface LockHolder {
  /** The holder's process (PostgreSQL: its backend), when known. */
  readonly pid?: number;
  /** Since when it holds the lock (PostgreSQL: its session start). */
  readonly startedAt?: Date;
  /** The holder's label (`OpenOptions.label`), e.g. "master-key apply 2026-…". */
  readonly label?: string;
}

/** A place in the database that holds sealed values: a column of a table, rows found by an id column. */
export interface Location {
  readonly table: string;
  readonly idColumn: string;
  readonly column: string;
}

/** The distinct (table, column) locations of an inventory, in inventory order. */
export function inventoryLocations(inv: Pick<Inventory, 'entries'>): Location[] {
  const seen = new Map<string, Location>();
  for (const e of inv.entries) {
    const k = `${e.table}\0${e.column}`;
    if (!seen.has(k)) seen.set(k, { table: e.table, idColumn: e.idColumn, column: e.column });
  }
  return [...seen.values()];
}

/** The additional-data columns the entries at a location name (`InventoryEntry.aad`), each once. */
export function aadColumnsAt(inv: Pick<Inventory, 'entries'>, loc: Pick<Location, 'table' | 'column'>): string[] {
  return [...new Set(inv.entries.filter((e) => e.table === loc.table && e.column === loc.column && e.aad).map((e) => e.aad!.column))];
}

/**
 * What an inventory holds, counted by aggregate queries without opening,
 * decrypting or locking anything: what terraform's refresh and plan show
 * on every run, so it stays fast on millions of rows.
 */
export interface InventoryCounts {
  /** Rows holding at least one non-NULL inventory column (a row can hold several values). */
  readonly rows: number;
  /**
   * Stored values, exactly the ones `ReadTx.scan` would open: every non-NULL
   * value of a plain column, and every string at an entry's jsonPath whose
   * holding object satisfies its `where`. A place two entries name (the
   * same column, or the same member of a document) counts once, for the first.
   */
  readonly values: number;
  /** `values` per kind, every kind of the inventory listed (0 when it holds none). */
  readonly byKind: Readonly<Record<string, number>>;
  /** Bytes of those columns as stored text (whole documents for JSON columns): a backup's size, roughly. */
  readonly storedBytes: number;
}

/** Adds up what a store's aggregate queries count (`Store.count`), every kind of the inventory listed. */
export class CountTally {
  private rows = 0;
  private values = 0;
  private storedBytes = 0;
  private readonly byKind: Record<string, number>;

  constructor(inv: Inventory) {
    this.byKind = Object.fromEntries(inventoryKinds(inv).map((k) => [k, 0]));
  }

  /** One table's rows holding values, and their stored bytes. */
  addRows(rows: number, storedBytes: number): void {
    this.rows += rows;
    this.storedBytes += storedBytes;
  }

  /** `n` values of `kind`. */
  addValues(kind: string, n: number): void {
    this.byKind[kind] += n;
    this.values += n;
  }

  result(): InventoryCounts {
    return { rows: this.rows, values: this.values, byKind: this.byKind, storedBytes: this.storedBytes };
  }
}

/** A file of a backup as stored: its name in the backup, and the SHA-256 and size of the bytes stored (sealed ones, when the sink seals). */
export interface StoredFile {
  readonly name: string;
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * One file of a backup, written in order by a store as a stream of bytes.
 * The sink decides how the bytes are stored (as they are, or sealed to
 * recipients while they stream); the store only writes them.
 */
export interface BackupFileWriter {
  /** Appends bytes. Await each write before the next (one in flight). Rejects with DISK_FULL or BACKUP_UNWRITABLE. */
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the file: durable (fsynced, its directory entry too) when this resolves; what the backup now holds. */
  end(): Promise<StoredFile>;
  /** Gives the file up (the rotation failed): what was written is removed. Never throws. */
  abort(): Promise<void>;
}

/**
 * Where a store's part of a backup goes (`Rotation.backup`). A store that
 * produces a file as a stream asks for a writer (`create`); a store whose
 * file is made by other means (SQLite's backup API writes to a path) has it
 * made at `scratch(name)` and hands it over complete with `adopt(name)`,
 * after which the sink may re-write it (seal it) and remove the scratch
 * copy. Every file a store writes comes back as a `StoredFile`.
 */
export interface BackupSink {
  /** A new file `name` of the backup, to write as a stream. */
  create(name: string): Promise<BackupFileWriter>;
  /** A path for file `name`, created empty and 0600 beside the backup (same file system), for a store to have written there by path. */
  scratch(name: string): Promise<string>;
  /** Takes over the complete file at `scratch(name)`: stored as the backup's file `name`, durable when this resolves. */
  adopt(name: string): Promise<StoredFile>;
  /** Removes file `name` (as adopted or still a scratch copy) from the backup: a store that wrote part of it ahead and then could not use it. */
  discard(name: string): Promise<void>;
}

/** What a store's part of a backup holds (`RotationResult.backup`). */
export interface BackupPart {
  /** The files it wrote through the sink (the caller lists them, with their checksums, in the backup's manifest). */
  readonly files: readonly StoredFile[];
  /** Stored values the backup holds (reported to auditors). */
  readonly values: number;
  /** The locations it covers (recorded in the manifest, handed back to `restore` and `drill`). */
  readonly locations: readonly Location[];
}

/**
 * The files of a backup as a store reads them back (`restore`, `drill`):
 * their bytes as the store wrote them, whatever the sink did to store them
 * (the caller has checked every file against the manifest).
 */
export interface BackupSource {
  /** The bytes of file `name`, as the store wrote them, as a stream. */
  read(name: string): AsyncIterable<Uint8Array>;
  /** A path holding file `name` as the store wrote it, for a store that opens files by path (SQLite); valid until the restore or drill ends. */
  path(name: string): Promise<string>;
}

/** A backup to put back, as its manifest describes it. */
export interface BackupToRestore {
  /** The backup, for messages (its directory). */
  readonly dir: string;
  /** Its files. */
  readonly files: BackupSource;
  /** What the store's part held when it was written (from the manifest). */
  readonly part: Pick<BackupPart, 'values' | 'locations'>;
  /** The names of the store's files, as the store gave them (a sealed file's name without `.age`), from the manifest: only these are read (absent: the store's one file). */
  readonly storeFiles?: readonly string[];
  /** The canary as it was when the backup was taken (a store whose backup holds the canary too checks it). */
  readonly canary: Pick<CanaryRow, 'fingerprint' | 'generation' | 'sealed' | 'keyCreatedAt'>;
}

/** A stored value's place in a backup and in the live rows: its row id, the live text, the backed-up text (undefined where absent). */
export interface ValuePair {
  readonly id: string;
  /** The value stored now (a column's text; a whole document for JSON columns). */
  readonly live?: string;
  /** The value the backup holds for the same row. */
  readonly backup?: string;
  /**
   * The live row's additional-data columns as text (NULL: null), by column
   * name, when the location's entries name any (`InventoryEntry.aad`);
   * absent when the row is gone.
   */
  readonly aad?: Readonly<Record<string, string | null>>;
}

/**
 * Restore's decision for one batch of pairs of a location: the text to
 * store for each pair (same order), or undefined to leave that row as it is.
 */
export type RestoreDecision = (loc: Location, pairs: readonly ValuePair[]) => ReadonlyArray<string | undefined> | Promise<ReadonlyArray<string | undefined>>;

/** What `WriteTx.restore` went through. */
export interface RestoreCounts {
  /** Values the backup holds (equal to its manifest's count). */
  readonly backupValues: number;
  /** Pairs handed to the decision (every place holding a value live, in the backup, or both). */
  readonly pairs: number;
  /** Rows written. */
  readonly written: number;
}

/** A scratch copy of a backup (`Store.drill`): where its values are, and the inventory pointing there. */
export interface ScratchCopy {
  /** The caller's inventory with every table re-pointed at the copy (same kinds, codecs, columns, paths). */
  readonly inventory: Inventory;
  /** The live table each scratch table stands for (to name places in what a scan finds). */
  readonly liveTable: (scratchTable: string) => string;
  /** Values loaded from the backup (equal to its manifest's count). */
  readonly values: number;
}

/** A rotation's one call (`WriteTx.rotate`): what to re-seal, from which keys to which, and where the backup of the old values goes. */
export interface Rotation extends Pick<WalkOptions, 'batchSize' | 'onProgress' | 'crypto' | 'workers'> {
  readonly inventory: Inventory;
  /** The keys that open the stored values. */
  readonly from: KeySource;
  /** The key every value is sealed under afterwards. */
  readonly to: MasterKey;
  /** Where the backup of every value the rotation rewrites goes. */
  readonly backup: BackupSink;
  /**
   * A staging area from `sealAhead` under `to`: staged values whose stored
   * text is still the staged one are swapped in, and only the values added
   * or changed since are opened and re-sealed here. Refused (INTERNAL) when
   * bound to another key; when it is no longer intact (lost with a crash of
   * the database), every value is re-sealed as without one.
   */
  readonly staged?: Staged;
}

/**
 * Seal-ahead's one call (`Store.sealAhead`), with the server still
 * running: every value of `inventory` read in one snapshot, opened with
 * `from` and sealed under `to`, the results kept in a staging area of the
 * tool's own (never a live row), keyed by place with the old stored text.
 */
export interface SealAhead extends Pick<WalkOptions, 'batchSize' | 'onProgress' | 'crypto' | 'workers'> {
  readonly inventory: Inventory;
  readonly from: KeySource;
  readonly to: MasterKey;
  /** The rotation this staging area belongs to (recorded with it). */
  readonly rotationId: string;
  /**
   * The rotation's backup, for a store that writes its bulk now, in
   * seal-ahead's snapshot (the staged old texts), so that `rotate` adds
   * only the values changed since (both stores). Called at most once; the
   * sink it gives is `Staged.backedUp.sink`, and `rotate` with that staging
   * area refuses any other `Rotation.backup` (`assertSameBackup`). A store
   * that backs up in the window never calls it.
   */
  readonly backup?: () => Promise<BackupSink>;
  /** Told as the bulk of the backup is copied (not yet durable) and written (durable, sealed when sealing): fault points of the crash tests. */
  readonly onBackup?: (step: 'copied' | 'written') => void;
}

/**
 * A staging area made by `sealAhead`, bound to the new key's fingerprint:
 * `rotate` uses it only with that key, and only while it is intact.
 */
export interface Staged {
  /** The fingerprint of the key the staged values are sealed under. */
  readonly fingerprint: string;
  readonly rotationId: string;
  /** Rows and values staged, by kind. */
  readonly rows: number;
  readonly values: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** Bytes the staging area takes (old and new texts). */
  readonly bytes: number;
  /** Digest of every staged new value at its place (what verification compares with, less what is not swapped in). */
  readonly digest: InventoryDigest;
  /** Where the AES-GCM work ran. */
  readonly crypto: ReencryptResult['crypto'];
  /** The store's own record of where it staged (opaque to the runbook). */
  readonly token: unknown;
  /**
   * The bulk of the backup written ahead (`SealAhead.backup`): its files, the
   * values it holds and the sink they are in, which must be the rotation's
   * `Rotation.backup`; absent when the store backs up in the window.
   */
  readonly backedUp?: { readonly files: readonly StoredFile[]; readonly values: number; readonly sink: BackupSink };
}

/**
 * Refuses (INTERNAL) a rotation whose backup is not the sink its staging
 * area wrote the bulk of the backup into: its changes would go into another
 * backup than its bulk, and neither would restore. Every store's `rotate`
 * calls it first.
 */
export function assertSameBackup(r: Pick<Rotation, 'backup' | 'staged'>): void {
  if (r.staged?.backedUp && r.staged.backedUp.sink !== r.backup) {
    throw new MasterKeyError('INTERNAL', "The rotation's backup must be the one seal-ahead wrote the bulk of the backup into (SealAhead.backup); this is a bug in the caller.");
  }
}

/** A `Staged` for seal-ahead `s`: bound to its new key's fingerprint and its rotation. */
export function stagedFor(s: Pick<SealAhead, 'to' | 'rotationId'>, r: Omit<Staged, 'fingerprint' | 'rotationId'>): Staged {
  return { fingerprint: s.to.fingerprint, rotationId: s.rotationId, ...r };
}

/** A staging area found in the database (`Store.stagingAreas`): what is left of a seal-ahead. */
export interface StagingArea {
  /** The fingerprint of the key its values are sealed under. */
  readonly fingerprint: string;
  /** Where it is (a table, a file), for messages. */
  readonly where: string;
  readonly bytes: number;
}

/** Whether seal-ahead can run on this store for an inventory (`Store.sealAheadSupport`). */
export interface SealAheadSupport {
  readonly ok: boolean;
  /**
   * Whether seal-ahead shortens this store's server-down window enough to
   * run without being asked (measured by `npm run bench`: on PostgreSQL
   * and on SQLite in WAL mode it does; see docs/seal-ahead.md).
   */
  readonly byDefault: boolean;
  /** Why not, in words a reviewer reads in the plan; or where the staging area goes. */
  readonly reason: string;
  /** Free bytes where the staging area would go, when the store can tell. */
  readonly freeBytes?: number;
}

/** What a rotation did: the re-encryption, and what its backup holds. */
export interface RotationResult {
  readonly reencrypted: ReencryptResult;
  readonly backup: BackupPart;
  /** With `Rotation.staged`: whether the staging area was used (false: it was no longer intact, every value was re-sealed here), rows swapped in from it, rows re-sealed here. */
  readonly sealAhead?: { readonly used: boolean; readonly swappedRows: number; readonly resealedRows: number };
}

/** A restore's one call (`WriteTx.restore`). */
export interface Restoration extends Pick<WalkOptions, 'batchSize'> {
  readonly backup: BackupToRestore;
  /** How each backed-up location is read (text, or a JSON document) and which additional-data columns its values have. */
  readonly inventory: Inventory;
  /** What to store at each place, given the live and the backed-up value. */
  readonly decide: RestoreDecision;
}

/** A drill's one call (`Store.drill`). */
export interface Drill extends Pick<WalkOptions, 'batchSize'> {
  readonly backup: BackupToRestore;
  /** How each backed-up column is read (text, or a JSON document). */
  readonly inventory: Inventory;
}

/** Reads in one consistent snapshot of the database. */
export interface ReadTx {
  /** The canary as this transaction sees it; undefined when the database was never initialised. */
  canary(): Promise<CanaryRow | undefined>;
  /**
   * Opens every sealed value of the inventory with `keys`, all in this
   * transaction's snapshot, in bounded memory. Never throws for a value
   * that does not open: it is counted and listed (up to a limit), never shown.
   */
  scan(inv: Inventory, keys: KeySource, opts?: WalkOptions): Promise<ScanResult>;
  /**
   * Proves the database stores what a re-encryption wrote without opening
   * every value again: reads every stored value of the inventory, compares
   * their order-independent digest (`src/engine/digest.ts`: table, column,
   * row id, path and text of each) with `opts.expected` (what `rotate`
   * returned), and opens a random sample (CSPRNG) with `key`. Never throws
   * for a value that differs or does not open: the result says what holds
   * and what that proves.
   */
  verify(inv: Inventory, key: MasterKey, opts?: VerifyOptions): Promise<VerifyResult>;
}

/** The one write transaction of a rotation (or a restore). */
export interface WriteTx extends ReadTx {
  /** The canary, locked against other writers until this transaction ends; undefined when missing. */
  canaryForUpdate(): Promise<CanaryRow | undefined>;
  /**
   * Blocks every other writer of the inventory's tables until this
   * transaction ends (readers may go on), so no value can appear or change
   * between what this transaction reads, backs up and rewrites.
   */
  lockSecretTables(inv: Inventory): Promise<void>;
  /**
   * The rotation, after `lockSecretTables` and before this transaction
   * writes anything else: re-seals every value of `r.inventory` from
   * `r.from` to `r.to` with each entry's codec, in bounded memory, and
   * writes through `r.backup` a copy of every value it rewrites, exactly
   * as it stood before (as the locked tables hold it), durable before this
   * resolves. Throws UNDECRYPTABLE_ROWS (naming table, id and kind, never a
   * value) when a value does not open, DISK_FULL or BACKUP_UNWRITABLE when
   * the backup cannot be written; the caller's transaction then rolls back
   * (what the sink holds then is the caller's to remove).
   */
  rotate(r: Rotation): Promise<RotationResult>;
  /**
   * The store's part of a restore, after `lockSecretTables`. Pairs every
   * value of the backup with the live value at the same place (location
   * and row id), as this transaction sees the rows: values only live come
   * with `backup` undefined, values only in the backup with `live`
   * undefined; each live one with its row's additional-data columns when
   * the inventory names any there. Hands the pairs to `decide` in bounded
   * batches and writes back, by row id in this transaction, each text it
   * returns. Fails with BACKUP_CORRUPT, before writing anything, when the
   * backup's files do not hold what its manifest says.
   */
  restore(r: Restoration): Promise<RestoreCounts>;
  /** Replaces the canary (keeping its key entry); CANARY_NOT_FOUND when there is none. */
  replaceCanary(canary: CanaryUpdate): Promise<void>;
  /** Adds a row to the rotation history. */
  insertHistory(row: HistoryRow): Promise<void>;
}

/**
 * A precondition of the rotation's transaction that does not hold (plan
 * lists it as a blocker; apply refuses with it before the stop hook).
 */
export interface RotationBlocker {
  /** One sentence: what is missing, naming the table or file, and what to grant or fix. */
  readonly problem: string;
  /** The error apply refuses with: DB_READ_ONLY, DB_PRIVILEGE_MISSING. */
  readonly code: ErrorCode;
}

/** How a store is opened. */
export interface OpenOptions {
  /** Names this session to other sessions, e.g. as the lock holder ("master-key apply 2026-…"). @default "master-key" */
  readonly label?: string;
  /**
   * How long a statement of this session waits for a lock another session
   * holds (PostgreSQL: `lock_timeout` in the write transaction; SQLite: the
   * busy timeout) before it fails: TABLES_BUSY, naming the holders where
   * the database can tell, when the write transaction cannot lock the
   * secret tables (or, on SQLite, the file). Only this timeout applies: the
   * database's own statement and idle-in-transaction timeouts are switched
   * off for the tool's sessions. @default 30 s (`DEFAULT_LOCK_TIMEOUT_MS`)
   */
  readonly lockTimeoutMs?: number;
}

/** One session on the database that holds the secrets. */
export interface Store {
  /** The database for messages and reports, without credentials (`user@host:5432/db`, a file path). */
  readonly description: string;
  /** The database's identity (stable across sessions). */
  identity(): Promise<StoreIdentity>;
  /** Fails with DB_READ_ONLY, changing nothing, unless this session can write (not a standby, not a read-only file). */
  assertWritable(): Promise<void>;
  /**
   * Every precondition of the rotation's transaction on `inv` that does not
   * hold for this session, found without locking or writing anything: a
   * writable database (DB_READ_ONLY), and the rights the transaction uses
   * (DB_PRIVILEGE_MISSING: PostgreSQL's UPDATE on each secret column, the
   * right to lock each secret table, the writes in schema master_key;
   * SQLite's file and its directory, where the journal and the lock file
   * go). Empty when the transaction can run.
   */
  rotationBlockers(inv: Inventory): Promise<readonly RotationBlocker[]>;
  /**
   * Takes the rotation lock for the life of this session: released by
   * `close()`, and never kept by a holder that died (a lock row or file
   * must be recognised as stale). One holder per database: when another
   * session holds it, fails at once (never waits) with LOCKED, naming the
   * holder and since when.
   */
  lockRotation(): Promise<void>;
  /** Who holds the rotation lock now, without taking it. */
  lockHolder(): Promise<LockHolder | undefined>;
  /**
   * The committed canary; undefined when the database was never
   * initialised. With `waitForWriters`, first waits (bounded, about 30 s)
   * for any transaction that holds the canary to end: on a fresh store
   * after a COMMIT whose outcome is unknown (its reply was lost), this
   * tells whether it applied.
   */
  readCanary(opts?: { readonly waitForWriters?: boolean }): Promise<CanaryRow | undefined>;
  /** The latest rotation's history row (retirements, outcome RETIRED_OUTCOME, are not rotations), or undefined (none yet, or no metadata). */
  lastHistory(): Promise<HistoryRow | undefined>;
  /** The history's rows with outcome `outcome` (e.g. RETIRED_OUTCOME), newest first, at most `limit`; none without metadata. */
  historyWith(outcome: string, limit: number): Promise<HistoryRow[]>;
  /** Sets a rotation's outcome (and when it was verified), committed at once. */
  setHistoryOutcome(rotationId: string, outcome: string, verifiedAt?: Date): Promise<void>;
  /**
   * In one transaction: creates the canary and history tables and inserts
   * `canary`. CANARY_EXISTS, changing nothing, when a canary exists (also
   * when a concurrent initialisation won the race).
   */
  initialise(canary: CanaryRow): Promise<void>;
  /**
   * Counts what the inventory holds (rows, values per kind, stored bytes)
   * in one read snapshot, by aggregate queries: nothing is opened or
   * decrypted, and neither the rotation lock nor a write lock is taken.
   * INVENTORY_INVALID when the inventory names a
   * table or column the database lacks. Not inside `read` or `write`.
   */
  count(inv: Inventory): Promise<InventoryCounts>;
  /** Runs fn in one read-only, consistent snapshot. */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T>;
  /**
   * Runs fn in ONE write transaction: when fn resolves, commits; when it
   * rejects, rolls back and changes nothing. If fn resolved but `write`
   * rejects, the COMMIT's outcome is unknown: prove it with
   * `readCanary({ waitForWriters: true })` on a fresh store before
   * assuming either.
   */
  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T>;
  /**
   * A restore drill: puts the backup's values into a scratch copy that only
   * this call sees and runs fn on a read view of it. The live tables are
   * not read, locked or written, and nothing of the copy outlives the call.
   * BACKUP_CORRUPT when the backup's files do not hold what its manifest
   * says.
   */
  drill<T>(d: Drill, fn: (tx: ReadTx, copy: ScratchCopy) => Promise<T>): Promise<T>;
  /**
   * Whether seal-ahead can run for `inv` with a staging area of about
   * `bytes` (rows must be found by a unique id; room for the area where
   * the store can tell). Reads the catalog only.
   */
  sealAheadSupport(inv: Inventory, bytes: number): Promise<SealAheadSupport>;
  /**
   * Seal-ahead, outside any transaction of the caller's, while the server
   * runs: see `SealAhead`. No live row changes. Any staging area left
   * before is replaced. Throws UNDECRYPTABLE_ROWS (a value does not open:
   * nothing is kept), DISK_FULL when the staging area does not fit (nothing
   * is kept; the caller may rotate without it).
   */
  sealAhead(s: SealAhead): Promise<Staged>;
  /** The staging areas in this database (left by an interrupted seal-ahead, or the current one). */
  stagingAreas(): Promise<StagingArea[]>;
  /** Removes every staging area; what was removed. Hold the rotation lock. */
  dropStaging(): Promise<StagingArea[]>;
  /**
   * Removes every staging area without this session's connection, so that
   * what the session does next (verification) runs meanwhile: what was
   * removed, or undefined when that cannot be done (no other connection can
   * be had): then call `dropStaging` once the session is done. Hold the
   * rotation lock.
   */
  dropStagingBeside(): Promise<StagingArea[] | undefined>;
  /** Ends the session (and releases the rotation lock). Never throws. */
  close(): Promise<void>;
}

/** The error for a database without a canary: never initialised, or the wrong database. */
export function canaryNotFound(): MasterKeyError {
  return new MasterKeyError(
    'CANARY_NOT_FOUND',
    'Integrity canary not found: this database was never initialised by `master-key init`, or the URL points at the wrong database; check the database URL, or run `master-key init` on a new installation.',
  );
}

/** The error for a backup file that cannot be written at `path`: DISK_FULL when the disk is full, else BACKUP_UNWRITABLE. */
export function backupFileError(e: unknown, path: string): MasterKeyError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    // `backupPath` tells a full backup disk from a staging area without room (seal-ahead falls back to one pass only for the latter).
    return new MasterKeyError('DISK_FULL', `The backup location ${path} is full; free space or choose another --backup-dir, then run the command again.`, { backupPath: path });
  }
  return new MasterKeyError('BACKUP_UNWRITABLE', `Cannot write the backup at ${path} (${code ?? 'error'}); make --backup-dir writable or choose another, then run the command again.`);
}
