/**
 * The SQL of the hot path: what it reads, how it writes a batch back, and
 * the session settings it needs while it does.
 */
import type { ClientBase } from 'pg';
import { quoteIdent } from '../inventory/inventory';
import { AadLayout, TablePlan, aadLayout } from './stream-plan';

/** Where things are in a row read by `selectSql`: the id, the ctid when writes use it, then the columns, then the AAD columns. */
export interface RowLayout {
  readonly id: 0;
  readonly ctid?: 1;
  readonly first: number;
  readonly aad: AadLayout;
}

export function rowLayout(plan: TablePlan): RowLayout {
  const first = plan.idIndexed ? 1 : 2;
  return { id: 0, ...(plan.idIndexed ? {} : { ctid: 1 as const }), first, aad: aadLayout(plan.aadColumns, first, plan.columns.length) };
}

/** Reads `id, [ctid,] col..., aad col...` (all as text) of every row holding at least one value. */
export function selectSql(plan: TablePlan): string {
  const cols = [...plan.columns.map((c) => c.column), ...plan.aadColumns].map((c) => `${quoteIdent(c)}::text`);
  const notNull = plan.columns.map((c) => `${quoteIdent(c.column)} IS NOT NULL`).join(' OR ');
  const key = plan.idIndexed ? '' : 'ctid::text, ';
  return `SELECT ${quoteIdent(plan.idColumn)}::text, ${key}${cols.join(', ')} FROM ${quoteIdent(plan.table)} WHERE ${notNull}`;
}

/**
 * Writes a batch. Parameters: an array of the rows' ids (in the id
 * column's own type) or, when no index leads with the id column, of their
 * ctids; then one text[] per column with the new texts (NULL = unchanged).
 * With the planner steered (`steerPlanner`) each row is one index lookup or
 * one TID fetch, whatever the table size.
 */
export function updateSql(plan: TablePlan): string {
  const sets = plan.columns.map((c, i) => `${quoteIdent(c.column)} = COALESCE(v.c${i}::${c.type}, t.${quoteIdent(c.column)})`);
  const arrays = plan.columns.map((_, i) => `$${i + 2}::text[]`);
  const names = plan.columns.map((_, i) => `c${i}`);
  const [keyType, match] = plan.idIndexed ? [plan.idType, `t.${quoteIdent(plan.idColumn)} = v.k`] : ['tid', 't.ctid = v.k'];
  return `UPDATE ${quoteIdent(plan.table)} AS t SET ${sets.join(', ')} FROM unnest($1::${keyType}[], ${arrays.join(', ')}) AS v(k, ${names.join(', ')}) WHERE ${match}`;
}

/** PostgreSQL's OIDs of `text` and `tid`, the element types of our binary array parameters. */
const TEXT_OID = 25;
const TID_OID = 27;

/** Writes the header of a one-dimensional binary array (PostgreSQL's array_send format); returns the offset after it. */
function arrayHeader(b: Buffer, count: number, hasNull: boolean, oid: number): number {
  let o = b.writeInt32BE(1, 0); // dimensions
  o = b.writeInt32BE(hasNull ? 1 : 0, o);
  o = b.writeInt32BE(oid, o);
  o = b.writeInt32BE(count, o);
  return b.writeInt32BE(1, o); // lower bound
}

/**
 * A text[] parameter in binary format: pg sends Buffer parameters as
 * binary, so the server neither unquotes nor parses the values.
 */
export function binaryTextArray(values: ReadonlyArray<string | null>): Buffer {
  let size = 20;
  let hasNull = false;
  for (const v of values) {
    if (v === null) hasNull = true;
    size += 4 + (v === null ? 0 : Buffer.byteLength(v, 'utf8'));
  }
  const b = Buffer.allocUnsafe(size);
  let o = arrayHeader(b, values.length, hasNull, TEXT_OID);
  for (const v of values) {
    if (v === null) {
      o = b.writeInt32BE(-1, o);
      continue;
    }
    const n = b.write(v, o + 4, 'utf8');
    b.writeInt32BE(n, o);
    o += 4 + n;
  }
  return b;
}

const TID_TEXT = /^\((\d+),(\d+)\)$/;

/** A tid[] parameter in binary format, from ctids as PostgreSQL prints them ("(block,offset)"). */
export function binaryTidArray(ctids: readonly string[]): Buffer {
  const b = Buffer.allocUnsafe(20 + ctids.length * 10);
  let o = arrayHeader(b, ctids.length, false, TID_OID);
  for (const t of ctids) {
    const m = TID_TEXT.exec(t);
    if (!m) throw new Error(`unexpected ctid ${JSON.stringify(t)}`);
    o = b.writeInt32BE(6, o);
    o = b.writeUInt32BE(Number(m[1]), o);
    o = b.writeUInt16BE(Number(m[2]), o);
  }
  return b;
}

const QUOTE_NEEDED = /["\\]/g;

/** A PostgreSQL array literal of texts (faster than pg's generic conversion for large batches). */
export function pgArray(values: ReadonlyArray<string | null>): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    parts[i] = v === null ? 'NULL' : `"${v.indexOf('"') < 0 && v.indexOf('\\') < 0 ? v : v.replace(QUOTE_NEEDED, '\\$&')}"`;
  }
  return `{${parts.join(',')}}`;
}

/**
 * Planner settings for the batch UPDATE: a nested loop over the batch with
 * an index lookup (or TID fetch) per row. Left alone, the planner hash- or
 * merge-joins the batch against the whole table (a full scan per batch) on
 * tables up to a few hundred thousand rows.
 */
const STEER = { enable_hashjoin: 'off', enable_mergejoin: 'off', enable_seqscan: 'off' } as const;

/** Applies the settings for the rest of the transaction and returns a function that puts the previous values back. */
export async function steerPlanner(client: ClientBase): Promise<() => Promise<void>> {
  const names = Object.keys(STEER);
  const prev = await client.query<{ name: string; setting: string }>('SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])', [names]);
  await client.query(`SELECT ${names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`, Object.entries(STEER).flat());
  return async () => {
    if (client.getTransactionStatus() !== 'T') return;
    await client.query(`SELECT ${prev.rows.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`, prev.rows.flatMap((r) => [r.name, r.setting]));
  };
}

/**
 * Locks the tables against concurrent writes (reads go on) until the
 * transaction ends, so no row can appear or change between our read and our
 * write. Waits as long as the session's lock_timeout allows.
 */
export async function lockTables(client: ClientBase, plans: readonly TablePlan[]): Promise<void> {
  const tables = [...new Set(plans.map((p) => quoteIdent(p.table)))];
  if (tables.length) await client.query(`LOCK TABLE ${tables.join(', ')} IN EXCLUSIVE MODE`);
}
