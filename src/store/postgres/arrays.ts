/**
 * Array parameters of the batch UPDATE in PostgreSQL's binary format
 * (array_send: pg sends Buffer parameters as binary, so the server neither
 * unquotes nor parses the values), and an array literal for the row keys.
 */

/** PostgreSQL's OIDs of `bool`, `text`, `tid` and `xid`, the element types of our binary array parameters. */
const BOOL_OID = 16;
const TEXT_OID = 25;
const TID_OID = 27;
const XID_OID = 28;

/** Writes the header of a one-dimensional binary array (PostgreSQL's array_send format); returns the offset after it. */
function arrayHeader(b: Buffer, count: number, hasNull: boolean, oid: number): number {
  let o = b.writeInt32BE(1, 0); // dimensions
  o = b.writeInt32BE(hasNull ? 1 : 0, o);
  o = b.writeInt32BE(oid, o);
  o = b.writeInt32BE(count, o);
  return b.writeInt32BE(1, o); // lower bound
}

/**
 * A text[] parameter in binary format: pg sends Buffer parameters as
 * binary, so the server neither unquotes nor parses the values. A value
 * may be given as its UTF-8 bytes.
 */
export function binaryTextArray(values: ReadonlyArray<string | Uint8Array | null>): Buffer {
  return binaryArray(values, TEXT_OID);
}

/** A one-dimensional array of `oid` in binary format, each element its bytes as given (a string: its UTF-8). */
function binaryArray(values: ReadonlyArray<string | Uint8Array | null>, oid: number): Buffer {
  let size = 20;
  let hasNull = false;
  for (const v of values) {
    if (v === null) hasNull = true;
    size += 4 + (v === null ? 0 : typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length);
  }
  const b = Buffer.allocUnsafe(size);
  let o = arrayHeader(b, values.length, hasNull, oid);
  for (const v of values) {
    if (v === null) {
      o = b.writeInt32BE(-1, o);
      continue;
    }
    // A text given as its UTF-8 bytes (a large re-sealed value) is copied as it is.
    let n = v.length;
    if (typeof v === 'string') n = b.write(v, o + 4, 'utf8');
    else b.set(v, o + 4);
    b.writeInt32BE(n, o);
    o += 4 + n;
  }
  return b;
}

/** A bool[] parameter in binary format: true where a value is, else NULL. */
export function binaryTrueArray(values: readonly boolean[]): Buffer {
  const b = Buffer.allocUnsafe(20 + values.length * 5);
  let o = arrayHeader(b, values.length, values.includes(false), BOOL_OID);
  for (const v of values) {
    o = b.writeInt32BE(v ? 1 : -1, o);
    if (v) o = b.writeUInt8(1, o);
  }
  return b.subarray(0, o);
}

const XID_TEXT = /^\d{1,10}$/;

/** An xid[] parameter in binary format, from transaction ids as PostgreSQL prints them (32 bits, decimal). */
export function binaryXidArray(xids: ReadonlyArray<string | null>): Buffer {
  const b = Buffer.allocUnsafe(20 + xids.length * 8);
  let o = arrayHeader(b, xids.length, false, XID_OID);
  for (const x of xids) {
    const n = x === null || !XID_TEXT.test(x) ? NaN : Number(x);
    if (!(n <= 0xffffffff)) throw new Error(`unexpected transaction id ${JSON.stringify(x)}`);
    o = b.writeInt32BE(4, o);
    o = b.writeUInt32BE(n, o);
  }
  return b;
}

const TID_TEXT = /^\((\d+),(\d+)\)$/;

/** A tid[] parameter in binary format, from ctids as PostgreSQL prints them ("(block,offset)"). */
export function binaryTidArray(ctids: readonly string[]): Buffer {
  const b = Buffer.allocUnsafe(20 + ctids.length * 10);
  let o = arrayHeader(b, ctids.length, false, TID_OID);
  for (const t of ctids) {
    const m = TID_TEXT.exec(t);
    if (!m) throw new Error(`unexpected ctid ${JSON.stringify(t)}`);
    o = b.writeInt32BE(6, o);
    o = b.writeUInt32BE(Number(m[1]), o);
    o = b.writeUInt16BE(Number(m[2]), o);
  }
  return b;
}

const QUOTE_NEEDED = /["\\]/g;

/** A PostgreSQL array literal of texts (faster than pg's generic conversion for large batches). */
export function pgArray(values: ReadonlyArray<string | null>): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    parts[i] = v === null ? 'NULL' : `"${v.indexOf('"') < 0 && v.indexOf('\\') < 0 ? v : v.replace(QUOTE_NEEDED, '\\$&')}"`;
  }
  return `{${parts.join(',')}}`;
}
