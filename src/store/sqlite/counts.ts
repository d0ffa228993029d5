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

/** A JSON path step for one object member, as SQLite's path syntax has it (the key quoted). */
function memberStep(key: string): string {
  return `."${key.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** A SQL string literal. */
function sqlText(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/**
 * One row per string value at the entry's path whose holding object
 * satisfies its `where`: (row key, path as a JSON array of keys, entry
 * order). Parameters are appended to `params` in the order their `?` appear.
 *
 * Member names descend by JSON path (no text of a container is made), `*`
 * and array indexes by `json_each` over the container at the path, whose
 * rows carry each child's own (small) text. So a large document is parsed
 * where it is, never rendered again member by member.
 */
function slotsSql(t: SqliteTable, e: InventoryEntry, order: number, params: unknown[]): string {
  const doc = `t.${quoteIdent(e.column)}`;
  const joins: string[] = [];
  const conds: string[] = [`${doc} IS NOT NULL`];
  // The current node: a JSON text and a path into it (a child `json_each` gave is its own node: its JSON text only for a
  // container, its type as json_each says), the node that holds it, and the path's keys so far.
  type Node = { readonly json: string; readonly path: string; readonly type: string };
  const root: Node = { json: doc, path: '$', type: `json_type(${doc})` };
  let node = root;
  let holder = root;
  const keys: string[] = [];
  (e.jsonPath ?? []).forEach((seg, i) => {
    holder = node;
    if (seg !== '*' && !INDEX.test(seg)) {
      // A member name: only objects have members.
      conds.push(`${node.type} = 'object'`);
      const path = node.path + memberStep(seg);
      node = { json: node.json, path, type: `json_type(${node.json}, ${sqlText(path)})` };
      keys.push(sqlText(seg));
      return;
    }
    // Only objects and arrays are walked into (json_each of anything else gives that value itself).
    joins.push(`JOIN json_each(CASE WHEN ${node.type} IN ('object', 'array') THEN ${node.json} END, ${sqlText(node.path)}) AS c${i}`);
    // Object members have text keys, array elements integer keys: `key IN (?, ?)` takes either for an index.
    if (seg !== '*') {
      conds.push(`c${i}.key IN (?, ?)`);
      params.push(seg, Number(seg));
    }
    node = { json: `CASE WHEN c${i}.type IN ('object', 'array') THEN c${i}.value END`, path: '$', type: `c${i}.type` };
    keys.push(`c${i}.key`);
  });
  conds.push(`${node.type} = 'text'`);
  if (e.where) {
    params.push(e.where.key);
    conds.push(`${holder.type} = 'object' AND EXISTS (SELECT 1 FROM json_each(${holder.json}, ${sqlText(holder.path)}) AS w WHERE w.key = ? AND ${equalsSql('w', e.where.equals, params)})`);
  }
  return `SELECT t.${t.key} AS k, json_array(${keys.join(', ')}) AS path, ${order} AS ord FROM ${quoteIdent(t.table)} AS t ${joins.join(' ')} WHERE ${conds.join(' AND ')}`;
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
