/**
 * What only a SQLite file brings, through the real CLI: ACT's database URL
 * (`ACT_DATABASE_URL=sqlite:...` in act.env, relative to its directory),
 * `init --create-act-schema` on an empty act.db, and the file's own
 * hazards: a missing file, a file that is not SQLite, the file locked by a
 * running server (SQLITE_BUSY after the bounded busy timeout), a read-only
 * file or directory, a WAL left by a crashed server, the wrong file, a
 * rotation lock held by another process (named; released when it dies), a
 * worker thread beside the connection that stops mid-batch. Every refusal
 * is one sentence and changes nothing.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { openStore } from '../src/store/open';
import { sqliteFile } from '../src/store/sqlite/url';
import { CLI, CliResult, Scenario, actScenario, dbSnapshot, keyLine, readPlaintexts } from './support/scenario';
import { sqlQuery } from './support/sql';
import { SQLITE_ROLLBACK, SQLITE_WAL, createSqliteDatabase } from './support/stores';
import { BETTER_SQLITE3, standIn as server, stopStandIn as stop } from './support/stand-in';

const STORE_OPEN = resolve(__dirname, '..', 'dist', 'src', 'store', 'open.js');

function oneSentence(r: CliResult, code: number, errorCode: string, message: RegExp): void {
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr: expect.stringMatching(message) });
  expect(r.stderr).toMatch(new RegExp(`^master-key: [^\\n]+ \\[${errorCode}\\]\\n$`));
}

describe("ACT's own database URL", () => {
  it('init --create-act-schema on an empty act.db named by ACT_DATABASE_URL relative to act.env; plan, apply and status use it from any working directory', async () => {
    const s = await actScenario({ store: SQLITE_WAL, perKind: 1, init: false });
    // A second installation: act.env names its own, still empty, database relative to itself.
    const etc = join(s.dir, 'etc');
    mkdirSync(etc);
    const empty = sqliteFile(createSqliteDatabase('wal', join(s.dir, 'var')));
    const key = MasterKey.generate();
    const config = join(etc, 'act.env');
    writeFileSync(config, `${keyLine(key)}\nACT_DATABASE_URL=sqlite:../var/act.db\n`, { mode: 0o600 });
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    const cli = (args: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...args, '--config', config], { env, cwd: '/', encoding: 'utf8' });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    const init = cli(['init', '--create-act-schema']);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`Initialised ${empty}`);
    const tables = (await sqlQuery<{ name: string }>(`sqlite:${empty}`, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")).map((r) => r.name);
    expect(tables).toEqual(expect.arrayContaining(['master_key_canary', 'master_key_history', 'servers', 'services', 'storage_providers']));
    const token = actCodec().seal(key, Buffer.from('ghp_first', 'utf8'));
    await sqlQuery(`sqlite:${empty}`, "INSERT INTO git_credentials (provider, access_token) VALUES ('github', $1)", [token]);
    const plan = cli(['plan']);
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/git access token\s+1/);
    const apply = cli(['apply']);
    expect(apply.stderr).toBe('');
    expect(apply.code).toBe(0);
    const status = cli(['status', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ database: empty, generation: 2 });
    // The scenario's own database was never touched.
    expect(existsSync(join(dirname(sqliteFile(s.url)), '.act.db.mk-lock'))).toBe(false);
  });

  it('refuses when act.env and DATABASE_URL name different databases, and follows --database-url-entry / --database-url-env when given', async () => {
    const s = await actScenario({ store: SQLITE_WAL, perKind: 1 });
    const other = createSqliteDatabase('wal', join(s.dir, 'other'));
    writeFileSync(s.configPath, `${readFileSync(s.configPath, 'utf8')}ACT_DATABASE_URL=${other}\n`);
    const both = s.cli(['status']);
    oneSentence(both, ExitCode.USAGE, 'USAGE', /sets ACT_DATABASE_URL and the environment sets DATABASE_URL to a different database; choose one with --database-url-entry ACT_DATABASE_URL or --database-url-env DATABASE_URL/);
    expect(s.cli(['status', '--database-url-env', 'DATABASE_URL']).code).toBe(0);
    const viaEntry = s.cli(['status', '--database-url-entry', 'ACT_DATABASE_URL']);
    oneSentence(viaEntry, ExitCode.KEY_MISMATCH, 'CANARY_NOT_FOUND', /Integrity canary not found/);
  });

  it('a missing file is an error, never a new database', async () => {
    const s = await actScenario({ store: SQLITE_WAL, perKind: 1 });
    const missing = join(s.dir, 'nowhere', 'act.db');
    for (const cmd of ['plan', 'init', 'status']) {
      const r = s.cli([cmd], { env: { DATABASE_URL: `sqlite:${missing}` } });
      oneSentence(r, ExitCode.DATABASE, 'DB_UNREACHABLE', /The SQLite database .*nowhere\/act\.db does not exist; check the database URL .* A new database is never created\./);
    }
    expect(existsSync(dirname(missing))).toBe(false);
    const url = s.cli(['status'], { env: { DATABASE_URL: 'sqlite://host/act.db' } });
    oneSentence(url, ExitCode.USAGE, 'USAGE', /names a host part \(sqlite:\/\/\.\.\.\), not a SQLite file; write sqlite:\/absolute\/path\/act\.db/);
  });
});

describe('the SQLite file', () => {
  let s: Scenario;
  let path: string;
  const cfg = () => readFileSync(s.configPath, 'utf8');
  beforeAll(async () => {
    s = await actScenario({ store: SQLITE_WAL, perKind: 2 });
    path = sqliteFile(s.url);
  });

  /** Runs the CLI, expects a one-sentence refusal, and that the database, the config and the pending file are as they were. */
  async function refused(run: () => CliResult | Promise<CliResult>, code: number, errorCode: string, message: RegExp): Promise<CliResult> {
    const db = await dbSnapshot(s.url);
    const config = cfg();
    const r = await run();
    oneSentence(r, code, errorCode, message);
    expect(await dbSnapshot(s.url)).toBe(db);
    expect(cfg()).toBe(config);
    expect(existsSync(join(s.dir, '.act.env.mk-pending'))).toBe(false);
    return r;
  }

  it('is not SQLite: one sentence, nothing written into it', async () => {
    const notes = join(s.dir, 'notes.txt');
    writeFileSync(notes, 'this is not a database\n'.repeat(300));
    const r = await refused(() => s.cli(['apply'], { env: { DATABASE_URL: `sqlite:${notes}` } }), ExitCode.DATABASE, 'DB_ERROR', /notes\.txt is not a SQLite database \(SQLITE_NOTADB\); check the database URL\./);
    expect(r.stdout).toBe('');
    expect(readFileSync(notes, 'utf8')).toBe('this is not a database\n'.repeat(300));
  });

  it('is the wrong file (another installation): the canary does not open, nothing changes in either', async () => {
    const other = await actScenario({ store: SQLITE_WAL, perKind: 1 });
    const theirs = await dbSnapshot(other.url);
    await refused(() => s.cli(['apply'], { env: { DATABASE_URL: other.url } }), ExitCode.KEY_MISMATCH, 'OLD_KEY_INCORRECT', /Old master key incorrect/);
    expect(await dbSnapshot(other.url)).toBe(theirs);
  });

  it('locked by a running server: TABLES_BUSY after the lock timeout naming the process, nothing changed; plan still reads (WAL)', async () => {
    const busy = await server(path, "globalThis.held = new Database(path); globalThis.held.exec('BEGIN IMMEDIATE')");
    try {
      expect(s.cli(['plan']).code).toBe(0);
      await refused(
        () => s.cli(['apply', '--lock-timeout', '1s']),
        ExitCode.DATABASE,
        'TABLES_BUSY',
        new RegExp(`The rotation could not lock the SQLite database .*act\\.db within the lock timeout of 1 s: process pid ${busy.pid} \\("node"\\) held its write lock .*; nothing was changed: stop that process`),
      );
    } finally {
      await stop(busy);
    }
  });

  it('the rotation lock held by another process is named; when that process dies the lock is free at once', async () => {
    const holder = await server(path, `const { openStore } = require(${JSON.stringify(STORE_OPEN)}); globalThis.held = await openStore('sqlite:' + path, { label: 'master-key apply (stand-in)' }); await globalThis.held.lockRotation()`);
    try {
      await refused(() => s.cli(['apply']), ExitCode.LOCKED, 'LOCKED', new RegExp(`Another rotation \\(pid ${holder.pid} on \\S+, "master-key apply \\(stand-in\\)"\\) holds the lock on the SQLite database .*act\\.db since \\S+; wait for it to finish`));
      const st = JSON.parse(s.cli(['status', '--json']).stdout);
      expect(st.generation).toBe(1);
    } finally {
      await stop(holder);
    }
    const r = s.cli(['apply']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a WAL left by a crashed server: its committed rows are read, backed up and rotated', async () => {
    const key = s.configKey();
    const sealed = actCodec().seal(key, Buffer.from('written just before the crash', 'utf8'));
    // The "server" commits into the WAL without checkpointing, then dies by SIGKILL: the WAL holds the only copy.
    const crashed = spawnSync(
      process.execPath,
      [
        '-e',
        `const Database = require(${JSON.stringify(BETTER_SQLITE3)}); const db = new Database(${JSON.stringify(path)});
         db.pragma('wal_autocheckpoint = 0');
         db.prepare("INSERT INTO git_credentials (provider, access_token) VALUES ('crash', ?)").run(${JSON.stringify(sealed)});
         process.kill(process.pid, 'SIGKILL');`,
      ],
      { encoding: 'utf8' },
    );
    expect(crashed.signal).toBe('SIGKILL');
    expect(readFileSync(`${path}-wal`).length).toBeGreaterThan(0);
    const r = s.cli(['apply']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const newKey = s.configKey();
    // The backup (the whole file, through the backup API) holds the row as it was before the rotation.
    const backup = join(/Backup: (\S+)/.exec(r.stdout)![1], 'database.sqlite');
    const [saved] = await sqlQuery<{ v: string }>(`sqlite:${backup}`, "SELECT access_token AS v FROM git_credentials WHERE provider = 'crash'");
    expect(saved.v).toBe(sealed);
    const [row] = await sqlQuery<{ id: number }>(s.url, "SELECT id FROM git_credentials WHERE provider = 'crash'");
    const loc = `git_credentials.access_token:${row.id}`;
    expect((await readPlaintexts(s.url, newKey, [loc])).get(loc)).toBe('written just before the crash');
    expect(s.cli(['verify']).code).toBe(0);
  });

  it('checking that the file is writable keeps the lock SQLite holds on it (closing a descriptor of the file would drop every lock this process has there)', async () => {
    const locksOnFile = () => {
      const ino = statSync(path).ino;
      return readFileSync('/proc/locks', 'utf8')
        .split('\n')
        .filter((l) => l.includes(` ${process.pid} `) && l.includes(`:${ino} `)).length;
    };
    const store = await openStore(s.url);
    try {
      // In WAL mode an open connection holds a shared lock on the database file.
      expect(locksOnFile()).toBeGreaterThan(0);
      await store.assertWritable();
      expect(locksOnFile()).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it.each([
    ['WAL: the reader thread re-sealing the committed database', SQLITE_WAL],
    ['rollback journal: the crypto thread', SQLITE_ROLLBACK],
  ])('a worker thread that stops mid-batch (%s): apply rolls back inside its transaction, changes nothing, removes its backup, starts the server again', async (_, store) => {
    const t = await actScenario({ store, perKind: 3 });
    const hooksLog = join(t.dir, 'hooks.log');
    const db = await dbSnapshot(t.url);
    const config = readFileSync(t.configPath, 'utf8');
    const r = t.cli(['apply', '--batch-size', '2', '--stop-command', `echo stopped >> '${hooksLog}'`, '--start-command', `echo started >> '${hooksLog}'`], { env: { MASTER_KEY_TEST_WORKER_EXIT_AT: '3' } });
    oneSentence(r, ExitCode.INTERNAL, 'INTERNAL', /thread stopped unexpectedly \(exit code 70\)/);
    expect(r.stdout).toContain('Nothing was changed; starting the server again.');
    expect(readFileSync(hooksLog, 'utf8')).toBe('stopped\nstarted\n');
    expect(await dbSnapshot(t.url)).toBe(db);
    expect(readFileSync(t.configPath, 'utf8')).toBe(config);
    expect(existsSync(join(t.dir, '.act.env.mk-pending'))).toBe(false);
    expect(existsSync(join(t.dir, 'master-key-backups'))).toBe(false);
    // Nothing is left half done: the same apply without the fault rotates everything.
    expect(t.cli(['apply']).code).toBe(0);
    expect(t.cli(['verify']).code).toBe(0);
  });

  it('read-only for the user running the command (the file, or its directory): DB_READ_ONLY before anything is written', async () => {
    // As an unprivileged user (as root every file is writable), with a config of theirs in a folder they can read.
    const asNobody = (dir: string, key: MasterKey, url: string) => {
      const home = join(dir, 'nobody');
      mkdirSync(home, { recursive: true });
      const config = join(home, 'act.env');
      writeFileSync(config, `${keyLine(key)}\n`, { mode: 0o600 });
      chmodSync(dir, 0o755);
      chownSync(home, 65534, 65534);
      chownSync(config, 65534, 65534);
      return () => {
        const r = spawnSync(process.execPath, [CLI, 'apply', '--config', config], { env: { PATH: process.env.PATH, DATABASE_URL: url }, encoding: 'utf8', uid: 65534, gid: 65534 });
        return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
      };
    };
    // A WAL database whose directory they cannot write: SQLite cannot even open it for them.
    chmodSync(dirname(path), 0o755);
    chmodSync(path, 0o644);
    await refused(asNobody(s.dir, s.configKey(), s.url), ExitCode.DATABASE, 'DB_READ_ONLY', /The SQLite database .*act\.db is read-only for this user while opening it \(SQLITE_READONLY/);
    // A rollback-journal database: the file is root's (0644) in root's directory, then theirs in root's directory.
    const rb = await actScenario({ store: SQLITE_ROLLBACK, perKind: 1 });
    const rbPath = sqliteFile(rb.url);
    chmodSync(dirname(rbPath), 0o755);
    chmodSync(rbPath, 0o644);
    const run = asNobody(rb.dir, rb.key, rb.url);
    const before = await dbSnapshot(rb.url);
    oneSentence(run(), ExitCode.DATABASE, 'DB_READ_ONLY', /The SQLite database .*act\.db cannot be written by this user \(permission denied\); nothing was changed/);
    chownSync(rbPath, 65534, 65534);
    oneSentence(run(), ExitCode.DATABASE, 'DB_READ_ONLY', /Cannot create files in the SQLite database's directory .*: permission denied; .*nothing was changed\./);
    chownSync(rbPath, 0, 0);
    expect(await dbSnapshot(rb.url)).toBe(before);
    expect(readdirSync(dirname(rbPath))).toEqual(['act.db']);
  });
});
