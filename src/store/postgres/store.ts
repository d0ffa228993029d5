/**
 * The PostgreSQL store: one connection (a session) per store. The rotation
 * lock is a session-level advisory lock; the write transaction is a plain
 * BEGIN … COMMIT; reads run in REPEATABLE READ READ ONLY snapshots. It
 * reads and writes the rows (`./scan.ts`, `./reencrypt.ts`); the engine
 * (`src/engine/`) opens and re-seals the values in them.
 */
import { Client } from 'pg';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { MasterKeyError, isMasterKeyError } from '../../errors';
import type { VerifyOptions } from '../../engine/verify';
import { reencryptInventory } from './reencrypt';
import { connectReader, exportSnapshot } from './row-source';
import { scanInventory, verifyInventory } from './scan';
import { ACT_SCHEMA_SQL } from '../../inventory/act-preset';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import {
  BackupToRestore,
  CanaryRow,
  CanaryUpdate,
  HistoryRow,
  InventoryCounts,
  OpenOptions,
  ReadTx,
  RestoreCounts,
  RestoreDecision,
  ScratchCopy,
  Store,
  WalkOptions,
  WriteTx,
} from '../store';
import { BackupTee, backupValues, restoreFrom, scratchCopy } from './backup';
import { countInventory } from './counts';
import { assertWritable, connect, describeUrl, translatePgError, withTransaction } from './client';
import {
  acquireRotationLock,
  createMetadata,
  databaseIdentity,
  insertCanary,
  insertHistory,
  lastHistory,
  lockHolder,
  readCanary,
  replaceCanary,
  setHistoryOutcome,
} from './meta';

/** Opens a PostgreSQL store on `url` (a `postgres://` or `postgresql://` connection string). */
export async function openPostgres(url: string, opts: OpenOptions = {}): Promise<Store> {
  return new PostgresStore(await connect(url, { applicationName: opts.label }), url);
}

/** A backup waiting, until its first statement returns, for a re-encryption of the same inventory to write it. */
interface BackupOffer {
  readonly inv: Inventory;
  readonly dir: string;
  tee?: BackupTee;
}

/** Reads and writes on the store's connection, inside the transaction `read`/`write` opened. */
class PostgresTx implements WriteTx {
  private offer?: BackupOffer;

  constructor(
    private readonly c: Client,
    private readonly url: string,
  ) {}

  canary(): Promise<CanaryRow | undefined> {
    return readCanary(this.c);
  }

  canaryForUpdate(): Promise<CanaryRow | undefined> {
    return readCanary(this.c, true);
  }

  scan(inv: Inventory, keys: KeySource, opts?: WalkOptions) {
    return scanInventory(this.c, inv, keys, opts);
  }

  verify(inv: Inventory, key: MasterKey, opts?: VerifyOptions) {
    return verifyInventory(this.c, inv, key, opts);
  }

  /**
   * When `reencrypt` of the same inventory is called before this call's
   * first statement returns (as apply does: right after it), the
   * re-encryption writes the backup from the rows it reads
   * (`BackupTee`), one scan for both, and this resolves once the file is
   * on disk. Otherwise reads on a second connection in this transaction's
   * snapshot, exported by that first statement (before anything the
   * caller does next), so the backup can run while the caller writes on
   * this connection; when the snapshot cannot be shared (this transaction
   * already wrote to a secret table), reads on this connection instead.
   */
  async backup(inv: Inventory, dir: string) {
    const offer: BackupOffer = { inv, dir };
    this.offer = offer;
    let snapshot: string | undefined;
    try {
      snapshot = await exportSnapshot(this.c, [...new Set(inv.entries.map((e) => quoteIdent(e.table)))]);
    } finally {
      if (this.offer === offer) this.offer = undefined;
    }
    if (offer.tee) return offer.tee.done;
    if (!snapshot) return backupValues(this.c, inv, dir);
    const reader = await connectReader(this.url, snapshot);
    let ok = false;
    try {
      const part = await backupValues(reader.client, inv, dir);
      ok = true;
      return part;
    } finally {
      await (ok ? reader.close() : reader.abort());
    }
  }

  /** SHARE ROW EXCLUSIVE: blocks writers, not readers (the re-encryption's EXCLUSIVE lock goes further while it rewrites). */
  async lockSecretTables(inv: Inventory): Promise<void> {
    const tables = [...new Set(inv.entries.map((e) => e.table))].map(quoteIdent);
    if (tables.length) await this.c.query(`LOCK TABLE ${tables.join(', ')} IN SHARE ROW EXCLUSIVE MODE`);
  }

  /** A second connection reads the rows in this transaction's snapshot while this one writes; writes the backup a `backup` call just before offered. */
  reencrypt(inv: Inventory, from: KeySource, to: MasterKey, opts: WalkOptions = {}) {
    const offer = this.offer?.inv === inv ? this.offer : undefined;
    this.offer = undefined;
    if (!offer) return reencryptInventory(this.c, inv, from, to, { ...opts, readerUrl: this.url });
    const tee = (offer.tee = new BackupTee(inv, offer.dir));
    return (async () => {
      try {
        const r = await reencryptInventory(this.c, inv, from, to, { ...opts, readerUrl: this.url, onRead: tee.add });
        await tee.finish();
        return r;
      } catch (e) {
        await tee.fail(e);
        throw e;
      }
    })();
  }

  restoreFrom(backup: BackupToRestore, inv: Inventory, decide: RestoreDecision, opts: Pick<WalkOptions, 'batchSize'> = {}): Promise<RestoreCounts> {
    return restoreFrom(this.c, backup, inv, decide, opts.batchSize);
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
  ) {
    this.description = describeUrl(url);
    this.tx = new PostgresTx(c, url);
  }

  identity() {
    return databaseIdentity(this.c);
  }

  assertWritable(): Promise<void> {
    return assertWritable(this.c, this.url);
  }

  lockRotation(): Promise<void> {
    return acquireRotationLock(this.c);
  }

  lockHolder() {
    return lockHolder(this.c);
  }

  readCanary(): Promise<CanaryRow | undefined> {
    return readCanary(this.c);
  }

  /** FOR UPDATE waits until a transaction that locked the canary (an interrupted rotation's) has really ended. */
  async readCommittedCanary(): Promise<CanaryRow | undefined> {
    await this.c.query("SET lock_timeout = '30s'");
    return readCanary(this.c, true);
  }

  lastHistory(): Promise<HistoryRow | undefined> {
    return lastHistory(this.c);
  }

  setHistoryOutcome(rotationId: string, outcome: string, verifiedAt?: Date): Promise<void> {
    return setHistoryOutcome(this.c, rotationId, outcome, verifiedAt);
  }

  async initialise(canary: CanaryRow, opts: { readonly createActSchema: boolean }): Promise<void> {
    try {
      await withTransaction(this.c, async () => {
        if (opts.createActSchema) await this.c.query(ACT_SCHEMA_SQL);
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

  write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
    return withTransaction(this.c, () => fn(this.tx));
  }

  /** Temporary tables in a transaction that always rolls back (CREATE TEMPORARY needs a read-write transaction, but touches no live table). */
  async drill<T>(backup: BackupToRestore, inv: Inventory, fn: (tx: ReadTx, copy: ScratchCopy) => Promise<T>, opts: Pick<WalkOptions, 'batchSize'> = {}): Promise<T> {
    await this.c.query('BEGIN');
    try {
      return await fn(this.tx, await scratchCopy(this.c, backup, inv, opts.batchSize));
    } finally {
      await this.c.query('ROLLBACK').catch(() => undefined);
    }
  }

  explain(e: unknown, doing: string): MasterKeyError {
    return translatePgError(e, doing, this.url);
  }

  async close(): Promise<void> {
    await this.c.end().catch(() => undefined);
  }
}
