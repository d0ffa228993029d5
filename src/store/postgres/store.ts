/**
 * The PostgreSQL store: one connection (a session) per store. The rotation
 * lock is a session-level advisory lock, which PostgreSQL releases when
 * the session ends, however it ends; the write transaction is a plain
 * BEGIN … COMMIT; reads run in REPEATABLE READ READ ONLY snapshots. It
 * reads and writes the rows (`./scan.ts`, `./reencrypt.ts`); the engine
 * (`src/engine/`) opens and re-seals the values in them.
 *
 * A rotation reads the rows on a second connection that imports this
 * transaction's snapshot (COPY, in another server process) while this one
 * writes the re-sealed batches back, and writes the backup from the rows
 * it reads (`BackupTee`): one scan for both, so the backup holds exactly
 * the old values of the rows it rewrites.
 */
import { Client } from 'pg';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError, isMasterKeyError } from '../../errors';
import type { VerifyOptions } from '../../engine/verify';
import { ACT_SCHEMA_SQL } from '../../inventory/act-preset';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import {
  CanaryRow,
  CanaryUpdate,
  Drill,
  HistoryRow,
  InventoryCounts,
  OpenOptions,
  ReadTx,
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
  WalkOptions,
  WriteTx,
  assertSameBackup,
} from '../store';
import { AHEAD_FILE, BackupTee, SECRETS_FILE } from './backup';
import { countInventory } from './counts';
import { assertWritable, connect, describeUrl, isLockTimeout, processId, translatePgError, withTransaction } from './client';
import { BlockerWatch, LockWait, tablesBusy } from './blockers';
import { rotationBlockers } from './privileges';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../lock-timeout';
import { reencryptInventory } from './reencrypt';
import { cutOver, dropStagingPostgres, intactStaging, sealAheadPostgres, sealAheadSupportPostgres, stagingAreasPostgres } from './staging';
import { restoreValues, scratchCopy } from './restore';
import { scanInventory, verifyInventory } from './scan';
import {
  META_SCHEMA,
  acquireRotationLock,
  createMetadata,
  databaseIdentity,
  insertCanary,
  insertHistory,
  lastHistory,
  historyWith,
  lockHolder,
  readCanary,
  replaceCanary,
  setHistoryOutcome,
} from './meta';

/** Opens a PostgreSQL store on `url` (a `postgres://` or `postgresql://` connection string). */
export async function openPostgres(url: string, opts: OpenOptions = {}): Promise<Store> {
  const lockTimeoutMs = opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  return new PostgresStore(await connect(url, { applicationName: opts.label, lockTimeoutMs }), url, lockTimeoutMs);
}

/** Reads and writes on the store's connection, inside the transaction `read`/`write` opened. */
class PostgresTx implements WriteTx {
  /** The secret tables the write transaction locked (or is locking). */
  private locking: readonly string[] = [];

  constructor(
    private readonly c: Client,
    private readonly url: string,
    private readonly lockTimeoutMs: number,
  ) {}

  canary(): Promise<CanaryRow | undefined> {
    return readCanary(this.c);
  }

  /** Waits for a transaction holding the canary at most the lock timeout (TABLES_BUSY naming it). */
  canaryForUpdate(): Promise<CanaryRow | undefined> {
    return this.bounded({ tables: [`${META_SCHEMA}.canary`], rows: true }, () => readCanary(this.c, true));
  }

  /**
   * Runs a statement that waits for locks; if the lock timeout cuts the
   * wait short, refuses with TABLES_BUSY naming the sessions it waited for
   * (watched from a second connection while it waits).
   */
  private async bounded<T>(wait: LockWait, fn: () => Promise<T>): Promise<T> {
    const watch = new BlockerWatch(this.url, processId(this.c), wait, this.lockTimeoutMs);
    try {
      return await fn();
    } catch (e) {
      throw isLockTimeout(e) ? tablesBusy(wait, await watch.blockers(), this.lockTimeoutMs, e) : e;
    } finally {
      await watch.stop();
    }
  }

  /** A lock wait cut short elsewhere in the write transaction (the re-encryption's EXCLUSIVE lock): TABLES_BUSY naming the holders, before the rollback. */
  async busy(e: unknown): Promise<unknown> {
    if (!isLockTimeout(e) || (isMasterKeyError(e, 'TABLES_BUSY') && e.details.blockers)) return e;
    const wait = { tables: this.locking.length ? this.locking : [`${META_SCHEMA}.canary`] };
    const watch = new BlockerWatch(this.url, processId(this.c), wait, this.lockTimeoutMs);
    try {
      return tablesBusy(wait, await watch.blockers(), this.lockTimeoutMs, e);
    } finally {
      await watch.stop();
    }
  }

  scan(inv: Inventory, keys: KeySource, opts?: WalkOptions) {
    return scanInventory(this.c, inv, keys, opts);
  }

  verify(inv: Inventory, key: MasterKey, opts?: VerifyOptions) {
    return verifyInventory(this.c, inv, key, opts);
  }

  /** SHARE ROW EXCLUSIVE: blocks writers, not readers (the re-encryption's EXCLUSIVE lock goes further while it rewrites). */
  async lockSecretTables(inv: Inventory): Promise<void> {
    const tables = [...new Set(inv.entries.map((e) => e.table))];
    this.locking = tables;
    if (tables.length) await this.bounded({ tables }, () => this.c.query(`LOCK TABLE ${tables.map(quoteIdent).join(', ')} IN SHARE ROW EXCLUSIVE MODE`));
  }

  /**
   * A second connection reads the rows in this transaction's snapshot while
   * this one writes (on this one, when the snapshot cannot be shared: this
   * transaction already wrote to a secret table); the backup is written
   * from the rows read, before they are re-sealed.
   */
  async rotate(r: Rotation): Promise<RotationResult> {
    assertSameBackup(r);
    const { inventory, from, to, backup, staged, ...walk } = r;
    const token = staged ? await intactStaging(this.c, r) : undefined;
    if (token) return cutOver(this.c, r, token, backup, this.url);
    // A bulk written ahead that cannot be used (the staging area is no longer intact): the whole backup is written here.
    if (staged?.backedUp) await backup.discard(AHEAD_FILE);
    const tee = new BackupTee(inventory, await backup.create(SECRETS_FILE));
    try {
      const reencrypted = await reencryptInventory(this.c, inventory, from, to, { ...walk, readerUrl: this.url, onRead: tee.add });
      return { reencrypted, backup: await tee.finish(), ...(staged ? { sealAhead: { used: false, swappedRows: 0, resealedRows: reencrypted.updated } } : {}) };
    } catch (e) {
      await tee.abort();
      throw e;
    }
  }

  restore(r: Restoration): Promise<RestoreCounts> {
    return restoreValues(this.c, r.backup, r.inventory, r.decide, r.batchSize);
  }

  replaceCanary(canary: CanaryUpdate): Promise<void> {
    return replaceCanary(this.c, canary);
  }

  insertHistory(row: HistoryRow): Promise<void> {
    return insertHistory(this.c, row);
  }
}

class PostgresStore implements Store {
  readonly description: string;
  private readonly tx: PostgresTx;

  constructor(
    private readonly c: Client,
    private readonly url: string,
    private readonly lockTimeoutMs: number,
  ) {
    this.description = describeUrl(url);
    this.tx = new PostgresTx(c, url, lockTimeoutMs);
  }

  identity() {
    return databaseIdentity(this.c);
  }

  assertWritable(): Promise<void> {
    return assertWritable(this.c, this.url);
  }

  rotationBlockers(inv: Inventory): Promise<readonly RotationBlocker[]> {
    return rotationBlockers(this.c, this.url, inv);
  }

  lockRotation(): Promise<void> {
    return acquireRotationLock(this.c);
  }

  lockHolder() {
    return lockHolder(this.c);
  }

  /** Waiting for writers: FOR UPDATE waits until a transaction that locked the canary (an interrupted rotation's) has really ended. */
  async readCanary(opts: { readonly waitForWriters?: boolean } = {}): Promise<CanaryRow | undefined> {
    if (!opts.waitForWriters) return readCanary(this.c);
    await this.c.query("SET lock_timeout = '30s'");
    return readCanary(this.c, true);
  }

  lastHistory(): Promise<HistoryRow | undefined> {
    return lastHistory(this.c);
  }

  historyWith(outcome: string, limit: number): Promise<HistoryRow[]> {
    return historyWith(this.c, outcome, limit);
  }

  setHistoryOutcome(rotationId: string, outcome: string, verifiedAt?: Date): Promise<void> {
    return setHistoryOutcome(this.c, rotationId, outcome, verifiedAt);
  }

  async initialise(canary: CanaryRow): Promise<void> {
    try {
      await withTransaction(this.c, async () => {
        await createMetadata(this.c);
        await insertCanary(this.c, canary);
      });
    } catch (e) {
      // A concurrent init may have won the race on the canary's primary key.
      if (!isMasterKeyError(e) && (e as { code?: string }).code === '23505') {
        throw new MasterKeyError('CANARY_EXISTS', 'This database was initialised by another process just now; nothing was changed: use `master-key status`.');
      }
      throw e;
    }
  }

  /** In one REPEATABLE READ, read-only transaction (`./counts`). */
  count(inv: Inventory): Promise<InventoryCounts> {
    return withTransaction(this.c, () => countInventory(this.c, inv), 'read only');
  }

  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
    return withTransaction(this.c, () => fn(this.tx), 'read only');
  }

  /** Every lock wait in it is bounded by the lock timeout (`SET LOCAL lock_timeout`); one cut short is TABLES_BUSY, naming who held the lock. */
  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    return withTransaction(this.c, async () => {
      await this.c.query(`SET LOCAL lock_timeout = ${Math.round(this.lockTimeoutMs)}`);
      try {
        return await fn(this.tx);
      } catch (e) {
        throw await this.tx.busy(e);
      }
    });
  }

  /** Temporary tables in a transaction that always rolls back (CREATE TEMPORARY needs a read-write transaction, but touches no live table). */
  async drill<T>(d: Drill, fn: (tx: ReadTx, copy: ScratchCopy) => Promise<T>): Promise<T> {
    await this.c.query('BEGIN');
    try {
      return await fn(this.tx, await scratchCopy(this.c, d.backup, d.inventory, d.batchSize));
    } finally {
      await this.c.query('ROLLBACK').catch(() => undefined);
    }
  }

  sealAheadSupport(inv: Inventory): Promise<SealAheadSupport> {
    return sealAheadSupportPostgres(this.c, inv);
  }

  sealAhead(s: SealAhead): Promise<Staged> {
    return sealAheadPostgres(this.c, this.url, s);
  }

  stagingAreas(): Promise<StagingArea[]> {
    return stagingAreasPostgres(this.c);
  }

  dropStaging(): Promise<StagingArea[]> {
    return dropStagingPostgres(this.c);
  }

  /** On a connection of its own (a 1,000,000-row staging table takes about a second to drop); never on the session's, whose next statements run meanwhile. */
  async dropStagingBeside(): Promise<StagingArea[] | undefined> {
    const own = await connect(this.url, { applicationName: 'master-key staging removal', lockTimeoutMs: this.lockTimeoutMs }).catch(() => undefined);
    if (!own) return undefined;
    try {
      return await dropStagingPostgres(own);
    } finally {
      await own.end().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.c.end().catch(() => undefined);
  }
}

/** Creates the ACT preset's tables where missing (`master-key init --create-act-schema`), in a transaction of its own. */
export async function createActSchemaPostgres(url: string): Promise<void> {
  const c = await connect(url);
  try {
    await withTransaction(c, async () => {
      await c.query(ACT_SCHEMA_SQL);
    });
  } catch (e) {
    throw translatePgError(e, 'creating the ACT tables', url);
  } finally {
    await c.end().catch(() => undefined);
  }
}
