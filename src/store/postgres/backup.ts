/**
 * The PostgreSQL store's part of a backup: every stored value of the
 * inventory's columns, exactly as stored, one JSON line each
 * (`{"t": table, "c": column, "id": id, "v": value}`), and putting them back.
 */
import { closeSync, createReadStream, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ClientBase } from 'pg';
import { MasterKeyError } from '../../errors';
import { Inventory } from '../../inventory/inventory';
import { BackupPart, BackupToRestore, backupFileError, inventoryLocations } from '../store';
import { forEachValueBatch, valueWriter } from './rows';

export const SECRETS_FILE = 'secrets.jsonl';
const DEFAULT_BATCH = 5000;

/** Writes every value of the inventory's locations, as the client's open transaction sees them, to `dir/secrets.jsonl` (0600, fsynced). */
export async function backupValues(c: ClientBase, inv: Inventory, dir: string, batchSize = DEFAULT_BATCH): Promise<BackupPart> {
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
      await forEachValueBatch(c, loc, batchSize, (rows) => {
        let chunk = '';
        for (const [id, v] of rows) chunk += JSON.stringify({ t: loc.table, c: loc.column, id, v }) + '\n';
        try {
          writeSync(fd, chunk);
        } catch (e) {
          throw backupFileError(e, path);
        }
        values += rows.length;
      });
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

/** Iterates the stored values of a backup in batches (bounded memory). */
async function forEachBackupBatch(dir: string, batchSize: number, fn: (loc: { table: string; column: string }, rows: Array<[string, string]>) => Promise<void>): Promise<number> {
  const rl = createInterface({ input: createReadStream(join(dir, SECRETS_FILE), 'utf8'), crlfDelay: Infinity });
  let cur: { table: string; column: string } | undefined;
  let rows: Array<[string, string]> = [];
  let n = 0;
  const flush = async () => {
    if (cur && rows.length) await fn(cur, rows);
    rows = [];
  };
  for await (const line of rl) {
    if (!line) continue;
    const o = JSON.parse(line) as { t: string; c: string; id: string; v: string };
    if (!cur || cur.table !== o.t || cur.column !== o.c) {
      await flush();
      cur = { table: o.t, column: o.c };
    }
    rows.push([o.id, o.v]);
    n++;
    if (rows.length >= batchSize) await flush();
  }
  await flush();
  return n;
}

/** Writes a backup's values back by id, inside the client's open transaction; returns how many. */
export async function restoreValues(c: ClientBase, backup: BackupToRestore, batchSize = DEFAULT_BATCH): Promise<number> {
  const writers = new Map<string, (rows: ReadonlyArray<readonly [string, string]>) => Promise<number>>();
  for (const loc of backup.part.locations) writers.set(`${loc.table}\0${loc.column}`, await valueWriter(c, loc));
  const values = await forEachBackupBatch(backup.dir, batchSize, async (loc, rows) => {
    const w = writers.get(`${loc.table}\0${loc.column}`);
    if (!w) throw new MasterKeyError('BACKUP_CORRUPT', `The backup holds values for ${loc.table}.${loc.column}, which its manifest does not list; it cannot be restored.`);
    await w(rows);
  });
  if (values !== backup.part.values) {
    throw new MasterKeyError('BACKUP_CORRUPT', `The backup lists ${backup.part.values} values but holds ${values}; it cannot be restored.`);
  }
  return values;
}
