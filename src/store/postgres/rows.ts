/**
 * Small row-level helpers of restore: a column's type, and writing values
 * back by id in batches.
 */
import { ClientBase } from 'pg';
import { quoteIdent } from '../../inventory/inventory';
import { Location } from '../store';

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
