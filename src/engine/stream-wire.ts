/**
 * A batch UPDATE as ready-made PostgreSQL wire messages (Parse, Bind,
 * Execute, Sync of the extended query protocol), built in one buffer of
 * exactly the right size, and a query object that sends such a buffer on a
 * `pg` client as it is.
 *
 * Why: a batch carries a megabyte or so of parameters; going through pg's
 * serializer copies them several times into growing buffers. Built here in
 * one piece, the buffer goes to the socket as it is.
 *
 * Parameters: the first as text (the row keys, an array literal), the
 * others as binary text[] arrays (no quoting, no parsing on the server).
 */
import type { ClientBase, Connection } from 'pg';
import { ProtocolQuery } from './stream-copy';

/** PostgreSQL's OID of `text`, the element type of a binary text[] parameter. */
const TEXT_OID = 25;

/** Bytes of `values` as a binary text[] (PostgreSQL's array_send format). */
function textArraySize(values: ReadonlyArray<string | null>): number {
  let n = 20;
  for (const v of values) n += 4 + (v === null ? 0 : Buffer.byteLength(v, 'utf8'));
  return n;
}

/** Writes `values` as a binary text[] at b[o..]; returns the offset after it. */
function writeTextArray(b: Buffer, o: number, values: ReadonlyArray<string | null>): number {
  o = b.writeInt32BE(1, o); // dimensions
  o = b.writeInt32BE(values.some((v) => v === null) ? 1 : 0, o);
  o = b.writeInt32BE(TEXT_OID, o);
  o = b.writeInt32BE(values.length, o);
  o = b.writeInt32BE(1, o); // lower bound
  for (const v of values) {
    if (v === null) {
      o = b.writeInt32BE(-1, o);
      continue;
    }
    const n = b.write(v, o + 4, 'utf8');
    b.writeInt32BE(n, o);
    o += 4 + n;
  }
  return o;
}

/**
 * A text[] parameter in binary format, for `client.query` (pg sends Buffer
 * parameters as binary): no quoting on our side, no parsing on the server's.
 */
export function binaryTextArray(values: ReadonlyArray<string | null>): Buffer {
  const b = Buffer.allocUnsafe(textArraySize(values));
  writeTextArray(b, 0, values);
  return b;
}

/** PostgreSQL's OID of `tid`. */
const TID_OID = 27;
const TID_TEXT = /^\((\d+),(\d+)\)$/;

/** A tid[] in binary format, from ctids as PostgreSQL prints them ("(block,offset)"). */
export function binaryTidArray(ctids: readonly string[]): Buffer {
  const b = Buffer.allocUnsafe(20 + ctids.length * 10);
  let o = b.writeInt32BE(1, 0);
  o = b.writeInt32BE(0, o);
  o = b.writeInt32BE(TID_OID, o);
  o = b.writeInt32BE(ctids.length, o);
  o = b.writeInt32BE(1, o);
  for (const t of ctids) {
    const m = TID_TEXT.exec(t);
    if (!m) throw new Error(`unexpected ctid ${JSON.stringify(t)}`);
    o = b.writeInt32BE(6, o);
    o = b.writeUInt32BE(Number(m[1]), o);
    o = b.writeUInt16BE(Number(m[2]), o);
  }
  return b;
}

/**
 * Builds Parse + Bind + Execute + Sync for `sql`. The first parameter (row
 * keys) goes as text when a string, as binary when bytes; then binary text[]
 * columns.
 */
export function updateMessage(sql: string, keys: string | Uint8Array, cols: ReadonlyArray<ReadonlyArray<string | null>>): Buffer {
  const sqlLen = Buffer.byteLength(sql, 'utf8');
  const keysLen = typeof keys === 'string' ? Buffer.byteLength(keys, 'utf8') : keys.length;
  const colLens = cols.map(textArraySize);
  const nParams = 1 + cols.length;
  const parse = 1 + 4 + 1 + sqlLen + 1 + 2;
  const bind = 1 + 4 + 1 + 1 + 2 + 2 * nParams + 2 + 4 + keysLen + colLens.reduce((a, n) => a + 4 + n, 0) + 2;
  const execute = 1 + 4 + 1 + 4;
  const sync = 1 + 4;
  const b = Buffer.allocUnsafe(parse + bind + execute + sync);
  let o = 0;
  const byte = (v: number) => (b[o++] = v);
  const i16 = (v: number) => (o = b.writeInt16BE(v, o));
  const i32 = (v: number) => (o = b.writeInt32BE(v, o));
  const str = (s: string) => (o += b.write(s, o, 'utf8'));
  // Parse: unnamed statement, parameter types inferred from the casts in the SQL.
  byte(0x50);
  i32(parse - 1);
  byte(0);
  str(sql);
  byte(0);
  i16(0);
  // Bind: unnamed portal and statement; formats: text, then binary for each column array.
  byte(0x42);
  i32(bind - 1);
  byte(0);
  byte(0);
  i16(nParams);
  i16(typeof keys === 'string' ? 0 : 1);
  for (let i = 1; i < nParams; i++) i16(1);
  i16(nParams);
  i32(keysLen);
  if (typeof keys === 'string') str(keys);
  else {
    b.set(keys, o);
    o += keysLen;
  }
  cols.forEach((c, k) => {
    i32(colLens[k]);
    o = writeTextArray(b, o, c);
  });
  i16(0); // result formats: default
  // Execute the unnamed portal, all rows; then Sync.
  byte(0x45);
  i32(execute - 1);
  byte(0);
  i32(0);
  byte(0x53);
  i32(4);
  return b;
}

/** Sends a buffer from `updateMessage` as it is; settles with the command's row count. */
class WireQuery extends ProtocolQuery {
  constructor(private readonly message: Uint8Array) {
    super('');
  }

  override submit(connection: Connection): void {
    (connection as unknown as { stream: { write(b: Uint8Array): boolean } }).stream.write(this.message);
  }
}

/** Runs a prepared `updateMessage` on `client`; resolves with the rows it changed. */
export function sendUpdate(client: ClientBase, message: Uint8Array): Promise<number> {
  const q = new WireQuery(message);
  client.query(q);
  return q.done;
}
