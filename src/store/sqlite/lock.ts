/**
 * The rotation lock of a SQLite store: a small lock database beside the
 * database file (`.<name>.mk-lock`, 0600), used only for SQLite's own file
 * locks, which the kernel releases when the process that holds them dies,
 * so a dead holder never keeps the lock (no pid or age guessing).
 *
 * Taking it: write who we are into the lock database (committed, so others
 * can read it), then hold its write lock (`BEGIN IMMEDIATE`, never
 * committed) for the life of the store. In rollback-journal mode a held
 * write lock still lets others read, so a refused process names the holder.
 * Nothing is ever written to the secrets' database for the lock, so a
 * backup never carries one and a restore never loses one.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { MasterKeyError } from '../../errors';
import { LockHolder } from '../store';
import { Db, sqliteModule, translateSqliteError } from './driver';

/** Long enough for another process's few-microsecond bookkeeping write, far shorter than any held lock. */
const HANDOVER_MS = 200;

const LOCK_SQL = `
CREATE TABLE IF NOT EXISTS holder (
  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  label TEXT NOT NULL,
  started_at TEXT NOT NULL
);`;

/** The lock database of a database file. */
export function lockPathFor(dbPath: string): string {
  return join(dirname(dbPath), `.${basename(dbPath)}.mk-lock`);
}

function isBusy(e: unknown): boolean {
  return String((e as { code?: unknown }).code ?? '').startsWith('SQLITE_BUSY');
}

/** A session's handle on the rotation lock of one database file. */
export class RotationLock {
  private db: Db | undefined;
  private held: LockHolder | undefined;

  constructor(
    private readonly dbPath: string,
    private readonly label: string,
  ) {}

  private get path(): string {
    return lockPathFor(this.dbPath);
  }

  private open(): Db {
    if (this.db) return this.db;
    const Database = sqliteModule();
    let db: Db | undefined;
    try {
      // Created on first use (0600): it holds no data, only who holds the lock.
      closeSync(openSync(this.path, constants.O_RDONLY | constants.O_CREAT, 0o600));
      db = new Database(this.path, { timeout: HANDOVER_MS });
      db.pragma('journal_mode = DELETE');
      db.exec(LOCK_SQL);
      this.db = db;
      return db;
    } catch (e) {
      db?.close();
      throw translateSqliteError(e, 'opening the rotation lock', this.path);
    }
  }

  /** Takes the lock for this session, or fails at once with LOCKED naming the holder. */
  acquire(): void {
    if (this.held) return;
    const db = this.open();
    const me = { pid: process.pid, host: hostname(), label: this.label, started_at: new Date().toISOString() };
    try {
      // 1. Say who we are (a short committed write: fails only while another process holds the lock).
      db.exec('BEGIN IMMEDIATE');
      db.prepare('INSERT OR REPLACE INTO holder (singleton, pid, host, label, started_at) VALUES (1, @pid, @host, @label, @started_at)').run(me);
      db.exec('COMMIT');
      // 2. Hold the write lock until close (a process that took it in between is named instead).
      db.exec('BEGIN IMMEDIATE');
    } catch (e) {
      if (db.inTransaction) db.exec('ROLLBACK');
      if (!isBusy(e)) throw translateSqliteError(e, 'taking the rotation lock', this.path);
      throw this.refused();
    }
    this.held = { pid: me.pid, startedAt: new Date(me.started_at), label: me.label };
  }

  private refused(): MasterKeyError {
    const h = this.readHolder();
    const since = h?.startedAt ? ` since ${h.startedAt.toISOString()}` : '';
    const who = h ? ` (pid ${h.pid}${h.host ? ` on ${h.host}` : ''}${h.label ? `, "${h.label}"` : ''})` : '';
    return new MasterKeyError(
      'LOCKED',
      `Another rotation${who} holds the lock on the SQLite database ${this.dbPath}${since}; wait for it to finish and run the command again (a process that died releases the lock at once; then run \`master-key recover\`).`,
      { holderStartedAt: h?.startedAt?.toISOString(), holderPid: h?.pid },
    );
  }

  private readHolder(): (LockHolder & { host?: string }) | undefined {
    const row = this.open().prepare('SELECT pid, host, label, started_at FROM holder WHERE singleton = 1').get() as
      | { pid: number; host: string; label: string; started_at: string }
      | undefined;
    return row ? { pid: row.pid, host: row.host, label: row.label, startedAt: new Date(row.started_at) } : undefined;
  }

  /** Who holds the lock now (this session included), without taking it. */
  holder(): LockHolder | undefined {
    if (this.held) return this.held;
    const db = this.open();
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      return undefined;
    } catch (e) {
      if (!isBusy(e)) throw translateSqliteError(e, 'reading the rotation lock', this.path);
      const h = this.readHolder();
      return h ? { pid: h.pid, startedAt: h.startedAt, label: h.label } : {};
    }
  }

  /** Releases the lock (if held) and closes the lock database. Never throws. */
  release(): void {
    try {
      this.db?.close();
    } catch {
      // closing releases SQLite's locks whatever else fails
    }
    this.db = undefined;
    this.held = undefined;
  }
}
