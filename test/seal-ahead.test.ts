/**
 * Seal-ahead (issue 20), through the real CLI on both stores: a server
 * that keeps writing (inserts, updates, deletes) while apply seals ahead
 * and up to its stop hook; a value changed after staging to one that does
 * not open; a staging area of another key; what plan says.
 *
 * The "server" is a writer process started before apply; the stop hook
 * stops it (and, as a server's last act, makes a few more changes), so
 * the database at the lock is the initial one plus every change the
 * writer logged. Each change is logged only once committed.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { ExitCode } from '../src/errors';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { openStore } from '../src/store/open';
import type { Staged } from '../src/store/store';
import { sqliteFile } from '../src/store/sqlite/url';
import { stagingLeft } from '../scripts/soak-harness';
import { actScenario, Scenario } from './support/scenario';
import { withTestSql } from './support/sql';
import { CLI_STORES, POSTGRES, SQLITE_ROLLBACK, SQLITE_WAL } from './support/stores';

const ROOT = resolve(__dirname, '..');
const WRITTEN = [
  ['git_credentials', 'access_token'],
  ['environment_variables', 'value'],
] as const;

/**
 * A server's writer: with `loop`, changes rows of the two tables until the
 * file `stop` exists (then writes `stopped`); else makes `changes` fixed
 * changes and exits. Every committed change goes to `log` as a JSON line
 * `{ place, plain }` (plain null: the row was deleted). `foreign`: the last
 * fixed change seals under a key of its own (a value that does not open).
 */
function writerScript(dir: string, opts: { loop: boolean; foreign?: boolean }): string {
  const req = (m: string) => JSON.stringify(require.resolve(m, { paths: [ROOT] }));
  return `
const { appendFileSync, existsSync, readFileSync, writeFileSync } = require('node:fs');
const { actCodec } = require(${JSON.stringify(join(ROOT, 'dist', 'src', 'crypto', 'codec.js'))});
const { MasterKey, parseKey } = require(${JSON.stringify(join(ROOT, 'dist', 'src', 'crypto', 'key.js'))});
const dir = ${JSON.stringify(dir)};
const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(dir + '/act.env', 'utf8'))[1]);
const foreignKey = MasterKey.generate();
const seal = (text, k = key) => actCodec().seal(k, Buffer.from(text, 'utf8'));
const url = process.env.DATABASE_URL;
const log = (place, plain) => appendFileSync(dir + '/changes.jsonl', JSON.stringify({ place, plain }) + '\\n');
let n = 0;
async function main() {
  let q;
  let end = async () => {};
  if (url.startsWith('sqlite:')) {
    const Database = require(${req('better-sqlite3')});
    const db = new Database(url.slice('sqlite:'.length), { timeout: 10000 });
    q = async (sql, params) => { const s = db.prepare(sql.replace(/\\$\\d+/g, '?')); return s.reader ? s.all(...params) : (s.run(...params), []); };
    end = async () => db.close();
  } else {
    const { Client } = require(${req('pg')});
    const c = new Client({ connectionString: url });
    await c.connect();
    q = async (sql, params) => (await c.query(sql, params)).rows;
    end = () => c.end();
  }
  const tables = [['git_credentials', 'access_token', "INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1) RETURNING id"],
                  ['environment_variables', 'value', "INSERT INTO environment_variables (environment_id, name, value) VALUES (1, 'W', $1) RETURNING id"]];
  const change = async (what, k) => {
    const [t, col, insert] = tables[n % 2];
    const plain = 'written ' + (++n) + ' by the server';
    if (what === 'insert') {
      const [row] = await q(insert, [seal(plain, k)]);
      log(t + '.' + col + ':' + row.id, plain);
    } else {
      const rows = await q('SELECT id FROM ' + t + ' ORDER BY id', []);
      const id = rows[Math.floor(Math.random() * rows.length)].id;
      if (what === 'update') {
        await q('UPDATE ' + t + ' SET ' + col + ' = $1 WHERE id = $2', [seal(plain, k), id]);
        log(t + '.' + col + ':' + id, plain);
      } else {
        await q('DELETE FROM ' + t + ' WHERE id = $1', [id]);
        log(t + '.' + col + ':' + id, null);
      }
    }
  };
  if (${opts.loop}) {
    while (!existsSync(dir + '/stop')) {
      await change(['insert', 'update', 'delete', 'update'][n % 4]);
      await new Promise((r) => setTimeout(r, 3));
    }
    writeFileSync(dir + '/stopped', '');
  } else {
    for (const w of ['insert', 'update', 'delete', 'update']) await change(w);
    if (${!!opts.foreign}) await change('update', foreignKey);
  }
  await end();
}
main().catch((e) => { console.error(e); process.exit(1); });
`;
}

/** The stop hook: stops the looping writer (waits until it says so), then the server's last writes. */
function stopScript(dir: string): string {
  return `
const { existsSync, writeFileSync } = require('node:fs');
const { execFileSync } = require('node:child_process');
const dir = ${JSON.stringify(dir)};
writeFileSync(dir + '/stop', '');
const until = Date.now() + 30000;
while (!existsSync(dir + '/stopped') && Date.now() < until) execFileSync('sleep', ['0.02']);
if (!existsSync(dir + '/stopped')) { console.error('the writer did not stop'); process.exit(1); }
execFileSync(process.execPath, [dir + '/last-writes.js'], { stdio: 'inherit', env: process.env });
`;
}

/** The stored texts of the two written tables, by place. */
async function cellsOf(url: string): Promise<Map<string, string>> {
  return withTestSql(url, async (db) => {
    const out = new Map<string, string>();
    for (const [t, c] of WRITTEN) {
      for (const r of await db.query<{ id: unknown; v: string | null }>(`SELECT id, ${c} AS v FROM ${t}`)) if (r.v !== null) out.set(`${t}.${c}:${String(r.id)}`, r.v);
    }
    return out;
  });
}

/**
 * The values of the two tables a backup holds, by place (PostgreSQL:
 * secrets.jsonl, or, when seal-ahead wrote its bulk, secrets-ahead.jsonl
 * overridden by place by changes.jsonl; SQLite: the database copy,
 * overridden by place by changes.sqlite when seal-ahead copied it in its
 * snapshot).
 */
async function backupCellsOf(s: Scenario, dir: string): Promise<Map<string, string>> {
  if (s.store.kind === 'sqlite') {
    const out = await cellsOf(`sqlite:${join(dir, 'database.sqlite')}`);
    if (!existsSync(join(dir, 'changes.sqlite'))) return out;
    const changes = await withTestSql(`sqlite:${join(dir, 'changes.sqlite')}`, (db) => db.query<{ t: string; c: string; id: unknown; v: string | null }>('SELECT t, c, id, v FROM changes'));
    for (const ch of changes) {
      if (!WRITTEN.some(([t, c]) => t === ch.t && c === ch.c)) continue;
      const place = `${ch.t}.${ch.c}:${String(ch.id)}`;
      if (ch.v === null) out.delete(place);
      else out.set(place, ch.v);
    }
    return out;
  }
  const out = new Map<string, string>();
  const ahead = existsSync(join(dir, 'secrets-ahead.jsonl'));
  for (const file of ahead ? ['secrets-ahead.jsonl', 'changes.jsonl'] : ['secrets.jsonl']) {
    for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
      if (!line) continue;
      const o = JSON.parse(line) as { t: string; c: string; id: string; v: string | null };
      if (!WRITTEN.some(([t, c]) => t === o.t && c === o.c)) continue;
      if (o.v === null) out.delete(`${o.t}.${o.c}:${o.id}`);
      else out.set(`${o.t}.${o.c}:${o.id}`, o.v);
    }
  }
  return out;
}

/** The plaintexts the two tables hold at the lock: as seeded, then every logged change in order. */
function expectedAtLock(s: Scenario): Map<string, string> {
  const out = new Map<string, string>();
  for (const [place, plain] of s.plaintexts) if (WRITTEN.some(([t, c]) => place.startsWith(`${t}.${c}:`))) out.set(place, plain);
  const log = join(s.dir, 'changes.jsonl');
  if (existsSync(log)) {
    for (const line of readFileSync(log, 'utf8').split('\n')) {
      if (!line) continue;
      const { place, plain } = JSON.parse(line) as { place: string; plain: string | null };
      if (plain === null) out.delete(place);
      else out.set(place, plain);
    }
  }
  return out;
}

function opened(cells: Map<string, string>, key: MasterKey): Map<string, string> {
  const ring = new Keyring([key]);
  const codec = actCodec();
  return new Map([...cells].map(([place, text]) => [place, (() => {
    try {
      return ring.openText(codec, text);
    } catch (e) {
      return `!${(e as { code?: string }).code}`;
    }
  })()]));
}

function reportOf(dir: string): Record<string, any> {
  return JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('.json'))!), 'utf8'));
}

describe.each(CLI_STORES)('seal-ahead on $name', (store) => {
  it('a server writing (inserts, updates, deletes) during seal-ahead and up to the stop hook: every value opens with the new key, the backup holds exactly the values at the lock, and restoring it verifies', async () => {
    const s = await actScenario({ perKind: 40, store });
    writeFileSync(join(s.dir, 'writer.js'), writerScript(s.dir, { loop: true }));
    writeFileSync(join(s.dir, 'last-writes.js'), writerScript(s.dir, { loop: false }));
    writeFileSync(join(s.dir, 'stop.js'), stopScript(s.dir));
    const writer = spawn(process.execPath, [join(s.dir, 'writer.js')], { env: s.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let writerErr = '';
    writer.stderr.setEncoding('utf8').on('data', (d: string) => (writerErr += d));
    const exited = new Promise<number | null>((res) => writer.on('close', (code) => res(code)));
    try {
      // Let the server write for a moment first.
      await new Promise((r) => setTimeout(r, 300));
      const reports = join(s.dir, 'reports');
      const r = s.cli(['apply', '--seal-ahead', '--batch-size', '7', '--stop-command', `node '${join(s.dir, 'stop.js')}'`, '--report-dir', reports]);
      expect(writerErr).toBe('');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(await exited).toBe(0);
      expect(r.stdout).toMatch(/Sealed ahead: [\d,]+ secrets in [\d,]+ rows staged under mk:[0-9a-f]{12}/);
      const report = reportOf(reports);
      expect(report.sealAhead).toMatchObject({ ran: true, used: true });
      // The last writes alone added and changed rows since staging: re-sealed inside the transaction.
      expect(report.sealAhead.resealedRows).toBeGreaterThanOrEqual(2);
      expect(report.sealAhead.swappedRows).toBeGreaterThan(0);
      expect(report.timing.serverUpSealAheadMs).toBeGreaterThan(0);
      expect(report.verification).toMatchObject({ ok: true, digestMatches: true, failures: 0 });
      const newKey = s.configKey();
      expect(newKey.equals(s.key)).toBe(false);

      const expected = expectedAtLock(s);
      const live = opened(await cellsOf(s.url), newKey);
      expect(live).toEqual(expected);
      expect(s.cli(['verify']).code).toBe(0);
      // Exactly the values at the lock, under the old key.
      expect(opened(await backupCellsOf(s, report.backup.path), s.key)).toEqual(expected);
      expect(await withTestSql(s.url, (db) => stagingLeft(db, s.url))).toEqual([]);
      // The bulk of the backup was written in seal-ahead's snapshot; the rows the server wrote since are in the changes file.
      expect(r.stdout).toMatch(/Backed up ahead: [\d,]+ stored values/);
      if (store.kind === 'sqlite') {
        expect(readdirSync(report.backup.path).filter((f) => !f.startsWith('config-')).sort()).toEqual(['changes.sqlite', 'database.sqlite', 'manifest.json']);
        const changed = await withTestSql(`sqlite:${join(report.backup.path, 'changes.sqlite')}`, (db) => db.query<{ n: number }>('SELECT count(*) AS n FROM changes'));
        expect(Number(changed[0].n)).toBeGreaterThanOrEqual(2);
      } else {
        expect(readdirSync(report.backup.path).filter((f) => !f.startsWith('config-')).sort()).toEqual(['changes.jsonl', 'manifest.json', 'secrets-ahead.jsonl']);
        const changed = readFileSync(join(report.backup.path, 'changes.jsonl'), 'utf8').split('\n').filter(Boolean);
        expect(changed.length).toBeGreaterThanOrEqual(2);
        // Only what changed since: far fewer lines than the bulk.
        expect(changed.length).toBeLessThan(readFileSync(join(report.backup.path, 'secrets-ahead.jsonl'), 'utf8').split('\n').filter(Boolean).length);
      }
      const drill = s.cli(['restore', '--drill', '--backup', report.backup.path]);
      expect(drill.stderr).toBe('');
      expect(drill.code).toBe(0);
      expect(drill.stdout).toMatch(/The backup restores/);

      const restored = s.cli(['restore', '--backup', report.backup.path]);
      expect(restored.stderr).toBe('');
      expect(restored.code).toBe(0);
      expect(s.configKey().equals(s.key)).toBe(true);
      expect(s.cli(['verify']).code).toBe(0);
      expect(opened(await cellsOf(s.url), s.key)).toEqual(expected);
    } finally {
      writeFileSync(join(s.dir, 'stop'), '');
      await exited;
    }
  });

  // Also with the backup sealed: what seal-ahead sealed of it (SQLite's copy, PostgreSQL's secrets-ahead.jsonl) goes with its directory.
  it.each([false, true])('a value changed after staging to one that does not open with the old key: the transaction rolls back, nothing staged reaches a live row, nothing is left (backup sealed: %s)', async (sealed) => {
    const s = await actScenario({ perKind: 5, store });
    writeFileSync(join(s.dir, 'last-writes.js'), writerScript(s.dir, { loop: false, foreign: true }));
    const before = await cellsOf(s.url);
    const backups = join(s.dir, 'backups');
    const recipient = sealed ? ['--backup-recipient', await identityToRecipient(await generateX25519Identity())] : [];
    const r = s.cli(['apply', '--seal-ahead', '--backup-dir', backups, ...recipient, '--stop-command', `node '${join(s.dir, 'last-writes.js')}'`, '--start-command', 'true']);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stderr).toMatch(/do(es)? not open with the old key/);
    expect(r.stdout).toMatch(/Sealed ahead/);
    expect(r.stdout).toMatch(/Nothing was changed; starting the server again\./);
    // Every live value is as the server left it: those it wrote under the old key open with it, the foreign one does not; nothing is under the new key.
    const after = await cellsOf(s.url);
    const expected = expectedAtLock(s);
    const plain = opened(after, s.key);
    const foreign = [...plain].filter(([, p]) => p.startsWith('!'));
    expect(foreign).toHaveLength(1);
    for (const [place, p] of plain) if (!p.startsWith('!')) expect(p).toBe(expected.get(place));
    for (const [place, text] of after) if (before.get(place) === text) expect(plain.get(place)).toBe(expected.get(place));
    expect(s.configKey().equals(s.key)).toBe(true);
    expect(await withTestSql(s.url, (db) => stagingLeft(db, s.url))).toEqual([]);
    expect(readdirSync(s.dir).filter((f) => f.includes('mk-pending'))).toEqual([]);
    // The backup begun ahead saved nothing that changed: removed.
    expect(existsSync(backups) ? readdirSync(backups) : []).toEqual([]);
  });

  it('a staging area of another key is never used: the store refuses it, and plan, apply and recover remove a leftover one, saying so', async () => {
    const s = await actScenario({ perKind: 3, store });
    const other = MasterKey.generate();
    const url = store.kind === 'sqlite' ? `sqlite:${sqliteFile(s.url)}` : s.url;
    const st = await openStore(url);
    let staged: Staged;
    try {
      staged = await st.sealAhead({ inventory: ACT_PRESET, from: new Keyring([s.key]), to: other, rotationId: 'another-rotation' });
      expect(staged.fingerprint).toBe(other.fingerprint);
      const third = MasterKey.generate();
      const sink = { create: async () => { throw new Error('no backup expected'); }, scratch: async () => { throw new Error('no backup expected'); }, adopt: async () => { throw new Error('no backup expected'); }, discard: async () => { throw new Error('no backup expected'); } };
      const before = await cellsOf(s.url);
      await expect(
        st.write(async (tx) => {
          await tx.lockSecretTables(ACT_PRESET);
          return tx.rotate({ inventory: ACT_PRESET, from: new Keyring([s.key]), to: third, backup: sink, staged });
        }),
      ).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/sealed under mk:[0-9a-f]{12} was offered to a rotation to mk:[0-9a-f]{12}; it is never used/) });
      expect(await cellsOf(s.url)).toEqual(before);
    } finally {
      await st.close();
    }
    expect((await withTestSql(s.url, (db) => stagingLeft(db, s.url))).length).toBeGreaterThan(0);
    const plan = s.cli(['plan']);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/Removed the staging area an interrupted seal-ahead left behind: .*; its values were never swapped in\./);
    expect(plan.stdout).toMatch(/seal-ahead +no: one pass with the server stopped: [\d,]+ secrets re-encrypt in a moment/);
    expect(await withTestSql(s.url, (db) => stagingLeft(db, s.url))).toEqual([]);
    const r = s.cli(['apply', '--seal-ahead']);
    expect(r.code).toBe(0);
    expect(s.configKey().equals(other)).toBe(false);
    expect(opened(await cellsOf(s.url), s.configKey()).size).toBeGreaterThan(0);
    expect([...opened(await cellsOf(s.url), s.configKey()).values()].filter((p) => p.startsWith('!'))).toEqual([]);
  });
});

describe('PostgreSQL: a staging area emptied before the window (as a crash of the database empties UNLOGGED tables)', () => {
  it('is not used: the bulk of the backup made ahead is discarded, every value is re-sealed in the window and backed up there as in one pass, and that backup restores', async () => {
    const s = await actScenario({ perKind: 5, store: POSTGRES });
    // The stop hook empties every staging table, the server's last writes after it.
    writeFileSync(join(s.dir, 'last-writes.js'), writerScript(s.dir, { loop: false }));
    writeFileSync(
      join(s.dir, 'stop.js'),
      `const { Client } = require(${JSON.stringify(require.resolve('pg', { paths: [ROOT] }))});
const { execFileSync } = require('node:child_process');
(async () => {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  const r = await c.query("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'master_key' AND relname LIKE 'stage%' AND relkind = 'r'");
  if (r.rows.length === 0) throw new Error('no staging table');
  for (const { relname } of r.rows) await c.query('TRUNCATE master_key.' + relname);
  await c.end();
  execFileSync(process.execPath, [${JSON.stringify(join(s.dir, 'last-writes.js'))}], { stdio: 'inherit', env: process.env });
})().catch((e) => { console.error(e); process.exit(1); });
`,
    );
    const reports = join(s.dir, 'reports');
    const r = s.cli(['apply', '--seal-ahead', '--stop-command', `node '${join(s.dir, 'stop.js')}'`, '--report-dir', reports]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Backed up ahead: [\d,]+ stored values/);
    expect(r.stdout).toMatch(/the staging area was no longer intact/);
    const report = reportOf(reports);
    expect(report.sealAhead).toMatchObject({ ran: true, used: false, swappedRows: 0 });
    // The bulk made ahead was discarded: the window wrote the whole backup.
    expect(readdirSync(report.backup.path).filter((f) => !f.startsWith('config-')).sort()).toEqual(['manifest.json', 'secrets.jsonl']);
    const expected = expectedAtLock(s);
    expect(opened(await cellsOf(s.url), s.configKey())).toEqual(expected);
    expect(opened(await backupCellsOf(s, report.backup.path), s.key)).toEqual(expected);
    const restored = s.cli(['restore', '--backup', report.backup.path]);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(opened(await cellsOf(s.url), s.key)).toEqual(expected);
    expect(await withTestSql(s.url, (db) => stagingLeft(db, s.url))).toEqual([]);
  });
});

describe('when seal-ahead does not run, plan and apply say why and rotate in one pass', () => {
  it('SQLite in a rollback-journal mode: its snapshot would block the server', async () => {
    const s = await actScenario({ perKind: 3, store: SQLITE_ROLLBACK });
    const plan = s.cli(['plan', '--seal-ahead']);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/seal-ahead +no: one pass with the server stopped: seal-ahead cannot run here \(the database is in a rollback-journal mode, where seal-ahead's snapshot would block the server's writers for as long as it runs\)/);
    const r = s.cli(['apply', '--seal-ahead']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Seal-ahead: no; one pass with the server stopped/);
    expect(s.cli(['verify']).code).toBe(0);
  });

  it('SQLite on a disk without room for the staging area: plan states the cost and the room, apply falls back to one pass saying so', async () => {
    const s = await actScenario({ perKind: 40, store: SQLITE_WAL });
    const mnt = join(s.dir, 'small');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt]);
    try {
      const file = join(mnt, 'act.db');
      copyFileSync(sqliteFile(s.url), file);
      const env = { DATABASE_URL: `sqlite:${file}` };
      type Planned = { sealAhead: { run: boolean; reason: string; stagingBytes: number; freeBytes: number } };
      const need = (JSON.parse(s.cli(['plan', '--seal-ahead', '--json'], { env }).stdout) as Planned).sealAhead.stagingBytes;
      // Leave 70 % of what the staging area needs: room for one pass's WAL, not for the staging area (old and new texts of every value).
      const free = () => statfsSync(mnt).bavail * statfsSync(mnt).bsize;
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(Math.max(0, free() - Math.round(0.7 * need))));
      const plan = s.cli(['plan', '--seal-ahead', '--json'], { env });
      expect(plan.code).toBe(0);
      const sa = (JSON.parse(plan.stdout) as Planned).sealAhead;
      expect(sa.run).toBe(false);
      expect(sa.reason).toMatch(/the database's directory has [\d.]+ KiB free but the staging area needs about [\d.]+ KiB/);
      expect(sa.freeBytes).toBeLessThan(sa.stagingBytes);
      const r = s.cli(['apply', '--seal-ahead', '--backup-dir', join(s.dir, 'backups')], { env });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Seal-ahead: no; one pass with the server stopped: seal-ahead cannot run here \(the database's directory has/);
      expect(s.cli(['verify'], { env }).code).toBe(0);
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});
