/**
 * The PostgreSQL store's metadata, in schema `master_key`: the integrity
 * canary (one row) and the rotation history, the rotation lock (a
 * session-level advisory lock) and the database's identity.
 */
import { ClientBase } from 'pg';
import { MasterKeyError } from '../../errors';
import { CanaryRow, CanaryUpdate, HistoryRow, LockHolder, RETIRED_OUTCOME, StoreIdentity } from '../store';
import { translatePgError } from './client';
import { HISTORY_COLUMNS, historyFromStored, historyValues } from '../history';

export const META_SCHEMA = 'master_key';

export const META_SQL = `
CREATE SCHEMA IF NOT EXISTS ${META_SCHEMA};
CREATE TABLE IF NOT EXISTS ${META_SCHEMA}.canary (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  key_entry text NOT NULL,
  fingerprint text NOT NULL,
  generation integer NOT NULL CHECK (generation >= 1),
  sealed text NOT NULL,
  key_created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ${META_SCHEMA}.history (
  id bigserial PRIMARY KEY,
  rotation_id uuid NOT NULL UNIQUE,
  started_at timestamptz NOT NULL,
  committed_at timestamptz NOT NULL,
  verified_at timestamptz,
  from_generation integer NOT NULL,
  to_generation integer NOT NULL,
  old_fingerprint text NOT NULL,
  new_fingerprint text NOT NULL,
  reason text NOT NULL,
  processed integer NOT NULL,
  updated integer NOT NULL,
  unchanged_due_to_errors integer NOT NULL,
  by_kind jsonb NOT NULL,
  backup_path text,
  backup_sha256 text,
  actor text NOT NULL,
  outcome text NOT NULL
);
`;

/** Reads the canary, or undefined when the metadata tables or the row are missing. */
export async function readCanary(c: ClientBase, forUpdate = false): Promise<CanaryRow | undefined> {
  try {
    const exists = await c.query<{ t: string | null }>(`SELECT to_regclass('${META_SCHEMA}.canary')::text AS t`);
    if (!exists.rows[0].t) return undefined;
    const r = await c.query<{ key_entry: string; fingerprint: string; generation: number; sealed: string; key_created_at: Date; updated_at: Date }>(
      `SELECT key_entry, fingerprint, generation, sealed, key_created_at, updated_at FROM ${META_SCHEMA}.canary${forUpdate ? ' FOR UPDATE' : ''}`,
    );
    if (r.rows.length === 0) return undefined;
    const row = r.rows[0];
    return { keyEntry: row.key_entry, fingerprint: row.fingerprint, generation: row.generation, sealed: row.sealed, keyCreatedAt: row.key_created_at, updatedAt: row.updated_at };
  } catch (e) {
    throw translatePgError(e, 'reading the integrity canary');
  }
}

export async function createMetadata(c: ClientBase): Promise<void> {
  await c.query(META_SQL);
}

export async function insertCanary(c: ClientBase, canary: CanaryRow): Promise<void> {
  await c.query(
    `INSERT INTO ${META_SCHEMA}.canary (key_entry, fingerprint, generation, sealed, key_created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
    [canary.keyEntry, canary.fingerprint, canary.generation, canary.sealed, canary.keyCreatedAt, canary.updatedAt],
  );
}

export async function replaceCanary(c: ClientBase, canary: CanaryUpdate): Promise<void> {
  const r = await c.query(`UPDATE ${META_SCHEMA}.canary SET fingerprint = $1, generation = $2, sealed = $3, key_created_at = $4, updated_at = $5`, [
    canary.fingerprint,
    canary.generation,
    canary.sealed,
    canary.keyCreatedAt,
    canary.updatedAt,
  ]);
  if (r.rowCount !== 1) throw new MasterKeyError('CANARY_NOT_FOUND', 'Integrity canary not found while updating it; nothing was committed.');
}

export async function insertHistory(c: ClientBase, h: HistoryRow): Promise<void> {
  await c.query(
    `INSERT INTO ${META_SCHEMA}.history (${HISTORY_COLUMNS.join(', ')}) VALUES (${HISTORY_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
    historyValues(h, (d) => d),
  );
}

export async function setHistoryOutcome(c: ClientBase, rotationId: string, outcome: string, verifiedAt?: Date): Promise<void> {
  await c.query(`UPDATE ${META_SCHEMA}.history SET outcome = $2, verified_at = COALESCE($3, verified_at) WHERE rotation_id = $1`, [rotationId, outcome, verifiedAt ?? null]);
}

export async function lastHistory(c: ClientBase): Promise<HistoryRow | undefined> {
  const exists = await c.query<{ t: string | null }>(`SELECT to_regclass('${META_SCHEMA}.history')::text AS t`);
  if (!exists.rows[0].t) return undefined;
  const r = await c.query(`SELECT * FROM ${META_SCHEMA}.history WHERE outcome <> $1 ORDER BY committed_at DESC, id DESC LIMIT 1`, [RETIRED_OUTCOME]);
  const x = r.rows[0];
  return x ? historyFromStored(x, (v) => v as Date) : undefined;
}

export async function historyWith(c: ClientBase, outcome: string, limit: number): Promise<HistoryRow[]> {
  const exists = await c.query<{ t: string | null }>(`SELECT to_regclass('${META_SCHEMA}.history')::text AS t`);
  if (!exists.rows[0].t) return [];
  const r = await c.query(`SELECT * FROM ${META_SCHEMA}.history WHERE outcome = $1 ORDER BY committed_at DESC, id DESC LIMIT $2`, [outcome, limit]);
  return r.rows.map((x) => historyFromStored(x, (v) => v as Date));
}

/** Two-int advisory lock key: 'mk' and 'rot'. */
const LOCK_A = 0x6d6b;
const LOCK_B = 0x726f74;

/** Session-level advisory lock: one rotation at a time per database, released when the session ends. */
async function tryLock(c: ClientBase): Promise<boolean> {
  const r = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LOCK_A, LOCK_B]);
  return r.rows[0].ok;
}

export async function lockHolder(c: ClientBase): Promise<LockHolder | undefined> {
  const r = await c.query<{ pid: number; backend_start: Date | null; application_name: string | null }>(
    `SELECT l.pid, a.backend_start, a.application_name
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`,
    [LOCK_A, LOCK_B],
  );
  const row = r.rows[0];
  if (!row) return undefined;
  return { pid: row.pid, startedAt: row.backend_start ?? undefined, label: row.application_name ?? undefined };
}

/** Takes the rotation lock or fails with LOCKED naming the holder's start time. */
export async function acquireRotationLock(c: ClientBase): Promise<void> {
  if (await tryLock(c)) return;
  const h = await lockHolder(c);
  const since = h?.startedAt ? ` started ${h.startedAt.toISOString()}` : '';
  const who = h ? ` (PostgreSQL pid ${h.pid}${h.label ? `, "${h.label}"` : ''})` : '';
  throw new MasterKeyError(
    'LOCKED',
    `Another rotation${since}${who} holds the lock on this database; wait for it to finish and run the command again (a rotation that died releases the lock; then run \`master-key recover\`).`,
    { holderStartedAt: h?.startedAt?.toISOString(), holderPid: h?.pid },
  );
}

/** Identity of the database, recorded in pending files and backups so they are not applied elsewhere. */
export async function databaseIdentity(c: ClientBase): Promise<StoreIdentity> {
  const name = (await c.query<{ name: string }>('SELECT current_database() AS name')).rows[0].name;
  let systemIdentifier = 'unknown';
  try {
    // Needs pg_monitor-like rights on some servers; the name alone still identifies the database then.
    systemIdentifier = (await c.query<{ sysid: string }>('SELECT system_identifier::text AS sysid FROM pg_control_system()')).rows[0].sysid;
  } catch {
    // keep 'unknown'
  }
  return { name, systemIdentifier };
}
