/**
 * The SQL of the PostgreSQL store's walk over the secret tables: what it
 * reads, how it writes a batch back, and the session settings it needs
 * while it does.
 */
import type { ClientBase } from 'pg';
import { RowShape, rowShape } from '../../engine/rows';
import { quoteIdent } from '../../inventory/inventory';
import type { ColumnPlan, TablePlan } from './tables';

/** Where things are in a row read by `selectSql`: the id, the ctid when writes use it, then the columns, then the AAD columns. */
export interface PgRowShape extends RowShape {
  readonly idAt: 0;
  readonly ctid?: 1;
}

export function rowLayout(plan: TablePlan): PgRowShape {
  return { ...rowShape(plan, 0, plan.idIndexed ? 1 : 2), idAt: 0, ...(plan.idIndexed ? {} : { ctid: 1 as const }) };
}

/**
 * Text whose bytes are UTF-8 (RFC 3629: no overlong forms, surrogates or
 * code points past U+10FFFF; PostgreSQL's text holds no NUL), as a
 * regular expression that a SQL_ASCII database matches byte by byte.
 */
const UTF8_TEXT = '^([\\x01-\\x7f]|[\\xc2-\\xdf][\\x80-\\xbf]|\\xe0[\\xa0-\\xbf][\\x80-\\xbf]|[\\xe1-\\xec\\xee\\xef][\\x80-\\xbf]{2}|\\xed[\\x80-\\x9f][\\x80-\\xbf]|\\xf0[\\x90-\\xbf][\\x80-\\xbf]{2}|[\\xf1-\\xf3][\\x80-\\xbf]{3}|\\xf4[\\x80-\\x8f][\\x80-\\xbf]{2})*$';

/**
 * What a read selects of the value column `col` (`alias.` before it, when
 * given): its text. In a SQL_ASCII database (`TablePlan.sqlAscii`) a JSON
 * document whose bytes are not UTF-8 reads as the empty string instead,
 * which no json or jsonb column can hold, so the engine takes it for a
 * malformed document (SEALED_MALFORMED) and the rotation refuses its row
 * before anything changes. Read as it is, such a document would fail the
 * whole statement: the server checks what it sends a UTF-8 client
 * ("invalid byte sequence for encoding UTF8"), naming no row.
 */
export function valueText(plan: TablePlan, col: ColumnPlan, alias = ''): string {
  const x = `${alias ? `${alias}.` : ''}${quoteIdent(col.column)}::text`;
  return plan.sqlAscii && col.json ? `CASE WHEN ${x} ~ '${UTF8_TEXT}' THEN ${x} ELSE '' END` : x;
}

/** `col..., aad col...` as a read selects them (`valueText`, the additional data as text), `alias.` before each when given: what `rowLayout` puts after the id (and ctid). */
export function valueColumns(plan: TablePlan, alias = ''): string {
  const a = alias ? `${alias}.` : '';
  return [...plan.columns.map((c) => valueText(plan, c, alias)), ...plan.aadColumns.map((c) => `${a}${quoteIdent(c)}::text`)].join(', ');
}

/** The row (`alias.`, when given) holds at least one value. */
export function holdsValue(plan: TablePlan, alias = ''): string {
  const a = alias ? `${alias}.` : '';
  return `(${plan.columns.map((c) => `${a}${quoteIdent(c.column)} IS NOT NULL`).join(' OR ')})`;
}

/** Reads `id, [ctid,] col..., aad col...` (all as text) of every row holding at least one value. */
export function selectSql(plan: TablePlan): string {
  const key = plan.idIndexed ? '' : 'ctid::text, ';
  return `SELECT ${quoteIdent(plan.idColumn)}::text, ${key}${valueColumns(plan)} FROM ${quoteIdent(plan.table)} WHERE ${holdsValue(plan)}`;
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

/**
 * Writes a batch of one row (a large value is always alone). Parameters:
 * the row's id (or ctid), then the new text of each column (NULL =
 * unchanged), each a parameter of its own: pg sends a text given as its
 * bytes (a Buffer) as it is, in binary, which the server takes without
 * parsing; in an array, a value of tens of megabytes costs the server the
 * array's unpacking and `unnest`'s copy of it (spilled to a temporary file
 * past `work_mem`): about 1.5 s of 4 for 48 MiB.
 */
export function updateOneSql(plan: TablePlan): string {
  const sets = plan.columns.map((c, i) => `${quoteIdent(c.column)} = COALESCE($${i + 2}::text::${c.type}, ${quoteIdent(c.column)})`);
  const match = plan.idIndexed ? `${quoteIdent(plan.idColumn)} = $1::${plan.idType}` : 'ctid = $1::tid';
  return `UPDATE ${quoteIdent(plan.table)} SET ${sets.join(', ')} WHERE ${match}`;
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
