/**
 * The PostgreSQL store's seal-ahead and its cut-over (issue 20).
 *
 * Seal-ahead, while the server runs: a second connection reads every row
 * holding a value in one REPEATABLE READ snapshot (COPY), the engine opens
 * each value with the old key and seals it under the new one, and this
 * connection writes the results into UNLOGGED tables of the `master_key`
 * schema, one per secret table (`stage_<fingerprint>_<n>`: the row id, the
 * row version read (its `xmin`), which value columns held a value, the old
 * texts of the additional-data columns, the new texts), bound to the new
 * key's fingerprint by name and by comment. Every row
 * read is staged, one with nothing sealed in it (a document without a
 * secret at the entry's path) too, with no new texts: so the staging
 * tables hold every row the snapshot holds a value of. No live row
 * changes. The snapshot's oldest running transaction (`xmin`) is kept: a
 * row version written since has an xmin at least as new.
 *
 * The backup (when the runbook hands seal-ahead its sink): its bulk,
 * `secrets-ahead.jsonl` (`./backup.ts`), is written from the rows the
 * snapshot reads, as they are read (the old texts seal-ahead opens), and
 * made durable (sealed to the recipients, when there are any) before
 * seal-ahead returns, with the server up. The window then writes only
 * `changes.jsonl`: the values at the lock of the rows it re-seals and of
 * the staged rows gone since.
 *
 * Cut-over, in the rotation's transaction after the tables are locked
 * (no second scan of what was staged):
 * 1. the rows written since the snapshot (xmin at least as new) that are not
 *    the row versions staged are read, backed up as read (into the changes,
 *    after a backup made ahead) and re-sealed by the usual batch path; each
 *    one's staged entry, if any, comes with it and leaves the expected
 *    digest and counts. With a backup made ahead they are read on a second
 *    connection, on this transaction's snapshot (taken after the lock:
 *    exactly the rows at the lock), while this one runs the swap (2), which
 *    leaves those rows alone; their writes follow the swap. Without one
 *    (the swap's RETURNING writes the backup) they are read here, first;
 * 2. one `UPDATE t SET c = s.new FROM staging s WHERE t.id = s.id AND
 *    t.xmin = s.ver` per table swaps in every row that is still the row
 *    version staged, so still holds the staged texts (see `sameVersion`;
 *    without a backup made ahead, as `COPY (…
 *    RETURNING s.id, o.c …) TO STDOUT`, joined with the same rows as the
 *    statement began, which hands back, as it goes, exactly those rows' old
 *    texts: the rest of the backup);
 * 3. the staged rows must add up: swapped in + changed since + deleted since
 *    (those, only when there are any, found by the staging table's rows
 *    without a live row holding a value, and backed up as gone), or
 *    everything rolls back.
 */
import type { Client } from 'pg';
import { LARGE_VALUE } from '../../crypto/large-value';
import { MasterKeyError } from '../../errors';
import { ValueDigest } from '../../engine/digest';
import { releaseLarge, textIn } from '../../engine/memory';
import { TextBudget, WritesInFlight, mapAhead, withinBudget } from '../../engine/pipeline';
import { resealBatch, undecryptable } from '../../engine/reseal';
import { eachValue } from '../../engine/rows';
import { valueCrypto } from '../../engine/value-crypto';
import { KindCounter, batchSizeOf } from '../../engine/walk';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupSink, Rotation, RotationResult, SealAhead, SealAheadSupport, Staged, StagingArea, StoredFile, inventoryLocations, stagedFor } from '../store';
import { AHEAD_FILE, BackupTee, CHANGES_FILE, SECRETS_FILE } from './backup';
import { binaryTextArray, binaryTrueArray, binaryXidArray, pgArray } from './arrays';
import { connect, naming, translatePgError } from './client';
import { CopyField, copyIn, copyTextRows } from './copy';
import { META_SCHEMA } from './meta';
import { stagingRight, updateRules } from './privileges';
import { prepareBatches, writeBatches } from './reencrypt';
import { Reader, Row, connectReader, copyBatches, cursorBatches, exportSnapshot } from './row-source';
import { holdsValue, lockTables, rowLayout, valueColumns } from './statements';
import { TablePlan, planInventory } from './tables';

/** Staging INSERTs outstanding at once: one running on the server, the next queued to follow it at once. */
const STAGING_WRITES_AHEAD = 2;

/** Staging tables are named `stage_<12 hex of the fingerprint>_<n>`. */
const STAGE_NAME = /^stage_([0-9a-f]{12})_(\d+)$/;

/** What the comment of a staging table records. */
interface StageComment {
  readonly tool: 'cdktf-master-key seal-ahead';
  readonly fingerprint: string;
  readonly rotationId: string;
  readonly table: string;
  readonly rows: number;
}

/** One staging table, as `Staged.token` keeps it. */
interface StageTable {
  readonly name: string;
  readonly plan: TablePlan;
  readonly rows: number;
}

/** The store's part of a `Staged`. */
interface Token {
  readonly kind: 'postgres-staging';
  readonly tables: readonly StageTable[];
  /** The seal-ahead snapshot's oldest running transaction id (32 bits, as text for `::xid`). */
  readonly xmin: string;
  /** The bulk of the backup, written from the snapshot's rows (`AHEAD_FILE`), when the runbook handed seal-ahead its sink. */
  readonly backup?: { readonly files: readonly StoredFile[]; readonly values: number };
}

const qualified = (name: string) => `${META_SCHEMA}.${quoteIdent(name)}`;
const hexOf = (fingerprint: string) => fingerprint.replace(/^mk:/, '');

/**
 * The staging table's columns for a plan besides the id: `ver` (the row
 * version read: its `xmin`, see `sameVersion`), h0… (true where the value column held
 * a value as read, else NULL: where the backup's bulk holds one), a0…
 * (additional data), n0… (the new texts). Neither the old texts nor their
 * digests: the row version tells whether a live row still holds them, and
 * the swap reads every staged row, so the new texts are most of what it
 * reads.
 */
function stageColumns(plan: TablePlan): { held: string[]; aads: string[]; news: string[] } {
  return { held: plan.columns.map((_, i) => `h${i}`), aads: plan.aadColumns.map((_, i) => `a${i}`), news: plan.columns.map((_, i) => `n${i}`) };
}

/** Rows must be found by a unique id: seal-ahead swaps staged values in by it. */
export async function sealAheadSupportPostgres(c: Client, inv: Inventory): Promise<SealAheadSupport> {
  const plans = await planInventory(c, inv);
  const loose = plans.filter((p) => !p.idIndexed).map((p) => `${p.table}.${p.idColumn}`);
  if (loose.length) return { ok: false, byDefault: false, reason: `no unique index on ${loose.join(', ')}, so staged values cannot be swapped in by row id` };
  const denied = await stagingRight(c);
  if (denied) return { ok: false, byDefault: false, reason: denied };
  const ruled = await updateRules(c, plans.map((p) => p.table));
  if (ruled.length) {
    const named = [...new Set(ruled.map((r) => r.table))].map((t) => `${t} (${ruled.filter((r) => r.table === t).map((r) => `rule ${r.rule}`).join(', ')})`);
    return {
      ok: false,
      byDefault: false,
      reason: `${named.join(', ')} ${named.length === 1 ? 'is' : 'are'} rewritten by a rule ON UPDATE, and the cut-over's swap (COPY (UPDATE … RETURNING) TO STDOUT) cannot run through a rule`,
    };
  }
  return { ok: true, byDefault: true, reason: `staging in UNLOGGED tables of the ${META_SCHEMA} schema` };
}

/** The staging tables in the database, with what their comments say. */
async function stagingTables(c: Client): Promise<Array<{ name: string; comment?: StageComment; bytes: number }>> {
  const r = await c.query<{ name: string; comment: string | null; bytes: string }>(
    `SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS comment, pg_total_relation_size(c.oid)::text AS bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE 'stage\\_%'`,
    [META_SCHEMA],
  );
  return r.rows
    .filter((x) => STAGE_NAME.test(x.name))
    .map((x) => {
      let comment: StageComment | undefined;
      try {
        comment = x.comment ? (JSON.parse(x.comment) as StageComment) : undefined;
      } catch {
        comment = undefined;
      }
      return { name: x.name, comment, bytes: Number(x.bytes) };
    });
}

export async function stagingAreasPostgres(c: Client): Promise<StagingArea[]> {
  try {
    return (await stagingTables(c)).map((t) => ({ fingerprint: t.comment?.fingerprint ?? `mk:${STAGE_NAME.exec(t.name)![1]}`, where: `${META_SCHEMA}.${t.name}`, bytes: t.bytes }));
  } catch (e) {
    throw translatePgError(e, 'looking for staging tables');
  }
}

export async function dropStagingPostgres(c: Client): Promise<StagingArea[]> {
  const found = await stagingAreasPostgres(c);
  try {
    for (const s of found) await c.query(`DROP TABLE IF EXISTS ${qualified(s.where.slice(META_SCHEMA.length + 1))}`);
  } catch (e) {
    throw translatePgError(e, 'removing the staging tables');
  }
  return found;
}

/** The staging area ran out of room: nothing is kept, and the caller may rotate in one pass. */
function noRoom(e: unknown): MasterKeyError {
  return new MasterKeyError('DISK_FULL', 'The database has no room for the staging area of seal-ahead (disk full); it was removed.', {}, { cause: e });
}

/** A batch of staging rows, ready to write: by COPY (`fields`, the rows' fields) or by one INSERT from arrays (`params`). */
interface StagingBatch {
  readonly fields?: CopyField[][];
  readonly params?: Array<string | Buffer>;
  readonly n: number;
  readonly byKind: ReadonlyMap<string, number>;
  readonly values: number;
  readonly chars: number;
}

/** Seal-ahead (see the file's comment): reads on a second connection, writes the staging tables on `c`. */
export async function sealAheadPostgres(c: Client, url: string, s: SealAhead): Promise<Staged> {
  const batchSize = batchSizeOf(s);
  const plans = await planInventory(c, s.inventory);
  if (plans.some((p) => !p.idIndexed)) throw new MasterKeyError('INTERNAL', 'Seal-ahead needs a unique id on every secret table; this is a bug in the caller.');
  await dropStagingPostgres(c);
  const reader = await connect(url, { applicationName: 'master-key seal-ahead reader' });
  const crypto = valueCrypto({ from: s.from, to: s.to }, s);
  const counter = new KindCounter(s.inventory);
  const tables: StageTable[] = [];
  let done = 0;
  let ok = false;
  let tee: BackupTee | undefined;
  let sink: BackupSink | undefined;
  try {
    // The bulk of the backup: the snapshot's rows as they are read, written (and sealed) beside the staging.
    if (s.backup) {
      sink = await s.backup();
      tee = new BackupTee(s.inventory, await sink.create(AHEAD_FILE));
    }
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const snap = await reader.query<{ xmin: string }>('SELECT (txid_snapshot_xmin(txid_current_snapshot()) % 4294967296)::text AS xmin');
    const xmin = snap.rows[0].xmin;
    for (const [k, plan] of plans.entries()) {
      const name = `stage_${hexOf(s.to.fingerprint)}_${k}`;
      const { held, aads, news } = stageColumns(plan);
      const cols = [`id ${plan.idType} NOT NULL`, 'ver xid NOT NULL', ...held.map((x) => `${x} boolean`), ...[...aads, ...news].map((x) => `${x} text`)];
      await c.query(`CREATE UNLOGGED TABLE ${qualified(name)} (${cols.join(', ')})`);
      // The row versions as xid[], which columns held a value as bool[], the additional data and the new texts as text[].
      const columns = ['ver', ...held, ...aads, ...news];
      const types = ['xid', ...held.map(() => 'bool'), ...[...aads, ...news].map(() => 'text')];
      const insert = `INSERT INTO ${qualified(name)} (id, ${columns.join(', ')})
                        SELECT * FROM unnest($1::${plan.idType}[], ${types.map((t, i) => `$${i + 2}::${t}[]`).join(', ')})`;
      // A batch holding a large value, by COPY.
      const copy = `COPY ${qualified(name)} (id, ${columns.join(', ')}) FROM STDIN`;
      const shape = rowLayout(plan);
      // The row version, read after the row's texts.
      const versionAt = selectWidth(plan);
      const budget = new TextBudget();
      let rows = 0;
      const prepare = async (batch: Row[]): Promise<StagingBatch> => {
        const chars = textIn(batch);
        // The old texts, kept before re-sealing lets go of large documents' texts.
        const oldTexts = plan.columns.map((_, i) => batch.map((r) => r[shape.first + i]));
        const out = await resealBatch(batch, { shape, crypto });
        if (out.failures.length) throw undecryptable(plan.table, out.failures[0], out.failures.length - 1);
        // Every row read is staged, one with nothing sealed in it too (no new texts: the swap leaves it as it is), so the staging
        // tables hold every row the snapshot (and the backup's bulk) holds a value of, and the window finds any of them changed or gone.
        const sealedAt = new Map(out.rows.map((i, k) => [i, k]));
        const newText = (col: ReadonlyArray<CopyField>, i: number) => {
          const k = sealedAt.get(i);
          return k === undefined ? null : col[k];
        };
        const counts = { n: batch.length, byKind: out.byKind, values: out.total, chars };
        // A batch holding a large text (its new text is as large) goes by COPY, a slice at a time: as array parameters it would be
        // copied whole twice more (the arrays, then pg's message), hundreds of MB for one value of tens. Others by one INSERT from
        // arrays, built here, ahead.
        const large = chars > LARGE_VALUE && oldTexts.some((col) => col.some((v) => v !== null && v.length > LARGE_VALUE));
        if (large) {
          const aadAt = plan.aadColumns.map((a) => shape.aad.get(a)!);
          return { ...counts, fields: batch.map((r, i) => [r[shape.idAt], r[versionAt], ...oldTexts.map((col) => (col[i] === null ? null : 't')), ...aadAt.map((a) => r[a]), ...out.next.map((col) => newText(col, i))]) };
        }
        const params = [
          pgArray(batch.map((r) => r[shape.idAt])),
          binaryXidArray(batch.map((r) => r[versionAt])),
          ...oldTexts.map((col) => binaryTrueArray(col.map((v) => v !== null))),
          ...plan.aadColumns.map((a) => binaryTextArray(batch.map((r) => r[shape.aad.get(a)!]))),
          ...out.next.map((col) => binaryTextArray(batch.map((_, i) => newText(col, i)))),
        ];
        return { ...counts, params };
      };
      const read = teed(withinBudget(copyBatches(reader, `SELECT ${selectList(plan)}, xmin::text FROM ${quoteIdent(plan.table)} WHERE ${holdsValue(plan)}`, batchSize), budget, textIn), plan, tee);
      const staged = (b: StagingBatch) => {
        (b.fields ?? b.params ?? []).length = 0;
        rows += b.n;
        counter.add(b.byKind);
        s.onProgress?.((done += b.values));
        budget.give(b.chars);
        releaseLarge(b.chars);
      };
      // The next batch is read and sealed while the server inserts the one before (one more queued in pg's client): as the
      // one-pass writes its UPDATEs, so the tool and the server work at the same time. A COPY (a large value) goes alone.
      const writes = new WritesInFlight(STAGING_WRITES_AHEAD);
      await naming(plan, 'sealing ahead', async () => {
        try {
          for await (const b of mapAhead(read, prepare, crypto.depth)) {
            if (b.fields) {
              await writes.drain();
              await copyIn(c, copy, copyTextRows(b.fields));
              staged(b);
            } else await writes.add(async () => {
              if (b.n > 0) await c.query({ text: insert, values: b.params });
              staged(b);
            });
          }
          await writes.drain();
        } finally {
          await writes.settle();
        }
      });
      await c.query(`CREATE UNIQUE INDEX ON ${qualified(name)} (id)`);
      await c.query(`ANALYZE ${qualified(name)}`);
      const comment: StageComment = { tool: 'cdktf-master-key seal-ahead', fingerprint: s.to.fingerprint, rotationId: s.rotationId, table: plan.table, rows };
      await c.query(`COMMENT ON TABLE ${qualified(name)} IS ${literal(JSON.stringify(comment))}`);
      tables.push({ name, plan, rows });
    }
    await reader.query('ROLLBACK');
    let backup: Token['backup'];
    if (tee) {
      s.onBackup?.('copied');
      const part = await tee.finish();
      s.onBackup?.('written');
      backup = { files: part.files, values: part.values };
    }
    const size = await c.query<{ bytes: string }>(`SELECT coalesce(sum(pg_total_relation_size(to_regclass(n))), 0)::text AS bytes FROM unnest($1::text[]) AS n`, [tables.map((t) => qualified(t.name))]);
    const digest = await crypto.digest();
    ok = true;
    const token: Token = { kind: 'postgres-staging', tables, xmin, ...(backup ? { backup } : {}) };
    const rows = tables.reduce((a, t) => a + t.rows, 0);
    return stagedFor(s, { rows, values: counter.total, byKind: counter.byKind, bytes: Number(size.rows[0].bytes), digest, crypto: crypto.mode, token, ...(backup && sink ? { backedUp: { ...backup, sink } } : {}) });
  } catch (e) {
    const disk = (e as { code?: string }).code === '53100' || ((e as { cause?: { code?: string } }).cause?.code === '53100');
    throw disk ? noRoom(e) : translatePgError(e, 'sealing ahead');
  } finally {
    await crypto.close();
    await reader.query('ROLLBACK').catch(() => undefined);
    await reader.end().catch(() => undefined);
    if (!ok) {
      await tee?.abort();
      await dropStagingPostgres(c).catch(() => undefined);
    }
  }
}

/** The batches read, each appended to the backup (when there is one) before it goes on: one write in flight, in the order read. */
async function* teed(batches: AsyncIterable<Row[]>, plan: TablePlan, tee: BackupTee | undefined): AsyncGenerator<Row[]> {
  for await (const batch of batches) {
    if (tee) await tee.add(plan, batch);
    yield batch;
  }
}

/** A SQL string literal (standard_conforming_strings). */
function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

/** `id, value columns, AAD columns` as text, as `rowLayout` of an id-indexed plan lays a row out. */
function selectList(plan: TablePlan, alias = ''): string {
  return `${alias ? `${alias}.` : ''}${quoteIdent(plan.idColumn)}::text, ${valueColumns(plan, alias)}`;
}

/** The fields `selectList` reads. */
function selectWidth(plan: TablePlan): number {
  return 1 + plan.columns.length + plan.aadColumns.length;
}

/**
 * The live row `t` is the row version staged in `s`, so holds exactly the
 * texts staged (values and additional data). A row version's `xmin` is the
 * transaction that wrote it; the version the snapshot read was written by a
 * transaction that had committed, and so writes nothing more: any later
 * change to the row (an UPDATE, a DELETE and INSERT again under the same
 * id) is a new version with another transaction's `xmin`. Freezing keeps a
 * version's `xmin` as it reads. (A version written since that happens to
 * hold the same texts is re-sealed in the window, not swapped in.)
 */
const sameVersion = 't.xmin = s.ver';

/** The staging area of `r.staged`, checked: bound to `r.to`, made by this store, and intact (undefined: lost, rotate in one pass). */
export async function intactStaging(c: Client, r: Rotation): Promise<Token | undefined> {
  const staged = r.staged!;
  const token = staged.token as Token;
  if (staged.fingerprint !== r.to.fingerprint || token?.kind !== 'postgres-staging') {
    throw new MasterKeyError('INTERNAL', `A staging area sealed under ${staged.fingerprint} was offered to a rotation to ${r.to.fingerprint}; it is never used. This is a bug.`);
  }
  const found = new Map((await stagingTables(c)).map((t) => [t.name, t]));
  for (const t of token.tables) {
    const f = found.get(t.name);
    if (!f || f.comment?.fingerprint !== r.to.fingerprint || f.comment.rotationId !== staged.rotationId) return undefined;
    // An UNLOGGED table is emptied, whole, when the database restarts after a crash: then nothing staged can be trusted.
    // (Counting it would read it all inside the window; the reader's count below checks every row.)
    const n = await c.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${qualified(t.name)}) AS any`);
    if (n.rows[0].any !== t.rows > 0) return undefined;
  }
  return token;
}

/**
 * The cut-over (see the file's comment), in the caller's transaction on
 * `c`, which holds the rotation lock and has written nothing yet.
 */
export async function cutOver(c: Client, r: Rotation, token: Token, sink: BackupSink, url: string): Promise<RotationResult> {
  const staged = r.staged!;
  const batchSize = batchSizeOf(r);
  const plans = token.tables.map((t) => t.plan);
  try {
    await lockTables(c, plans);
  } catch (e) {
    throw translatePgError(e, 'locking the secret tables');
  }
  if (!/^\d+$/.test(token.xmin)) throw new MasterKeyError('INTERNAL', 'The staging area records an unexpected transaction id; this is a bug.');
  // Backed up ahead: only the changes since go into the backup here. Else the whole backup, the swap handing back the old texts.
  const ahead = token.backup;
  const tee = new BackupTee(r.inventory, await sink.create(ahead ? CHANGES_FILE : SECRETS_FILE));
  // Every staged value counts, less what is not swapped in (below), plus what is re-sealed here.
  const counter = new KindCounter(r.inventory);
  counter.add(Object.entries(staged.byKind));
  const notSwapped = new ValueDigest();
  // Staged rows that are not swapped in: their new texts leave the expected digest, their values the count.
  const unstage = (plan: TablePlan, rows: Row[]) =>
    eachValue(rows, rowLayout(plan), (v) => {
      notSwapped.add(plan.table, v.column, v.path, String(rows[v.row][0]), v.sealed);
      counter.add([[v.entry.kind, -1]]);
    });
  let progressed = 0;
  const progress = (n: number) => r.onProgress?.((progressed += n));
  const crypto = valueCrypto({ from: r.from, to: r.to }, r);
  let updated = 0;
  let swappedRows = 0;
  let ok = false;
  // With the backup made ahead, the swap writes no backup: a second connection, on this transaction's snapshot, reads and
  // re-seals what changed since while this one swaps (the swap leaves those rows alone, and they are written after it).
  let reader: Reader | undefined;
  try {
    reader = ahead ? await sinceReader(c, plans, url) : undefined;
    if (reader) await preferLookups(reader.client);
    for (const t of token.tables) {
      const { plan } = t;
      const { held, news, aads } = stageColumns(plan);
      const width = selectWidth(plan);
      // After the live row and the staged id: the staged new texts and additional data, then where the bulk held values.
      const heldAt = width + 1 + news.length + aads.length;
      let changedStaged = 0;
      // 1. Rows written since the snapshot that are not the row versions staged: backed up as read, re-sealed here. Each one's
      //    staged entry, if any, comes along (its id, new texts and additional data) and is not swapped in.
      const since = `SELECT ${selectList(plan, 't')}, s.id::text, ${[...news, ...aads, ...held].map((x) => `s.${x}`).join(', ')}
                       FROM ${quoteIdent(plan.table)} t LEFT JOIN ${qualified(t.name)} s ON s.id = t.${quoteIdent(plan.idColumn)}
                      WHERE ${holdsValue(plan, 't')} AND age(t.xmin) <= age('${token.xmin}'::xid)
                        AND NOT (s.id IS NOT NULL AND ${sameVersion})`;
      // The bulk made ahead held a value at a column of a row when the row was staged as holding one there.
      const heldAhead = ahead ? (row: Row, i: number) => row[width] !== null && row[heldAt + i] !== null : undefined;
      const resealChanged = async () => {
        const restore = reader ? async () => undefined : await preferLookups(c);
        const budget = new TextBudget();
        const rows = withinBudget(reader ? copyBatches(reader.client, since, batchSize) : cursorBatches(c, since, batchSize), budget, textIn);
        const seen = async function* () {
          for await (const batch of rows) {
            const gone = batch.filter((row) => row[width] !== null).map((row) => row.slice(width, heldAt));
            changedStaged += gone.length;
            unstage(plan, gone);
            await tee.add(plan, batch, heldAhead);
            for (const row of batch) row.length = width;
            yield batch;
          }
        };
        const prepared = prepareBatches(seen(), plan, crypto);
        // Read and re-sealed ahead (within the budget) while the writes wait for the swap.
        const batches = reader ? mapAhead(prepared, async (b) => b, CHANGED_AHEAD) : prepared;
        updated += await naming(plan, 're-encrypting what changed since seal-ahead in', () =>
          writeBatches(c, plan, batches, (byKind) => counter.add(byKind), progress, 1, budget),
        );
        await restore();
      };
      // 2. The swap, in one statement. Without a backup made ahead, its RETURNING hands back the old texts of exactly the rows it swaps: the backup.
      const sets = plan.columns.map((col, i) => `${quoteIdent(col.column)} = COALESCE(s.${news[i]}::${col.type}, t.${quoteIdent(col.column)})`);
      const swapFrom = (from: string) => `UPDATE ${quoteIdent(plan.table)} t SET ${sets.join(', ')} FROM ${from}
                     WHERE t.${quoteIdent(plan.idColumn)} = s.id AND ${sameVersion}`;
      let swapped = 0;
      const swap = () =>
        naming(plan, 'swapping in the staged values of', async () => {
          if (ahead) {
            swapped = (await c.query(swapFrom(`${qualified(t.name)} s`))).rowCount ?? 0;
            progress(swapped);
            return;
          }
          // The old texts are not staged: the same rows as the statement began (`o`, before it swaps them) hand them back.
          const before = `${qualified(t.name)} s JOIN ${quoteIdent(plan.table)} o ON o.${quoteIdent(plan.idColumn)} = s.id`;
          const returning = [...plan.columns.map((col) => `o.${quoteIdent(col.column)}::text`), ...aads.map((x) => `s.${x}`)];
          for await (const batch of copyBatches(c, `${swapFrom(before)} RETURNING s.id::text, ${returning.join(', ')}`, batchSize)) {
            swapped += batch.length;
            await tee.add(plan, batch);
            progress(batch.length);
          }
        });
      if (reader) {
        // The swap is sent first; the changed rows' writes queue behind it on this connection.
        await bothSettled(swap(), resealChanged());
      } else {
        await resealChanged();
        await swap();
      }
      updated += swapped;
      swappedRows += swapped;
      // 3. Staged rows neither swapped in nor changed are rows deleted since (or left without a value): found, only then, and accounted for
      //    (with a backup made ahead: no value at the lock where the bulk held one).
      const deleted = t.rows - swapped - changedStaged;
      if (deleted > 0) {
        const gone = `SELECT s.id::text, ${[...news, ...aads, ...held].map((x) => `s.${x}`).join(', ')} FROM ${qualified(t.name)} s
                       WHERE NOT EXISTS (SELECT 1 FROM ${quoteIdent(plan.table)} t WHERE t.${quoteIdent(plan.idColumn)} = s.id AND ${holdsValue(plan, 't')})`;
        const heldFrom = 1 + news.length + aads.length;
        let found = 0;
        for await (const batch of copyBatches(c, gone, batchSize)) {
          found += batch.length;
          if (ahead) {
            // As the backup's lines read them: the id, no value, no additional data; where the bulk held values after.
            const asRead = batch.map((row) => [row[0], ...plan.columns.map(() => null), ...plan.aadColumns.map(() => null), ...row.slice(heldFrom)]);
            await tee.add(plan, asRead, (row, i) => row[width + i] !== null);
          }
          unstage(
            plan,
            batch.map((row) => row.slice(0, heldFrom)),
          );
        }
        if (found !== deleted) throw stagingMismatch(plan, t, swapped, changedStaged, found);
      } else if (deleted < 0) throw stagingMismatch(plan, t, swapped, changedStaged, 0);
    }
    const digest = new ValueDigest();
    digest.merge(staged.digest);
    digest.subtract(notSwapped.result());
    digest.merge(await crypto.digest());
    const part = await tee.finish();
    ok = true;
    return {
      reencrypted: { total: counter.total, byKind: counter.byKind, updated, digest: digest.result(), crypto: crypto.mode },
      backup: ahead ? { files: [...ahead.files, ...part.files], values: ahead.values + part.values, locations: inventoryLocations(r.inventory) } : part,
      sealAhead: { used: true, swappedRows, resealedRows: updated - swappedRows },
    };
  } finally {
    await (ok ? reader?.close() : reader?.abort());
    await crypto.close();
    if (!ok) await tee.abort();
  }
}

/** Batches of changed rows read and re-sealed ahead of their writes (the text budget bounds them too). */
const CHANGED_AHEAD = 64;

/**
 * A second connection on this transaction's snapshot (taken after the lock: exactly the rows at the lock), to read what
 * changed since seal-ahead while this one swaps; undefined when the snapshot cannot be shared or no second connection can
 * be had (the database at its connection limit): then it is read on this one, first.
 */
async function sinceReader(c: Client, plans: readonly TablePlan[], url: string): Promise<Reader | undefined> {
  const snapshot = await exportSnapshot(c, plans.map((p) => quoteIdent(p.table)));
  return snapshot ? connectReader(url, snapshot).catch(() => undefined) : undefined;
}

/** Waits for both; then throws the first one's failure, else the second's. */
async function bothSettled(first: Promise<unknown>, second: Promise<unknown>): Promise<void> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === 'rejected') throw a.reason;
  if (b.status === 'rejected') throw b.reason;
}

/** The staged rows do not add up (swapped in + changed since + deleted since): the staging area is not what was staged. */
function stagingMismatch(plan: TablePlan, t: StageTable, swapped: number, changed: number, deleted: number): MasterKeyError {
  return new MasterKeyError(
    'DB_ERROR',
    `The staging area of ${plan.table} holds ${t.rows} rows, but ${swapped} were swapped in, ${changed} changed since seal-ahead and ${deleted} deleted since; nothing was changed: run the rotation again.`,
  );
}

/** For the query of what changed since: one index lookup in the staging table per candidate row, never a hash of all of it. */
async function preferLookups(c: Client): Promise<() => Promise<void>> {
  const prev = await c.query<{ h: string; m: string }>("SELECT current_setting('enable_hashjoin') AS h, current_setting('enable_mergejoin') AS m");
  await c.query("SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)");
  return async () => {
    if (c.getTransactionStatus() !== 'T') return;
    await c.query('SELECT set_config($1, $2, true), set_config($3, $4, true)', ['enable_hashjoin', prev.rows[0].h, 'enable_mergejoin', prev.rows[0].m]);
  };
}
