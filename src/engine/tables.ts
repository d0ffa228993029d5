/**
 * How a walk groups an inventory: entries by table (so a row holding
 * several secrets is read and written once) and by column, with the
 * additional-data columns each table's entries name. Pure; each store adds
 * what it learns from its catalog.
 */
import { MasterKeyError } from '../errors';
import { Inventory, InventoryEntry } from '../inventory/inventory';

/** One column of a table and the inventory entries that read it. */
export interface ColumnPlan {
  readonly column: string;
  /** A JSON document (entries have jsonPath) or a plain text column. */
  readonly json: boolean;
  readonly entries: readonly InventoryEntry[];
}

/** Every secret-holding column of one table. */
export interface TableGroup {
  readonly table: string;
  readonly idColumn: string;
  readonly columns: readonly ColumnPlan[];
  /** Columns whose text is some entries' additional authenticated data (read after `columns`). */
  readonly aadColumns: readonly string[];
}

/** Groups entries by table and column, keeping inventory order, with the AAD columns each table's entries name. Pure. */
export function groupInventory(inv: Inventory): TableGroup[] {
  const tables = new Map<string, { table: string; idColumn: string; columns: Array<{ column: string; json: boolean; entries: InventoryEntry[] }>; aadColumns: string[] }>();
  for (const e of inv.entries) {
    const key = `${e.table}\u0000${e.idColumn}`;
    let t = tables.get(key);
    if (!t) tables.set(key, (t = { table: e.table, idColumn: e.idColumn, columns: [], aadColumns: [] }));
    if (e.aad && !t.aadColumns.includes(e.aad.column)) t.aadColumns.push(e.aad.column);
    const json = e.jsonPath !== undefined;
    let c = t.columns.find((x) => x.column === e.column);
    if (!c) t.columns.push((c = { column: e.column, json, entries: [] }));
    if (c.json !== json) {
      throw new MasterKeyError('INVENTORY_INVALID', `The inventory reads ${e.table}.${e.column} both as a plain column and through a jsonPath; declare it one way only.`);
    }
    c.entries.push(e);
  }
  return [...tables.values()];
}
