/**
 * The two halves of re-encrypting a table: `prepareBatches` turns rows into
 * ready-to-send UPDATE parameters (all the crypto and serialisation, with
 * a few batches in flight when the crypto runs in worker threads),
 * `writeBatches` sends them on the caller's connection with pg's
 * `client.query` (binary array parameters), the next write queued while
 * the following batch is prepared, so the client and the server work at
 * the same time.
 */
import type { ClientBase } from 'pg';
import { ErrorCode, MasterKeyError } from '../errors';
import { RowFailure, TablePlan, processBatch } from './stream-plan';
import type { ValueCrypto } from './value-crypto';
import type { Row } from './stream-source';
import { binaryTextArray, binaryTidArray, pgArray, rowLayout, steerPlanner, updateSql } from './stream-sql';

/** A batch ready to write: the UPDATE's parameters, and what it holds. */
export interface PreparedBatch {
  /** Rows the UPDATE must change (0: nothing to write). */
  readonly rows: number;
  /** The batch UPDATE's parameters (`updateSql`): row keys, then one binary text[] per column. */
  readonly params: ReadonlyArray<string | Buffer>;
  /** Sealed values in the batch, by kind. */
  readonly byKind: ReadonlyMap<string, number>;
  /** The first value of the batch that does not open (then the batch is not to be written). */
  readonly failure?: RowFailure & { readonly id: string; readonly more: number };
}

/**
 * Yields fn(item) for each item of `source`, in order, with up to `ahead`
 * calls running at once (the source is read that far ahead). A consumer
 * that stops early ends the source; calls still running are awaited.
 */
export async function* mapAhead<T, U>(source: AsyncIterable<T>, fn: (item: T) => Promise<U>, ahead: number): AsyncGenerator<U> {
  const it = source[Symbol.asyncIterator]();
  const queue: Array<Promise<U>> = [];
  let done = false;
  try {
    for (;;) {
      while (!done && queue.length < ahead) {
        const r = await it.next();
        if (r.done) done = true;
        else {
          const p = fn(r.value);
          // Seen when awaited below; keep one never awaited (early exit) from being unhandled.
          p.catch(() => undefined);
          queue.push(p);
        }
      }
      const next = queue.shift();
      if (!next) return;
      yield await next;
    }
  } finally {
    await Promise.allSettled(queue);
    if (!done) await it.return?.();
  }
}

/**
 * Opens and re-seals each batch of rows and builds its UPDATE parameters;
 * the crypto digests every new value at its place. Stops after a batch with
 * a failure. Keeps `crypto.depth` batches in flight (more than 1 when the
 * crypto runs off this thread).
 */
export async function* prepareBatches(source: AsyncIterable<Row[]>, plan: TablePlan, crypto: ValueCrypto): AsyncGenerator<PreparedBatch> {
  const at = rowLayout(plan);
  const key = at.ctid ?? at.id;
  const prepare = async (rows: Row[]): Promise<PreparedBatch> => {
    const out = await processBatch(plan.columns, rows, at.first, crypto, true, { table: plan.table, idAt: at.id }, at.aad);
    const byKind = out.byKind;
    if (out.failures.length > 0) {
      const { row, ...f } = out.failures[0];
      return { rows: 0, params: [], byKind, failure: { ...f, id: rows[row][at.id] ?? '', more: out.failures.length - 1 } };
    }
    const n = out.rows.length;
    if (n === 0) return { rows: 0, params: [], byKind };
    const keys = out.rows.map((i) => rows[i][key]!);
    return { rows: n, params: [at.ctid ? binaryTidArray(keys) : pgArray(keys), ...out.next!.map(binaryTextArray)], byKind };
  };
  for await (const b of mapAhead(source, prepare, crypto.depth)) {
    yield b;
    if (b.failure) return;
  }
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

/**
 * Writes prepared batches of one table on `writer` (in its transaction),
 * with up to `depth` writes outstanding (the next one queued in pg's
 * client, which sends it as soon as the server is ready, so the server goes
 * straight on to it), while the following batch is prepared. Use depth 1 when the connection also reads (a cursor).
 * Throws UNDECRYPTABLE_ROWS at a batch with a failure.
 * `count` sees each batch's values as it is prepared, `progress` the number
 * of values of each batch once written. Returns the rows written.
 */
export async function writeBatches(
  writer: ClientBase,
  plan: TablePlan,
  batches: AsyncIterable<PreparedBatch>,
  count: (byKind: ReadonlyMap<string, number>) => void,
  progress: (values: number) => void,
  depth = 1,
): Promise<number> {
  const inFlight: Array<Promise<void>> = [];
  let written = 0;
  // Steered only for our writes: set after a read on this connection (a cursor) is planned, reset at the end.
  let restore: (() => Promise<void>) | undefined;
  const sql = updateSql(plan);
  const write = async (b: PreparedBatch): Promise<void> => {
    const changed = (await writer.query({ text: sql, values: b.params as Array<string | Buffer> })).rowCount ?? 0;
    if (changed !== b.rows) {
      throw new MasterKeyError('DB_ERROR', `${plan.table}: ${b.rows} rows were read but ${changed} updated (they changed meanwhile); run the rotation again with the server's writers stopped.`);
    }
    written += b.rows;
    let values = 0;
    for (const n of b.byKind.values()) values += n;
    progress(values);
  };
  try {
    for await (const b of batches) {
      if (b.failure) throw undecryptable(plan.table, b.failure);
      count(b.byKind);
      if (b.rows === 0) continue;
      while (inFlight.length >= depth) await inFlight.shift();
      restore ??= await steerPlanner(writer);
      const w = write(b);
      // A failed write is reported when awaited; keep it from being unhandled meanwhile.
      w.catch(() => undefined);
      inFlight.push(w);
    }
    while (inFlight.length > 0) await inFlight.shift();
  } finally {
    await Promise.all(inFlight.map((w) => w.catch(() => undefined)));
    await restore?.();
  }
  return written;
}
