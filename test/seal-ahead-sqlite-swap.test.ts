/**
 * SQLite's cut-over through the store seam (issue 20): one `UPDATE` per
 * table swaps in the staged values and tells apart every row it leaves as
 * it is, on a table of two value columns where either may be NULL, with
 * each kind of change the server can make after staging: none, one column
 * changed, a value added to an empty column, both columns emptied, the row
 * deleted, a row inserted. A small batch size makes the swap run in many
 * key ranges; a batch of 100 rows is staged 64 rows to a statement and
 * then the rest one at a time.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import type { Inventory } from '../src/inventory/inventory';
import { BackupDirectory } from '../src/rotation/backup';
import { openStore } from '../src/store/open';
import { sqliteModule } from '../src/store/sqlite/driver';
import { stagingFile } from '../src/store/sqlite/staging';
import { removeScratch, scratchDir } from '../scripts/scratch';
import { createSqliteDatabase } from './support/stores';

const INVENTORY: Inventory = {
  name: 'swap',
  entries: [
    { kind: 'key', table: 'pairs', idColumn: 'id', column: 'a', codec: 'act' },
    { kind: 'passphrase', table: 'pairs', idColumn: 'id', column: 'b', codec: 'act' },
  ],
};

const ROWS = 300;

describe('SQLite (WAL) cut-over: the swap and the rows it leaves alone', () => {
  let dir: string;
  beforeEach(() => (dir = scratchDir('mk-swap-')));
  afterEach(() => removeScratch(dir));

  it.each([4, 100])('swaps in what is still staged, re-seals what changed or was added, drops what was emptied or deleted, and the counts and digest add up (batches of %i rows)', async (batchSize) => {
    const url = createSqliteDatabase('wal', join(dir, 'db'));
    const path = url.slice('sqlite:'.length);
    const oldKey = MasterKey.generate();
    const newKey = MasterKey.generate();
    const seal = (text: string) => actCodec().seal(oldKey, Buffer.from(text, 'utf8'));
    // Row i: a (NULL on every 5th row), b (NULL on every 3rd row); rows with neither hold no value.
    const expected = new Map<string, string | null>();
    const Database = sqliteModule();
    const server = new Database(path);
    try {
      server.exec('CREATE TABLE pairs (id INTEGER PRIMARY KEY, a TEXT, b TEXT)');
      const insert = server.prepare('INSERT INTO pairs VALUES (?, ?, ?)');
      server.transaction(() => {
        for (let i = 1; i <= ROWS; i++) {
          const a = i % 5 === 0 ? null : `a${i}`;
          const b = i % 3 === 0 ? null : `b${i}`;
          insert.run(i, a && seal(a), b && seal(b));
          expected.set(`${i}.a`, a);
          expected.set(`${i}.b`, b);
        }
      })();
    } finally {
      server.close();
    }

    const store = await openStore(url);
    try {
      const staged = await store.sealAhead({ inventory: INVENTORY, from: new Keyring([oldKey]), to: newKey, rotationId: 'swap-test', batchSize });
      expect(existsSync(stagingFile(path))).toBe(true);
      // The server's writes after staging, on a connection of its own.
      const w = new Database(path);
      try {
        const set = (id: number, col: 'a' | 'b', text: string | null) => {
          w.prepare(`UPDATE pairs SET ${col} = ? WHERE id = ?`).run(text && seal(text), id);
          expected.set(`${id}.${col}`, text);
        };
        set(7, 'b', 'b7 changed'); // one column changed, the other still staged
        set(10, 'a', 'a10 added'); // a value added to an empty column
        set(20, 'b', 'b20 changed'); // the first column NULL, the second changed
        set(41, 'b', 'b41 changed'); // the first column NULL on neither
        w.prepare('UPDATE pairs SET a = NULL, b = NULL WHERE id = 11').run(); // emptied
        expected.set('11.a', null);
        expected.set('11.b', null);
        w.prepare('DELETE FROM pairs WHERE id IN (12, 13)').run();
        for (const k of ['12.a', '12.b', '13.a', '13.b']) expected.delete(k);
        w.prepare('INSERT INTO pairs VALUES (?, ?, ?)').run(ROWS + 1, seal('a new'), null);
        expected.set(`${ROWS + 1}.a`, 'a new');
        expected.set(`${ROWS + 1}.b`, null);
      } finally {
        w.close();
      }

      mkdirSync(join(dir, 'backup'), { mode: 0o700 });
      const result = await store.write(async (tx) => {
        await tx.lockSecretTables(INVENTORY);
        return tx.rotate({ inventory: INVENTORY, from: new Keyring([oldKey]), to: newKey, backup: new BackupDirectory(join(dir, 'backup')), staged, batchSize });
      });
      // Rows 15 and 30 held nothing and were not staged: 300 - 20 staged rows.
      expect(staged.rows).toBe(ROWS - ROWS / 15);
      // Changed since: 7, 10, 20, 41 (re-sealed), 11 emptied, 12 and 13 deleted; the new row re-sealed.
      expect(result.sealAhead).toEqual({ used: true, swappedRows: staged.rows - 7, resealedRows: 5 });

      const verified = await store.read((tx) => tx.verify(INVENTORY, newKey, { expected: result.reencrypted.digest, sampleSize: 1_000_000 }));
      expect(verified).toMatchObject({ ok: true, digestMatches: true, sampleFailures: [] });

      const db = new Database(path, { readonly: true });
      try {
        const live = new Map<string, string | null>();
        for (const row of db.prepare('SELECT id, a, b FROM pairs').all() as Array<{ id: number; a: string | null; b: string | null }>) {
          for (const col of ['a', 'b'] as const) {
            const text = row[col];
            live.set(`${row.id}.${col}`, text === null ? null : Buffer.from(actCodec().open(new Keyring([newKey]), text).plaintext).toString('utf8'));
          }
        }
        expect(live).toEqual(expected);
      } finally {
        db.close();
      }
      await store.dropStaging();
    } finally {
      await store.close();
    }
  });
});
