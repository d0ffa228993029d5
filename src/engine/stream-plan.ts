/**
 * How the hot path walks an inventory: entries grouped by table (so a row
 * holding several secrets is read and written once), with the column types
 * looked up in the catalog, and the pure per-row work (find every sealed
 * value of a batch of rows, open it, seal it again) shared by the scanner
 * and the re-encryption.
 */
import type { ClientBase } from 'pg';
import { translatePgError } from '../db/pg';
import { ErrorCode, MasterKeyError, isMasterKeyError } from '../errors';
import { Inventory, InventoryEntry, quoteIdent } from '../inventory/inventory';
import type { CryptoResult } from '../crypto/batch';
import type { Places, ValueCrypto } from './value-crypto';
import { JsonValue, findEntrySlots, parseJsonLossless, stringifyJsonLossless } from './stream-json';

/** One column of a table and the inventory entries that read it. */
export interface ColumnPlan {
  readonly column: string;
  /** jsonb/json document (entries have jsonPath) or a plain text column. */
  readonly json: boolean;
  readonly entries: readonly InventoryEntry[];
  /** SQL type of the column, e.g. `text` or `jsonb` (filled from the catalog). */
  readonly type: string;
}

/** Every secret-holding column of one table. */
export interface TablePlan {
  readonly table: string;
  readonly idColumn: string;
  /** SQL type of the id column, e.g. `bigint` (filled from the catalog). */
  readonly idType: string;
  /** Whether a unique btree index is on the id column alone (then writes find rows by id, else by ctid). */
  readonly idIndexed: boolean;
  readonly columns: readonly ColumnPlan[];
  /** Columns whose text is some entries' additional authenticated data (read after `columns`). */
  readonly aadColumns: readonly string[];
}

/** Groups entries by table and column, keeping inventory order, with the AAD columns each table's entries name. Pure. */
export function groupInventory(inv: Inventory): Array<Omit<TablePlan, 'idType' | 'idIndexed' | 'columns'> & { columns: Array<Omit<ColumnPlan, 'type'>> }> {
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

const TEXT_TYPES = new Set(['text', 'character varying', 'character', 'varchar', 'bpchar']);
const JSON_TYPES = new Set(['jsonb', 'json']);

function baseType(type: string): string {
  return type.replace(/\(.*\)$/, '');
}

/** Resolves the id and column types of every table from the catalog and checks them against the entries. */
export async function planInventory(client: ClientBase, inv: Inventory): Promise<TablePlan[]> {
  const out: TablePlan[] = [];
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
    out.push({ table: g.table, idColumn: g.idColumn, idType, idIndexed, columns, aadColumns: g.aadColumns });
  }
  return out;
}

/** A sealed value that does not open, with where it is (never the value). */
export interface RowFailure {
  readonly column: string;
  readonly kind: string;
  readonly path?: string;
  readonly code: ErrorCode;
}

/** What processing a batch of rows gives. */
export interface BatchOutcome {
  /** Sealed values found (a jsonb document can hold several). */
  readonly total: number;
  readonly byKind: ReadonlyMap<string, number>;
  /** Bytes of sealed text read. */
  readonly bytes: number;
  /** Values that do not open, with the index of their row in the batch. */
  readonly failures: ReadonlyArray<RowFailure & { readonly row: number }>;
  /** Indices of the rows holding at least one sealed value, ascending. */
  readonly rows: readonly number[];
  /** Re-encryption: per column, the new stored text of each row of `rows` (null = unchanged). */
  readonly next?: ReadonlyArray<ReadonlyArray<string | null>>;
}

/** A sealed value inside a jsonb document of the batch. */
interface JsonSlot {
  readonly row: number;
  readonly entry: InventoryEntry;
  readonly path: string;
  readonly sealed: string;
  readonly set: (next: string) => void;
}

/** Accumulates a batch's outcome. */
class Outcome {
  total = 0;
  bytes = 0;
  readonly byKind = new Map<string, number>();
  readonly failures: Array<RowFailure & { row: number }> = [];
  readonly has: Uint8Array;
  constructor(rows: number) {
    this.has = new Uint8Array(rows);
  }
  /** Counts one value of `kind` in `row`; lists it when `r` says it does not open. */
  add(row: number, column: string, kind: string, sealed: string, r: CryptoResult, path?: string): void {
    this.total++;
    this.bytes += sealed.length;
    this.has[row] = 1;
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    if (r.code) this.failures.push({ row, column, kind, code: r.code, ...(path !== undefined ? { path } : {}) });
  }
  /** Lists `row` as holding a JSON document that cannot be read or rewritten safely (SEALED_MALFORMED). */
  refuse(row: number, column: string, kind: string, path: string | undefined): void {
    this.has[row] = 1;
    this.failures.push({ row, column, kind, code: 'SEALED_MALFORMED', ...(path !== undefined ? { path } : {}) });
  }
}

/**
 * A stored JSON document, parsed; or undefined after `o` lists its row: a
 * document the reader refuses (not JSON, too deep, a member name twice)
 * blocks the rotation like a value that does not open, before anything changes.
 */
function readDocument(o: Outcome, row: number, c: Pick<ColumnPlan, 'column' | 'entries'>, text: string): JsonValue | undefined {
  try {
    return parseJsonLossless(text);
  } catch (e) {
    if (!isMasterKeyError(e)) throw e;
    o.refuse(row, c.column, c.entries[0].kind, typeof e.details.path === 'string' ? e.details.path : undefined);
    return undefined;
  }
}

/** Where each AAD column's text is in a row (after the value columns): column name → index. */
export type AadLayout = ReadonlyMap<string, number>;

/** The AAD layout of rows whose `count` value columns start at `first`, followed by `aadColumns`. Pure. */
export function aadLayout(aadColumns: readonly string[], first: number, count: number): AadLayout {
  return new Map(aadColumns.map((c, j) => [c, first + count + j]));
}

/**
 * A value's additional authenticated data: the UTF-8 text of its entry's
 * AAD column in the same row (NULL: none), or undefined for an entry without one.
 */
export function aadOf(entry: InventoryEntry, row: BatchRow, aadAt: AadLayout | undefined): Uint8Array | undefined {
  if (!entry.aad) return undefined;
  const at = aadAt?.get(entry.aad.column);
  if (at === undefined) throw new MasterKeyError('INTERNAL', `The AAD column ${entry.aad.column} was not read with the row; this is a bug.`);
  const v = text(row, at);
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
function text(row: BatchRow, at: number): string | null {
  const v = row[at];
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? v : NOT_TEXT;
}

/** A row id cell as text. */
function idText(v: unknown): string {
  return v === null || v === undefined ? '' : String(v);
}

/** Runs `crypto` over values grouped by codec (each with its own AAD, if any, and place); results in input order. */
async function processByCodec(
  crypto: ValueCrypto,
  codecs: readonly InventoryEntry['codec'][],
  sealed: readonly string[],
  aad: ReadonlyArray<Uint8Array | undefined>,
  places: Places | undefined,
): Promise<CryptoResult[]> {
  const results = new Array<CryptoResult>(sealed.length);
  const anyAad = aad.some((a) => a !== undefined);
  for (const codec of new Set(codecs)) {
    const idx: number[] = [];
    for (let i = 0; i < codecs.length; i++) if (codecs[i] === codec) idx.push(i);
    const r = await crypto.process(
      codec,
      idx.map((i) => sealed[i]),
      anyAad ? idx.map((i) => aad[i]) : undefined,
      places ? { ...places, ids: idx.map((i) => places.ids[i]), paths: idx.map((i) => places.paths?.[i]) } : undefined,
    );
    idx.forEach((i, j) => (results[i] = r[j]));
  }
  return results;
}

/** Where a batch's rows are (their table, and the index of the row id in each row): given, the crypto digests every value that opens at its place. */
export interface BatchPlace {
  readonly table: string;
  readonly idAt: number;
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

/**
 * Calls `fn` for every sealed value of a batch of rows (laid out as for
 * `processBatch`), without any crypto: what verification digests.
 */
export function eachValue(
  columns: readonly Pick<ColumnPlan, 'column' | 'json' | 'entries'>[],
  rows: readonly BatchRow[],
  first: number,
  fn: (v: FoundValue) => void,
  aadAt?: AadLayout,
): void {
  columns.forEach((c, k) => {
    for (let i = 0; i < rows.length; i++) {
      const v = text(rows[i], first + k);
      if (v === null) continue;
      const withAad = (entry: InventoryEntry) => {
        const aad = aadOf(entry, rows[i], aadAt);
        return aad ? { aad } : {};
      };
      if (!c.json) fn({ row: i, column: c.column, entry: c.entries[0], sealed: v, ...withAad(c.entries[0]) });
      else for (const { entry, slot } of findEntrySlots(parseJsonLossless(v), c.entries)) fn({ row: i, column: c.column, entry, path: slot.path, sealed: slot.value, ...withAad(entry) });
    }
  });
}

/**
 * Opens (and with `reseal`, seals again under the crypto's new key) every
 * sealed value of a batch of rows; row i's columns, in plan order, start at
 * `rows[i][first]` (null = SQL NULL). Works a column at a time so each
 * codec sees the whole batch at once. Never throws for a bad value (it is
 * listed in the outcome). With `place`, the crypto digests each value that
 * opened at its place (its text now: re-sealed, or as read).
 * `aadAt` says where the AAD columns are, for entries with `aad`: each
 * value is opened and re-sealed with its own row's AAD.
 */
export async function processBatch(
  columns: readonly Pick<ColumnPlan, 'column' | 'json' | 'entries'>[],
  rows: readonly BatchRow[],
  first: number,
  crypto: ValueCrypto,
  reseal: boolean,
  place?: BatchPlace,
  aadAt?: AadLayout,
): Promise<BatchOutcome> {
  const o = new Outcome(rows.length);
  const next: Array<Array<string | null>> | undefined = reseal ? columns.map(() => new Array<string | null>(rows.length).fill(null)) : undefined;
  for (let k = 0; k < columns.length; k++) {
    const c = columns[k];
    if (!c.json) {
      const entry = c.entries[0];
      const idx: number[] = [];
      const sealed: string[] = [];
      for (let i = 0; i < rows.length; i++) {
        const v = text(rows[i], first + k);
        if (v !== null) {
          idx.push(i);
          sealed.push(v);
        }
      }
      const places = place ? { table: place.table, column: c.column, ids: idx.map((row) => idText(rows[row][place.idAt])) } : undefined;
      const results = await crypto.process(entry.codec, sealed, entry.aad ? idx.map((row) => aadOf(entry, rows[row], aadAt)) : undefined, places);
      for (let j = 0; j < idx.length; j++) {
        const r = results[j];
        o.add(idx[j], c.column, entry.kind, sealed[j], r);
        if (next && r.next !== undefined) next[k][idx[j]] = r.next;
      }
      continue;
    }
    const docs = new Map<number, JsonValue>();
    const slots: JsonSlot[] = [];
    for (let i = 0; i < rows.length; i++) {
      const v = text(rows[i], first + k);
      if (v === null) continue;
      const doc = readDocument(o, i, c, v);
      if (doc === undefined) continue;
      docs.set(i, doc);
      for (const { entry, slot } of findEntrySlots(doc, c.entries)) slots.push({ row: i, entry, path: slot.path, sealed: slot.value, set: slot.set });
    }
    const results = await processByCodec(
      crypto,
      slots.map((s) => s.entry.codec),
      slots.map((s) => s.sealed),
      slots.map((s) => aadOf(s.entry, rows[s.row], aadAt)),
      place ? { table: place.table, column: c.column, ids: slots.map((s) => idText(rows[s.row][place.idAt])), paths: slots.map((s) => s.path) } : undefined,
    );
    const touched = new Set<number>();
    slots.forEach((s, j) => {
      const r = results[j];
      o.add(s.row, c.column, s.entry.kind, s.sealed, r, s.path);
      if (r.next !== undefined) {
        s.set(r.next);
        touched.add(s.row);
      }
    });
    if (next) for (const row of touched) next[k][row] = stringifyJsonLossless(docs.get(row)!);
  }
  const held: number[] = [];
  for (let i = 0; i < rows.length; i++) if (o.has[i]) held.push(i);
  return {
    total: o.total,
    byKind: o.byKind,
    bytes: o.bytes,
    failures: o.failures,
    rows: held,
    ...(next ? { next: next.map((col) => held.map((i) => col[i])) } : {}),
  };
}
