/**
 * PostgreSQL's `Store.count`: the values of an inventory counted by
 * aggregate queries, without reading them into node or decrypting them.
 * One aggregate per table (rows, bytes and every plain column's values),
 * and one per JSON column whose paths are walked in SQL (jsonb functions).
 * Tables and columns are grouped as the engine's scan groups them
 * (`planInventory`), so a place two entries name counts once, for the first.
 */
import type { ClientBase } from 'pg';
import { ColumnPlan, TablePlan, planInventory } from './tables';
import { holdsValue } from './statements';
import { Inventory, InventoryEntry, quoteIdent } from '../../inventory/inventory';
import { CountTally, InventoryCounts } from '../store';

const INDEX = /^(0|[1-9]\d*)$/;

/** SQL for the children of jsonb expression `x` at one path segment, as rows (k, v); parameters are appended to `params`. */
function children(x: string, segment: string, params: unknown[]): string {
  if (segment === '*') {
    return `(SELECT e.key, e.value FROM jsonb_each(CASE WHEN jsonb_typeof(${x}) = 'object' THEN ${x} END) e
             UNION ALL SELECT (a.o - 1)::text, a.v FROM jsonb_array_elements(CASE WHEN jsonb_typeof(${x}) = 'array' THEN ${x} END) WITH ORDINALITY a(v, o))`;
  }
  params.push(segment);
  const p = `$${params.length}::text`;
  const member = `SELECT ${p}, ${x} -> ${p} WHERE jsonb_typeof(${x}) = 'object' AND ${x} ? ${p}`;
  if (!INDEX.test(segment)) return `(${member})`;
  return `(${member} UNION ALL SELECT ${p}, ${x} -> ${Number(segment)} WHERE jsonb_typeof(${x}) = 'array' AND ${Number(segment)} < jsonb_array_length(${x}))`;
}

/** One row per string value at the entry's path whose holding object satisfies its `where`: (id, path, entry order). */
function slotsSql(t: TablePlan, e: InventoryEntry, order: number, params: unknown[]): string {
  const path = e.jsonPath ?? [];
  const doc = `t.${quoteIdent(e.column)}::jsonb`;
  const joins: string[] = [];
  let x = doc;
  let holder = doc;
  path.forEach((seg, i) => {
    joins.push(`CROSS JOIN LATERAL ${children(x, seg, params)} AS c${i}(k, v)`);
    holder = x;
    x = `c${i}.v`;
  });
  let where = `jsonb_typeof(${x}) = 'string'`;
  if (e.where) {
    params.push(e.where.key, JSON.stringify(e.where.equals));
    where += ` AND jsonb_typeof(${holder}) = 'object' AND ${holder} -> $${params.length - 1}::text = $${params.length}::jsonb`;
  }
  return `SELECT t.${quoteIdent(t.idColumn)}::text AS id, ARRAY[${path.map((_, i) => `c${i}.k`).join(', ')}] AS path, ${order} AS ord
            FROM ${quoteIdent(t.table)} t ${joins.join(' ')}
           WHERE t.${quoteIdent(e.column)} IS NOT NULL AND ${where}`;
}

/** Values per entry (by its index in `c.entries`) of one JSON column. */
async function countJsonColumn(c: ClientBase, t: TablePlan, col: ColumnPlan): Promise<Array<{ ord: number; n: number }>> {
  const params: unknown[] = [];
  const union = col.entries.map((e, i) => slotsSql(t, e, i, params)).join('\nUNION ALL\n');
  // Several entries may name the same member of a document: it counts once, for the first.
  const sql =
    col.entries.length === 1
      ? `SELECT ord, count(*)::text AS n FROM (${union}) s GROUP BY ord`
      : `SELECT ord, count(*)::text AS n FROM (SELECT DISTINCT ON (id, path) ord FROM (${union}) s ORDER BY id, path, ord) d GROUP BY ord`;
  const r = await c.query<{ ord: number; n: string }>(sql, params);
  return r.rows.map((row) => ({ ord: row.ord, n: Number(row.n) }));
}

/** Counts in the caller's transaction (one snapshot when it is REPEATABLE READ). */
export async function countInventory(c: ClientBase, inv: Inventory): Promise<InventoryCounts> {
  const tally = new CountTally(inv);
  for (const t of await planInventory(c, inv)) {
    const cols = t.columns.map((col) => quoteIdent(col.column));
    const plain = t.columns.filter((col) => !col.json);
    // A plain column is one value per non-NULL row, of its first entry's kind (as the scan counts it).
    const r = await c.query<Record<string, string>>(
      `SELECT count(*)::text AS rows, coalesce(sum(${cols.map((q) => `coalesce(octet_length(${q}::text), 0)`).join(' + ')}), 0)::text AS bytes
              ${plain.map((col, i) => `, count(${quoteIdent(col.column)})::text AS n${i}`).join('')}
         FROM ${quoteIdent(t.table)} WHERE ${holdsValue(t)}`,
    );
    tally.addRows(Number(r.rows[0].rows), Number(r.rows[0].bytes));
    plain.forEach((col, i) => tally.addValues(col.entries[0].kind, Number(r.rows[0][`n${i}`])));
    for (const col of t.columns.filter((x) => x.json)) for (const { ord, n } of await countJsonColumn(c, t, col)) tally.addValues(col.entries[ord].kind, n);
  }
  return tally.result();
}
