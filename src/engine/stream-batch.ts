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
  readonly byKind: ReadonlyArray<readonly [string, number]>;
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
    const byKind = [...out.byKind.entries()];
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
 * awaiting each write only when the next batch is ready, so preparing and
 * writing overlap. Throws UNDECRYPTABLE_ROWS at a batch with a failure.
 * Returns the rows written.
 */
export async function writeBatches(
  writer: ClientBase,
  plan: TablePlan,
  batches: AsyncIterable<PreparedBatch>,
  count: (byKind: ReadonlyArray<readonly [string, number]>) => void,
  progress: () => void,
): Promise<number> {
  let inFlight: Promise<void> | undefined;
  let written = 0;
  // Steered only for our writes: set after a read on this connection (a cursor) is planned, reset at the end.
  let restore: (() => Promise<void>) | undefined;
  const write = async (message: Uint8Array, rows: number): Promise<void> => {
    const changed = await sendUpdate(writer, message);
    if (changed !== rows) {
      throw new MasterKeyError('DB_ERROR', `${plan.table}: ${rows} rows were read but ${changed} updated (they changed meanwhile); run the rotation again with the server's writers stopped.`);
    }
    written += rows;
    progress();
  };
  try {
    for await (const b of batches) {
      if (b.failure) throw undecryptable(plan.table, b.failure);
      count(b.byKind);
      await inFlight;
      if (b.rows === 0) {
        inFlight = undefined;
        continue;
      }
      restore ??= await steerPlanner(writer);
      inFlight = write(b.message, b.rows);
      // A failed write is reported by the next await; keep it from being unhandled meanwhile.
      inFlight.catch(() => undefined);
    }
    await inFlight;
  } finally {
    await inFlight?.catch(() => undefined);
    await restore?.();
  }
  return written;
}
