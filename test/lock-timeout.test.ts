/**
 * A lock that cannot be had bounds the window (issue 20): a session that
 * holds a row lock on a secret table (a server stuck mid-transaction) makes
 * `apply` wait at most `--lock-timeout`, then refuse with TABLES_BUSY
 * naming the blocking session (pid, application, user, state, how long its
 * transaction has been open; never its query), change nothing, and start
 * the server again. SQLite's busy timeout takes the same option. And the
 * database's own timeouts (`ALTER DATABASE … SET statement_timeout`) do not
 * cut a rotation or a verification short. Real PostgreSQL and SQLite, the
 * real CLI.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { actCodec } from '../src/crypto/codec';
import { ExitCode } from '../src/errors';
import { sqliteFile } from '../src/store/sqlite/url';
import { CliResult, Scenario, actScenario, dbSnapshot, readPlaintexts } from './support/scenario';
import { standIn, stopStandIn } from './support/stand-in';
import { withTestClient } from './support/db';
import { POSTGRES, SQLITE_ROLLBACK, SQLITE_WAL } from './support/stores';

/** A connected client's server process (pg sets it on connect; its types omit it). */
const pidOf = (c: Client): number => (c as Client & { processID: number }).processID;

/** apply with a short lock timeout and hooks that leave a marker; how long it took. */
function applyWithHooks(s: Scenario, extra: readonly string[] = []): { r: CliResult; ms: number; hooks: () => string } {
  const marker = join(s.dir, 'hooks.log');
  rmSync(marker, { force: true });
  const started = Date.now();
  const r = s.cli(['apply', '--lock-timeout', '1s', '--stop-command', `echo stopped >> '${marker}'`, '--start-command', `echo started >> '${marker}'`, '--json', ...extra]);
  return { r, ms: Date.now() - started, hooks: () => (existsSync(marker) ? readFileSync(marker, 'utf8') : '') };
}

/** The refusal as --json prints it, and the one line on stderr. */
function refusal(r: CliResult): { code: string; message: string; nothingChanged?: boolean; serverStartedAgain?: Array<{ which: string }>; blockers?: Array<Record<string, unknown>>; holders?: Array<{ pid: number }> } {
  expect(r.code).toBe(ExitCode.DATABASE);
  // Progress lines (--json sends them to stderr), then the refusal as its one last line.
  expect(r.stderr).toMatch(/\nmaster-key: [^\n]+ \[TABLES_BUSY\]\n$/);
  return JSON.parse(r.stdout).error;
}

describe('PostgreSQL: a row lock held by a stuck session', () => {
  let s: Scenario;
  let stuck: Client;
  beforeAll(async () => {
    s = await actScenario({ perKind: 2, store: POSTGRES });
  });
  afterAll(async () => {
    await stuck?.end().catch(() => undefined);
    await POSTGRES.drop(s.url);
  });

  it('apply waits about --lock-timeout, refuses with TABLES_BUSY naming the session (never its query), changes nothing, starts the server again; once the lock is gone apply rotates', async () => {
    const db = await dbSnapshot(s.url);
    const config = readFileSync(s.configPath, 'utf8');
    stuck = new Client({ connectionString: s.url, application_name: 'act-server (stuck)' });
    await stuck.connect();
    await stuck.query('BEGIN');
    await stuck.query("UPDATE git_credentials SET provider = provider || '' WHERE id = (SELECT min(id) FROM git_credentials)");
    const { r, ms, hooks } = applyWithHooks(s);
    const err = refusal(r);
    expect(err.code).toBe('TABLES_BUSY');
    expect(err.message).toMatch(
      new RegExp(
        `^The rotation could not lock the table public\\.git_credentials within the lock timeout of 1 s: PostgreSQL session pid ${pidOf(stuck)} \\(application "act-server \\(stuck\\)", user "postgres", idle in transaction, its transaction open for [\\d.]+ s, holding public\\.git_credentials\\) held a conflicting lock; nothing was changed: end that transaction \\(or stop it: SELECT pg_terminate_backend\\(${pidOf(stuck)}\\)\\) and run the command again, or raise the lock timeout\\.$`,
      ),
    );
    // Its query text is nowhere.
    expect(r.stdout + r.stderr).not.toMatch(/UPDATE|provider \|\|/);
    expect(err.blockers).toEqual([expect.objectContaining({ pid: pidOf(stuck), application: 'act-server (stuck)', user: 'postgres', state: 'idle in transaction' })]);
    // Bounded: the timeout plus the preflight, the hooks and starting node (the machine may be loaded).
    expect(ms).toBeGreaterThanOrEqual(1000);
    expect(ms).toBeLessThan(20_000);
    // Nothing changed, the server was started again, and the outcome says so.
    expect(hooks()).toBe('stopped\nstarted\n');
    expect(err.nothingChanged).toBe(true);
    expect(err.serverStartedAgain).toEqual([expect.objectContaining({ which: 'start' })]);
    expect(r.stderr + JSON.stringify(err)).not.toContain(s.key.toHex());
    await stuck.query('ROLLBACK');
    expect(await dbSnapshot(s.url)).toBe(db);
    expect(readFileSync(s.configPath, 'utf8')).toBe(config);
    expect(existsSync(join(s.dir, '.act.env.mk-pending'))).toBe(false);
    expect(existsSync(join(s.dir, 'master-key-backups'))).toBe(false);
    // The lock is gone: the same command rotates.
    const ok = s.cli(['apply', '--lock-timeout', '1s']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(await readPlaintexts(s.url, s.configKey(), s.plaintexts.keys())).toEqual(s.plaintexts);
  });

  it('a holder of the integrity canary (a transaction left open on it) is named the same way', async () => {
    const db = await dbSnapshot(s.url);
    const holder = new Client({ connectionString: s.url, application_name: 'canary holder' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM master_key.canary FOR UPDATE');
      const { r, hooks } = applyWithHooks(s);
      const err = refusal(r);
      expect(err.message).toMatch(new RegExp(`^The rotation could not lock the table master_key\\.canary within the lock timeout of 1 s: PostgreSQL session pid ${pidOf(holder)} \\(application "canary holder", user "postgres", idle in transaction, its transaction open for [\\d.]+ s, holding master_key\\.canary\\)`));
      expect(hooks()).toBe('stopped\nstarted\n');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect(await dbSnapshot(s.url)).toBe(db);
  });
});

describe.each([SQLITE_WAL, SQLITE_ROLLBACK])('$name: the file held by another process', (store) => {
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 2, store });
  });
  afterAll(() => store.drop(s.url));

  it('apply waits --lock-timeout (the busy timeout), refuses with TABLES_BUSY naming the process, changes nothing, starts the server again', async () => {
    const path = sqliteFile(s.url);
    const db = await dbSnapshot(s.url);
    const busy = await standIn(path, "globalThis.held = new Database(path); globalThis.held.exec('BEGIN IMMEDIATE')");
    let run: ReturnType<typeof applyWithHooks>;
    try {
      run = applyWithHooks(s);
    } finally {
      await stopStandIn(busy);
    }
    const err = refusal(run.r);
    expect(err.message).toMatch(
      new RegExp(`^The rotation could not lock the SQLite database .*act\\.db within the lock timeout of 1 s: process pid ${busy.pid} \\("node"\\) held its write lock \\(a server still running, or a transaction left open\\); nothing was changed`),
    );
    expect(err.holders).toEqual([expect.objectContaining({ pid: busy.pid })]);
    expect(run.ms).toBeGreaterThanOrEqual(1000);
    expect(run.ms).toBeLessThan(20_000);
    expect(run.hooks()).toBe('stopped\nstarted\n');
    expect(err.nothingChanged).toBe(true);
    expect(await dbSnapshot(s.url)).toBe(db);
    expect(existsSync(join(s.dir, '.act.env.mk-pending'))).toBe(false);
  });

  it('refuses a lock timeout that is not one, naming the accepted forms', () => {
    for (const bad of ['0s', '3m', 'soon', '2d']) {
      const r = s.cli(['apply', '--lock-timeout', bad]);
      expect(r.code).toBe(ExitCode.USAGE);
      expect(r.stderr).toContain(`--lock-timeout "${bad}" is not a lock timeout; give a duration of more than 0 and at most a day, such as 30s, 500ms, 2min or 1h`);
    }
  });
});

describe("PostgreSQL: the database's own statement timeout does not cut the tool's sessions short", () => {
  const ROWS = 200_000;
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 1, store: POSTGRES });
    // 200,000 more secrets, sealed under the key (as the case).
    const codec = actCodec();
    await withTestClient(s.url, async (c) => {
      for (let done = 0; done < ROWS; done += 20_000) {
        const tokens = Array.from({ length: 20_000 }, (_, i) => codec.seal(s.key, Buffer.from(`token ${done + i}`, 'utf8')));
        await c.query("INSERT INTO git_credentials (provider, access_token) SELECT 'bulk', t FROM unnest($1::text[]) AS t", [tokens]);
      }
      const name = (await c.query<{ d: string }>('SELECT current_database() AS d')).rows[0].d;
      // As production databases often have: every new session of this database gets it.
      await c.query(`ALTER DATABASE "${name}" SET statement_timeout = '300ms'`);
      await c.query(`ALTER DATABASE "${name}" SET idle_in_transaction_session_timeout = '300ms'`);
    });
  }, 300_000);
  afterAll(() => POSTGRES.drop(s.url));

  it('the setting is in force for other sessions (a full read takes longer than 300 ms)', async () => {
    await withTestClient(s.url, async (c) => {
      expect((await c.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0].statement_timeout).toBe('300ms');
      await expect(c.query('SELECT count(*) FROM git_credentials a, git_credentials b WHERE a.id < 400 AND b.access_token IS NOT NULL')).rejects.toThrow(/statement timeout/);
    });
  });

  it('apply (backup, re-encryption, verification) and verify succeed on 200,000 rows', () => {
    const r = s.cli(['apply', '--json']);
    expect(r.stderr).not.toMatch(/timeout|master-key:/);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout).report;
    expect(report.processed).toBeGreaterThan(ROWS);
    expect(report.verification.ok).toBe(true);
    const v = s.cli(['verify', '--json']);
    expect(v.stderr).not.toMatch(/timeout|master-key:/);
    expect(v.code).toBe(0);
    expect(JSON.parse(v.stdout)).toEqual(expect.objectContaining({ ok: true, failureCount: 0, checked: report.processed }));
  }, 300_000);
});
