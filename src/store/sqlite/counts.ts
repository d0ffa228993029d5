/**
 * SQLite's `Store.count`: the values of an inventory counted by aggregate
 * queries, without reading them into node or decrypting them. One
 * aggregate per table (rows, bytes and every plain column's values), and
 * one per JSON column whose paths are walked in SQL with `json_each` (a
 * level per path segment, descending only into objects and arrays).
 * Tables and columns are grouped as the store's scan groups them
 * (`planTables`), so a place two entries name counts once, for the first.
 */
import { Inventory, InventoryEntry, quoteIdent } from '../../inventory/inventory';
import { CountTally, InventoryCounts } from '../store';
import { Db } from './driver';
import { SqliteTable, planTables } from './values';

const INDEX = /^(0|[1-9]\d*)$/;

/** `json_each`'s type of a JSON value equal to `equals` (the engine's `where`: numbers compare by value). */
function equalsSql(w: string, equals: string | number | boolean, params: unknown[]): string {
  if (typeof equals === 'boolean') return `${w}.type = '${equals ? 'true' : 'false'}'`;
  params.push(equals);
  return typeof equals === 'number' ? `${w}.type IN ('integer', 'real') AND ${w}.value = ?` : `${w}.type = 'text' AND ${w}.value = ?`;
}

/**
 * One row per string value at the entry's path whose holding object
 * satisfies its `where`: (row key, path as a JSON array of keys, entry
 * order). Parameters are appended to `params` in the order their `?` appear.
 */
function slotsSql(t: SqliteTable, e: InventoryEntry, order: number, params: unknown[]): string {
  const doc = `t.${quoteIdent(e.column)}`;
  const joins: string[] = [];
  const conds: string[] = [`${doc} IS NOT NULL`];
  // The node at the current depth (its JSON text and json type) and the container holding it.
  let x = doc;
  let xType = `json_type(${doc})`;
  let holder = x;
  let holderType = xType;
  (e.jsonPath ?? []).forEach((seg, i) => {
    // A string member is SQL text in json_each: only objects and arrays are walked into.
    joins.push(`JOIN json_each(CASE WHEN ${xType} IN ('object', 'array') THEN ${x} END) AS c${i}`);
    // Object members have text keys, array elements integer keys: `key = ?` never mixes them.
    if (seg !== '*' && INDEX.test(seg)) {
      conds.push(`c${i}.key IN (?, ?)`);
      params.push(seg, Number(seg));
    } else if (seg !== '*') {
      conds.push(`c${i}.key = ?`);
      params.push(seg);
    }
    holder = x;
    holderType = xType;
    x = `c${i}.value`;
    xType = `c${i}.type`;
  });
  conds.push(`${xType} = 'text'`);
  if (e.where) {
    params.push(e.where.key);
    conds.push(`${holderType} = 'object' AND EXISTS (SELECT 1 FROM json_each(${holder}) AS w WHERE w.key = ? AND ${equalsSql('w', e.where.equals, params)})`);
  }
  const keys = (e.jsonPath ?? []).map((_, i) => `c${i}.key`).join(', ');
  return `SELECT t.${t.key} AS k, json_array(${keys}) AS path, ${order} AS ord FROM ${quoteIdent(t.table)} AS t ${joins.join(' ')} WHERE ${conds.join(' AND ')}`;
}

/** Counts in the caller's read transaction (one snapshot). */
export function countInventory(db: Db, inv: Inventory): InventoryCounts {
  const tally = new CountTally(inv);
  for (const t of planTables(db, inv)) {
    const cols = t.columns.map((c) => quoteIdent(c.column));
    const plain = t.columns.filter((c) => !c.json);
    // A plain column is one value per non-NULL row, of its first entry's kind (as the scan counts it). Sizes and NULLs
    // from the record header alone (octet_length): count(column) would read every value, a large one page by page.
    const r = db
      .prepare(
        `SELECT count(*) AS rows, coalesce(sum(${cols.map((q) => `coalesce(octet_length(${q}), 0)`).join(' + ')}), 0) AS bytes
                ${plain.map((c, i) => `, coalesce(sum(octet_length(${quoteIdent(c.column)}) IS NOT NULL), 0) AS n${i}`).join('')}
           FROM ${quoteIdent(t.table)} WHERE ${cols.map((q) => `${q} IS NOT NULL`).join(' OR ')}`,
      )
      .get() as Record<string, number>;
    tally.addRows(r.rows, r.bytes);
    plain.forEach((c, i) => tally.addValues(c.entries[0].kind, r[`n${i}`]));
    for (const c of t.columns.filter((x) => x.json)) {
      const params: unknown[] = [];
      const union = c.entries.map((e, i) => slotsSql(t, e, i, params)).join('\nUNION ALL\n');
      // Several entries may name the same member of a document: it counts once, for the first.
      const sql =
        c.entries.length === 1
          ? `SELECT ord, count(*) AS n FROM (${union}) GROUP BY ord`
          : `SELECT ord, count(*) AS n FROM (SELECT min(ord) AS ord FROM (${union}) GROUP BY k, path) GROUP BY ord`;
      for (const row of db.prepare(sql).all(...params) as Array<{ ord: number; n: number }>) tally.addValues(c.entries[row.ord].kind, row.n);
    }
  }
  return tally.result();
}
