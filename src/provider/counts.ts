/**
 * Counting the sealed values of an inventory by query, without reading or
 * decrypting them: what terraform's refresh and plan show on every run, so it
 * must stay fast on a large database (one aggregate per table; jsonb paths
 * are walked in SQL). It counts exactly what the hot path's scan finds: every
 * non-NULL text value, and every string at an entry's jsonPath whose holding
 * object satisfies its `where` (a location two entries name counts once, for
 * the first).
 */
import type { ClientBase } from 'pg';
import { translatePgError } from '../store/postgres/client';
import { Inventory, InventoryEntry, inventoryKinds, quoteIdent } from '../inventory/inventory';

export interface SecretCounts {
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** Characters of sealed text (for the backup estimate). */
  readonly storedBytes: number;
}

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

/** One row per string value at the entry's path: (id, path, kind order, bytes). */
function slotsSql(e: InventoryEntry, order: number, params: unknown[]): string {
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
  const keys = path.map((_, i) => `c${i}.k`).join(`, `);
  let where = `jsonb_typeof(${x}) = 'string'`;
  if (e.where) {
    params.push(e.where.key, JSON.stringify(e.where.equals));
    where += ` AND jsonb_typeof(${holder}) = 'object' AND ${holder} -> $${params.length - 1}::text = $${params.length}::jsonb`;
  }
  return `SELECT t.${quoteIdent(e.idColumn)}::text AS id, ARRAY[${keys}] AS path, ${order} AS ord, length(${x} #>> '{}') AS bytes
            FROM ${quoteIdent(e.table)} t ${joins.join(' ')}
           WHERE t.${quoteIdent(e.column)} IS NOT NULL AND ${where}`;
}

/**
 * Counts per kind (every kind of the inventory listed, 0 when absent); with
 * `bytes: false` the plain columns are only counted, not measured (cheaper).
 */
export async function countSecrets(c: ClientBase, inv: Inventory, opts: { bytes?: boolean } = {}): Promise<SecretCounts> {
  const measure = opts.bytes !== false;
  const byKind: Record<string, number> = {};
  for (const k of inventoryKinds(inv)) byKind[k] = 0;
  let total = 0;
  let storedBytes = 0;
  const add = (kind: string, n: number, bytes: number) => {
    byKind[kind] += n;
    total += n;
    storedBytes += bytes;
  };
  // Plain text columns: one aggregate per table.
  const plain = new Map<string, InventoryEntry[]>();
  const json = new Map<string, InventoryEntry[]>();
  for (const e of inv.entries) {
    const group = e.jsonPath ? json : plain;
    const key = e.jsonPath ? `${e.table}\u0000${e.column}` : e.table;
    group.set(key, [...(group.get(key) ?? []), e]);
  }
  try {
    for (const entries of plain.values()) {
      // A column listed twice as plain text counts once (the first entry's kind), as the scan does.
      const cols = entries.filter((e, i) => entries.findIndex((x) => x.column === e.column) === i);
      const sel = cols.map((e, i) => `count(${quoteIdent(e.column)}) AS n${i}, ${measure ? `coalesce(sum(length(${quoteIdent(e.column)}::text)), 0)` : '0'} AS b${i}`);
      const r = await c.query<Record<string, string>>(`SELECT ${sel.join(', ')} FROM ${quoteIdent(cols[0].table)}`);
      cols.forEach((e, i) => add(e.kind, Number(r.rows[0][`n${i}`]), Number(r.rows[0][`b${i}`])));
    }
    for (const entries of json.values()) {
      const params: unknown[] = [];
      const union = entries.map((e, i) => slotsSql(e, i, params)).join('\nUNION ALL\n');
      const counted =
        entries.length === 1
          ? `SELECT ord, count(*) AS n, coalesce(sum(bytes), 0) AS b FROM (${union}) s GROUP BY ord`
          : `SELECT ord, count(*) AS n, coalesce(sum(bytes), 0) AS b FROM (SELECT DISTINCT ON (id, path) ord, bytes FROM (${union}) s ORDER BY id, path, ord) d GROUP BY ord`;
      const r = await c.query<{ ord: number; n: string; b: string }>(counted, params);
      for (const row of r.rows) add(entries[row.ord].kind, Number(row.n), Number(row.b));
    }
  } catch (e) {
    throw translatePgError(e, 'counting the stored secrets');
  }
  return { total, byKind, storedBytes };
}
