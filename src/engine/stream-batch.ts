/**
 * The two halves of re-encrypting a table: `prepareBatches` turns rows into
 * ready-to-send UPDATE messages (all the crypto and serialisation),
 * `writeBatches` sends them on the caller's connection, one write in flight
 * while the next batch is prepared, so the client and the server work at
 * the same time.
 *
 * (Preparing in a worker thread was measured and dropped: on two cores the
 * writing server process is the bottleneck, and the thread's own overhead
 * made the whole slower.)
 */
import type { ClientBase } from 'pg';
import { ErrorCode, MasterKeyError } from '../errors';
import type { BatchCrypto } from './stream-crypto';
import { RowFailure, TablePlan, processBatch } from './stream-plan';
import type { Row } from './stream-source';
import { pgArray, rowLayout, steerPlanner, updateSql } from './stream-sql';
import { binaryTidArray, sendUpdate, updateMessage } from './stream-wire';

/** A batch ready to write: the UPDATE as wire messages, and what it holds. */
export interface PreparedBatch {
  /** Rows the UPDATE must change (0: nothing to write). */
  readonly rows: number;
  /** Parse/Bind/Execute/Sync of the batch UPDATE (see stream-wire). */
  readonly message: Uint8Array;
  /** Sealed values in the batch, by kind. */
  readonly byKind: ReadonlyMap<string, number>;
  /** The first value of the batch that does not open (then the batch is not to be written). */
  readonly failure?: RowFailure & { readonly id: string; readonly more: number };
}

const EMPTY = new Uint8Array(0);

/** Opens and re-seals each batch of rows and builds its UPDATE. Stops after a batch with a failure. */
export async function* prepareBatches(source: AsyncIterable<Row[]>, plan: TablePlan, crypto: BatchCrypto): AsyncGenerator<PreparedBatch> {
  const at = rowLayout(plan);
  const key = at.ctid ?? at.id;
  const sql = updateSql(plan);
  for await (const rows of source) {
    const out = processBatch(plan.columns, rows, at.first, crypto, true);
    const byKind = out.byKind;
    if (out.failures.length > 0) {
      const { row, ...f } = out.failures[0];
      yield { rows: 0, message: EMPTY, byKind, failure: { ...f, id: rows[row][at.id] ?? '', more: out.failures.length - 1 } };
      return;
    }
    const n = out.rows.length;
    const keys = out.rows.map((i) => rows[i][key]!);
    const message = n > 0 ? updateMessage(sql, at.ctid ? binaryTidArray(keys) : pgArray(keys), out.next!) : EMPTY;
    yield { rows: n, message, byKind };
  }
}

/** The error for a value that does not open (names where it is, never the value). */
function undecryptable(table: string, f: { id: string; column: string; kind: string; path?: string; code: ErrorCode; more: number }): MasterKeyError {
  const where = `${table}.${f.column}${f.path ? ` at ${f.path}` : ''}`;
  return new MasterKeyError(
    'UNDECRYPTABLE_ROWS',
    `A ${f.kind} in ${where} (id ${f.id}) does not open with the old key (${f.code})${f.more > 0 ? ` and ${f.more} more in the same batch` : ''}; nothing was changed: run \`master-key verify\` to list every such value, then fix or remove them.`,
    { table, column: f.column, id: f.id, kind: f.kind, ...(f.path ? { path: f.path } : {}), reason: f.code },
  );
}

/**
 * Writes prepared batches of one table on `writer` (in its transaction),
 * with up to `depth` writes outstanding (the next one queued on the
 * connection, so the server goes straight on to it), while the following
 * batch is prepared. Use depth 1 when the connection also reads (a cursor).
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
  const write = async (b: PreparedBatch): Promise<void> => {
    const changed = await sendUpdate(writer, b.message);
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
