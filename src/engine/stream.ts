/**
 * The hot path: scan every sealed value of an inventory (read-only), and
 * re-encrypt them all inside the caller's transaction, streaming rows in
 * batches so memory stays bounded whatever the table size.
 */
import type { ClientBase } from 'pg';
import type { KeySource } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { ErrorCode, MasterKeyError } from '../errors';
import type { Inventory } from '../inventory/inventory';
import { inventoryKinds, quoteIdent } from '../inventory/inventory';
import { TablePlan, dbError, planInventory, processRow } from './stream-plan';

/** A sealed value that does not open with the supplied keys (never the value itself). */
export interface SecretFailure {
  readonly table: string;
  readonly column: string;
  /** The row's primary key, as text. */
  readonly id: string;
  readonly kind: string;
  /** For jsonb documents: where in the document, e.g. "env.2.value". */
  readonly path?: string;
  /** A SEALED_* code saying why it does not open. */
  readonly code: ErrorCode;
}

/** What a scan found. */
export interface ScanResult {
  /** Sealed values found (a jsonb document can hold several). */
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** The values that do not open; at most `MAX_LISTED_FAILURES` listed. */
  readonly failures: readonly SecretFailure[];
  /** How many values do not open (all of them, listed or not). */
  readonly failureCount: number;
  /** Bytes of sealed text read. */
  readonly storedBytes: number;
}

/** What a re-encryption did. */
export interface ReencryptResult {
  /** Sealed values re-sealed. */
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** Table rows rewritten (a row can hold several values). */
  readonly updated: number;
}

/** Options shared by scan and re-encryption. */
export interface StreamOptions {
  /** Called after each batch with the number of sealed values processed so far. */
  readonly onProgress?: (done: number) => void;
  /** Rows fetched and written per round trip. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 5000;
export const MAX_LISTED_FAILURES = 1000;

let cursorSeq = 0;

function selectSql(plan: TablePlan): string {
  const cols = plan.columns.map((c) => `${quoteIdent(c.column)}::text`);
  const notNull = plan.columns.map((c) => `${quoteIdent(c.column)} IS NOT NULL`).join(' OR ');
  return `SELECT ${quoteIdent(plan.idColumn)}::text, ${cols.join(', ')} FROM ${quoteIdent(plan.table)} WHERE ${notNull}`;
}

/** Streams a query's rows in batches through a server-side cursor (the client must be in a transaction). */
async function* cursorBatches(client: ClientBase, sql: string, batchSize: number): AsyncGenerator<Array<Array<string | null>>> {
  const name = `mk_stream_${++cursorSeq}`;
  await client.query(`DECLARE ${name} NO SCROLL CURSOR FOR ${sql}`);
  try {
    for (;;) {
      const r = await client.query<Array<string | null>>({ text: `FETCH FORWARD ${batchSize} FROM ${name}`, rowMode: 'array' });
      if (r.rows.length > 0) yield r.rows;
      if (r.rows.length < batchSize) break;
    }
  } finally {
    if (client.getTransactionStatus() === 'T') await client.query(`CLOSE ${name}`);
  }
}

/** Counts per kind, in a plain record. */
class KindCounter {
  readonly byKind: Record<string, number> = {};
  total = 0;
  /** Starts every kind of the inventory at 0, so reports list them all. */
  constructor(inv: Inventory) {
    for (const k of inventoryKinds(inv)) this.byKind[k] = 0;
  }
  add(kinds: readonly string[]): void {
    for (const k of kinds) this.byKind[k] = (this.byKind[k] ?? 0) + 1;
    this.total += kinds.length;
  }
}

function batchSizeOf(opts: StreamOptions): number {
  const n = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `The batch size must be a positive integer, got ${n}.`);
  return n;
}

/** Runs fn in a read-only repeatable-read transaction unless the client is already in one. */
async function inReadTransaction<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  if (client.getTransactionStatus() !== 'I') return fn();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const r = await fn();
    await client.query('COMMIT');
    return r;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** Read-only: open every sealed value of every inventory entry with `keys`; never throws for bad values (lists them). */
export async function scanInventory(client: ClientBase, inv: Inventory, keys: KeySource, opts: StreamOptions = {}): Promise<ScanResult> {
  const batchSize = batchSizeOf(opts);
  const plans = await planInventory(client, inv);
  const counter = new KindCounter(inv);
  const failures: SecretFailure[] = [];
  let failureCount = 0;
  let storedBytes = 0;
  await inReadTransaction(client, async () => {
    for (const plan of plans) {
      try {
        for await (const rows of cursorBatches(client, selectSql(plan), batchSize)) {
          for (const row of rows) {
            const out = processRow(plan.columns, row.slice(1), { from: keys });
            counter.add(out.kinds);
            storedBytes += out.bytes;
            failureCount += out.failures.length;
            for (const f of out.failures) {
              if (failures.length < MAX_LISTED_FAILURES) failures.push({ table: plan.table, id: row[0] ?? '', ...f });
            }
          }
          opts.onProgress?.(counter.total);
        }
      } catch (e) {
        throw dbError(e, `reading ${plan.table}`);
      }
    }
  });
  return { total: counter.total, byKind: counter.byKind, failures, failureCount, storedBytes };
}

function updateSql(plan: TablePlan): string {
  const t = quoteIdent(plan.table);
  const sets = plan.columns.map((c, i) => `${quoteIdent(c.column)} = COALESCE(v.c${i}::${c.type}, t.${quoteIdent(c.column)})`);
  const arrays = plan.columns.map((_, i) => `$${i + 2}::text[]`);
  const names = plan.columns.map((_, i) => `c${i}`);
  return `UPDATE ${t} AS t SET ${sets.join(', ')} FROM unnest($1::${plan.idType}[], ${arrays.join(', ')}) AS v(id, ${names.join(', ')}) WHERE t.${quoteIdent(plan.idColumn)} = v.id`;
}

function undecryptable(table: string, id: string, f: { column: string; kind: string; path?: string; code: ErrorCode }, more: number): MasterKeyError {
  const where = `${table}.${f.column}${f.path ? ` at ${f.path}` : ''}`;
  return new MasterKeyError(
    'UNDECRYPTABLE_ROWS',
    `A ${f.kind} in ${where} (id ${id}) does not open with the old key (${f.code})${more > 0 ? ` and ${more} more in the same batch` : ''}; nothing was changed: run \`master-key verify\` to list every such value, then fix or remove them.`,
    { table, column: f.column, id, kind: f.kind, ...(f.path ? { path: f.path } : {}), reason: f.code },
  );
}

/**
 * Runs INSIDE the caller's open transaction on `client` (the caller did
 * BEGIN, holds the advisory lock, and will COMMIT or ROLLBACK). Re-seals
 * every value of every entry from the old key(s) in `from` to `to`, with the
 * entry's codec. If any value does not open, throws
 * MasterKeyError('UNDECRYPTABLE_ROWS') naming table/id/kind (never a value),
 * and the caller rolls back. Memory stays bounded whatever the table size.
 */
export async function reencryptInventory(
  client: ClientBase,
  inv: Inventory,
  from: KeySource,
  to: MasterKey,
  opts: StreamOptions & { readerUrl?: string } = {},
): Promise<ReencryptResult> {
  const batchSize = batchSizeOf(opts);
  if (client.getTransactionStatus() !== 'T') {
    throw new MasterKeyError('INTERNAL', 'Re-encryption must run inside an open transaction; this is a bug in the caller.');
  }
  const plans = await planInventory(client, inv);
  const counter = new KindCounter(inv);
  let updated = 0;
  for (const plan of plans) {
    const sql = updateSql(plan);
    try {
      for await (const rows of cursorBatches(client, selectSql(plan), batchSize)) {
        const ids: string[] = [];
        const cols: Array<Array<string | null>> = plan.columns.map(() => []);
        for (const row of rows) {
          const out = processRow(plan.columns, row.slice(1), { from, to });
          if (out.failures.length > 0) throw undecryptable(plan.table, row[0] ?? '', out.failures[0], out.failures.length - 1);
          if (out.kinds.length === 0) continue;
          counter.add(out.kinds);
          ids.push(row[0] as string);
          out.next!.forEach((v, i) => cols[i].push(v));
        }
        if (ids.length > 0) {
          const r = await client.query(sql, [ids, ...cols]);
          if (r.rowCount !== ids.length) {
            throw new MasterKeyError('DB_ERROR', `${plan.table}: ${ids.length} rows were read but ${r.rowCount ?? 0} updated (rows changed meanwhile); stop the server's writers and run the rotation again.`);
          }
          updated += ids.length;
        }
        opts.onProgress?.(counter.total);
      }
    } catch (e) {
      throw dbError(e, `re-encrypting ${plan.table}`);
    }
  }
  return { total: counter.total, byKind: counter.byKind, updated };
}
