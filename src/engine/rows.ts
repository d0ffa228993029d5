/**
 * A batch of rows as a store hands it to the engine, and the sealed values
 * in it: where the additional-data columns are, what a cell holds, and
 * every value found (plain columns, and strings inside JSON documents).
 */
import { MasterKeyError } from '../errors';
import type { InventoryEntry } from '../inventory/inventory';
import { documentSlots, slotValue } from './json-document';
import type { ColumnPlan, TableGroup } from './tables';

/** Where each AAD column's text is in a row (after the value columns): column name → index. */
export type AadLayout = ReadonlyMap<string, number>;

/**
 * How a store lays out the rows of one table it hands to the engine: the
 * row id at `idAt`; the value columns from `first` on, in `columns` order;
 * then the additional-data columns, where `aad` says. A store may keep
 * other cells of its own in a row (a key to write it back by).
 */
export interface RowShape {
  readonly table: string;
  readonly columns: readonly ColumnPlan[];
  readonly idAt: number;
  readonly first: number;
  readonly aad: AadLayout;
}

/** The shape of rows of `group` read as [its own cells…, id at `idAt`, …, values from `first`, AAD columns]. Pure. */
export function rowShape(group: Pick<TableGroup, 'table' | 'columns' | 'aadColumns'>, idAt: number, first: number): RowShape {
  const aad = new Map(group.aadColumns.map((c, j) => [c, first + group.columns.length + j]));
  return { table: group.table, columns: group.columns, idAt, first, aad };
}

/**
 * A value's additional authenticated data: the UTF-8 text of its entry's
 * AAD column in the same row (NULL: none), or undefined for an entry without one.
 */
export function aadOf(entry: InventoryEntry, row: BatchRow, aadAt: AadLayout): Uint8Array | undefined {
  if (!entry.aad) return undefined;
  const at = aadAt.get(entry.aad.column);
  if (at === undefined) throw new MasterKeyError('INTERNAL', `The AAD column ${entry.aad.column} was not read with the row; this is a bug.`);
  const v = cellText(row, at);
  return v === null ? undefined : Buffer.from(v, 'utf8');
}

/**
 * A row of a batch as a store reads it: the cells the engine reads (the
 * row id, the value columns, the AAD columns) are text or null (SQL NULL);
 * a store may keep other cells of its own in the row (a key to write back by).
 */
export type BatchRow = ReadonlyArray<unknown>;

/** Stands in for a stored value that is not text (a number or a blob, which SQLite may hold): no codec accepts it, so it is reported as malformed, and never written back. */
const NOT_TEXT = '\u0000';

/** A cell the engine reads: its text, or null. */
export function cellText(row: BatchRow, at: number): string | null {
  const v = row[at];
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? v : NOT_TEXT;
}

/** A row id cell as text. */
function idText(v: unknown): string {
  return v === null || v === undefined ? '' : String(v);
}

/** One sealed value found in a batch of rows. */
export interface FoundValue {
  readonly row: number;
  readonly column: string;
  readonly entry: InventoryEntry;
  readonly path?: string;
  readonly sealed: string;
  /** Its additional authenticated data (entries with `aad`). */
  readonly aad?: Uint8Array;
}

/** Row `row`'s id as text (a NULL id: the empty text). */
export function rowId(rows: readonly BatchRow[], row: number, shape: Pick<RowShape, 'idAt'>): string {
  return idText(rows[row][shape.idAt]);
}

/** Calls `fn` for every sealed value of a batch of rows, without any crypto: what verification digests. */
export function eachValue(rows: readonly BatchRow[], shape: RowShape, fn: (v: FoundValue) => void): void {
  shape.columns.forEach((c, k) => {
    for (let i = 0; i < rows.length; i++) {
      const v = cellText(rows[i], shape.first + k);
      if (v === null) continue;
      const withAad = (entry: InventoryEntry) => {
        const aad = aadOf(entry, rows[i], shape.aad);
        return aad ? { aad } : {};
      };
      if (!c.json) fn({ row: i, column: c.column, entry: c.entries[0], sealed: v, ...withAad(c.entries[0]) });
      else for (const slot of documentSlots(v, c.entries)) fn({ row: i, column: c.column, entry: slot.entry, path: slot.path, sealed: slotValue(v, slot), ...withAad(slot.entry) });
    }
  });
}
