/**
 * COPY over the `pg` connection, without pg-copy-streams: two small query
 * objects that `client.query()` accepts (pg's "submittable" protocol).
 *
 * - `copyIn(client, sql, chunks)` sends `COPY ... FROM STDIN` data, honouring
 *   socket back-pressure, and resolves with the row count.
 * - `copyOut(client, sql)` yields `COPY ... TO STDOUT` data one row (one
 *   CopyData message) at a time, pausing the socket when the consumer lags;
 *   a consumer that stops early lets the rest drain, so the connection stays
 *   usable.
 *
 * Plus the COPY text-format escaping both directions need.
 */
import type { ClientBase, Connection, Submittable } from 'pg';

/** The parts of pg's (untyped) Connection the COPY sub-protocol uses. */
interface PgConnection {
  query(text: string): void;
  stream: { writableNeedDrain?: boolean; pause(): void; resume(): void; once(ev: 'drain', fn: () => void): void };
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(msg: string): void;
}

function pgc(c: Connection): PgConnection {
  return c as unknown as PgConnection;
}

/**
 * Base for hand-made query objects (pg's "submittable"): sends `text` as a
 * simple query unless `submit` is overridden, tracks the command's row
 * count, and settles `done` with it, or with the error.
 */
export abstract class ProtocolQuery implements Submittable {
  protected rowCount = 0;
  protected error: Error | undefined;
  protected settle: { resolve: (n: number) => void; reject: (e: Error) => void } | undefined;
  readonly done: Promise<number>;

  constructor(readonly text: string) {
    this.done = new Promise<number>((resolve, reject) => (this.settle = { resolve, reject }));
    // A failure is reported to whoever awaits `done`; never an unhandled rejection here.
    this.done.catch(() => undefined);
  }

  submit(connection: Connection): void {
    pgc(connection).query(this.text);
  }

  handleCommandComplete(msg: { text?: string }): void {
    const m = /(\d+)$/.exec(msg.text ?? '');
    this.rowCount = m ? Number(m[1]) : 0;
  }

  handleError(err: Error): void {
    this.error ??= err;
    this.onError(err);
    // A lost connection never sends ReadyForQuery: settle now (settling again later changes nothing).
    this.settle!.reject(this.error);
  }

  handleReadyForQuery(): void {
    if (this.error) this.settle!.reject(this.error);
    else this.settle!.resolve(this.rowCount);
  }

  protected onError(_err: Error): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(connection: Connection): void {
    pgc(connection).sendCopyFail('unexpected COPY FROM');
  }
  handleCopyData(_msg: { chunk: Buffer }, _connection: Connection): void {}
}

class CopyInQuery extends ProtocolQuery {
  constructor(
    text: string,
    private readonly source: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
  ) {
    super(text);
  }

  override handleCopyInResponse(connection: Connection): void {
    void this.pump(pgc(connection));
  }

  private async pump(con: PgConnection): Promise<void> {
    try {
      for await (const chunk of this.source) {
        if (this.error) return;
        const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
        if (buf.length === 0) continue;
        con.sendCopyFromChunk(buf);
        if (con.stream.writableNeedDrain) {
          await new Promise<void>((r) => con.stream.once('drain', r));
        }
      }
      con.endCopyFrom();
    } catch (e) {
      this.error ??= e as Error;
      con.sendCopyFail('the data source failed');
    }
  }
}

/** Runs `COPY ... FROM STDIN` with data from `chunks` (COPY text or CSV); resolves with the rows copied. */
export function copyIn(client: ClientBase, sql: string, chunks: AsyncIterable<Buffer | string> | Iterable<Buffer | string>): Promise<number> {
  const q = new CopyInQuery(sql, chunks);
  client.query(q);
  return q.done;
}

class CopyOutQuery extends ProtocolQuery {
  private queue: string[] = [];
  private wake: (() => void) | undefined;
  private finished = false;
  private con: PgConnection | undefined;
  private paused = false;
  private discarding = false;
  constructor(
    text: string,
    private readonly highWater: number,
  ) {
    super(text);
    void this.done.then(
      () => this.finish(),
      () => this.finish(),
    );
  }

  private finish(): void {
    this.finished = true;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  override handleCopyData(msg: { chunk: Buffer }, connection: Connection): void {
    this.con = pgc(connection);
    if (this.discarding) return;
    // The parser reuses its buffer: decode (copy) now.
    this.queue.push(msg.chunk.toString('utf8'));
    if (this.queue.length >= this.highWater && !this.paused) {
      this.paused = true;
      this.con.stream.pause();
    }
    this.poke();
  }

  /** Takes everything received so far (waits when nothing is there); empty when the COPY is over. */
  async take(): Promise<string[]> {
    while (this.queue.length === 0 && !this.finished) await new Promise<void>((r) => (this.wake = r));
    const q = this.queue;
    this.queue = [];
    if (this.paused) {
      this.paused = false;
      this.con!.stream.resume();
    }
    if (q.length === 0) await this.done;
    return q;
  }

  /** The consumer stopped early: drop the rest of the data and wait for the COPY to end, so the connection is usable again. */
  async discard(): Promise<void> {
    this.discarding = true;
    this.queue = [];
    if (this.paused) {
      this.paused = false;
      this.con!.stream.resume();
    }
    await this.done.catch(() => undefined);
  }
}

/**
 * Runs `COPY ... TO STDOUT` and yields the data as arrays of CopyData
 * messages decoded as UTF-8 (one row each in text format, newline included). At most about `highWater`
 * messages are buffered before the socket is paused.
 */
export async function* copyOut(client: ClientBase, sql: string, highWater = 4096): AsyncGenerator<string[]> {
  const q = new CopyOutQuery(sql, highWater);
  client.query(q);
  let ended = false;
  try {
    for (;;) {
      const chunk = await q.take();
      if (chunk.length === 0) {
        ended = true;
        return;
      }
      yield chunk;
    }
  } finally {
    if (!ended) await q.discard();
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
