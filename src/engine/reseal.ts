/**
 * Opening, and re-sealing under a new key, every sealed value of a batch
 * of rows (plain columns and strings inside JSON documents), a column at a
 * time so each codec sees the whole batch at once; what the batch held,
 * by kind, and where a value does not open (never the value).
 */
import type { CryptoResult } from '../crypto/batch';
import { ErrorCode, MasterKeyError } from '../errors';
import type { InventoryEntry } from '../inventory/inventory';
import { JsonValue, findEntrySlots, parseJsonLossless, stringifyJsonLossless } from './json-document';
import { AadLayout, BatchRow, aadOf, cellText, idText } from './rows';
import type { ColumnPlan } from './tables';
import type { Places, ValueCrypto } from './value-crypto';

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
  columns: readonly ColumnPlan[],
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
        const v = cellText(rows[i], first + k);
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
      const v = cellText(rows[i], first + k);
      if (v === null) continue;
      const doc = parseJsonLossless(v);
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

/** The error for a value that does not open (names where it is, never the value). */
export function undecryptable(table: string, f: { id: string; column: string; kind: string; path?: string; code: ErrorCode; more: number }): MasterKeyError {
  const where = `${table}.${f.column}${f.path ? ` at ${f.path}` : ''}`;
  return new MasterKeyError(
    'UNDECRYPTABLE_ROWS',
    `A ${f.kind} in ${where} (id ${f.id}) does not open with the old key (${f.code})${f.more > 0 ? ` and ${f.more} more in the same batch` : ''}; nothing was changed: run \`master-key verify\` to list every such value, then fix or remove them.`,
    { table, column: f.column, id: f.id, kind: f.kind, ...(f.path ? { path: f.path } : {}), reason: f.code },
  );
}
