/**
 * Where the PostgreSQL store reads rows from: a server-side cursor on the caller's
 * connection (one batch ahead of the consumer), or COPY on a second "reader"
 * connection that imports the caller's snapshot, so reading runs in another
 * server process alongside the writes and sees exactly the same rows.
 */
import { Socket } from 'node:net';
import { Client, ClientBase } from 'pg';
import { BATCH_TEXT } from '../../engine/pipeline';
import { MasterKeyError } from '../../errors';
import { sessionSettings, translatePgError } from './client';
import { copyLines, copyRow } from './copy';

export type Row = Array<string | null>;

let cursorSeq = 0;

/** Rows the first FETCH of a cursor asks for: few, until the rows' size is known. */
const FIRST_FETCH = 16;

/** Characters of text in a batch's cells (its stored values, and the id and additional data beside them). */
function charsOf(rows: readonly Row[]): number {
  let n = 0;
  for (const row of rows) for (const cell of row) if (cell !== null) n += cell.length;
  return n;
}

/**
 * Yields a query's rows in batches through a cursor (the client must be in
 * a transaction). The FETCH of the next batch is sent before the current one
 * is handed out, so the server reads while the caller works. A FETCH asks
 * for as many rows as fit in `BATCH_TEXT` at the size of the rows so far
 * (at most `batchSize`; a few at first), so a batch of large rows stays
 * small in memory.
 */
export async function* cursorBatches(client: ClientBase, sql: string, batchSize: number): AsyncGenerator<Row[]> {
  const name = `mk_stream_${++cursorSeq}`;
  await client.query(`DECLARE ${name} NO SCROLL CURSOR FOR ${sql}`);
  let rowsRead = 0;
  let charsRead = 0;
  const fetch = (n: number): Promise<Row[]> => client.query<Row>({ text: `FETCH FORWARD ${n} FROM ${name}`, rowMode: 'array' }).then((r) => r.rows);
  let asked = Math.min(batchSize, FIRST_FETCH);
  let pending: Promise<Row[]> | undefined = fetch(asked);
  // Rejections are seen when awaited below; keep one that is never awaited (early exit) from being unhandled.
  pending.catch(() => undefined);
  try {
    while (pending) {
      const rows: Row[] = await pending;
      rowsRead += rows.length;
      charsRead += charsOf(rows);
      const full = rows.length === asked;
      asked = Math.max(1, Math.min(batchSize, Math.floor(BATCH_TEXT / Math.max(1, charsRead / Math.max(1, rowsRead)))));
      pending = full ? fetch(asked) : undefined;
      pending?.catch(() => undefined);
      if (rows.length > 0) yield rows;
    }
  } finally {
    // Let an outstanding FETCH finish (it is ours), then close unless the transaction failed.
    await pending?.catch(() => undefined);
    if (client.getTransactionStatus() === 'T') await client.query(`CLOSE ${name}`);
  }
}

/**
 * Yields a query's rows in batches through `COPY (query) TO STDOUT` (about
 * three times cheaper for the client than FETCH, and faster on the server),
 * a batch of `batchSize` rows or of `BATCH_TEXT` characters, whichever
 * comes first (a row of `BATCH_TEXT` characters or more is a batch of its
 * own). It occupies the connection until the end (nothing else can run on
 * it meanwhile); rows arrive while the consumer works, up to a bounded
 * buffer.
 */
export async function* copyBatches(client: ClientBase, sql: string, batchSize: number): AsyncGenerator<Row[]> {
  let batch: Row[] = [];
  let chars = 0;
  for await (const lines of copyLines(client, `COPY (${sql}) TO STDOUT`)) {
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].length >= BATCH_TEXT && batch.length > 0) {
        // A row that fills a batch alone is a batch of its own.
        yield batch;
        batch = [];
        chars = 0;
      }
      batch.push(copyRow(lines[i]));
      chars += lines[i].length;
      // Let go of here, so the suspended readers do not keep a line (a large value) alive while its batch is worked on.
      lines[i] = '';
      if (batch.length === batchSize || chars >= BATCH_TEXT) {
        yield batch;
        batch = [];
        chars = 0;
      }
    }
  }
  if (batch.length > 0) yield batch;
}

const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(?:-[0-9A-F]+)?$/i;

/** A second connection reading in the writer's snapshot. */
export interface Reader {
  readonly client: Client;
  /** Ends the read-only transaction and the connection. */
  close(): Promise<void>;
  /** Ends the connection at once, even while a COPY is still streaming (the server ends the read-only transaction). */
  abort(): Promise<void>;
}

/**
 * Exports the writer's snapshot for a reader, or returns undefined when a
 * reader might not see what the writer sees: a reader never sees the
 * writer's uncommitted changes, so when the writer's transaction has written
 * to one of `tables`, the caller reads on the writer itself. The test errs
 * on the safe side: PostgreSQL's per-transaction counters also include this
 * session's writes of the last second or so (statistics are flushed at most
 * once a second), and without `track_counts` any write disqualifies.
 */
export async function exportSnapshot(writer: ClientBase, tables: readonly string[]): Promise<string | undefined> {
  const state = await writer.query<{ safe: boolean; snapshot: string | null }>(
    `WITH s AS (
       SELECT pg_current_xact_id_if_assigned() IS NULL
           OR (current_setting('track_counts')::boolean
               AND coalesce((SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_xact_all_tables WHERE relid = ANY($1::regclass[])), 0) = 0) AS safe)
     SELECT safe, CASE WHEN safe THEN pg_export_snapshot() END AS snapshot FROM s`,
    [tables],
  );
  const { safe, snapshot } = state.rows[0];
  if (!safe || !snapshot) return undefined;
  if (!SNAPSHOT_ID.test(snapshot)) throw new MasterKeyError('INTERNAL', 'PostgreSQL returned an unexpected snapshot id; this is a bug.');
  return snapshot;
}

/** Connects a reader on `url` in a read-only transaction on `snapshot` (from `exportSnapshot`). */
export async function connectReader(url: string, snapshot: string): Promise<Reader> {
  if (!SNAPSHOT_ID.test(snapshot)) throw new MasterKeyError('INTERNAL', 'Unexpected snapshot id; this is a bug.');
  // The socket is ours (pg's documented `stream` option), so abort() can close it at once.
  const socket = new Socket();
  const client = new Client({ connectionString: url, application_name: 'master-key reader', stream: () => socket });
  try {
    await client.connect();
  } catch (e) {
    await client.end().catch(() => undefined);
    throw translatePgError(e, 'connecting the second (reader) connection', url);
  }
  client.on('error', () => undefined);
  try {
    await sessionSettings(client);
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
  } catch (e) {
    await client.end().catch(() => undefined);
    throw translatePgError(e, 'opening the reader connection');
  }
  return {
    client,
    async close() {
      await client.query('ROLLBACK').catch(() => undefined);
      await client.end().catch(() => undefined);
    },
    async abort() {
      // A server busy sending COPY data reads nothing from us (not even Terminate), so close the socket itself.
      socket.destroy();
      await client.end().catch(() => undefined);
    },
  };
}
