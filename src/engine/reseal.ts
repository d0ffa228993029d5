/**
 * Opening, and re-sealing under a new key, every sealed value of a batch
 * of rows (plain columns and strings inside JSON documents), a column at a
 * time so each codec sees the whole batch at once; what the batch held,
 * by kind, and where a value does not open (never the value).
 */
import { CryptoResult, SealedText, sealedText } from '../crypto/batch';
import { ErrorCode, MasterKeyError, isMasterKeyError } from '../errors';
import type { InventoryEntry } from '../inventory/inventory';
import { DocumentSplice, TextSlot, documentSlots, slotValue } from './json-document';
import { releaseLarge } from './memory';
import { BatchRow, RowShape, aadOf, cellText, rowId } from './rows';
import type { Places, ValueCrypto } from './value-crypto';

/** A sealed value that does not open, with where it is (never the value). */
export interface RowFailure {
  readonly column: string;
  readonly kind: string;
  readonly path?: string;
  readonly code: ErrorCode;
}

/** What opening (or re-sealing) a batch of rows gives. */
export interface BatchOutcome {
  /** Sealed values found (a JSON document can hold several). */
  readonly total: number;
  readonly byKind: ReadonlyMap<string, number>;
  /** Bytes of sealed text read. */
  readonly bytes: number;
  /** Values that do not open, with their row's index in the batch and its id. */
  readonly failures: ReadonlyArray<RowFailure & { readonly row: number; readonly id: string }>;
  /** Indices of the rows holding at least one sealed value, ascending. */
  readonly rows: readonly number[];
}

/** What re-sealing a batch gives: besides the outcome, the new stored texts. */
export interface ResealedBatch extends BatchOutcome {
  /** Per column, the new stored text of each row of `rows` (null: that column unchanged); a large one as its bytes (`SealedText`). */
  readonly next: ReadonlyArray<ReadonlyArray<SealedText | null>>;
}

/** The work on one batch of rows. */
export interface BatchWork {
  /** How the rows are laid out (where the id, the values and the AAD columns are). */
  readonly shape: RowShape;
  /** Opens the values (and for `resealBatch`, re-seals them under its new key, digesting each at its place). */
  readonly crypto: ValueCrypto;
  /** Only the values at these places (by table, column and row id); default every value. */
  readonly only?: (table: string, column: string, id: string) => boolean;
}

/** A sealed value inside a JSON document of the batch. */
interface JsonSlot {
  readonly row: number;
  readonly slot: TextSlot;
}

/** Values of JSON documents handed to the crypto at once. */
const JSON_VALUES_AT_ONCE = 4096;

/**
 * A document being re-sealed: its new text written as its values come back
 * (in document order, as one entry finds them), or, when several entries
 * found them out of that order, once they are all back.
 */
class DocumentWrite {
  private splice?: DocumentSplice;
  /** Out of document order: the replacements, kept until the end. */
  private readonly kept?: Array<{ slot: TextSlot; value: string }>;

  constructor(
    private readonly text: string,
    slots: readonly TextSlot[],
  ) {
    if (slots.some((s, i) => i > 0 && s.start < slots[i - 1].start)) this.kept = [];
  }

  replace(slot: TextSlot, value: string): void {
    if (this.kept) this.kept.push({ slot, value });
    else (this.splice ??= new DocumentSplice(this.text)).replace(slot, value);
  }

  /** The new text, or undefined when no value of it was re-sealed. */
  bytes(): Buffer | undefined {
    if (this.kept?.length) {
      this.splice = new DocumentSplice(this.text);
      for (const { slot, value } of this.kept.sort((a, b) => a.slot.start - b.slot.start)) this.splice.replace(slot, value);
    }
    return this.splice?.bytes();
  }
}

/** Accumulates a batch's outcome. */
class Outcome {
  total = 0;
  bytes = 0;
  readonly byKind = new Map<string, number>();
  readonly failures: Array<RowFailure & { row: number; id: string }> = [];
  readonly has: Uint8Array;
  constructor(
    private readonly rows: readonly BatchRow[],
    private readonly shape: RowShape,
  ) {
    this.has = new Uint8Array(rows.length);
  }
  /** Counts one value of `kind` in `row`; lists it when `r` says it does not open. */
  add(row: number, column: string, kind: string, sealed: string, r: CryptoResult, path?: string): void {
    this.total++;
    this.bytes += sealed.length;
    this.has[row] = 1;
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    if (r.code) this.failures.push({ row, id: rowId(this.rows, row, this.shape), column, kind, code: r.code, ...(path !== undefined ? { path } : {}) });
  }
  /** Lists `row` as holding a JSON document that cannot be read or rewritten safely (SEALED_MALFORMED). */
  refuse(row: number, column: string, kind: string, path: string | undefined): void {
    this.has[row] = 1;
    this.failures.push({ row, id: rowId(this.rows, row, this.shape), column, kind, code: 'SEALED_MALFORMED', ...(path !== undefined ? { path } : {}) });
  }
  /** The rows holding a value, ascending. */
  held(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.has.length; i++) if (this.has[i]) out.push(i);
    return out;
  }
  result(): BatchOutcome {
    return { total: this.total, byKind: this.byKind, bytes: this.bytes, failures: this.failures, rows: this.held() };
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

/**
 * Opens every sealed value of a batch of rows with the crypto's keys.
 * Never throws for a value that does not open: it is listed, with its row.
 */
export async function openBatch(rows: readonly BatchRow[], work: BatchWork): Promise<BatchOutcome> {
  const o = new Outcome(rows, work.shape);
  await eachColumn(rows, work, o, { reseal: false });
  return o.result();
}

/**
 * Opens every sealed value of a batch of rows and seals it again under the
 * crypto's new key, which digests each new value at its place (table,
 * column, row id, path). A JSON document is written back whole, with only
 * its sealed strings changed. Each value is opened and re-sealed with its
 * own row's additional data. Never throws for a value that does not open:
 * it is listed (and then nothing of the batch is to be written).
 */
export async function resealBatch(rows: readonly BatchRow[], work: BatchWork): Promise<ResealedBatch> {
  const o = new Outcome(rows, work.shape);
  const next = await eachColumn(rows, work, o, { reseal: true });
  const held = o.held();
  return { ...o.result(), next: next.map((col) => held.map((i) => col[i])) };
}

/**
 * The sealed values of a stored JSON document, found in its text; or
 * undefined after `o` lists its row: a document the reader refuses (not
 * JSON, too deep, a member name twice) blocks the rotation like a value
 * that does not open, before anything changes.
 */
function readDocument(o: Outcome, row: number, c: { readonly column: string; readonly entries: readonly InventoryEntry[] }, text: string): TextSlot[] | undefined {
  try {
    return documentSlots(text, c.entries);
  } catch (e) {
    if (!isMasterKeyError(e)) throw e;
    o.refuse(row, c.column, c.entries[0].kind, typeof e.details.path === 'string' ? e.details.path : undefined);
    return undefined;
  }
}

/**
 * The work of a batch a column at a time, so each codec sees the whole
 * batch at once: counts and failures into `o`; with `reseal`, each column's
 * new text per row (null: unchanged).
 */
async function eachColumn(rows: readonly BatchRow[], work: BatchWork, o: Outcome, { reseal }: { readonly reseal: boolean }): Promise<Array<Array<SealedText | null>>> {
  const { shape, crypto, only } = work;
  const wanted = (column: string, row: number) => !only || only(shape.table, column, rowId(rows, row, shape));
  const next = reseal ? shape.columns.map(() => new Array<SealedText | null>(rows.length).fill(null)) : [];
  const placed = (column: string, ids: string[], paths?: Array<string | undefined>): Places | undefined => (reseal ? { table: shape.table, column, ids, ...(paths ? { paths } : {}) } : undefined);
  for (let k = 0; k < shape.columns.length; k++) {
    const c = shape.columns[k];
    if (!c.json) {
      const entry = c.entries[0];
      const idx: number[] = [];
      const sealed: string[] = [];
      for (let i = 0; i < rows.length; i++) {
        const v = cellText(rows[i], shape.first + k);
        if (v !== null && wanted(c.column, i)) {
          idx.push(i);
          sealed.push(v);
        }
      }
      const places = placed(c.column, idx.map((row) => rowId(rows, row, shape)));
      const results = await crypto.process(entry.codec, sealed, entry.aad ? idx.map((row) => aadOf(entry, rows[row], shape.aad)) : undefined, places);
      for (let j = 0; j < idx.length; j++) {
        const r = results[j];
        o.add(idx[j], c.column, entry.kind, sealed[j], r);
        if (reseal && r.next !== undefined) next[k][idx[j]] = r.next;
      }
      continue;
    }
    // No tree of a document is built: its values are found in its text, and its new text is that text with their strings replaced.
    const docs = new Map<number, DocumentWrite>();
    const slots: JsonSlot[] = [];
    let chars = 0;
    for (let i = 0; i < rows.length; i++) {
      const v = cellText(rows[i], shape.first + k);
      if (v === null || !wanted(c.column, i)) continue;
      chars += v.length;
      const found = readDocument(o, i, c, v);
      if (found === undefined) continue;
      if (reseal) docs.set(i, new DocumentWrite(v, found));
      for (const slot of found) slots.push({ row: i, slot });
    }
    // What reading large documents let go of goes before their values are opened.
    releaseLarge(chars);
    // The values of large documents a part at a time: what the crypto holds stays small, however many a document has.
    for (let from = 0; from < slots.length; from += JSON_VALUES_AT_ONCE) {
      const part = slots.slice(from, from + JSON_VALUES_AT_ONCE);
      const values = part.map((s) => slotValue(cellText(rows[s.row], shape.first + k)!, s.slot));
      const results = await processByCodec(
        crypto,
        part.map((s) => s.slot.entry.codec),
        values,
        part.map((s) => aadOf(s.slot.entry, rows[s.row], shape.aad)),
        placed(
          c.column,
          part.map((s) => rowId(rows, s.row, shape)),
          part.map((s) => s.slot.path),
        ),
      );
      part.forEach((s, j) => {
        const r = results[j];
        o.add(s.row, c.column, s.slot.entry.kind, values[j], r, s.slot.path);
        if (reseal && r.next !== undefined) docs.get(s.row)!.replace(s.slot, sealedText(r.next));
      });
    }
    for (const [row, doc] of docs) {
      const bytes = doc.bytes();
      if (bytes) next[k][row] = bytes;
    }
  }
  return next;
}

/** The error for the first value of a batch of `table` that does not open, with `more` others in the batch (names where it is, never the value). */
export function undecryptable(table: string, f: RowFailure & { readonly id: string }, more: number): MasterKeyError {
  const where = `${table}.${f.column}${f.path ? ` at ${f.path}` : ''}`;
  return new MasterKeyError(
    'UNDECRYPTABLE_ROWS',
    `A ${f.kind} in ${where} (id ${f.id}) does not open with the old key (${f.code})${more > 0 ? ` and ${more} more in the same batch` : ''}; nothing was changed: run \`master-key verify\` to list every such value, then fix or remove them.`,
    { table, column: f.column, id: f.id, kind: f.kind, ...(f.path ? { path: f.path } : {}), reason: f.code },
  );
}
