/**
 * SQLite's seal-ahead copies the database for the backup in a reader thread
 * of its own (issue 20), whose connection is not the one that reads the
 * values it stages: both take their snapshot while a third connection holds
 * the database's write lock, so no commit falls between them. Here a server
 * in another process commits all along, including rows changed and changed
 * back (the same text again a commit later), and the copy must hold exactly
 * the old texts staged, row for row: what the cut-over builds the backup on.
 * The reader is made to take its snapshot late (a test hook), so a missing
 * lock would show.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import type { Inventory } from '../src/inventory/inventory';
import { BackupDirectory } from '../src/rotation/backup';
import { openStore } from '../src/store/open';
import { DATABASE_FILE } from '../src/store/sqlite/backup';
import { sqliteModule } from '../src/store/sqlite/driver';
import { stagingFile } from '../src/store/sqlite/staging';
import { removeScratch, scratchDir } from '../scripts/scratch';
import { createSqliteDatabase } from './support/stores';

const INVENTORY: Inventory = { name: 'copy', entries: [{ kind: 'key', table: 'secrets', idColumn: 'id', column: 'v', codec: 'act' }] };

const ROWS = 3000;

/** The server: commits one change after another until `stop` exists (texts from `pool`, which open with the old key); each row it changes goes back to its text a commit later. */
const WRITER = `
const { existsSync, readFileSync, writeFileSync } = require('node:fs');
const Database = require(process.argv[1]);
const [path, poolFile, dir] = process.argv.slice(2);
const pool = JSON.parse(readFileSync(poolFile, 'utf8'));
const db = new Database(path, { timeout: 20000 });
// Commits as fast as it can: any commit between two snapshots would show.
db.pragma('synchronous = OFF');
const get = db.prepare('SELECT v FROM secrets WHERE id = ?').pluck();
const set = db.prepare('UPDATE secrets SET v = ? WHERE id = ?');
let n = 0;
while (!existsSync(dir + '/stop')) {
  const id = 1 + Math.floor(Math.random() * ${ROWS});
  const was = get.get(id);
  set.run(pool[n % pool.length], id);
  set.run(was, id);
  if (++n === 20) writeFileSync(dir + '/started', '');
}
writeFileSync(dir + '/commits', String(2 * n));
db.close();
`;

/** A WAL database of ROWS secrets sealed under a new old key. */
function secretsDatabase(dir: string) {
  const url = createSqliteDatabase('wal', join(dir, 'db'));
  const path = url.slice('sqlite:'.length);
  const oldKey = MasterKey.generate();
  const newKey = MasterKey.generate();
  const seal = (text: string) => actCodec().seal(oldKey, Buffer.from(text, 'utf8'));
  const server = new (sqliteModule())(path);
  try {
    server.exec('CREATE TABLE secrets (id INTEGER PRIMARY KEY, v TEXT)');
    const insert = server.prepare('INSERT INTO secrets VALUES (?, ?)');
    server.transaction(() => {
      for (let i = 1; i <= ROWS; i++) insert.run(i, seal(`value ${i}`));
    })();
  } finally {
    server.close();
  }
  return { url, path, oldKey, newKey, seal };
}

/** The backup's copy (in `dir`/backup) holds exactly the old texts staged for the database at `path`, every row. */
function expectCopyIsStaged(dir: string, path: string): void {
  const read = (file: string, sql: string) => {
    const db = new (sqliteModule())(file, { readonly: true, fileMustExist: true });
    try {
      return new Map((db.prepare(sql).raw(true).all() as Array<[number, string]>).map(([id, v]) => [id, v]));
    } finally {
      db.close();
    }
  };
  const copied = read(join(dir, 'backup', DATABASE_FILE), 'SELECT id, v FROM secrets');
  const stagedOld = read(stagingFile(path), 'SELECT id, o0 FROM stage_0');
  expect(copied.size).toBe(ROWS);
  expect(stagedOld.size).toBe(ROWS);
  expect([...copied].filter(([id, v]) => stagedOld.get(id) !== v).map(([id]) => id)).toEqual([]);
}

describe('SQLite (WAL) seal-ahead: the backup copy made in a reader thread beside a committing server', () => {
  let dir: string;
  beforeEach(() => (dir = scratchDir('mk-copy-ahead-')));
  afterEach(() => removeScratch(dir));

  it('holds exactly the old texts staged, row for row', async () => {
    const { url, path, oldKey, newKey, seal } = secretsDatabase(dir);
    const pool = join(dir, 'pool.json');
    writeFileSync(pool, JSON.stringify(Array.from({ length: 50 }, (_, i) => seal(`written ${i} by the server`))));

    const writer = spawn(process.execPath, ['-e', WRITER, require.resolve('better-sqlite3'), path, pool, dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise<number | null>((resolve) => writer.on('close', resolve));
    const store = await openStore(url);
    try {
      while (!existsSync(join(dir, 'started'))) await new Promise((r) => setTimeout(r, 10));
      mkdirSync(join(dir, 'backup'), { mode: 0o700 });
      // The reader takes its snapshot 300 ms after this connection: the server would commit many times in between, but for the lock.
      process.env.MASTER_KEY_TEST_COPY_AHEAD_DELAY_MS = '300';
      const staged = await store.sealAhead({ inventory: INVENTORY, from: new Keyring([oldKey]), to: newKey, rotationId: 'copy-test', batchSize: 100, backup: async () => new BackupDirectory(join(dir, 'backup')) });
      writeFileSync(join(dir, 'stop'), '');
      expect(await exited).toBe(0);
      expect(staged.backedUp?.values).toBe(ROWS);

      expectCopyIsStaged(dir, path);
      // The server did commit all along (many commits, not a quiet database).
      expect(Number.parseInt(readFileSync(join(dir, 'commits'), 'utf8'), 10)).toBeGreaterThan(100);
    } finally {
      delete process.env.MASTER_KEY_TEST_COPY_AHEAD_DELAY_MS;
      if (!existsSync(join(dir, 'stop'))) writeFileSync(join(dir, 'stop'), '');
      await exited;
      await store.dropStaging();
      await store.close();
    }
  });

  it('with the write lock held by a server transaction that does not end, copies on its own connection instead, in its own snapshot', async () => {
    const { url, path, oldKey, newKey } = secretsDatabase(dir);
    const server = new (sqliteModule())(path);
    const store = await openStore(url);
    try {
      // A server mid-transaction: it holds the write lock for the whole seal-ahead.
      server.exec('BEGIN IMMEDIATE');
      server.prepare("UPDATE secrets SET v = 'not committed' WHERE id = 1").run();
      mkdirSync(join(dir, 'backup'), { mode: 0o700 });
      const staged = await store.sealAhead({ inventory: INVENTORY, from: new Keyring([oldKey]), to: newKey, rotationId: 'copy-test', batchSize: 100, backup: async () => new BackupDirectory(join(dir, 'backup')) });
      expect(server.inTransaction).toBe(true);
      expect(staged.backedUp?.values).toBe(ROWS);
      expectCopyIsStaged(dir, path);
    } finally {
      if (server.inTransaction) server.exec('ROLLBACK');
      server.close();
      await store.dropStaging();
      await store.close();
    }
  });
});
