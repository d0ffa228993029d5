/**
 * COPY through pg-copy-streams (pg's public `client.query(submittable)`):
 *
 * - `copyIn(client, sql, chunks)` sends `COPY ... FROM STDIN` data and
 *   resolves with the row count;
 * - `copyLines(client, sql)` yields the lines of `COPY ... TO STDOUT` a
 *   chunk at a time; the socket is read only as fast as the consumer takes
 *   lines (bounded memory), and a consumer that stops early lets the rest
 *   drain, so the connection stays usable.
 *
 * Plus the COPY text-format escaping both directions need.
 */
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import type { ClientBase } from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { MasterKeyError } from '../../errors';
import { releaseLarge } from '../../engine/memory';
import type { RawRows } from '../../engine/raw-rows';
import { textSlices } from '../../text-slices';

/** Runs `COPY ... FROM STDIN` with data from `chunks` (COPY text or CSV); resolves with the rows copied. */
export async function copyIn(client: ClientBase, sql: string, chunks: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): Promise<number> {
  const sink = client.query(copyFrom(sql));
  await pipeline(Readable.from(chunks), sink);
  return sink.rowCount;
}

const NEWLINE = 0x0a;

/** A field of a row sent in COPY's text format: a text, a text's UTF-8 bytes, or null. */
export type CopyField = string | Uint8Array | null;

/** Characters COPY's text format escapes in a field (PostgreSQL's "COPY", "Text Format": the delimiter, newline, carriage return, backslash). */
const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_SPECIALS = /[\\\n\r\t]/g;
const COPY_ESCAPES: Readonly<Record<string, string>> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const escapeCopy = (text: string): string => (COPY_SPECIAL.test(text) ? text.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]) : text);
/** Bytes COPY's text format escapes (as `COPY_SPECIAL`). */
const hasCopySpecial = (bytes: Uint8Array): boolean => bytes.includes(0x5c) || bytes.includes(0x0a) || bytes.includes(0x0d) || bytes.includes(0x09);
/** Characters of short rows gathered into one chunk, and the size of the slices a long field is sent in. */
const COPY_CHUNK = 64 * 1024;

/**
 * Rows as COPY text-format data (tab-separated, `\N` for null), a chunk at
 * a time: short rows gathered into chunks of about 64 Ki characters, and a
 * long field sent a slice at a time (bytes without anything to escape as
 * they are), so no row is ever copied whole into one buffer.
 */
export function* copyTextRows(rows: Iterable<readonly CopyField[]>): Generator<string | Buffer> {
  let chunk = '';
  for (const row of rows) {
    for (const [i, v] of row.entries()) {
      if (i > 0) chunk += '\t';
      if (v === null) chunk += '\\N';
      else if (v.length <= COPY_CHUNK) chunk += escapeCopy(typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.length).toString('utf8'));
      else {
        if (chunk) yield chunk;
        chunk = '';
        if (typeof v !== 'string' && !hasCopySpecial(v)) {
          for (let at = 0; at < v.length; at += COPY_CHUNK) yield Buffer.from(v.buffer, v.byteOffset + at, Math.min(COPY_CHUNK, v.length - at));
        } else {
          for (const slice of textSlices(typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.length).toString('utf8'), COPY_CHUNK)) yield escapeCopy(slice);
        }
      }
    }
    chunk += '\n';
    if (chunk.length >= COPY_CHUNK) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

/**
 * Runs `COPY ... TO STDOUT` and yields its data as it arrives, in chunks
 * that split anywhere.
 */
async function* copyChunks(client: ClientBase, sql: string): AsyncGenerator<Buffer> {
  const stream = client.query(copyTo(sql));
  let ended = false;
  try {
    yield* stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
    ended = true;
  } finally {
    if (!ended && !stream.destroyed) {
      // The consumer stopped early: let the rest of the COPY flow to nowhere, so pg sees its end and the connection is usable again.
      stream.resume();
      await finished(stream).catch(() => undefined);
    }
  }
}

/** Pending bytes above this are gathered in one buffer that grows, not kept as the pieces they came in. */
const GATHER_ABOVE = 1 << 20;
/** Room left in a buffer sized for the bytes expected, for the rest of the chunk that completes them. */
const EXPECT_SLACK = 1 << 20;

/**
 * Bytes that arrived in pieces, kept until they are needed whole: a line or
 * a row that spans many chunks is copied together once, not once more with
 * every chunk that arrives (which made a value's cost grow with the square
 * of its size). Past a megabyte they are copied, as they come, into one
 * buffer: of the size the caller said they will reach (`expect`), or else
 * one that doubles when full (its unwritten pages cost no memory). A large
 * value is so held once, not as its pieces plus their concatenation, and,
 * when its size is known, copied once (each fresh page written costs, the
 * more so on a loaded machine).
 */
class Pieces {
  private parts: Buffer[] = [];
  private gathered?: Buffer;
  private expected = 0;
  length = 0;
  /** The pending bytes will reach `n` before they are taken: a buffer gathering them is made that large at once. */
  expect(n: number): void {
    this.expected = n;
  }
  push(b: Buffer): void {
    if (b.length === 0) return;
    if (this.gathered) {
      if (this.length + b.length > this.gathered.length) this.gather(this.length + b.length);
      b.copy(this.gathered, this.length);
      this.length += b.length;
      return;
    }
    this.parts.push(b);
    this.length += b.length;
    if (this.length > GATHER_ABOVE) {
      this.gather(this.length);
      this.parts = [];
    }
  }
  /** Moves what is pending into one buffer of at least `n` bytes. */
  private gather(n: number): void {
    const size = Math.max(n, this.expected > n ? this.expected + EXPECT_SLACK : 2 * (this.gathered?.length ?? 0));
    const next = Buffer.allocUnsafe(size);
    if (this.gathered) this.gathered.copy(next, 0, 0, this.length);
    else {
      let at = 0;
      for (const p of this.parts) at += p.copy(next, at);
    }
    this.gathered = next;
  }
  /** Everything pushed, as one buffer, still pending. */
  peek(): Buffer {
    if (this.gathered) return this.gathered.subarray(0, this.length);
    if (this.parts.length > 1) this.parts = [Buffer.concat(this.parts, this.length)];
    return this.parts[0] ?? EMPTY;
  }
  /** Everything pushed, as one buffer; empties the list. */
  take(): Buffer {
    const whole = this.peek();
    this.parts = [];
    this.gathered = undefined;
    this.expected = 0;
    this.length = 0;
    return whole;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The line gathered in `partial`, as text. Its bytes (of a large line: its
 * pieces too) go before the text is worked on; a function of its own, so
 * the generator that reads the lines, suspended while they are worked on,
 * holds no reference to them.
 */
function lineOf(partial: Pieces): string {
  const n = partial.length;
  const text = decoded(partial);
  releaseLarge(n);
  return text;
}

function decoded(partial: Pieces): string {
  return partial.take().toString('utf8');
}

/**
 * Runs `COPY ... TO STDOUT` and yields its lines (without their newline),
 * decoded as UTF-8, in arrays as they arrive.
 */
export async function* copyLines(client: ClientBase, sql: string): AsyncGenerator<string[]> {
  // The start of a line whose end has not arrived yet.
  const partial = new Pieces();
  for await (const chunk of copyChunks(client, sql)) {
    // A newline byte never occurs inside a multi-byte UTF-8 character, so lines split safely on bytes.
    let nl = chunk.indexOf(NEWLINE);
    if (nl < 0) {
      partial.push(chunk);
      continue;
    }
    const lines: string[] = [];
    let start = 0;
    if (partial.length > 0) {
      partial.push(chunk.subarray(0, nl));
      lines.push(lineOf(partial));
      start = nl + 1;
      nl = chunk.indexOf(NEWLINE, start);
    }
    for (; nl >= 0; nl = chunk.indexOf(NEWLINE, start)) {
      lines.push(chunk.toString('utf8', start, nl));
      start = nl + 1;
    }
    partial.push(chunk.subarray(start));
    if (lines.length > 0) yield lines;
  }
  if (partial.length > 0) yield [partial.take().toString('utf8')];
}

/** The file header of COPY's binary format: signature, flags, header-extension length (PostgreSQL documents it in "COPY", "Binary Format"). */
const BINARY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const BINARY_HEADER = BINARY_SIGNATURE.length + 8;

/**
 * Rows of COPY's binary format parsed from chunks that split anywhere: each
 * `push` gives the rows it completed, undecoded, in the buffer they are in.
 * A row that spans chunks is put together once, when all of it has arrived
 * (in a buffer sized for it as soon as its field lengths tell its size).
 * Every row must have `fields` fields; without it, the first row's count.
 */
class BinaryRows {
  private readonly pending = new Pieces();
  // Bytes the pending ones must reach before parsing can go on (the header, or the rest of a row as far as its field lengths tell).
  private need = BINARY_HEADER;
  private header = false;
  private trailer = false;
  /** Bytes of the buffer last handed out (`releaseLarge`). */
  handedOut = 0;

  constructor(private fields = 0) {}

  push(chunk: Buffer): RawRows | undefined {
    const { pending } = this;
    pending.push(chunk);
    if (pending.length < this.need) return undefined;
    // Looked at where it is: taken (and a row's start left over copied) only once a row is whole.
    const buf = pending.peek();
    let pos = 0;
    if (!this.header) {
      if (!buf.subarray(0, BINARY_SIGNATURE.length).equals(BINARY_SIGNATURE)) throw bad('has no signature');
      const ext = buf.readUInt32BE(BINARY_SIGNATURE.length + 4);
      if (buf.length < BINARY_HEADER + ext) {
        this.need = BINARY_HEADER + ext;
        return undefined;
      }
      pos = BINARY_HEADER + ext;
      this.header = true;
    }
    if (this.fields === 0 && pos + 2 <= buf.length) {
      const n = buf.readInt16BE(pos);
      if (n === 0 || n < -1) throw bad(`has ${n} fields in a row`);
      if (n > 0) this.fields = n;
    }
    const fields = Math.max(this.fields, 1);
    // Where each field is: grown as rows are found (sized by the bytes, a buffer of one large row would ask for far too much).
    let at = new Int32Array(2 * fields * 64);
    let count = 0;
    let need = 0;
    while (!this.trailer && pos + 2 <= buf.length) {
      const n = buf.readInt16BE(pos);
      if (n === -1) {
        this.trailer = true;
        break;
      }
      if (n !== fields) throw bad(`has ${n} fields in a row, not ${fields}`);
      let p = pos + 2;
      let f = 0;
      for (; f < fields; f++) {
        if (p + 4 > buf.length) {
          need = p + 4 - pos;
          break;
        }
        const len = buf.readInt32BE(p);
        p += 4;
        if (len > 0 && p + len > buf.length) {
          // The field's end and, unless it is the last, the next field's length.
          need = p + len - pos + (f + 1 < fields ? 4 : 0);
          break;
        }
        const i = 2 * (count * fields + f);
        if (i + 1 >= at.length) {
          const more = new Int32Array(2 * at.length);
          more.set(at);
          at = more;
        }
        at[i] = p;
        at[i + 1] = len;
        if (len > 0) p += len;
      }
      if (f < fields) break;
      count++;
      pos = p;
    }
    this.need = Math.max(need, 2);
    if (pos === 0 && !this.trailer) {
      // Not one row whole yet: the bytes stay pending, and a buffer gathering them is sized for the row (as far as known).
      pending.expect(this.need);
      return undefined;
    }
    pending.take();
    if (pos < buf.length && !this.trailer) {
      // The start of a row: copied, so the rows handed out do not keep this chunk's tail alive in it.
      pending.push(Buffer.from(buf.subarray(pos)));
      pending.expect(this.need);
    }
    if (count === 0) return undefined;
    this.handedOut = buf.length;
    return { buf, count, fields, at };
  }

  /** Throws unless the data ended where it should. */
  end(): void {
    if (this.pending.length > 0 || !this.trailer) throw bad('ended in the middle of a row');
  }
}

function bad(what: string): MasterKeyError {
  return new MasterKeyError('INTERNAL', `COPY's binary output ${what}; this is a bug.`);
}

function binaryCopy(query: string): string {
  return `COPY (${query}) TO STDOUT (FORMAT binary)`;
}

/**
 * Runs `COPY (query) TO STDOUT (FORMAT binary)` of a query returning
 * `fields` columns, and yields its rows as they arrive, without decoding
 * them (no escapes to undo, no strings made): for a consumer that hashes
 * text as bytes and decodes only what it keeps. A row that spans chunks is
 * put together once, when all of it has arrived.
 */
export async function* copyRawRows(client: ClientBase, query: string, fields: number): AsyncGenerator<RawRows> {
  const rows = new BinaryRows(fields);
  for await (const chunk of copyChunks(client, binaryCopy(query))) {
    const got = rows.push(chunk);
    if (got) yield got;
  }
  rows.end();
}

const NEEDS_ESCAPE = /[\\\t\n\r\b\f\v]/;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\b': '\\b', '\f': '\\f', '\v': '\\v' };

/** One field in COPY text format (`\N` for NULL). */
export function copyField(v: string | null): string {
  if (v === null) return '\\N';
  return NEEDS_ESCAPE.test(v) ? v.replace(/[\\\t\n\r\b\f\v]/g, (c) => ESCAPES[c]) : v;
}

const UNESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** Decodes one field of COPY text output (as PostgreSQL writes it: no octal/hex escapes for UTF-8 text). */
export function copyUnfield(f: string): string | null {
  if (f === '\\N') return null;
  if (f.indexOf('\\') < 0) return f;
  return f.replace(/\\(.)/g, (_, c: string) => UNESCAPES[c] ?? c);
}

/** Splits one row of COPY text output (without its newline) into fields. */
export function copyRow(line: string): Array<string | null> {
  return line.split('\t').map(copyUnfield);
}
