/**
 * The hot path: scan every sealed value of an inventory (read-only), and
 * re-encrypt them all inside the caller's transaction, streaming rows in
 * batches so memory stays bounded whatever the table size.
 */
import { randomBytes } from 'node:crypto';
import type { ClientBase } from 'pg';
import type { CodecName, KeySource } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { translatePgError, withTransaction } from '../db/pg';
import { ErrorCode, MasterKeyError } from '../errors';
import { count } from '../format';
import { Inventory, inventoryKinds, quoteIdent } from '../inventory/inventory';
import { InventoryDigest, ValueDigest, sameDigest } from './stream-digest';
import { CryptoMode, CryptoOptions, ValueCrypto, valueCrypto } from './value-crypto';
import { AadLayout, BatchRow, ColumnPlan, FoundValue, TablePlan, aadOf, eachValue, planInventory, processBatch } from './stream-plan';
import { RawRows, copyRawRows, rawText } from './stream-copy';
import { prepareBatches, writeBatches } from './stream-batch';
import { Row, connectReader, copyBatches, cursorBatches, exportSnapshot } from './stream-source';
import { lockTables, rowLayout, selectSql } from './stream-sql';

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
  /** Order-independent digest of every value written, where it was written (for `verifyInventory`). */
  readonly digest: InventoryDigest;
  /** Where the AES-GCM work ran (`native`: the OpenSSL EVP addon, `node`: node:crypto, on the calling thread; `workers`: in worker threads). */
  readonly crypto: CryptoMode;
}

/** Options shared by scan and re-encryption; `crypto` and `workers` say where the AES-GCM work runs (see ./value-crypto; each store has its default). */
export interface StreamOptions extends CryptoOptions {
  /** Called after each batch with the number of sealed values done so far (for re-encryption: written). */
  readonly onProgress?: (done: number) => void;
  /** Rows fetched and written per round trip. @default DEFAULT_BATCH_SIZE */
  readonly batchSize?: number;
}

function cryptoFor(from: KeySource, to: MasterKey | undefined, opts: StreamOptions): ValueCrypto {
  return valueCrypto(from, to, opts);
}

/** Options of `reencryptInventory`. */
export interface ReencryptOptions extends StreamOptions {
  /**
   * URL of the same database for a second, read-only connection that reads
   * in this transaction's snapshot while this connection writes (faster).
   * Used only when this transaction has not yet written to a secret table.
   */
  readonly readerUrl?: string;
  /**
   * Sees each batch of rows as it is read, before it is re-sealed (laid
   * out as `rowLayout(plan)` says), and may write them somewhere (a
   * backup of exactly what this transaction rewrites). Awaited before the
   * batch goes on; an error ends the re-encryption with it.
   */
  readonly onRead?: (plan: TablePlan, rows: readonly Row[]) => void | Promise<void>;
}

export const DEFAULT_BATCH_SIZE = 2000;
export const MAX_LISTED_FAILURES = 1000;

/** Counts per kind, in a plain record. */
class KindCounter {
  readonly byKind: Record<string, number> = {};
  total = 0;
  /** Starts every kind of the inventory at 0, so reports list them all. */
  constructor(inv: Inventory) {
    for (const k of inventoryKinds(inv)) this.byKind[k] = 0;
  }
  add(counts: ReadonlyMap<string, number>): void {
    for (const [k, n] of counts) {
      this.byKind[k] = (this.byKind[k] ?? 0) + n;
      this.total += n;
    }
  }
}

function batchSizeOf(opts: StreamOptions): number {
  const n = opts.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(n) || n < 1) throw new MasterKeyError('USAGE', `The batch size must be a positive integer, got ${n}.`);
  return n;
}

/** Runs fn in a read-only repeatable-read transaction unless the client is already in one. */
function inReadTransaction<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  return client.getTransactionStatus() === 'I' ? withTransaction(client, fn, 'read only') : fn();
}

/** Read-only: open every sealed value of every inventory entry with `keys`; never throws for bad values (lists them). */
export async function scanInventory(client: ClientBase, inv: Inventory, keys: KeySource, opts: StreamOptions = {}): Promise<ScanResult> {
  const batchSize = batchSizeOf(opts);
  const plans = await planInventory(client, inv);
  const crypto = cryptoFor(keys, undefined, opts);
  const counter = new KindCounter(inv);
  const failures: SecretFailure[] = [];
  let failureCount = 0;
  let storedBytes = 0;
  await inReadTransaction(client, async () => {
    for (const plan of plans) {
      await naming(plan, 'reading', async () => {
        const at = rowLayout(plan);
        // Nothing else runs on the connection meanwhile, so COPY can stream the rows (cheaper than FETCH).
        for await (const rows of copyBatches(client, selectSql(plan), batchSize)) {
          const out = await processBatch(plan.columns, rows, at.first, crypto, false, undefined, at.aad);
          counter.add(out.byKind);
          storedBytes += out.bytes;
          failureCount += out.failures.length;
          for (const { row, ...f } of out.failures.slice(0, MAX_LISTED_FAILURES - failures.length)) failures.push({ table: plan.table, id: rows[row][at.id] ?? '', ...f });
          opts.onProgress?.(counter.total);
        }
      });
    }
  }).finally(() => crypto.close());
  return { total: counter.total, byKind: counter.byKind, failures, failureCount, storedBytes };
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
  opts: ReencryptOptions = {},
): Promise<ReencryptResult> {
  const batchSize = batchSizeOf(opts);
  if (client.getTransactionStatus() !== 'T') {
    throw new MasterKeyError('INTERNAL', 'Re-encryption must run inside an open transaction; this is a bug in the caller.');
  }
  const plans = await planInventory(client, inv);
  const counter = new KindCounter(inv);
  let written = 0;
  const progress = (values: number) => opts.onProgress?.((written += values));
  try {
    await lockTables(client, plans);
  } catch (e) {
    throw translatePgError(e, 'locking the secret tables');
  }
  const snapshot = opts.readerUrl ? await exportSnapshot(client, plans.map((p) => quoteIdent(p.table))) : undefined;
  const reader = snapshot ? await connectReader(opts.readerUrl!, snapshot) : undefined;
  const crypto = cryptoFor(from, to, opts);
  let updated = 0;
  let digest: InventoryDigest;
  let ok = false;
  try {
    for (const plan of plans) {
      const read = reader ? copyBatches(reader.client, selectSql(plan), batchSize) : cursorBatches(client, selectSql(plan), batchSize);
      const rows = opts.onRead ? observed(read, (batch) => opts.onRead!(plan, batch)) : read;
      const depth = reader ? 2 : 1;
      const batches = prepareBatches(rows, plan, crypto);
      updated += await naming(plan, 're-encrypting', () => writeBatches(client, plan, batches, (byKind) => counter.add(byKind), progress, depth));
    }
    digest = await crypto.digest();
    ok = true;
  } finally {
    await (ok ? reader?.close() : reader?.abort());
    await crypto.close();
  }
  return { total: counter.total, byKind: counter.byKind, updated, digest, crypto: crypto.mode };
}

/** Passes each item of `source` on after `fn` has seen it. */
async function* observed<T>(source: AsyncIterable<T>, fn: (item: T) => void | Promise<void>): AsyncGenerator<T> {
  for await (const item of source) {
    await fn(item);
    yield item;
  }
}

/** Options of `verifyInventory`. */
export interface VerifyOptions extends StreamOptions {
  /** The digest `reencryptInventory` returned; the stored values are compared with it. */
  readonly expected?: InventoryDigest;
  /** Values chosen at random (CSPRNG) and opened with the key. @default DEFAULT_SAMPLE_SIZE */
  readonly sampleSize?: number;
}

/** What a verification found, and what that proves. */
export interface VerifyResult {
  /** Sealed values stored now. */
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** The digest of the stored values. */
  readonly digest: InventoryDigest;
  /** Whether it equals `expected` (absent when none was given). */
  readonly digestMatches?: boolean;
  /** Values opened with the key (all of them when the sample size is at least the total). */
  readonly sampled: number;
  /** Sampled values that do not open with the key (at most `MAX_LISTED_FAILURES`). */
  readonly sampleFailures: readonly SecretFailure[];
  /** The digest matches (when expected) and every sampled value opens. */
  readonly ok: boolean;
  /** What was proved, as a sentence or two for the report (names only the key's fingerprint). */
  readonly proved: string;
}

export const DEFAULT_SAMPLE_SIZE = 1000;

/** A value kept for the sample. */
export interface Sampled extends Omit<FoundValue, 'row'> {
  readonly table: string;
  readonly id: string;
}

/** CSPRNG bytes fetched at a time for `uniform` (a call per draw costs far more than the bytes). */
const RANDOM_POOL = 7 * 1024;
let randomPool = Buffer.alloc(0);
let randomAt = 0;

/** A uniform double in [0, 1) from the CSPRNG (53 bits). */
function uniform(): number {
  if (randomAt + 7 > randomPool.length) {
    randomPool = randomBytes(RANDOM_POOL);
    randomAt = 0;
  }
  const b = randomPool;
  const at = randomAt;
  randomAt += 7;
  return (b.readUIntBE(at, 6) * 32 + (b[at + 6] >> 3)) / 2 ** 53;
}

/**
 * A uniform random sample of at most k items of a stream of unknown length
 * (reservoir sampling, Li's algorithm L: a few random draws per kept item,
 * not one per item seen), drawn from the CSPRNG.
 */
class Reservoir<T> {
  items: T[] = [];
  /** Items offered so far. */
  seen = 0;
  private w = 0;
  private skip = 0;
  constructor(private readonly k: number) {
    this.next();
  }

  /**
   * Makes this a uniform sample of both populations, given another
   * reservoir's sample of `seen` other items: how many come from each side
   * is drawn as from the union (hypergeometric), then that many are chosen
   * at random from each side's own uniform sample. For the end of a scan
   * split in parts (no item is offered afterwards).
   */
  absorb(other: readonly T[], seen: number): void {
    const k = Math.min(this.k, this.seen + seen);
    let mine = 0;
    for (let left = this.seen, right = seen, i = 0; i < k; i++) {
      if (uniform() * (left + right) < left) {
        mine++;
        left--;
      } else right--;
    }
    this.items = [...pick(this.items, mine), ...pick(other, k - mine)];
    this.seen += seen;
  }
  private next(): void {
    if (this.k === 0) return;
    this.w = (this.w || 1) * Math.exp(Math.log(uniform() || Number.MIN_VALUE) / this.k);
    this.skip = Math.floor(Math.log(uniform() || Number.MIN_VALUE) / Math.log(1 - this.w));
  }
  /** Offers the next item; `make` builds it only when it is kept. */
  offer(make: () => T): void {
    this.seen++;
    if (this.items.length < this.k) {
      this.items.push(make());
      return;
    }
    if (this.k === 0) return;
    if (this.skip > 0) {
      this.skip--;
      return;
    }
    this.items[Math.floor(uniform() * this.k)] = make();
    this.next();
  }
}

/** `n` items of `items` chosen uniformly at random (CSPRNG), without repetition. */
function pick<T>(items: readonly T[], n: number): T[] {
  const a = [...items];
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(uniform() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}

/** What one part of a verification scan split by rows gathered (`VerifyScan.part`), to be absorbed by the scan of another part. */
export interface VerifyPart {
  readonly digest: InventoryDigest;
  readonly byKind: Readonly<Record<string, number>>;
  /** Values offered to the sample, and the sample kept. */
  readonly seen: number;
  readonly sample: readonly Sampled[];
}

/**
 * What verification gathers as a store reads the stored rows, whatever
 * reads them (PostgreSQL's COPY, SQLite's batches): the digest of every
 * value and its place, counts per kind, and a uniform random sample.
 * `finish` opens the sample with the key and says what was proved. A scan
 * split by rows (several readers) gathers each part apart and `absorb`s
 * the others' parts before `finish`.
 */
export class VerifyScan {
  private readonly digest = new ValueDigest();
  private readonly counter: KindCounter;
  private readonly sample: Reservoir<Sampled>;

  constructor(
    inv: Inventory,
    private readonly opts: VerifyOptions = {},
  ) {
    const sampleSize = opts.sampleSize ?? DEFAULT_SAMPLE_SIZE;
    if (!Number.isInteger(sampleSize) || sampleSize < 0) throw new MasterKeyError('USAGE', `The sample size must be a non-negative integer, got ${sampleSize}.`);
    this.counter = new KindCounter(inv);
    this.sample = new Reservoir<Sampled>(sampleSize);
  }

  /** One batch of a table's rows, laid out as `processBatch` reads them (the id at `idAt`, the columns from `first`). */
  add(table: string, columns: readonly Pick<ColumnPlan, 'column' | 'json' | 'entries'>[], rows: readonly BatchRow[], first: number, idAt: number, aadAt?: AadLayout): void {
    const byKind = new Map<string, number>();
    eachValue(
      columns,
      rows,
      first,
      (v) => {
        const id = (rows[v.row][idAt] as string | null) ?? '';
        this.digest.add(table, v.column, v.path, id, v.sealed);
        byKind.set(v.entry.kind, (byKind.get(v.entry.kind) ?? 0) + 1);
        this.sample.offer(() => ({ table, id, column: v.column, entry: v.entry, sealed: v.sealed, ...(v.path !== undefined ? { path: v.path } : {}), ...(v.aad ? { aad: v.aad } : {}) }));
      },
      aadAt,
    );
    this.counter.add(byKind);
    this.opts.onProgress?.(this.counter.total);
  }

  /**
   * The same as `add` for rows read undecoded (`copyRawRows`) of a table
   * whose columns are all plain text (no JSON documents): hashes the bytes
   * where they are, and decodes only the values the sample keeps.
   */
  addRaw(table: string, columns: readonly Pick<ColumnPlan, 'column' | 'json' | 'entries'>[], rows: RawRows, first: number, idAt: number, aadAt?: AadLayout): void {
    const { buf, at, fields } = rows;
    const byKind = new Map<string, number>();
    columns.forEach((c, k) => {
      if (c.json) throw new MasterKeyError('INTERNAL', `${table}.${c.column} holds JSON documents, which verification cannot read undecoded; this is a bug.`);
      const entry = c.entries[0];
      const head = Buffer.from(`${table}\u0000${c.column}\u0000\u0000`, 'utf8');
      let n = 0;
      for (let r = 0; r < rows.count; r++) {
        const v = 2 * (r * fields + first + k);
        if (at[v + 1] < 0) continue;
        const id = 2 * (r * fields + idAt);
        // A NULL id hashes as the empty text, as `add` has it.
        this.digest.addBytes(head, buf, at[id], Math.max(at[id + 1], 0), at[v], at[v + 1]);
        n++;
        this.sample.offer(() => {
          const row = Array.from({ length: fields }, (_, f) => rawText(rows, r, f));
          const aad = aadOf(entry, row, aadAt);
          return { table, id: row[idAt] ?? '', column: c.column, entry, sealed: row[first + k]!, ...(aad ? { aad } : {}) };
        });
      }
      if (n > 0) byKind.set(entry.kind, (byKind.get(entry.kind) ?? 0) + n);
    });
    this.counter.add(byKind);
    this.opts.onProgress?.(this.counter.total);
  }

  /** What this part gathered, for another part's scan to absorb. */
  part(): VerifyPart {
    return { digest: this.digest.result(), byKind: this.counter.byKind, seen: this.sample.seen, sample: this.sample.items };
  }

  /** Adds another part of the same scan (call before `finish`, once every value was added). */
  absorb(p: VerifyPart): void {
    this.digest.merge(p.digest);
    this.counter.add(new Map(Object.entries(p.byKind)));
    this.sample.absorb(p.sample, p.seen);
  }

  /** Opens the sample with `key` and compares the digest with `opts.expected`. */
  async finish(key: MasterKey): Promise<VerifyResult> {
    const { opts } = this;
    const sampleFailures = await openSample(this.sample.items, key, opts);
    const stored = this.digest.result();
    const digestMatches = opts.expected ? sameDigest(stored, opts.expected) : undefined;
    const sampled = this.sample.items.length;
    const ok = digestMatches !== false && sampleFailures.length === 0;
    return {
      total: this.counter.total,
      byKind: this.counter.byKind,
      digest: stored,
      ...(digestMatches !== undefined ? { digestMatches } : {}),
      sampled,
      sampleFailures,
      ok,
      proved: provedText(stored, opts.expected, sampled, sampleFailures.length, key),
    };
  }
}

/**
 * Read-only: proves the database stores what a re-encryption wrote,
 * without decrypting every value again. Reads every sealed value in one
 * snapshot (a read-only repeatable-read transaction unless the caller is in
 * one), computes the digest of what is stored (see stream-digest) and
 * compares it with `opts.expected`, and opens a random sample of
 * `opts.sampleSize` values with `key`. Never throws for a bad value: the
 * result says what holds (`ok`, `proved`).
 */
export async function verifyInventory(client: ClientBase, inv: Inventory, key: MasterKey, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const batchSize = batchSizeOf(opts);
  const scan = new VerifyScan(inv, opts);
  const plans = await planInventory(client, inv);
  await inReadTransaction(client, async () => {
    for (const plan of plans) {
      await naming(plan, 'verifying', async () => {
        const at = rowLayout(plan);
        if (plan.columns.some((c) => c.json)) {
          for await (const rows of copyBatches(client, selectSql(plan), batchSize)) scan.add(plan.table, plan.columns, rows, at.first, at.id, at.aad);
          return;
        }
        // Plain text columns: hashed as the bytes COPY sends, undecoded.
        const fields = at.first + plan.columns.length + plan.aadColumns.length;
        for await (const rows of copyRawRows(client, selectSql(plan), fields)) scan.addRaw(plan.table, plan.columns, rows, at.first, at.id, at.aad);
      });
    }
  });
  return scan.finish(key);
}

/** Opens the sampled values with `key`; returns those that do not open. */
async function openSample(items: readonly Sampled[], key: MasterKey, opts: StreamOptions): Promise<SecretFailure[]> {
  const crypto = cryptoFor(new Keyring([key]), undefined, opts);
  const failures: SecretFailure[] = [];
  try {
    for (const codec of new Set<CodecName>(items.map((s) => s.entry.codec))) {
      const group = items.filter((s) => s.entry.codec === codec);
      const results = await crypto.process(
        codec,
        group.map((s) => s.sealed),
        group.some((s) => s.aad) ? group.map((s) => s.aad) : undefined,
      );
      results.forEach((r, i) => {
        const s = group[i];
        if (r.code && failures.length < MAX_LISTED_FAILURES) failures.push({ table: s.table, column: s.column, id: s.id, kind: s.entry.kind, ...(s.path !== undefined ? { path: s.path } : {}), code: r.code });
      });
    }
  } finally {
    await crypto.close();
  }
  return failures;
}

function provedText(stored: InventoryDigest, expected: InventoryDigest | undefined, sampled: number, failed: number, key: MasterKey): string {
  const parts: string[] = [];
  if (expected && sameDigest(stored, expected)) {
    parts.push(`The database stores exactly the ${count(expected.count)} values the re-encryption wrote, each at the place it was written (equal order-independent SHA-256 sums over table, column, row id, path and text).`);
  } else if (expected) {
    parts.push(`The stored values differ from what the re-encryption wrote (${count(stored.count)} values stored, ${count(expected.count)} written; the sums ${stored.sum === expected.sum ? 'are equal' : 'differ'}).`);
  } else {
    parts.push(`Read ${count(stored.count)} stored values (digest ${stored.sum.slice(0, 16)}…); no digest of a re-encryption was given to compare with.`);
  }
  const all = sampled === stored.count;
  if (sampled === 0) parts.push('No value was decrypted.');
  else if (failed === 0) parts.push(`${all ? `All ${count(sampled)} values` : `${count(sampled)} values chosen at random`} open with ${key.fingerprint}.`);
  else parts.push(`${count(failed)} of ${count(sampled)} ${all ? '' : 'randomly chosen '}values do not open with ${key.fingerprint}.`);
  return parts.join(' ');
}

/** Whether an error comes from the database driver (not from our code or a caller's callback). */
function fromDriver(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const x = e as Error & { severity?: string; code?: unknown };
  return x.severity !== undefined || typeof x.code === 'string' || /Connection terminated|not queryable|connection.*closed/i.test(x.message);
}

/** Runs one table's work, naming the table in a database error (other errors pass unchanged). */
async function naming<T>(plan: TablePlan, doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromDriver(e) ? translatePgError(e, `${doing} ${plan.table}`) : e;
  }
}
