/**
 * A SQLite database of a few rows that is large because of one value: its
 * backup copy is made in a reader thread beside the rotation (the file is
 * past the size from which that pays, whatever its rows), and must still
 * hold exactly the values at the lock and restore them. Through the real
 * CLI, on a real file, in both journal modes.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { sqliteModule } from '../src/store/sqlite/driver';
import { sqliteFile } from '../src/store/sqlite/url';
import { scratchDir } from '../scripts/scratch';
import { childEnv, keyLine, runCli } from './support/scenario';
import { SqliteJournal, createSqliteDatabase, sameTexts, sqliteTexts } from './support/stores';

/** Bytes of database from which the store copies it in a reader thread (`COPY_BESIDE_BYTES` in src/store/sqlite/store.ts). */
const COPY_BESIDE_BYTES = 8 << 20;

const INVENTORY = { name: 'one large value', entries: [{ kind: 'large value', table: 'big_secrets', idColumn: 'id', column: 'value', codec: 'act' }] };

const texts = (file: string) => sqliteTexts(file, 'big_secrets', 'value');

describe.each<SqliteJournal>(['wal', 'delete'])('a SQLite file made large by one value (%s journal)', (journal) => {
  const dir = scratchDir('mk-large-');
  const url = createSqliteDatabase(journal, join(dir, 'data'));
  const file = sqliteFile(url);
  const config = join(dir, 'act.env');
  const inventory = join(dir, 'inventory.json');
  const env = childEnv({ DATABASE_URL: url });
  const oldKey = MasterKey.generate();
  // 9 MiB of plaintext (12 MiB of text): past the batch crypto's large-value size (LARGE_VALUE) and past COPY_BESIDE_BYTES, with a small value beside it.
  const plain = new Map([
    [1, randomBytes(9 << 20)],
    [2, randomBytes(40)],
  ]);
  const cli = (args: readonly string[]) => runCli([...args, '--config', config, '--inventory', inventory], env);
  // Compared here, not by toEqual (which walks a buffer of megabytes element by element).
  const opensTo = (key: MasterKey, values: Map<number, string>) => [...values].map(([id, v]) => [id, Buffer.from(actCodec().open(new Keyring([key]), v).plaintext).equals(plain.get(id)!)]);
  let before: Map<number, string>;

  beforeAll(() => {
    writeFileSync(config, `${keyLine(oldKey)}\n`);
    chmodSync(config, 0o600);
    writeFileSync(inventory, JSON.stringify(INVENTORY));
    const db = new (sqliteModule())(file);
    db.exec('CREATE TABLE big_secrets (id INTEGER PRIMARY KEY, value TEXT)');
    const insert = db.prepare('INSERT INTO big_secrets (id, value) VALUES (?, ?)');
    for (const [id, p] of plain) insert.run(id, actCodec().seal(oldKey, p));
    db.close();
    before = texts(file);
    const init = cli(['init']);
    if (init.code !== 0) throw new Error(`master-key init failed (${init.code}): ${init.stderr}`);
  });

  it('rotates it, verified, with a backup holding exactly the values at the lock, which restore puts back', () => {
    expect(statSync(file).size).toBeGreaterThanOrEqual(COPY_BESIDE_BYTES);
    const backups = join(dir, 'backups');
    const r = cli(['apply', '--backup-dir', backups, '--report-dir', join(dir, 'reports'), '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as { report: { verification: { ok: boolean; digestMatches: boolean; checked: number; sampled: number }; backup: { path: string; values: number } } };
    expect(report.report.verification).toMatchObject({ ok: true, digestMatches: true, checked: 2, sampled: 2 });
    expect(report.report.backup.values).toBe(2);

    const newKey = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(config, 'utf8'))![1]);
    expect(newKey.equals(oldKey)).toBe(false);
    expect(opensTo(newKey, texts(file))).toEqual([[1, true], [2, true]]);

    // The backup's copy of the database holds the values as they were at the lock, byte for byte.
    const [backup] = readdirSync(backups).map((d) => join(backups, d));
    expect(sameTexts(texts(join(backup, 'database.sqlite')), before)).toBe(true);
    expect(statSync(join(backup, 'database.sqlite')).mode & 0o777).toBe(0o600);

    const restored = runCli(['restore', '--backup', backup, '--config', config, '--inventory', inventory], env);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(sameTexts(texts(file), before)).toBe(true);
    expect(opensTo(oldKey, texts(file))).toEqual([[1, true], [2, true]]);
    expect(cli(['verify']).code).toBe(0);
  });
});
