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

/** Runs `COPY ... FROM STDIN` with data from `chunks` (COPY text or CSV); resolves with the rows copied. */
export async function copyIn(client: ClientBase, sql: string, chunks: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): Promise<number> {
  const sink = client.query(copyFrom(sql));
  await pipeline(Readable.from(chunks), sink);
  return sink.rowCount;
}

const NEWLINE = 0x0a;

/**
 * Runs `COPY ... TO STDOUT` and yields its lines (without their newline),
 * decoded as UTF-8, in arrays as they arrive.
 */
export async function* copyLines(client: ClientBase, sql: string): AsyncGenerator<string[]> {
  const stream = client.query(copyTo(sql));
  let rest: Buffer | undefined;
  let ended = false;
  try {
    for await (const chunk of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
      rest = undefined;
      const lines: string[] = [];
      let start = 0;
      // A newline byte never occurs inside a multi-byte UTF-8 character, so lines split safely on bytes.
      for (let nl = buf.indexOf(NEWLINE, start); nl >= 0; nl = buf.indexOf(NEWLINE, start)) {
        lines.push(buf.toString('utf8', start, nl));
        start = nl + 1;
      }
      if (start < buf.length) rest = Buffer.from(buf.subarray(start));
      if (lines.length > 0) yield lines;
    }
    if (rest) yield [rest.toString('utf8')];
    ended = true;
  } finally {
    if (!ended && !stream.destroyed) {
      // The consumer stopped early: let the rest of the COPY flow to nowhere, so pg sees its end and the connection is usable again.
      stream.resume();
      await finished(stream).catch(() => undefined);
    }
  }
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
