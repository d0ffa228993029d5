/**
 * The SQLite store's metadata (SQLite has no schemas, so the tables carry a
 * prefix): `master_key_canary` (one row: the integrity canary, and the id
 * that tells this database from a copy made elsewhere) and
 * `master_key_history` (one row per rotation). Times are ISO-8601 text in
 * UTC, JSON is text.
 */
import { randomUUID } from 'node:crypto';
import { MasterKeyError } from '../../errors';
import { CanaryRow, CanaryUpdate, HistoryRow, RETIRED_OUTCOME } from '../store';
import { HISTORY_COLUMNS, historyFromStored, historyValues } from '../history';
import { Db } from './driver';

export const CANARY_TABLE = 'master_key_canary';
export const HISTORY_TABLE = 'master_key_history';

export const META_SQL = `
CREATE TABLE IF NOT EXISTS ${CANARY_TABLE} (
  singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
  key_entry TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  generation INTEGER NOT NULL CHECK (generation >= 1),
  sealed TEXT NOT NULL,
  key_created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  database_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ${HISTORY_TABLE} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rotation_id TEXT NOT NULL UNIQUE,
  started_at TEXT NOT NULL,
  committed_at TEXT NOT NULL,
  verified_at TEXT,
  from_generation INTEGER NOT NULL,
  to_generation INTEGER NOT NULL,
  old_fingerprint TEXT NOT NULL,
  new_fingerprint TEXT NOT NULL,
  reason TEXT NOT NULL,
  processed INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  unchanged_due_to_errors INTEGER NOT NULL,
  by_kind TEXT NOT NULL CHECK (json_valid(by_kind)),
  backup_path TEXT,
  backup_sha256 TEXT,
  actor TEXT NOT NULL,
  outcome TEXT NOT NULL
);
`;

/** Whether a table exists in the main database. */
export function tableExists(db: Db, table: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(table) !== undefined;
}

interface CanaryColumns {
  key_entry: string;
  fingerprint: string;
  generation: number;
  sealed: string;
  key_created_at: string;
  updated_at: string;
  database_id: string;
}

function canaryRow(db: Db): CanaryColumns | undefined {
  if (!tableExists(db, CANARY_TABLE)) return undefined;
  return db.prepare(`SELECT key_entry, fingerprint, generation, sealed, key_created_at, updated_at, database_id FROM ${CANARY_TABLE} WHERE singleton = 1`).get() as CanaryColumns | undefined;
}

/** The canary, or undefined when the metadata table or its row is missing. */
export function readCanary(db: Db): CanaryRow | undefined {
  const r = canaryRow(db);
  if (!r) return undefined;
  return { keyEntry: r.key_entry, fingerprint: r.fingerprint, generation: r.generation, sealed: r.sealed, keyCreatedAt: new Date(r.key_created_at), updatedAt: new Date(r.updated_at) };
}

/** The id `initialise` gave this database, or 'unknown' before then. */
export function databaseId(db: Db): string {
  return canaryRow(db)?.database_id ?? 'unknown';
}

/** Creates the metadata tables and inserts the canary with a new database id (inside the caller's transaction). */
export function insertCanary(db: Db, canary: CanaryRow): void {
  db.exec(META_SQL);
  db.prepare(
    `INSERT INTO ${CANARY_TABLE} (singleton, key_entry, fingerprint, generation, sealed, key_created_at, updated_at, database_id) VALUES (1, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(canary.keyEntry, canary.fingerprint, canary.generation, canary.sealed, canary.keyCreatedAt.toISOString(), canary.updatedAt.toISOString(), randomUUID());
}

export function replaceCanary(db: Db, canary: CanaryUpdate): void {
  const r = tableExists(db, CANARY_TABLE)
    ? db
        .prepare(`UPDATE ${CANARY_TABLE} SET fingerprint = ?, generation = ?, sealed = ?, key_created_at = ?, updated_at = ? WHERE singleton = 1`)
        .run(canary.fingerprint, canary.generation, canary.sealed, canary.keyCreatedAt.toISOString(), canary.updatedAt.toISOString())
    : { changes: 0 };
  if (r.changes !== 1) throw new MasterKeyError('CANARY_NOT_FOUND', 'Integrity canary not found while updating it; nothing was committed.');
}

export function insertHistory(db: Db, h: HistoryRow): void {
  db.prepare(`INSERT INTO ${HISTORY_TABLE} (${HISTORY_COLUMNS.join(', ')}) VALUES (${HISTORY_COLUMNS.map(() => '?').join(', ')})`).run(...historyValues(h, (d) => d.toISOString()));
}

export function setHistoryOutcome(db: Db, rotationId: string, outcome: string, verifiedAt?: Date): void {
  db.prepare(`UPDATE ${HISTORY_TABLE} SET outcome = ?, verified_at = COALESCE(?, verified_at) WHERE rotation_id = ?`).run(outcome, verifiedAt?.toISOString() ?? null, rotationId);
}

export function lastHistory(db: Db): HistoryRow | undefined {
  if (!tableExists(db, HISTORY_TABLE)) return undefined;
  const x = db.prepare(`SELECT * FROM ${HISTORY_TABLE} WHERE outcome <> ? ORDER BY committed_at DESC, id DESC LIMIT 1`).get(RETIRED_OUTCOME) as Record<string, unknown> | undefined;
  return x ? historyFromStored(x, (v) => new Date(v as string)) : undefined;
}

export function historyWith(db: Db, outcome: string, limit: number): HistoryRow[] {
  if (!tableExists(db, HISTORY_TABLE)) return [];
  const rows = db.prepare(`SELECT * FROM ${HISTORY_TABLE} WHERE outcome = ? ORDER BY committed_at DESC, id DESC LIMIT ?`).all(outcome, limit) as Array<Record<string, unknown>>;
  return rows.map((x) => historyFromStored(x, (v) => new Date(v as string)));
}
