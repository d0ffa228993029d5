/**
 * Restore and drill on PostgreSQL: the backup's `secrets.jsonl` (or, for a
 * backup made ahead, `secrets-ahead.jsonl` with `changes.jsonl` applied
 * over it by place) loaded into a temporary table of the transaction
 * (checked against the manifest),
 * then paired with the live values by row id and written back as the
 * runbook decides (`restoreValues`), or copied into temporary tables a
 * drill reads (`scratchCopy`).
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { ClientBase } from 'pg';
import { MasterKeyError } from '../../errors';
import { count } from '../../format';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import { BackupToRestore, Location, RestoreCounts, RestoreDecision, ScratchCopy, ValuePair, aadColumnsAt } from '../store';
import { AHEAD_FILE, CHANGES_FILE, SECRETS_FILE } from './backup';
import { steerPlanner } from './statements';

const DEFAULT_BATCH = 5000;

/** One stored value of a backup's values file. */
export interface BackupLine {
  /** Table, column, row id, the value as stored, and (entries with AAD) the row's AAD columns as text. */
  readonly t: string;
  readonly c: string;
  readonly id: string;
  /** Null only in a changes file: no value at the lock. */
  readonly v: string | null;
  readonly a?: Record<string, string | null>;
}

/** Line `n` of a backup's values file (`file` names it), parsed and checked: strings where the loader needs them (a changes file's value may be null). */
export function backupLine(line: string, n: number, file: string, changes = false): BackupLine {
  let o: Partial<Record<keyof BackupLine, unknown>> | null;
  try {
    o = JSON.parse(line) as typeof o;
  } catch {
    throw new MasterKeyError('BACKUP_CORRUPT', `Line ${n} of ${file} is not valid JSON; the backup cannot be restored.`);
  }
  const a = o?.a;
  const aadOk = a === undefined || (a !== null && typeof a === 'object' && !Array.isArray(a) && Object.values(a).every((x) => x === null || typeof x === 'string'));
  if (!o || typeof o.t !== 'string' || typeof o.c !== 'string' || typeof o.id !== 'string' || !(typeof o.v === 'string' || (changes && o.v === null)) || !aadOk) {
    throw new MasterKeyError('BACKUP_CORRUPT', `Line ${n} of ${file} is not a stored value (table, column, id and value as text); the backup cannot be restored.`);
  }
  return o as BackupLine;
}

/** A line as loaded: id, value (null: none, in a changes file), additional data as JSON. */
type Loaded = [string, string | null, string | null];

/** Iterates the stored values of a backup's values file in batches (bounded memory). */
async function forEachBackupBatch(backup: BackupToRestore, file: string, batchSize: number, fn: (loc: { table: string; column: string }, rows: Loaded[]) => Promise<void>): Promise<number> {
  const rl = createInterface({ input: Readable.from(backup.files.read(file), { objectMode: false }), crlfDelay: Infinity });
  let cur: { table: string; column: string } | undefined;
  let rows: Loaded[] = [];
  let n = 0;
  const flush = async () => {
    if (cur && rows.length) await fn(cur, rows);
    rows = [];
  };
  for await (const line of rl) {
    if (!line) continue;
    const o = backupLine(line, n + 1, `${file} in the backup ${backup.dir}`, file === CHANGES_FILE);
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
  const checked = (loc: { table: string; column: string }) => {
    if (!known.has(locKey(loc))) throw new MasterKeyError('BACKUP_CORRUPT', `The backup holds values for ${loc.table}.${loc.column}, which its manifest does not list; it cannot be restored.`);
  };
  const insert = async (loc: { table: string; column: string }, rows: Loaded[]) =>
    (
      await c.query(`INSERT INTO ${LOADED} (t, c, id, v, a) SELECT $1, $2, i, v, a::jsonb FROM unnest($3::text[], $4::text[], $5::text[]) AS x(i, v, a) WHERE v IS NOT NULL`, [
        loc.table,
        loc.column,
        rows.map((r) => r[0]),
        rows.map((r) => r[1]),
        rows.map((r) => r[2]),
      ])
    ).rowCount ?? 0;
  await c.query(`CREATE TEMPORARY TABLE mk_backup_values (t text NOT NULL, c text NOT NULL, id text NOT NULL, v text NOT NULL, a jsonb) ON COMMIT DROP`);
  // A backup made ahead: its bulk, then the changes since over it by place (see ./backup.ts).
  const ahead = backup.storeFiles?.includes(AHEAD_FILE) ?? false;
  if (ahead && !backup.storeFiles!.includes(CHANGES_FILE)) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup ${backup.dir} holds ${AHEAD_FILE} but not the ${CHANGES_FILE} that completes it; it cannot be restored.`);
  }
  let values = 0;
  await forEachBackupBatch(backup, ahead ? AHEAD_FILE : SECRETS_FILE, batchSize, async (loc, rows) => {
    checked(loc);
    values += await insert(loc, rows);
  });
  await c.query(`CREATE INDEX ON ${LOADED} (t, c, id)`);
  if (ahead) {
    await forEachBackupBatch(backup, CHANGES_FILE, batchSize, async (loc, rows) => {
      checked(loc);
      const gone = await c.query(`DELETE FROM ${LOADED} b USING unnest($3::text[]) AS x(i) WHERE b.t = $1 AND b.c = $2 AND b.id = x.i`, [loc.table, loc.column, rows.map((r) => r[0])]);
      values += (await insert(loc, rows)) - (gone.rowCount ?? 0);
    });
  }
  if (values !== backup.part.values) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup lists ${count(backup.part.values)} values but holds ${count(values)}; it cannot be restored.`);
  }
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
 * Restore, store side (`WriteTx.restore`), inside the client's open
 * transaction: loads the backup, then for each location pairs backed-up and
 * live values by row id (a full join), hands them to `decide` in batches and
 * writes back what it returns.
 */
export async function restoreValues(c: ClientBase, backup: BackupToRestore, inv: Inventory, decide: RestoreDecision, batchSize = DEFAULT_BATCH): Promise<RestoreCounts> {
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

/** The SQL type of a column, e.g. `text`, `jsonb`, `bigint`. */
async function columnType(c: ClientBase, table: string, column: string): Promise<string> {
  const r = await c.query<{ t: string }>('SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped', [
    quoteIdent(table),
    column,
  ]);
  if (!r.rows[0]) throw new Error(`column ${table}.${column} does not exist`);
  return r.rows[0].t;
}

/** Prepared batched writer: UPDATE table SET column = value WHERE id = id, for many rows per statement. */
async function valueWriter(c: ClientBase, loc: Location): Promise<(rows: ReadonlyArray<readonly [string, string]>) => Promise<number>> {
  const idType = await columnType(c, loc.table, loc.idColumn);
  const valType = await columnType(c, loc.table, loc.column);
  const sql = `UPDATE ${quoteIdent(loc.table)} AS t SET ${quoteIdent(loc.column)} = v.val::${valType}
                 FROM unnest($1::${idType}[], $2::text[]) AS v(id, val) WHERE t.${quoteIdent(loc.idColumn)} = v.id`;
  return async (rows) => {
    if (rows.length === 0) return 0;
    const r = await c.query(sql, [rows.map((x) => x[0]), rows.map((x) => x[1])]);
    return r.rowCount ?? 0;
  };
}
