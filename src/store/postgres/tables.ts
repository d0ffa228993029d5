/**
 * The PostgreSQL store's plan of an inventory's tables: the engine's
 * grouping (`groupInventory`) with each id and value column's type from
 * the catalog, checked against the entries, and whether writes can find
 * rows by id (a unique index) or must use their ctid.
 */
import type { ClientBase } from 'pg';
import { MasterKeyError } from '../../errors';
import { ColumnPlan as EngineColumn, TableGroup, groupInventory } from '../../engine/tables';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { translatePgError } from './client';

/** One column of a table, the inventory entries that read it, and its type. */
export interface ColumnPlan extends EngineColumn {
  /** SQL type of the column, e.g. `text` or `jsonb` (filled from the catalog). */
  readonly type: string;
}

/** Every secret-holding column of one table, with the types the catalog gives. */
export interface TablePlan extends TableGroup {
  /** SQL type of the id column, e.g. `bigint`. */
  readonly idType: string;
  /** Whether a unique btree index is on the id column alone (then writes find rows by id, else by ctid). */
  readonly idIndexed: boolean;
  readonly columns: readonly ColumnPlan[];
  /**
   * The database's server encoding is SQL_ASCII: it stores whatever bytes
   * it is given and hands them out as they are, so a text read may not be
   * UTF-8 (see `valueText`).
   */
  readonly sqlAscii?: boolean;
}

const TEXT_TYPES = new Set(['text', 'character varying', 'character', 'varchar', 'bpchar']);
const JSON_TYPES = new Set(['jsonb', 'json']);

function baseType(type: string): string {
  return type.replace(/\(.*\)$/, '');
}

/** Resolves the id and column types of every table from the catalog and checks them against the entries. */
export async function planInventory(client: ClientBase, inv: Inventory): Promise<TablePlan[]> {
  const out: TablePlan[] = [];
  let sqlAscii: boolean;
  try {
    sqlAscii = (await client.query<{ e: string }>("SELECT current_setting('server_encoding') AS e")).rows[0].e === 'SQL_ASCII';
  } catch (e) {
    throw translatePgError(e, 'reading the database encoding');
  }
  for (const g of groupInventory(inv)) {
    const names = [g.idColumn, ...g.columns.map((c) => c.column), ...g.aadColumns];
    let rows: Array<{ attname: string; type: string; indexed: boolean }>;
    try {
      ({ rows } = await client.query<{ attname: string; type: string; indexed: boolean }>(
        `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type,
                EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                         WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND i.indnkeyatts = 1 AND i.indisunique AND am.amname = 'btree'
                           AND i.indisvalid AND i.indpred IS NULL) AS indexed
           FROM pg_attribute a
          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($2::text[])`,
        [quoteIdent(g.table), names],
      ));
    } catch (e) {
      throw translatePgError(e, `reading the columns of ${g.table}`);
    }
    const types = new Map(rows.map((r) => [r.attname, r.type]));
    const typeOf = (col: string) => {
      const t = types.get(col);
      if (!t) throw new MasterKeyError('INVENTORY_INVALID', `The inventory names ${g.table}.${col}, which does not exist in this database; fix the inventory or the schema.`);
      return t;
    };
    const idType = typeOf(g.idColumn);
    const columns = g.columns.map((c): ColumnPlan => {
      const type = typeOf(c.column);
      const ok = c.json ? JSON_TYPES.has(baseType(type)) : TEXT_TYPES.has(baseType(type));
      if (!ok) {
        throw new MasterKeyError('INVENTORY_INVALID', `${g.table}.${c.column} is of type ${type}, but the inventory reads it as ${c.json ? 'a json/jsonb document' : 'text'}; fix the inventory.`);
      }
      return { ...c, type };
    });
    g.aadColumns.forEach(typeOf);
    const idIndexed = rows.some((r) => r.attname === g.idColumn && r.indexed);
    out.push({ table: g.table, idColumn: g.idColumn, idType, idIndexed, columns, aadColumns: g.aadColumns, ...(sqlAscii ? { sqlAscii } : {}) });
  }
  return out;
}
