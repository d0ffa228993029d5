/**
 * Seal-ahead on SQLite with rows of more than a megabyte of text (JSON
 * documents of thousands of values): their old texts are staged as digests
 * of their bytes, not as copies, and the cut-over compares those digests
 * with the stored texts' at the lock. Through the real CLI, on a real WAL
 * file, with a stop hook playing the server's last writes after staging:
 * a large document left as it was, one rewritten with the very same text
 * (still staged: swapped in), one rewritten with a different text and one
 * added (re-sealed in the window), one deleted. Every value opens with the
 * new key as written, and the backup holds, and restores, exactly the
 * texts at the lock.
 */
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { sqliteModule } from '../src/store/sqlite/driver';
import { stagingFile } from '../src/store/sqlite/staging';
import { sqliteFile } from '../src/store/sqlite/url';
import { removeScratch, scratchDir } from '../scripts/scratch';
import { childEnv, keyLine, runCli } from './support/scenario';
import { createSqliteDatabase, sameTexts, sqliteTexts } from './support/stores';

const ROOT = resolve(__dirname, '..');
const INVENTORY = { name: 'large documents', entries: [{ kind: 'service value', table: 'service_specs', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['env', '*', 'value'] }] };
/** Values in a large document: past a megabyte of text, where staging keeps a digest of the old text instead of a copy. */
const LARGE = 14_000;

const texts = (file: string) => sqliteTexts(file, 'service_specs', 'doc');


describe('seal-ahead on SQLite (WAL) with documents of more than a megabyte', () => {
  const dir = scratchDir('mk-large-docs-');
  afterAll(() => removeScratch(dir));

  it('stages their digests, swaps in those still as staged, re-seals those changed or added, and backs up exactly the texts at the lock', () => {
    const url = createSqliteDatabase('wal', join(dir, 'data'));
    const file = sqliteFile(url);
    const config = join(dir, 'act.env');
    const inventory = join(dir, 'inventory.json');
    const env = childEnv({ DATABASE_URL: url });
    const cli = (args: readonly string[]) => runCli([...args, '--config', config, '--inventory', inventory], env);
    const oldKey = MasterKey.generate();
    const doc = (tag: string, n: number) => JSON.stringify({ image: `app:${tag}`, env: Array.from({ length: n }, (_, i) => ({ name: `VAR_${i}`, value: actCodec().seal(oldKey, Buffer.from(`${tag} ${i}`, 'utf8')) })) });
    // Row 5 is small: staged as a copy, swapped by the statement that swaps every other row.
    const plain = new Map<number, string>([[1, 'kept'], [2, 'rewritten as it was'], [3, 'old'], [4, 'deleted'], [5, 'small']]);
    writeFileSync(config, `${keyLine(oldKey)}\n`);
    chmodSync(config, 0o600);
    writeFileSync(inventory, JSON.stringify(INVENTORY));
    const db = new (sqliteModule())(file);
    db.exec('CREATE TABLE service_specs (id INTEGER PRIMARY KEY, doc TEXT)');
    for (const [id, tag] of plain) db.prepare('INSERT INTO service_specs VALUES (?, ?)').run(id, doc(tag, id === 5 ? 3 : LARGE));
    db.close();
    expect(Math.min(...[...texts(file)].filter(([id]) => id !== 5).map(([, t]) => t.length))).toBeGreaterThan(1 << 20);
    const init = cli(['init']);
    expect(init.code).toBe(0);
    const initial = texts(file);

    // The server's last writes, by the stop hook, after staging: it also records how each row was staged.
    writeFileSync(join(dir, 'changed.json'), doc('changed', LARGE));
    writeFileSync(join(dir, 'added.json'), doc('added', LARGE));
    const hook = join(dir, 'last-writes.js');
    writeFileSync(
      hook,
      `const { readFileSync, writeFileSync } = require('node:fs');
const Database = require(${JSON.stringify(require.resolve('better-sqlite3', { paths: [ROOT] }))});
const dir = ${JSON.stringify(dir)};
const staging = new Database(${JSON.stringify(stagingFile(file))}, { readonly: true });
writeFileSync(dir + '/staged.json', JSON.stringify(staging.prepare('SELECT id, o0 IS NULL AS digested, length(h0) AS digest FROM stage_0 ORDER BY id').all()));
staging.close();
const db = new Database(${JSON.stringify(file)}, { timeout: 10000 });
db.prepare('UPDATE service_specs SET doc = ? WHERE id = 2').run(db.prepare('SELECT doc FROM service_specs WHERE id = 2').pluck().get());
db.prepare('UPDATE service_specs SET doc = ? WHERE id = 3').run(readFileSync(dir + '/changed.json', 'utf8'));
db.prepare('DELETE FROM service_specs WHERE id = 4').run();
db.prepare('INSERT INTO service_specs VALUES (6, ?)').run(readFileSync(dir + '/added.json', 'utf8'));
db.close();
`,
    );
    const backups = join(dir, 'backups');
    const r = cli(['apply', '--seal-ahead', '--backup-dir', backups, '--report-dir', join(dir, 'reports'), '--json', '--stop-command', `node '${hook}'`, '--start-command', 'true']);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);

    expect(JSON.parse(readFileSync(join(dir, 'staged.json'), 'utf8'))).toEqual([
      { id: 1, digested: 1, digest: 32 },
      { id: 2, digested: 1, digest: 32 },
      { id: 3, digested: 1, digest: 32 },
      { id: 4, digested: 1, digest: 32 },
      { id: 5, digested: 0, digest: null },
    ]);
    const report = JSON.parse(r.stdout) as { report: { verification: { ok: boolean; digestMatches: boolean }; sealAhead: { used: boolean; swappedRows: number; resealedRows: number }; backup: { path: string } } };
    expect(report.report.verification).toMatchObject({ ok: true, digestMatches: true });
    // Swapped in: 1, 2 (the same text written again) and 5; re-sealed: 3 (changed) and 6 (added); 4 deleted.
    expect(report.report.sealAhead).toMatchObject({ used: true, swappedRows: 3, resealedRows: 2 });

    const newKey = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(config, 'utf8'))![1]);
    const opened = (text: string) => (JSON.parse(text) as { env: Array<{ value: string }> }).env.map((e) => Buffer.from(actCodec().open(new Keyring([newKey]), e.value).plaintext).toString('utf8'));
    const tags = new Map([[1, 'kept'], [2, 'rewritten as it was'], [3, 'changed'], [5, 'small'], [6, 'added']]);
    const live = texts(file);
    expect([...live.keys()]).toEqual([...tags.keys()]);
    for (const [id, text] of live) {
      const values = opened(text);
      expect(values).toHaveLength(id === 5 ? 3 : LARGE);
      expect(values.every((v, i) => v === `${tags.get(id)} ${i}`)).toBe(true);
    }

    // The backup: the texts at the lock (as the stop hook left them), which restore puts back byte for byte.
    const atLock = new Map(initial);
    atLock.delete(4);
    atLock.set(3, readFileSync(join(dir, 'changed.json'), 'utf8'));
    atLock.set(6, readFileSync(join(dir, 'added.json'), 'utf8'));
    const [backup] = readdirSync(backups).map((d) => join(backups, d));
    expect(backup).toBe(report.report.backup.path);
    expect(readdirSync(backup).filter((f) => !f.startsWith('config-')).sort()).toEqual(['changes.sqlite', 'database.sqlite', 'manifest.json']);
    const restored = runCli(['restore', '--backup', backup, '--config', config, '--inventory', inventory], env);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    const back = texts(file);
    expect([...back.keys()]).toEqual([1, 2, 3, 5, 6]);
    expect(sameTexts(back, atLock)).toBe(true);
  });
});
