/**
 * The PostgreSQL store's part of a backup: every stored value of the
 * inventory's columns, exactly as stored, one JSON line each
 * (`{"t": table, "c": column, "id": id, "v": value}`, plus `"a": {column:
 * text}` with the row's additional-data columns when the location's entries
 * name any), and putting them back.
 */
import { closeSync, createReadStream, fsyncSync, openSync, writeSync } from 'node:fs';
import { FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { ClientBase } from 'pg';
import { MasterKeyError } from '../../errors';
import { count } from '../../format';
import { to as copyTo } from 'pg-copy-streams';
import type { TablePlan } from '../../engine/stream-plan';
import type { Row } from '../../engine/stream-source';
import { rowLayout, steerPlanner } from '../../engine/stream-sql';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupPart, BackupToRestore, Location, RestoreCounts, RestoreDecision, aadColumnsAt, ScratchCopy, ValuePair, backupFileError, inventoryLocations } from '../store';
import { valueWriter } from './rows';

export const SECRETS_FILE = 'secrets.jsonl';
const DEFAULT_BATCH = 5000;

/**
 * One JSON line per stored value, built by PostgreSQL and copied out as it
 * is: CSV with a quote and a delimiter that JSON text never holds (it
 * escapes every control character), so no field is ever quoted and each
 * output line is exactly one JSON document.
 */
function backupCopySql(loc: Location, aad: readonly string[]): string {
  const col = quoteIdent(loc.column);
  const a = aad.length ? `, 'a', json_build_object(${aad.map((x) => `${literal(x)}, ${quoteIdent(x)}::text`).join(', ')})` : '';
  const line = `json_build_object('t', ${literal(loc.table)}, 'c', ${literal(loc.column)}, 'id', ${quoteIdent(loc.idColumn)}::text, 'v', ${col}::text${a})::text`;
  return `COPY (SELECT ${line} FROM ${quoteIdent(loc.table)} WHERE ${col} IS NOT NULL) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')`;
}

const NEWLINE = 0x0a;

/**
 * Writes every value of the inventory's locations, as the client's open
 * transaction sees them, to `dir/secrets.jsonl` (0600, fsynced): one line
 * per value, `{"t": table, "c": column, "id": id, "v": value[, "a": {…}]}`,
 * streamed from COPY straight to the file.
 */
export async function backupValues(c: ClientBase, inv: Inventory, dir: string): Promise<BackupPart> {
  const locations = inventoryLocations(inv);
  const path = join(dir, SECRETS_FILE);
  let values = 0;
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    throw backupFileError(e, path);
  }
  try {
    for (const loc of locations) {
      const stream = c.query(copyTo(backupCopySql(loc, aadColumnsAt(inv, loc))));
      let failed: unknown;
      for await (const chunk of stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, nl + 1)) values++;
        try {
          writeSync(fd, chunk);
        } catch (e) {
          failed = backupFileError(e, path);
          break;
        }
      }
      if (failed) {
        // Let the rest of the COPY flow to nowhere, so the connection sees its end and stays usable for the rollback.
        stream.resume();
        await finished(stream).catch(() => undefined);
        throw failed;
      }
    }
    try {
      fsyncSync(fd);
    } catch (e) {
      throw backupFileError(e, path);
    }
  } finally {
    closeSync(fd);
  }
  return { files: [SECRETS_FILE], values, locations };
}

/** A JSON string as PostgreSQL's json functions write it (for valid UTF-8 text, the same escapes as JSON.stringify). */
const jsonText = (v: string | null): string => (v === null ? 'null' : JSON.stringify(v));

/** Characters a JSON string escapes. */
const JSON_ESCAPED = /["\\\u0000-\u001f]/;
const QUOTE = 0x22;

/**
 * Bytes built up for one write, in a buffer that grows (no string per
 * line: at a million values, building and joining strings costs seconds).
 */
class LineBuffer {
  buf = Buffer.allocUnsafe(1 << 18);
  at = 0;
  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }
  /** Appends `text` as UTF-8 (trusted: already JSON). */
  raw(text: string): void {
    this.room(3 * text.length);
    this.at += this.buf.write(text, this.at, 'utf8');
  }
  /** Appends `v` as a JSON string (null: `null`). */
  json(v: string | null): void {
    if (v === null || JSON_ESCAPED.test(v)) return this.raw(jsonText(v));
    this.room(3 * v.length + 2);
    this.buf[this.at++] = QUOTE;
    this.at += this.buf.write(v, this.at, 'utf8');
    this.buf[this.at++] = QUOTE;
  }
}

/** Where a location's value and additional data are in the rows the re-encryption reads, and its lines' start. */
interface TeeColumn {
  /** `{"t" : …, "c" : …, "id" : ` */
  readonly head: string;
  readonly id: number;
  readonly at: number;
  readonly aad: ReadonlyArray<readonly [name: string, at: number]>;
}

/** Bytes written between two flushes to disk started in the background, so the last one before COMMIT has little left to do. */
const SYNC_EVERY = 64 * 1024 * 1024;

/**
 * The backup written from the rows the re-encryption reads, as it reads
 * them (`ReencryptOptions.onRead`), instead of a second scan: the same
 * secrets.jsonl, line for line what `backupCopySql` makes (each batch's
 * values grouped by column, so a reader's batches stay large), and by
 * construction exactly the values the transaction rewrites. One write in
 * flight at a time (the reading waits for the previous batch's write, so
 * memory stays bounded), a background flush to disk now and then, and an
 * fsync in `finish`, which the re-encryption awaits before it returns.
 */
export class BackupTee {
  /** Resolves with the backup's part once `finish` has flushed the file to disk; rejects with the first error. */
  readonly done: Promise<BackupPart>;
  private readonly path: string;
  private readonly file: Promise<FileHandle>;
  private readonly columns = new Map<TablePlan, TeeColumn[]>();
  private writing: Promise<void> = Promise.resolve();
  private syncing: Promise<void> = Promise.resolve();
  private unsynced = 0;
  private values = 0;
  private settle!: { resolve: (p: BackupPart) => void; reject: (e: unknown) => void };

  constructor(
    private readonly inv: Inventory,
    dir: string,
  ) {
    this.path = join(dir, SECRETS_FILE);
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined);
    this.file = open(this.path, 'wx', 0o600).catch((e: unknown) => {
      throw backupFileError(e, this.path);
    });
    this.file.catch(() => undefined);
  }

  /** Appends the values of a batch of `plan`'s rows (as `selectSql(plan)` reads them). */
  readonly add = async (plan: TablePlan, rows: readonly Row[]): Promise<void> => {
    const out = new LineBuffer();
    let n = 0;
    for (const col of this.layout(plan)) {
      for (const row of rows) {
        const v = row[col.at];
        if (v === null) continue;
        out.raw(col.head);
        out.json(row[col.id]);
        out.raw(', "v" : ');
        out.json(v);
        col.aad.forEach(([name, at], i) => {
          out.raw(i === 0 ? `, "a" : {${name} : ` : `, ${name} : `);
          out.json(row[at]);
        });
        out.raw(col.aad.length ? '}}\n' : '}\n');
        n++;
      }
    }
    if (n === 0) return;
    this.values += n;
    const bytes = out.buf.subarray(0, out.at);
    await this.writing;
    const fh = await this.file;
    this.writing = this.wrap(fh.writeFile(bytes));
    this.writing.catch(() => undefined);
    this.unsynced += bytes.length;
    if (this.unsynced >= SYNC_EVERY) {
      this.unsynced = 0;
      await this.syncing;
      const w = this.writing;
      this.syncing = this.wrap(w.then(() => fh.datasync()));
      this.syncing.catch(() => undefined);
    }
  };

  /** Waits for every write, flushes the file to disk and closes it; then `done` resolves. Throws DISK_FULL or BACKUP_UNWRITABLE (then call `fail`). */
  async finish(): Promise<void> {
    const fh = await this.file;
    await this.writing;
    await this.syncing;
    await this.wrap(fh.sync());
    await this.wrap(fh.close());
    this.settle.resolve({ files: [SECRETS_FILE], values: this.values, locations: inventoryLocations(this.inv) });
  }

  /** Ends the backup with `e` (the re-encryption failed, or a write did): closes the file; `done` rejects with `e`. */
  async fail(e: unknown): Promise<void> {
    await Promise.allSettled([this.writing, this.syncing]);
    await this.file.then((fh) => fh.close()).catch(() => undefined);
    this.settle.reject(e);
  }

  private wrap(p: Promise<unknown>): Promise<void> {
    return p.then(
      () => undefined,
      (e: unknown) => {
        throw backupFileError(e, this.path);
      },
    );
  }

  private layout(plan: TablePlan): TeeColumn[] {
    let cols = this.columns.get(plan);
    if (!cols) {
      const at = rowLayout(plan);
      cols = plan.columns.map((c, i) => ({
        head: `{"t" : ${jsonText(plan.table)}, "c" : ${jsonText(c.column)}, "id" : `,
        id: at.id,
        at: at.first + i,
        aad: aadColumnsAt(this.inv, { table: plan.table, column: c.column }).map((name) => {
          const j = at.aad.get(name);
          if (j === undefined) throw new MasterKeyError('INTERNAL', `The AAD column ${name} was not read with the row; this is a bug.`);
          return [jsonText(name), j] as const;
        }),
      }));
      this.columns.set(plan, cols);
    }
    return cols;
  }
}

/** Iterates the stored values of a backup in batches (bounded memory). */
/** One stored value of a backup's values file. */
export interface BackupLine {
  /** Table, column, row id, the value as stored, and (entries with AAD) the row's AAD columns as text. */
  readonly t: string;
  readonly c: string;
  readonly id: string;
  readonly v: string;
  readonly a?: Record<string, string | null>;
}

/** Line `n` of a backup's values file (`file`), parsed and checked: strings where the loader needs them. */
export function backupLine(line: string, n: number, file: string): BackupLine {
  let o: Partial<Record<keyof BackupLine, unknown>> | null;
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    throw new MasterKeyError('BACKUP_CORRUPT', `Line ${n} of ${file} is not valid JSON; the backup cannot be restored.`);
  }
  const a = o?.a;
  const aadOk = a === undefined || (a !== null && typeof a === 'object' && !Array.isArray(a) && Object.values(a).every((x) => x === null || typeof x === 'string'));
  if (!o || typeof o.t !== 'string' || typeof o.c !== 'string' || typeof o.id !== 'string' || typeof o.v !== 'string' || !aadOk) {
    throw new MasterKeyError('BACKUP_CORRUPT', `Line ${n} of ${file} is not a stored value (table, column, id and value as text); the backup cannot be restored.`);
  }
  return o as BackupLine;
}

async function forEachBackupBatch(dir: string, batchSize: number, fn: (loc: { table: string; column: string }, rows: Array<[string, string, string | null]>) => Promise<void>): Promise<number> {
  const rl = createInterface({ input: createReadStream(join(dir, SECRETS_FILE), 'utf8'), crlfDelay: Infinity });
  let cur: { table: string; column: string } | undefined;
  let rows: Array<[string, string, string | null]> = [];
  let n = 0;
  const flush = async () => {
    if (cur && rows.length) await fn(cur, rows);
    rows = [];
  };
  for await (const line of rl) {
    if (!line) continue;
    const o = backupLine(line, n + 1, join(dir, SECRETS_FILE));
    if (!cur || cur.table !== o.t || cur.column !== o.c) {
      await flush();
      cur = { table: o.t, column: o.c };
    }
    rows.push([o.id, o.v, o.a ? JSON.stringify(o.a) : null]);
    n++;
    if (rows.length >= batchSize) await flush();
  }
  await flush();
  return n;
}

const locKey = (loc: { table: string; column: string }) => `${loc.table}\0${loc.column}`;

/** The temporary table a restore or drill loads the backup into: private to the session, dropped when the transaction ends. */
const LOADED = 'pg_temp.mk_backup_values';

/**
 * Loads the backup's values into a temporary table (dropped at the end of
 * the client's open transaction), checking them against the manifest:
 * BACKUP_CORRUPT when it holds a location the manifest does not list or
 * another number of values. Returns how many.
 */
async function loadBackup(c: ClientBase, backup: BackupToRestore, batchSize: number): Promise<number> {
  const known = new Set(backup.part.locations.map(locKey));
  await c.query(`CREATE TEMPORARY TABLE mk_backup_values (t text NOT NULL, c text NOT NULL, id text NOT NULL, v text NOT NULL, a jsonb) ON COMMIT DROP`);
  const values = await forEachBackupBatch(backup.dir, batchSize, async (loc, rows) => {
    if (!known.has(locKey(loc))) throw new MasterKeyError('BACKUP_CORRUPT', `The backup holds values for ${loc.table}.${loc.column}, which its manifest does not list; it cannot be restored.`);
    await c.query(`INSERT INTO ${LOADED} (t, c, id, v, a) SELECT $1, $2, i, v, a::jsonb FROM unnest($3::text[], $4::text[], $5::text[]) AS x(i, v, a)`, [
      loc.table,
      loc.column,
      rows.map((r) => r[0]),
      rows.map((r) => r[1]),
      rows.map((r) => r[2]),
    ]);
  });
  if (values !== backup.part.values) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup lists ${count(backup.part.values)} values but holds ${count(values)}; it cannot be restored.`);
  }
  await c.query(`CREATE INDEX ON ${LOADED} (t, c, id)`);
  await c.query(`ANALYZE ${LOADED}`);
  return values;
}

/** A SQL string literal of an identifier-like name (inventory names are plain identifiers, see quoteIdent). */
function literal(name: string): string {
  quoteIdent(name);
  return `'${name}'`;
}

let cursorSeq = 0;

/**
 * Restore, store side (`WriteTx.restoreFrom`), inside the client's open
 * transaction: loads the backup, then for each location pairs backed-up and
 * live values by row id (a full join), hands them to `decide` in batches and
 * writes back what it returns.
 */
export async function restoreFrom(c: ClientBase, backup: BackupToRestore, inv: Inventory, decide: RestoreDecision, batchSize = DEFAULT_BATCH): Promise<RestoreCounts> {
  const backupValues = await loadBackup(c, backup, batchSize);
  let pairs = 0;
  let written = 0;
  for (const loc of backup.part.locations) {
    const write = await valueWriter(c, loc);
    const cur = `mk_restore_${++cursorSeq}`;
    const id = quoteIdent(loc.idColumn);
    const col = quoteIdent(loc.column);
    const aad = aadColumnsAt(inv, loc);
    await c.query(
      `DECLARE ${cur} NO SCROLL CURSOR FOR
         SELECT coalesce(l.id, b.id) AS id, l.v AS live, b.v AS backup${aad.map((_, i) => `, l.a${i}`).join('')}
           FROM (SELECT ${id}::text AS id, ${col}::text AS v${aad.map((x, i) => `, ${quoteIdent(x)}::text AS a${i}`).join('')} FROM ${quoteIdent(loc.table)} WHERE ${col} IS NOT NULL) l
           FULL JOIN (SELECT id, v FROM ${LOADED} WHERE t = ${literal(loc.table)} AND c = ${literal(loc.column)}) b ON b.id = l.id`,
    );
    // Planned; now steer the batch UPDATEs to one index lookup per row (see steerPlanner).
    const unsteer = await steerPlanner(c);
    try {
      for (;;) {
        const r = await c.query<Record<string, string | null>>(`FETCH ${batchSize} FROM ${cur}`);
        if (r.rows.length === 0) break;
        const batch: ValuePair[] = r.rows.map((x) => ({
          id: x.id!,
          ...(x.live !== null ? { live: x.live } : {}),
          ...(x.backup !== null ? { backup: x.backup } : {}),
          ...(aad.length && x.live !== null ? { aad: Object.fromEntries(aad.map((name, i) => [name, x[`a${i}`]])) } : {}),
        }));
        pairs += batch.length;
        const next = await decide(loc, batch);
        const rows: Array<[string, string]> = [];
        next.forEach((text, i) => {
          if (text !== undefined) rows.push([batch[i].id, text]);
        });
        written += await write(rows);
        if (r.rows.length < batchSize) break;
      }
    } finally {
      await c.query(`CLOSE ${cur}`).catch(() => undefined);
      await unsteer();
    }
  }
  return { backupValues, pairs, written };
}

/**
 * A restore drill (`Store.drill`) inside the client's open transaction,
 * which the caller always rolls back: loads the backup, and copies each
 * backed-up table's values into a temporary table of its own (id text
 * primary key; each column text, or jsonb when the inventory reads JSON
 * documents from it, so a document that is not valid JSON fails here as it
 * would in the live table).
 */
export async function scratchCopy(c: ClientBase, backup: BackupToRestore, inv: Inventory, batchSize = DEFAULT_BATCH): Promise<ScratchCopy> {
  const values = await loadBackup(c, backup, batchSize);
  const byTable = new Map<string, { scratch: string; columns: Map<string, string>; aad: Set<string> }>();
  for (const loc of backup.part.locations) {
    let t = byTable.get(loc.table);
    if (!t) byTable.set(loc.table, (t = { scratch: `pg_temp.mk_drill_${byTable.size + 1}`, columns: new Map(), aad: new Set() }));
    const json = inv.entries.some((e) => e.table === loc.table && e.column === loc.column && e.jsonPath !== undefined);
    t.columns.set(loc.column, json ? 'jsonb' : 'text');
    for (const a of aadColumnsAt(inv, loc)) t.aad.add(a);
  }
  for (const [table, t] of byTable) {
    const aad = [...t.aad].filter((a) => !t.columns.has(a));
    const cols = [...[...t.columns].map(([name, type]) => `${quoteIdent(name)} ${type}`), ...aad.map((a) => `${quoteIdent(a)} text`)];
    await c.query(`CREATE TEMPORARY TABLE ${t.scratch.slice('pg_temp.'.length)} (id text PRIMARY KEY, ${cols.join(', ')}) ON COMMIT DROP`);
    for (const [name, type] of t.columns) {
      const col = quoteIdent(name);
      // The row's additional data comes with its backed-up values.
      const a = aad.map((x) => ({ col: quoteIdent(x), val: `a->>${literal(x)}` }));
      await c.query(
        `INSERT INTO ${t.scratch} (id, ${[col, ...a.map((x) => x.col)].join(', ')}) SELECT id, ${[`v::${type}`, ...a.map((x) => x.val)].join(', ')} FROM ${LOADED} WHERE t = ${literal(table)} AND c = ${literal(name)}
           ON CONFLICT (id) DO UPDATE SET ${[`${col} = EXCLUDED.${col}`, ...a.map((x) => `${x.col} = coalesce(EXCLUDED.${x.col}, ${t.scratch.slice('pg_temp.'.length)}.${x.col})`)].join(', ')}`,
      );
    }
  }
  const live = new Map([...byTable].map(([table, t]) => [t.scratch, table]));
  return {
    inventory: {
      name: `${inv.name} (scratch copy of a backup)`,
      entries: inv.entries.filter((e) => byTable.has(e.table)).map((e) => ({ ...e, table: byTable.get(e.table)!.scratch, idColumn: 'id' })),
    },
    liveTable: (scratch) => live.get(scratch) ?? scratch,
    values,
  };
}
