/**
 * Small row-level helpers shared by backup and restore: stream a table's
 * (id, value) pairs through a server-side cursor in bounded batches, and
 * write values back by id in batches.
 */
import { ClientBase } from 'pg';
import { quoteIdent } from '../../inventory/inventory';
import { Location } from '../store';

let cursorSeq = 0;

/**
 * Calls fn with batches of [id, value-as-text] for every non-NULL value.
 * Must run inside a transaction (cursors live in one).
 */
export async function forEachValueBatch(c: ClientBase, loc: Location, batchSize: number, fn: (rows: Array<[string, string]>) => Promise<void> | void): Promise<void> {
  const cur = `mk_cur_${++cursorSeq}`;
  const id = quoteIdent(loc.idColumn);
  const col = quoteIdent(loc.column);
  await c.query(`DECLARE ${cur} NO SCROLL CURSOR FOR SELECT ${id}::text AS id, ${col}::text AS v FROM ${quoteIdent(loc.table)} WHERE ${col} IS NOT NULL ORDER BY ${id}`);
  try {
    for (;;) {
      const r = await c.query({ text: `FETCH ${batchSize} FROM ${cur}`, rowMode: 'array' });
      if (r.rows.length === 0) break;
      await fn(r.rows as Array<[string, string]>);
      if (r.rows.length < batchSize) break;
    }
  } finally {
    await c.query(`CLOSE ${cur}`).catch(() => undefined);
  }
}

/** The SQL type of a column, e.g. `text`, `jsonb`, `bigint`. */
export async function columnType(c: ClientBase, table: string, column: string): Promise<string> {
  const r = await c.query<{ t: string }>('SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped', [
    quoteIdent(table),
    column,
  ]);
  if (!r.rows[0]) throw new Error(`column ${table}.${column} does not exist`);
  return r.rows[0].t;
}

/** Prepared batched writer: UPDATE table SET column = value WHERE id = id, for many rows per statement. */
export async function valueWriter(c: ClientBase, loc: Location): Promise<(rows: ReadonlyArray<readonly [string, string]>) => Promise<number>> {
  const idType = await columnType(c, loc.table, loc.idColumn);
  const valType = await columnType(c, loc.table, loc.column);
  const sql = `UPDATE ${quoteIdent(loc.table)} AS t SET ${quoteIdent(loc.column)} = v.val::${valType}
                 FROM unnest($1::${idType}[], $2::text[]) AS v(id, val) WHERE t.${quoteIdent(loc.idColumn)} = v.id`;
  return async (rows) => {
    if (rows.length === 0) return 0;
    const r = await c.query(sql, [rows.map((x) => x[0]), rows.map((x) => x[1])]);
    return r.rowCount ?? 0;
  };
}
