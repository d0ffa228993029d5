/**
 * How the hot path walks an inventory: entries grouped by table (so a row
 * holding several secrets is read and written once), with the column types
 * looked up in the catalog, and the pure per-row work (find every sealed
 * value of a row, open it, seal it again) shared by the scanner, the
 * re-encryption and the crypto worker threads.
 */
import type { ClientBase } from 'pg';
import { KeySource, SecretCodec, codecByName } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { ErrorCode, MasterKeyError, isMasterKeyError } from '../errors';
import { Inventory, InventoryEntry, quoteIdent } from '../inventory/inventory';
import { findEntrySlots, parseJsonLossless, stringifyJsonLossless } from './stream-json';

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
  readonly columns: readonly ColumnPlan[];
}

/** Groups entries by table and column, keeping inventory order. Pure. */
export function groupInventory(inv: Inventory): Array<Omit<TablePlan, 'idType' | 'columns'> & { columns: Array<Omit<ColumnPlan, 'type'>> }> {
  const tables = new Map<string, { table: string; idColumn: string; columns: Array<{ column: string; json: boolean; entries: InventoryEntry[] }> }>();
  for (const e of inv.entries) {
    const key = `${e.table}\u0000${e.idColumn}`;
    let t = tables.get(key);
    if (!t) tables.set(key, (t = { table: e.table, idColumn: e.idColumn, columns: [] }));
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
    const names = [g.idColumn, ...g.columns.map((c) => c.column)];
    let rows: Array<{ attname: string; type: string }>;
    try {
      ({ rows } = await client.query<{ attname: string; type: string }>(
        `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($2::text[])`,
        [quoteIdent(g.table), names],
      ));
    } catch (e) {
      throw dbError(e, `reading the columns of ${g.table}`);
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
    out.push({ table: g.table, idColumn: g.idColumn, idType, columns });
  }
  return out;
}

/** Wraps an unexpected PostgreSQL error in a typed one (no values in the message). */
export function dbError(e: unknown, doing: string): MasterKeyError {
  if (e instanceof MasterKeyError) return e;
  const pgCode = (e as { code?: string }).code;
  const readOnly = pgCode === '25006';
  const msg = (e as Error).message ?? String(e);
  return new MasterKeyError(
    readOnly ? 'DB_READ_ONLY' : 'DB_ERROR',
    readOnly ? `The database is read-only while ${doing}; connect to the primary server.` : `PostgreSQL failed while ${doing} (${pgCode ?? 'no code'}: ${msg}); check the database and try again.`,
    { pgCode },
    { cause: e },
  );
}

/** A sealed value that does not open, with where it is (never the value). */
export interface RowFailure {
  readonly column: string;
  readonly kind: string;
  readonly path?: string;
  readonly code: ErrorCode;
}

/** What processing one row gives. */
export interface RowOutcome {
  /** Sealed values found, by kind. */
  readonly kinds: string[];
  readonly failures: RowFailure[];
  /** Bytes of sealed text read. */
  readonly bytes: number;
  /** Per column: the new stored text, or null when unchanged (re-encryption only). */
  readonly next?: Array<string | null>;
}

/** The keys a row is processed with: open with `from`, and when `to` is set, seal again under it. */
export interface RowKeys {
  readonly from: KeySource;
  readonly to?: MasterKey;
}

const codecs = new Map<string, SecretCodec>();
function codecOf(e: InventoryEntry): SecretCodec {
  let c = codecs.get(e.codec);
  if (!c) codecs.set(e.codec, (c = codecByName(e.codec)));
  return c;
}

/**
 * Opens (and with `keys.to`, seals again) every sealed value of one row.
 * `values` are the row's columns in plan order (null = SQL NULL). Pure apart
 * from the random nonces; never throws for a bad value (it is listed).
 */
export function processRow(columns: readonly Pick<ColumnPlan, 'column' | 'json' | 'entries'>[], values: ReadonlyArray<string | null>, keys: RowKeys): RowOutcome {
  const kinds: string[] = [];
  const failures: RowFailure[] = [];
  const next: Array<string | null> | undefined = keys.to ? [] : undefined;
  let bytes = 0;
  const reseal = (entry: InventoryEntry, column: string, sealed: string, path?: string): string | undefined => {
    kinds.push(entry.kind);
    bytes += sealed.length;
    const codec = codecOf(entry);
    try {
      const opened = codec.open(keys.from, sealed);
      return keys.to ? codec.seal(keys.to, opened.plaintext) : undefined;
    } catch (e) {
      if (!isMasterKeyError(e)) throw e;
      failures.push({ column, kind: entry.kind, code: e.code, ...(path !== undefined ? { path } : {}) });
      return undefined;
    }
  };
  columns.forEach((col, i) => {
    const v = values[i];
    let out: string | null = null;
    if (v !== null && v !== undefined) {
      if (!col.json) {
        out = reseal(col.entries[0], col.column, v) ?? null;
      } else {
        const doc = parseJsonLossless(v);
        const slots = findEntrySlots(doc, col.entries);
        for (const { entry, slot } of slots) {
          const s = reseal(entry, col.column, slot.value, slot.path);
          if (s !== undefined) slot.set(s);
        }
        if (keys.to && slots.length > 0) out = stringifyJsonLossless(doc);
      }
    }
    next?.push(out);
  });
  return { kinds, failures, bytes, ...(next ? { next } : {}) };
}
