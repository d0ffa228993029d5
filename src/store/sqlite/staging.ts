/**
 * The SQLite store's seal-ahead and its cut-over (issue 20).
 *
 * The staging area is a database file of the tool's own beside the
 * server's (`<db>-mk-staging`, 0600), attached to the store's connection
 * as `mk_staging`: one table per secret table (`stage_<n>`: the row id,
 * the old texts of the value and additional-data columns, the new texts,
 * and for an old text of `DIGESTED_TEXT` characters or more its digest in
 * place of the text)
 * and a `meta` row binding it to the new key's fingerprint and the
 * rotation. Its own file, so staging never takes the server database's
 * write lock nor leaves it larger, and a leftover is one file to remove.
 *
 * Seal-ahead reads the server's database in one read transaction (WAL
 * mode only: in a rollback-journal mode that snapshot would block the
 * server's writers for as long as it lasts) and writes the staging file in
 * the same transaction. No live row changes.
 *
 * Cut-over, in the rotation's `BEGIN IMMEDIATE` transaction: one `UPDATE`
 * per table (in key ranges) swaps in the staged new texts where the stored
 * texts are still the staged ones, looking each row up in the staging table
 * as its scan meets it, and names the rows it leaves as they are; those
 * (added or changed since) are then re-sealed and written back by key. One
 * scan of each table, no `UPDATE … FROM` (which SQLite runs by copying
 * every new text into a temporary table first). The rows staged with
 * digests are swapped before it, a row at a time (`swapDigested`), and it
 * leaves them out.
 *
 * The backup (when the runbook hands seal-ahead its sink): the copy of the
 * database file is made in seal-ahead's snapshot, through the online backup
 * API on the same connection inside the same read transaction, so it holds
 * exactly the old texts staged; it is finished, made durable and sealed
 * beside the staging, with the server up. Every row with a value in that
 * snapshot is staged (with no new texts where nothing in it is sealed), so
 * the staging tables tell what the copy held at any place. The cut-over
 * then writes only `changes.sqlite` (`./backup.ts`): the values at the lock
 * of the rows it re-seals and of the staged rows gone since.
 */
import { createHash } from 'node:crypto';
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { sealedText } from '../../crypto/batch';
import { MasterKeyError } from '../../errors';
import { ValueDigest, textSha256 } from '../../engine/digest';
import { ResealedBatch, resealBatch, undecryptable } from '../../engine/reseal';
import { eachValue } from '../../engine/rows';
import { LARGE_BATCH, releaseLarge, textIn } from '../../engine/memory';
import { ValueCrypto, valueCrypto } from '../../engine/value-crypto';
import { KindCounter, ReencryptResult, batchSizeOf } from '../../engine/walk';
import { bytes as showBytes } from '../../format';
import { freeBytes } from '../../fsutil';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupSink, Rotation, SealAhead, SealAheadSupport, Staged, StagingArea, StoredFile, stagedFor } from '../store';
import { ChangesWriter, DATABASE_FILE, copyDatabase, finishBackup } from './backup';
import { storeCrypto } from './crypto';
import { Db, sqliteModule } from './driver';
import type { Flusher } from './flush';
import { SqliteTable, batches, notUtf8Documents, planTables } from './values';

export const STAGING_SCHEMA = 'mk_staging';

/** The staging file of the database at `path`. */
export function stagingFile(path: string): string {
  return `${path}-mk-staging`;
}

interface StageTable {
  readonly name: string;
  readonly table: SqliteTable;
  readonly rows: number;
  /** Ids (as text) of the rows staged with a digest of an old text (`h<i>`) instead of the text (`o<i>` NULL). */
  readonly digested: readonly string[];
}

/**
 * Characters from which a stored text is staged as its digest (SHA-256 of
 * its bytes) rather than a copy: binding a text of tens of megabytes again
 * makes SQLite hold several copies of it at once, and the swap would read it
 * twice (the staged copy and the live text) to compare them. The swap
 * compares such a row's digest with one of the live text's bytes instead,
 * a row at a time before the other rows (see `swapDigested`).
 */
const DIGESTED_TEXT = 1 << 20;

/** Rows of a table staged with digests at most (the swap names them in its statement): further large texts are staged as copies. */
const MAX_DIGESTED_ROWS = 4096;

/** The values (cells not NULL) of a batch's columns. A function of its own: a loop variable here would keep the batch's last text alive, on the stack of a long-running caller, however it is let go of. */
function valuesIn(columns: ReadonlyArray<readonly unknown[]>): number {
  let n = 0;
  for (const col of columns) for (const v of col) if (v !== null) n++;
  return n;
}


/** The bulk of the backup, written in seal-ahead's snapshot. */
interface BackedUp {
  readonly files: readonly StoredFile[];
  readonly values: number;
}

interface Token {
  readonly kind: 'sqlite-staging';
  readonly file: string;
  readonly tables: readonly StageTable[];
  readonly backup?: BackedUp;
}

const staged = (name: string) => `${STAGING_SCHEMA}.${quoteIdent(name)}`;

function isWal(db: Db): boolean {
  return String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal';
}

function attached(db: Db): boolean {
  return (db.prepare('SELECT count(*) FROM pragma_database_list WHERE name = ?').pluck().get(STAGING_SCHEMA) as number) > 0;
}

/** The id column's declared type, and whether it is the table's unique row id (the rowid's alias, a one-column primary key or unique index). */
function idColumnOf(db: Db, t: SqliteTable): { type: string; unique: boolean } {
  const info = db.prepare('SELECT name, type, pk FROM pragma_table_xinfo(?)').all(t.table) as Array<{ name: string; type: string; pk: number }>;
  const col = info.find((c) => c.name === t.idColumn);
  const pks = info.filter((c) => c.pk > 0);
  const soleKey = !!col && col.pk > 0 && pks.length === 1;
  const indexed = (db.prepare(
    `SELECT count(*) FROM pragma_index_list(?) il WHERE il."unique" AND il.partial = 0
        AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1 AND (SELECT name FROM pragma_index_info(il.name)) = ?`,
  ).pluck().get(t.table, t.idColumn) as number) > 0;
  return { type: col?.type ?? '', unique: soleKey || indexed };
}

/** WAL mode, a unique id on every table, and room beside the database file. */
export function sealAheadSupportSqlite(db: Db, path: string, inv: Inventory, need: number): SealAheadSupport {
  if (!isWal(db)) return { ok: false, byDefault: false, reason: "the database is in a rollback-journal mode, where seal-ahead's snapshot would block the server's writers for as long as it runs" };
  const loose = planTables(db, inv).filter((t) => !idColumnOf(db, t).unique).map((t) => `${t.table}.${t.idColumn}`);
  if (loose.length) return { ok: false, byDefault: false, reason: `no unique index on ${loose.join(', ')}, so staged values cannot be swapped in by row id` };
  const free = freeBytes(dirname(path));
  if (free < need) return { ok: false, byDefault: false, reason: `the database's directory has ${showBytes(free)} free but the staging area needs about ${showBytes(need)}`, freeBytes: free };
  return { ok: true, byDefault: true, reason: `staging in ${stagingFile(path)}, a database file of the tool's own beside the database`, freeBytes: free };
}

export function stagingAreasSqlite(db: Db, path: string): StagingArea[] {
  const file = stagingFile(path);
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return [];
  }
  let fingerprint = 'an unknown key';
  try {
    if (attached(db)) fingerprint = String(db.prepare(`SELECT fingerprint FROM ${STAGING_SCHEMA}.meta`).pluck().get() ?? fingerprint);
    else {
      // Left by another process: read on a connection of its own, never attached to this one.
      const Database = sqliteModule();
      const other = new Database(file, { readonly: true, fileMustExist: true });
      try {
        fingerprint = String(other.prepare('SELECT fingerprint FROM meta').pluck().get() ?? fingerprint);
      } finally {
        other.close();
      }
    }
  } catch {
    // a file left half-written: it is removed all the same
  }
  return [{ fingerprint, where: file, bytes: size }];
}

/** Detaches and removes the staging file (and its journal); what was there. Outside a transaction. */
export function dropStagingSqlite(db: Db, path: string): StagingArea[] {
  const found = stagingAreasSqlite(db, path);
  if (attached(db)) db.exec(`DETACH DATABASE ${STAGING_SCHEMA}`);
  const file = stagingFile(path);
  for (const f of [file, `${file}-journal`, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
  return found;
}

/** Seal-ahead (see the file's comment), on the store's connection outside any transaction of the caller's. */
export async function sealAheadSqlite(db: Db, path: string, s: SealAhead): Promise<Staged> {
  const batchSize = batchSizeOf(s);
  dropStagingSqlite(db, path);
  const file = stagingFile(path);
  const tables = planTables(db, s.inventory);
  const crypto = storeCrypto(s.from, s.to, s, true);
  // A batch of large texts is re-sealed on this thread: handing it to a worker thread and back would copy its texts twice more. Made when first needed.
  let here: ValueCrypto | undefined;
  const counter = new KindCounter(s.inventory);
  const out: StageTable[] = [];
  let done = 0;
  let ok = false;
  let ahead: Ahead | undefined;
  let sink: BackupSink | undefined;
  // Stored values of the snapshot (every non-NULL cell of the inventory's columns): what the backup's copy holds.
  let heldValues = 0;
  try {
    // Made here, empty and 0600 (an empty file is an empty database): the connection opens files it must not create.
    writeFileSync(file, '', { mode: 0o600, flag: 'wx' });
    db.prepare(`ATTACH DATABASE ? AS ${STAGING_SCHEMA}`).run(file);
    // A staging file left by a crash is removed, never read: no journal needed, nothing to sync.
    db.pragma(`${STAGING_SCHEMA}.journal_mode = OFF`);
    db.pragma(`${STAGING_SCHEMA}.synchronous = OFF`);
    // Large pages (set before the first table): a few hundred thousand rows of two sealed texts each are written in a tenth of the page writes and splits of the default 4 KiB.
    db.pragma(`${STAGING_SCHEMA}.page_size = ${STAGING_PAGE_SIZE}`);
    // Its rows are written and read in key order, so a small page cache does (the driver's default, 16 MB, kept large pages by the hundred).
    db.pragma(`${STAGING_SCHEMA}.cache_size = ${STAGING_CACHE_KIB}`);
    // `staged`: each table's staged rows as JSON, written last (NULL until then: a staging area left by a crash is never complete).
    db.exec(`CREATE TABLE ${STAGING_SCHEMA}.meta (fingerprint TEXT NOT NULL, rotation_id TEXT NOT NULL, staged TEXT)`);
    db.prepare(`INSERT INTO ${STAGING_SCHEMA}.meta VALUES (?, ?, NULL)`).run(s.to.fingerprint, s.rotationId);
    db.exec('BEGIN');
    // The snapshot starts at the first read of the server's database.
    db.prepare('SELECT count(*) FROM main.sqlite_schema').get();
    if (s.backup) {
      sink = await s.backup();
      ahead = backUpAhead(db, s, sink);
      // Awaited below (either way): never an unhandled rejection meanwhile.
      ahead.copied.catch(() => undefined);
      ahead.done.catch(() => undefined);
    }
    // Digests of texts stand for the texts they read from the database only where its text is UTF-8 (what the swap hashes is the stored bytes).
    const utf8 = String(db.pragma('encoding', { simple: true })).toUpperCase() === 'UTF-8';
    for (const [k, t] of tables.entries()) {
      const st = stageTable(db, t, k);
      for (const batch of batches(db, t, batchSize)) {
        const chars = textIn(batch);
        const olds = t.columns.map((_, i) => batch.map((r) => r[t.first + i]));
        heldValues += valuesIn(olds);
        const re = await resealBatch(batch, { shape: t, crypto: chars >= LARGE_BATCH ? (here ??= valueCrypto({ from: s.from, to: s.to })) : crypto });
        if (re.failures.length) throw undecryptable(t.table, re.failures[0], re.failures.length - 1);
        // Large old texts are staged as their digests: the texts go before the rows are written.
        const digests = t.columns.map(() => new Array<Buffer | null>(batch.length).fill(null));
        if (chars >= DIGESTED_TEXT) {
          for (let i = 0; i < batch.length; i++) {
            let any = false;
            olds.forEach((col, c) => {
              const v = col[i];
              if (!utf8 || typeof v !== 'string' || v.length < DIGESTED_TEXT || v.includes('\uFFFD') || st.digested.length >= MAX_DIGESTED_ROWS) return;
              digests[c][i] = textSha256(v);
              col[i] = null;
              batch[i][t.first + c] = null;
              any = true;
            });
            if (any) st.digested.push(String(batch[i][t.idAt]));
          }
          releaseLarge(chars);
        }
        st.write(batch, olds, re, digests, chars < LARGE_BATCH);
        counter.add(re.byKind);
        s.onProgress?.((done += re.total));
        // The batch's texts, old and new, go before the next is read.
        batch.length = 0;
        for (const col of [...olds, ...re.next]) (col as unknown[]).length = 0;
        releaseLarge(chars);
      }
      out.push({ name: st.name, table: t, rows: st.rows, digested: st.digested });
    }
    db.prepare(`UPDATE ${STAGING_SCHEMA}.meta SET staged = ?`).run(stagedRows(out));
    // The copy must be whole before the snapshot ends.
    await ahead?.copied;
    db.exec('COMMIT');
    // The pages this connection cached on the way (up to its cache size, 16 MB by default) go before the window, whose rows are read again there.
    db.pragma('shrink_memory');
    const files = await ahead?.done;
    const backup = files ? { files, values: heldValues } : undefined;
    const sum = new ValueDigest();
    sum.merge(await crypto.digest());
    if (here) sum.merge(await here.digest());
    const digest = sum.result();
    ok = true;
    const token: Token = { kind: 'sqlite-staging', file, tables: out, ...(backup ? { backup } : {}) };
    const rows = out.reduce((a, t) => a + t.rows, 0);
    return stagedFor(s, { rows, values: counter.total, byKind: counter.byKind, bytes: statSync(file).size, digest, crypto: crypto.mode, token, ...(backup && sink ? { backedUp: { ...backup, sink } } : {}) });
  } catch (e) {
    // Nothing of the backup's keeps running: the runbook removes its directory.
    await ahead?.copied.catch(() => undefined);
    await ahead?.done.catch(() => undefined);
    if (db.inTransaction) db.exec('ROLLBACK');
    const code = String((e as { code?: unknown }).code ?? '');
    if (code === 'SQLITE_FULL' || (e as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new MasterKeyError('DISK_FULL', `The disk holding ${file} has no room for the staging area of seal-ahead; it was removed.`, {}, { cause: e });
    }
    throw e;
  } finally {
    await crypto.close();
    await here?.close();
    if (!ok) {
      try {
        dropStagingSqlite(db, path);
      } catch {
        // removed by the next plan, apply or recover
      }
    }
  }
}

/** One staging table being written: what `StageTable` records, and its writer. */
interface Stage {
  readonly name: string;
  readonly table: SqliteTable;
  rows: number;
  readonly digested: string[];
  /**
   * Stages a batch: every row with a value, also one with nothing sealed
   * in it (no new texts: the swap leaves it as it is), so staging tells
   * what the backup's copy holds. `olds`, per column, each row's old text
   * (null where `digests` holds its digest); `grouped`: rows of small texts
   * go `INSERT_ROWS` to a statement.
   */
  write(batch: readonly unknown[][], olds: ReadonlyArray<readonly unknown[]>, re: ResealedBatch, digests: ReadonlyArray<ReadonlyArray<Buffer | null>>, grouped: boolean): void;
}

/** Creates the staging table of `t` (the `k`-th table), empty, in the staging file. */
function stageTable(db: Db, t: SqliteTable, k: number): Stage {
  const name = `stage_${k}`;
  const id = idColumnOf(db, t);
  const idDecl = /^INTEGER$/i.test(id.type) ? 'id INTEGER PRIMARY KEY' : `id ${id.type} PRIMARY KEY`;
  const cols = [...t.columns.map((_, i) => `o${i}`), ...t.aadColumns.map((_, i) => `a${i}`), ...t.columns.map((_, i) => `n${i}`), ...t.columns.map((_, i) => `h${i}`)];
  db.exec(`CREATE TABLE ${staged(name)} (${idDecl}, ${cols.join(', ')})${/^INTEGER$/i.test(id.type) ? '' : ' WITHOUT ROWID'}`);
  // A new text may come as its bytes (a re-sealed document or large value, `SealedText`): bound as a blob, stored as the same text (no string of it made here).
  const tuple = `(?${', ?'.repeat(t.columns.length + t.aadColumns.length)}${', CAST(? AS TEXT)'.repeat(t.columns.length)}${', ?'.repeat(t.columns.length)})`;
  const aadAt = t.aadColumns.map((a) => t.aad.get(a)!);
  // Parameters (per row: id, old texts, additional data, new texts, old texts' digests), filled in place: one row's, and `group` rows'.
  const width = 1 + 3 * t.columns.length + aadAt.length;
  const group = Math.max(1, Math.min(INSERT_ROWS, Math.floor(MAX_PARAMETERS / width)));
  const insert = db.prepare(`INSERT INTO ${staged(name)} VALUES ${tuple}`);
  const insertMany = db.prepare(`INSERT INTO ${staged(name)} VALUES ${new Array<string>(group).fill(tuple).join(', ')}`);
  const args = new Array<unknown>(width);
  const many = new Array<unknown>(group * width);
  const stage: Stage = {
    name,
    table: t,
    rows: 0,
    digested: [],
    write(batch, olds, re, digests, grouped) {
      const resealedAt = new Int32Array(batch.length).fill(-1);
      re.rows.forEach((i, j) => (resealedAt[i] = j));
      const put = (into: unknown[], k: number, i: number) => {
        const row = batch[i];
        const j = resealedAt[i];
        into[k++] = row[t.idAt];
        for (const col of olds) into[k++] = col[i];
        for (const a of aadAt) into[k++] = row[a];
        for (const col of re.next) into[k++] = j < 0 ? null : col[j];
        for (const col of digests) into[k++] = col[i];
      };
      let i = 0;
      // A large batch a row at a time: SQLite copies every text bound to a statement.
      if (grouped) {
        for (; i + group <= batch.length; i += group) {
          for (let g = 0; g < group; g++) put(many, g * width, i + g);
          insertMany.run(many);
        }
      }
      for (; i < batch.length; i++) {
        put(args, 0, i);
        insert.run(args);
      }
      stage.rows += batch.length;
      // The texts bound go with the batch.
      args.fill(undefined);
      many.fill(undefined);
    },
  };
  return stage;
}

/** Rows of small texts a staging INSERT writes at once (fewer where a row has many columns). */
const INSERT_ROWS = 64;

/** Parameters of one statement at most (SQLite's oldest limit, 999, whatever it was built with). */
const MAX_PARAMETERS = 999;

/** The staging file's page size: the largest SQLite has (its rows are written once, in key order, and read once by the swap in the same order). */
const STAGING_PAGE_SIZE = 65536;

/** The staging file's page cache, in KiB (negative: SQLite's unit for a size rather than a page count). */
const STAGING_CACHE_KIB = -2048;

/** The backup made ahead: `copied` once the copy is whole (the snapshot may end), `done` once it is finished, durable and sealed. */
interface Ahead {
  readonly copied: Promise<number>;
  readonly done: Promise<readonly StoredFile[]>;
}

/**
 * Starts the copy of the database into the backup's sink on `db`, which
 * is in seal-ahead's read transaction (the copy is its snapshot: the
 * backup API steps between turns of the event loop, beside the staging);
 * then finishes it (`finishBackup`: pages checked, a rollback journal) and
 * hands it over: checksummed and fsynced, or sealed, by the sink in a
 * thread of its own.
 */
function backUpAhead(db: Db, s: SealAhead, sink: BackupSink): Ahead {
  const copied = sink.scratch(DATABASE_FILE).then(async (dest) => ({ dest, pages: await copyDatabase(db, dest, AHEAD_PAGES_PER_STEP) }));
  const done = copied.then(async ({ dest, pages }) => {
    // Not counted here: the staging counts the same snapshot's values as it reads them.
    finishBackup(dest, s.inventory, pages, false);
    s.onBackup?.('copied');
    const file = await sink.adopt(DATABASE_FILE);
    s.onBackup?.('written');
    return [file];
  });
  return { copied: copied.then((c) => c.pages), done };
}

/** Pages the copy made ahead takes a step (16 MiB at SQLite's default page size): short steps, so the staging beside it on this thread keeps its workers fed. */
const AHEAD_PAGES_PER_STEP = 4096;

/**
 * One row re-sealed in the window, into the backup's changes: the value at
 * the lock of each column that holds one there or held one in the copy
 * (the staged old text), with the row's additional-data columns. `row` is
 * as the cut-over reads it: key, id text, values, additional data (`width`
 * ends them), staged flag, staged new texts, the id as stored, staged old texts.
 */
function backUpChanged(changes: ChangesWriter, t: SqliteTable, row: readonly unknown[], width: number): void {
  const n = t.columns.length;
  const wasStaged = row[width] === 1n || row[width] === 1;
  const id = row[width + 1 + n];
  const aad = t.aadColumns.length ? JSON.stringify(Object.fromEntries(t.aadColumns.map((a, i) => [a, (row[t.first + n + i] as string | null) ?? null]))) : null;
  t.columns.forEach((c, i) => {
    const had = wasStaged && row[width + 2 + n + i] !== null;
    const now = row[t.first + i];
    if (had || now !== null) changes.add(t.table, c.column, id, now, aad, had);
  });
}

/** What `meta.staged` records: each staging table's name and rows. */
function stagedRows(tables: readonly StageTable[]): string {
  return JSON.stringify(tables.map((t) => [t.name, t.rows]));
}

/** The staging area of `r.staged`, checked: bound to `r.to`, attached, and holding what was staged (undefined: rotate in one pass). */
export function intactStagingSqlite(db: Db, r: Rotation): Token | undefined {
  const st = r.staged!;
  const token = st.token as Token;
  if (st.fingerprint !== r.to.fingerprint || token?.kind !== 'sqlite-staging') {
    throw new MasterKeyError('INTERNAL', `A staging area sealed under ${st.fingerprint} was offered to a rotation to ${r.to.fingerprint}; it is never used. This is a bug.`);
  }
  if (!attached(db)) return undefined;
  const meta = db.prepare(`SELECT fingerprint, rotation_id AS rotationId, staged FROM ${STAGING_SCHEMA}.meta`).get() as { fingerprint: string; rotationId: string; staged: string | null } | undefined;
  if (meta?.fingerprint !== r.to.fingerprint || meta.rotationId !== st.rotationId) return undefined;
  // Not counted again here (a count reads every page of the staging tables, with the server down): the swap's counts must add up to these.
  if (meta.staged !== stagedRows(token.tables)) return undefined;
  return token;
}

/** `t` (the live row) still holds exactly the texts staged in `s`. */
function stillStaged(t: SqliteTable): string {
  const vals = t.columns.map((c, i) => `t.${quoteIdent(c.column)} IS s.o${i}`);
  const aads = t.aadColumns.map((c, i) => `CAST(t.${quoteIdent(c)} AS TEXT) IS s.a${i}`);
  return [...vals, ...aads].join(' AND ');
}

/**
 * A function of the store's connection the swap calls for each row it
 * leaves as it is (its stored texts are not the staged ones, or nothing was
 * staged for it): it records the row's key and returns NULL. Called only
 * for those rows, so the swap tells them apart without a scan of its own.
 */
const NOT_STAGED = 'mk_not_staged';

/**
 * The swap of one table, as one `UPDATE` without a `FROM` (SQLite runs an
 * `UPDATE … FROM` by first copying every new text into a temporary table):
 * each value column is set to the staged new text when the row's stored
 * texts are still the staged ones (a correlated lookup in the staging
 * table by id), else to itself, which SQLite does not write (it leaves a
 * cell rewritten with its own bytes alone); such rows go to `NOT_STAGED`.
 * The `WHERE` holds no subquery, so SQLite updates each row as its scan
 * meets it. Parameters: the key range [from, below) when `ranged`, then
 * the keys of `skipped` rows it leaves out (those staged with digests,
 * swapped before by `swapDigested`: a list of values, not a subquery).
 */
function swapStatement(t: SqliteTable, stage: string, ranged: boolean, skipped: number): string {
  const id = `t.${quoteIdent(t.idColumn)}`;
  const key = t.key === 'rowid' ? 't.rowid' : `t.${t.key}`;
  const col = (i: number) => `t.${quoteIdent(t.columns[i].column)}`;
  const match = `FROM ${stage} s WHERE s.id = ${id} AND ${stillStaged(t)}`;
  const keep = (i: number) => `coalesce(${NOT_STAGED}(${key}), ${col(i)})`;
  // The first column also tells a row left alone; one lookup while it holds a value (the staged text, or the value itself, is then never NULL).
  const first = `CASE WHEN ${col(0)} IS NOT NULL THEN coalesce((SELECT coalesce(s.n0, ${col(0)}) ${match}), ${keep(0)})
    WHEN EXISTS (SELECT 1 ${match}) THEN (SELECT s.n0 FROM ${stage} s WHERE s.id = ${id}) ELSE ${keep(0)} END`;
  const rest = t.columns.slice(1).map((c, k) => `${quoteIdent(c.column)} = coalesce((SELECT s.n${k + 1} ${match}), ${col(k + 1)})`);
  const held = t.columns.map((_, i) => `${col(i)} IS NOT NULL`).join(' OR ');
  return `UPDATE ${quoteIdent(t.table)} AS t SET ${[`${quoteIdent(t.columns[0].column)} = ${first}`, ...rest].join(', ')}
    WHERE ${ranged ? `${key} >= ? AND ${key} < ? AND ` : ''}(${held})${skipped ? ` AND ${key} NOT IN (?${', ?'.repeat(skipped - 1)})` : ''}`;
}

/**
 * The swap of the rows of `t` staged with digests (`StageTable.digested`),
 * before the others and a row at a time: a row still holding exactly what
 * was staged (each large text's bytes hash to the staged digest, and its
 * other texts and additional data are the staged ones) takes the staged new
 * texts, a column per statement, so SQLite holds one large text at a time;
 * a row changed since goes to `left`, re-sealed with the other rows left
 * alone. A row gone, or left without values, is counted with those removed
 * since. Returns the rows swapped and the keys of every such row still
 * holding a value (the swap of the others leaves them out).
 */
async function swapDigested(db: Db, t: SqliteTable, stage: string, ids: readonly string[], left: unknown[], onRow: () => void): Promise<{ swapped: number; keys: unknown[] }> {
  const keys: unknown[] = [];
  if (ids.length === 0) return { swapped: 0, keys };
  const table = quoteIdent(t.table);
  const key = t.key === 'rowid' ? 't.rowid' : `t.${t.key}`;
  const col = (i: number) => `t.${quoteIdent(t.columns[i].column)}`;
  // typeof() reads no text: no large text is read to tell whether it is there.
  const held = t.columns.map((_, i) => `typeof(${col(i)}) != 'null'`).join(' OR ');
  const same = [
    ...t.columns.map((_, i) => `CASE WHEN s.h${i} IS NULL THEN ${col(i)} IS s.o${i} ELSE typeof(${col(i)}) = 'text' END`),
    ...t.aadColumns.map((c, i) => `CAST(t.${quoteIdent(c)} AS TEXT) IS s.a${i}`),
  ].join(' AND ');
  const look = db
    .prepare(`SELECT ${key}, ${same}, ${t.columns.map((_, i) => `s.h${i}, typeof(s.n${i}) != 'null'`).join(', ')} FROM ${stage} s JOIN ${table} t ON t.${quoteIdent(t.idColumn)} = s.id WHERE s.id = ? AND (${held})`)
    .raw(true)
    .safeIntegers(true);
  const stored = t.columns.map((c) => db.prepare(`SELECT CAST(${quoteIdent(c.column)} AS BLOB) FROM ${table} WHERE ${t.key} = ?`).pluck().safeIntegers(true));
  const write = t.columns.map((c, i) => db.prepare(`UPDATE ${table} SET ${quoteIdent(c.column)} = (SELECT s.n${i} FROM ${stage} s WHERE s.id = ?) WHERE ${t.key} = ?`));
  /** The digest of the stored bytes of column `i` of the row at `k` (null: none stored), and their size. */
  const digestOf = (i: number, k: unknown): { digest: Buffer | null; size: number } => {
    const bytes = stored[i].get(k) as Buffer | null;
    return bytes === null ? { digest: null, size: 0 } : { digest: createHash('sha256').update(bytes).digest(), size: bytes.length };
  };
  let swapped = 0;
  for (const id of ids) {
    const row = look.get(id) as unknown[] | undefined;
    if (!row) continue;
    const k = row[0];
    keys.push(k);
    let still = row[1] === 1n;
    for (let i = 0; still && i < t.columns.length; i++) {
      const digest = row[2 + 2 * i] as Buffer | null;
      if (digest === null) continue;
      const now = digestOf(i, k);
      still = now.digest !== null && now.digest.equals(digest);
      // The bytes read go now, not at V8's next collection.
      releaseLarge(now.size);
    }
    if (!still) {
      left.push(k);
      continue;
    }
    for (let i = 0; i < t.columns.length; i++) if (row[3 + 2 * i] === 1n) write[i].run(id, k);
    swapped++;
    onRow();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { swapped, keys };
}

/** Rows a swap statement takes at a time: between two, what SQLite wrote is flushed to disk (`Flusher`) and progress reported. */
const SWAP_CHUNK_BATCHES = 8;

/** The integer key ranges [from, below) a table's swap runs in, about `rows` rows each (one unbounded range for other keys). */
function swapRanges(db: Db, t: SqliteTable, stagedRows: number, rows: number): Array<[bigint, bigint] | undefined> {
  const [lo, hi] = ['min', 'max'].map((f) => db.prepare(`SELECT ${f}(${t.key}) FROM ${quoteIdent(t.table)}`).pluck().safeIntegers(true).get());
  if (typeof lo !== 'bigint' || typeof hi !== 'bigint') return [undefined];
  const parts = BigInt(Math.max(1, Math.ceil(stagedRows / rows)));
  const width = (hi - lo + parts) / parts;
  const out: Array<[bigint, bigint]> = [];
  for (let from = lo; from <= hi; from += width) out.push([from, from + width]);
  return out;
}

/**
 * The cut-over (see the file's comment), in the caller's write transaction,
 * which has written nothing yet. `flusher` writes what SQLite wrote out to
 * disk between swap statements. With `changes` (the backup was copied in
 * seal-ahead's snapshot), the values at the lock of every row re-sealed
 * here and of every staged row gone since go there.
 */
export async function cutOverSqlite(db: Db, r: Rotation, token: Token, flusher?: Flusher, changes?: ChangesWriter): Promise<ReencryptResult & { swappedRows: number; resealedRows: number }> {
  const st = r.staged!;
  const batchSize = batchSizeOf(r);
  const crypto = storeCrypto(r.from, r.to, r, false);
  const counter = new KindCounter(r.inventory);
  counter.add(Object.entries(st.byKind));
  const notSwapped = new ValueDigest();
  let left: unknown[] = [];
  // Only the swap's own statements can call it (never a trigger or view of the database's schema).
  db.function(NOT_STAGED, { deterministic: false, directOnly: true, safeIntegers: true }, (key: unknown) => {
    left.push(key);
    return null;
  });
  let resealed = 0;
  let swappedRows = 0;
  let progressed = 0;
  try {
    for (const { name, table: t, rows: stagedRows, digested } of token.tables) {
      const cols = t.columns.map((c) => `t.${quoteIdent(c.column)}`);
      const aad = t.aadColumns.map((c) => `CAST(t.${quoteIdent(c)} AS TEXT)`);
      const news = t.columns.map((_, i) => `s.n${i}`);
      const key = t.key === 'rowid' ? 't.rowid' : `t.${t.key}`;
      const held = cols.map((c) => `${c} IS NOT NULL`).join(' OR ');
      // The swap: every row whose stored texts are still the staged ones takes the staged new texts; the others are left for below.
      left = [];
      // First the rows staged with digests, a row at a time; the changed ones join the rows left alone.
      const large = await swapDigested(db, t, staged(name), digested, left, () => r.onProgress?.(++progressed));
      let swapped = large.swapped;
      const ranges = swapRanges(db, t, stagedRows, SWAP_CHUNK_BATCHES * batchSize);
      const swap = db.prepare(swapStatement(t, staged(name), ranges[0] !== undefined, large.keys.length));
      for (const range of ranges) {
        const before = left.length;
        const changes = (range ? swap.run(range[0], range[1], ...large.keys) : swap.run(...large.keys)).changes;
        swapped += changes - (left.length - before);
        r.onProgress?.((progressed += changes - (left.length - before)));
        flusher?.tick();
        // Lets the flush and the backup's messages through between statements.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      swappedRows += swapped;
      // The rows left alone (added or changed since seal-ahead), read by key a batch at a time (with the staged new texts of those staged before), re-sealed and written back.
      // Whether the copy held a value: its old text or its digest.
      const olds = t.columns.map((_, i) => `coalesce(s.o${i}, s.h${i})`);
      const one = db
        .prepare(`SELECT ${key}, CAST(t.${quoteIdent(t.idColumn)} AS TEXT), ${[...cols, ...aad].join(', ')}, s.id IS NOT NULL, ${news.join(', ')}, t.${quoteIdent(t.idColumn)}, ${olds.join(', ')}
             FROM ${quoteIdent(t.table)} t LEFT JOIN ${staged(name)} s ON s.id = t.${quoteIdent(t.idColumn)} WHERE ${key} = ?`)
        .raw(true)
        .safeIntegers(true);
      const write = db.prepare(`UPDATE ${quoteIdent(t.table)} SET ${t.columns.map((c) => `${quoteIdent(c.column)} = coalesce(?, ${quoteIdent(c.column)})`).join(', ')} WHERE ${t.key} = ?`);
      const width = t.first + t.columns.length + t.aadColumns.length;
      const documentsAsStored = notUtf8Documents(db, t);
      let stagedChanged = 0;
      for (let at = 0; at < left.length; at += batchSize) {
        const rows = left.slice(at, at + batchSize).map((k) => one.get(k) as unknown[]);
        documentsAsStored(rows);
        // The backup: each row's values as they are at the lock (the copy held the staged old texts, or nothing for a row not staged).
        if (changes) for (const row of rows) backUpChanged(changes, t, row, width);
        // What was staged for these rows is not swapped in: out of the expected digest and counts.
        const was = rows.filter((row) => row[width] === 1n || row[width] === 1).map((row) => [row[0], row[1], ...row.slice(width + 1), ...row.slice(t.first + t.columns.length, width)]);
        stagedChanged += was.length;
        eachValue(was, t, (v) => {
          notSwapped.add(t.table, v.column, v.path, String(was[v.row][t.idAt]), v.sealed);
          counter.add([[v.entry.kind, -1]]);
        });
        const re = await resealBatch(rows, { shape: t, crypto });
        if (re.failures.length) throw undecryptable(t.table, re.failures[0], re.failures.length - 1);
        re.rows.forEach((i, j) => write.run(...re.next.map((col) => (col[j] === null ? null : sealedText(col[j]!))), rows[i][0]));
        resealed += re.rows.length;
        counter.add(re.byKind);
        r.onProgress?.((progressed += re.total));
      }
      let gone = 0;
      if (stagedRows - swapped > stagedChanged) {
        // Rows deleted, or left without values, since seal-ahead: what was staged for them leaves the expected digest and counts.
        const deleted = db
          .prepare(
            `SELECT NULL, CAST(s.id AS TEXT), ${news.join(', ')}, ${t.aadColumns.map((_, i) => `s.a${i}`).join(', ') || 'NULL'}, s.id, ${olds.join(', ')} FROM ${staged(name)} s
              WHERE NOT EXISTS (SELECT 1 FROM ${quoteIdent(t.table)} t WHERE t.${quoteIdent(t.idColumn)} = s.id AND (${held}))`,
          )
          .raw(true)
          .safeIntegers(true)
          .all() as unknown[][];
        gone = deleted.length;
        // The backup: no value at the lock where the copy held one.
        const idAt = 2 + t.columns.length + Math.max(1, t.aadColumns.length);
        if (changes) for (const row of deleted) t.columns.forEach((c, i) => row[idAt + 1 + i] !== null && changes.add(t.table, c.column, row[idAt], null, null, true));
        eachValue(deleted, t, (v) => {
          notSwapped.add(t.table, v.column, v.path, String(deleted[v.row][t.idAt]), v.sealed);
          counter.add([[v.entry.kind, -1]]);
        });
      }
      if (swapped + stagedChanged + gone !== stagedRows) {
        throw new MasterKeyError('DB_ERROR', `${t.table}: of ${stagedRows} staged rows, ${swapped} were swapped in, ${stagedChanged} changed and ${gone} removed since; they do not add up, so nothing was changed: run the rotation again.`);
      }
    }
    const digest = new ValueDigest();
    digest.merge(st.digest);
    digest.subtract(notSwapped.result());
    digest.merge(await crypto.digest());
    return { total: counter.total, byKind: counter.byKind, updated: resealed + swappedRows, digest: digest.result(), crypto: crypto.mode, swappedRows, resealedRows: resealed };
  } finally {
    left = [];
    await crypto.close();
    await flusher?.close();
  }
}
