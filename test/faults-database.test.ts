/**
 * The database going away during a rotation, for real: the apply's backend
 * terminated mid-transaction (pg_terminate_backend), the server stopped
 * mid-transaction (a private embedded PostgreSQL), and the connection cut
 * around the COMMIT by a TCP proxy (the COMMIT never arrives; the COMMIT is
 * applied but its reply is lost). Each time: a clear error, no secret lost,
 * and afterwards the database and files agree again (nothing changed, or
 * `recover` finishes a commit whose reply was lost) and the next apply
 * succeeds.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { AddressInfo, Server, Socket, createConnection, createServer } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ExitCode } from '../src/errors';
import { checkInvariant, createInstallation, diskState, Installation, runCli, CliRun } from '../scripts/soak-harness';
import { freshDatabase, withTestClient } from './support/db';
import { dbSnapshot } from './support/scenario';

/** The last table the ACT inventory re-encrypts: a trigger there stalls the rotation half-way. */
const LAST_TABLE = 'storage_providers';

/** Files whose bytes must not change when a rotation fails. */
function fileBytes(inst: Installation): string[] {
  return [...inst.configs, inst.pendingPath].map((p) => (existsSync(p) ? readFileSync(p, 'latin1') : '(absent)'));
}

/**
 * Test scaffolding in the database: a statement trigger on the last
 * inventory table that sleeps, so an apply re-encrypts the earlier tables
 * inside its transaction and then stalls there until it is cut off.
 */
async function installStall(url: string): Promise<void> {
  await withTestClient(url, async (c) => {
    await c.query(`CREATE FUNCTION mk_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(120); RETURN NULL; END $$`);
    await c.query(`CREATE TRIGGER mk_test_stall BEFORE UPDATE ON ${LAST_TABLE} FOR EACH STATEMENT EXECUTE FUNCTION mk_test_stall()`);
  });
}

async function removeStall(url: string): Promise<void> {
  await withTestClient(url, (c) => c.query(`DROP TRIGGER mk_test_stall ON ${LAST_TABLE}; DROP FUNCTION mk_test_stall()`));
}

/** Polls until the apply's backend sleeps in the stall trigger; returns its pid and transaction id. */
async function stalledApply(url: string): Promise<{ pid: number; xid: string }> {
  const db = new URL(url).pathname.slice(1);
  return withTestClient(url, async (c) => {
    for (let i = 0; i < 600; i++) {
      const r = await c.query<{ pid: number; xid: string }>(
        `SELECT pid, backend_xid::text AS xid FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'master-key apply%' AND wait_event = 'PgSleep'`,
        [db],
      );
      if (r.rows[0]) return r.rows[0];
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error('the apply never reached the stall');
  });
}

/** Rows of the tables re-encrypted before the last one that the stalled transaction has rewritten. */
async function rowsRewrittenBy(url: string, xid: string): Promise<number> {
  const tables = ['servers', 'service_env_vars', 'environment_variables', 'git_credentials', 'registry_credentials'];
  const sql = tables.map((t) => `(SELECT count(*) FROM ${t} WHERE xmax::text = $1)`).join(' + ');
  return withTestClient(url, async (c) => Number((await c.query<{ n: string }>(`SELECT (${sql})::text AS n`, [xid])).rows[0].n));
}

/** Starts an apply and waits until it stalls half-way through its transaction. */
async function applyStalledMidTransaction(inst: Installation): Promise<{ run: Promise<CliRun>; pid: number; xid: string }> {
  const run = runCli(inst, ['apply', '--batch-size', '2']);
  const { pid, xid } = await stalledApply(inst.url);
  return { run, pid, xid };
}

/** After a failed apply: nothing changed, the invariant holds, and the next apply rotates. */
async function expectNothingChangedThenApply(inst: Installation, before: { snapshot: string; files: string[] }): Promise<void> {
  expect(await dbSnapshot(inst.url)).toBe(before.snapshot);
  expect(fileBytes(inst)).toEqual(before.files);
  expect((await checkInvariant(inst)).violations).toEqual([]);
  const next = await runCli(inst, ['apply']);
  expect(next.stderr).toBe('');
  expect(next.code).toBe(0);
  const after = await checkInvariant(inst);
  expect(after.violations).toEqual([]);
  expect(after.generation).toBe(2);
}

describe('the backend terminated mid-transaction (pg_terminate_backend)', () => {
  let inst: Installation;
  beforeAll(async () => {
    inst = await createInstallation(await freshDatabase('fdb'), { perKind: 3, nodes: 2 });
    await installStall(inst.url);
  });

  it('fails with a clear database error saying nothing was committed, changes nothing, and the next apply succeeds', async () => {
    const before = { snapshot: await dbSnapshot(inst.url), files: fileBytes(inst) };
    const { run, pid, xid } = await applyStalledMidTransaction(inst);
    // Half-way: the transaction has rewritten the earlier tables' rows.
    expect(await rowsRewrittenBy(inst.url, xid)).toBeGreaterThan(0);
    expect(existsSync(inst.pendingPath)).toBe(true);
    await withTestClient(inst.url, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
    const r = await run;
    expect(r.code).toBe(ExitCode.DATABASE);
    expect(r.stderr).toMatch(/^master-key: The database connection.* was lost while .*; nothing was committed: check the server and run the command again\. \[DB_UNREACHABLE\]\n$/);
    expect(r.stderr).not.toMatch(/recover/);
    await removeStall(inst.url);
    await expectNothingChangedThenApply(inst, before);
  });
});

/**
 * A PostgreSQL server of this test's own (the run's shared server must stay
 * up for the other test files), in a child process that runs the built
 * `startEmbeddedPostgres` and obeys "stop", "restart" and "quit" on stdin.
 */
class PrivateServer {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiting: Array<(line: string) => void> = [];

  constructor() {
    const script = `
      const { startEmbeddedPostgres, removeEmbeddedData } = require(process.argv[1]);
      const rl = require('node:readline').createInterface({ input: process.stdin });
      startEmbeddedPostgres().then(async (s) => {
        console.log(JSON.stringify({ adminUrl: s.adminUrl }));
        for await (const line of rl) {
          if (line === 'stop' || line === 'quit') await s.stop();
          if (line === 'restart') await s.restart();
          if (line === 'quit') removeEmbeddedData(s);
          console.log('ok');
          if (line === 'quit') process.exit(0);
        }
      });`;
    this.child = spawn(process.execPath, ['-e', script, resolve(__dirname, '..', 'dist', 'src', 'db', 'embedded.js')]);
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      const w = this.waiting.shift();
      if (w) w(l);
      else this.lines.push(l);
    });
  }

  private next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((res) => this.waiting.push(res));
  }

  async adminUrl(): Promise<string> {
    return (JSON.parse(await this.next()) as { adminUrl: string }).adminUrl;
  }

  async send(cmd: 'stop' | 'restart' | 'quit'): Promise<void> {
    this.child.stdin.write(cmd + '\n');
    expect(await this.next()).toBe('ok');
  }
}

describe('the server stopped mid-transaction', () => {
  let server: PrivateServer;
  let inst: Installation;
  beforeAll(async () => {
    server = new PrivateServer();
    const admin = await server.adminUrl();
    await withTestClient(admin, (c) => c.query('CREATE DATABASE stopped'));
    const u = new URL(admin);
    u.pathname = '/stopped';
    inst = await createInstallation(u.toString(), { perKind: 2 });
    await installStall(inst.url);
  }, 60_000);
  afterAll(async () => {
    await server.send('quit');
  });

  it('fails with a clear error, changes nothing once the server is back, and the next apply succeeds', async () => {
    const before = { snapshot: await dbSnapshot(inst.url), files: fileBytes(inst) };
    const { run, xid } = await applyStalledMidTransaction(inst);
    expect(await rowsRewrittenBy(inst.url, xid)).toBeGreaterThan(0);
    await server.send('stop');
    const r = await run;
    expect(r.code).toBe(ExitCode.DATABASE);
    expect(r.stderr).toMatch(/^master-key: The database connection.* was lost while .*; nothing was committed: check the server and run the command again\. \[DB_UNREACHABLE\]\n$/);
    // While the server is down, a retry fails at once with a clear error and changes no file.
    const down = await runCli(inst, ['apply']);
    expect(down.code).toBe(ExitCode.DATABASE);
    expect(down.stderr).toMatch(/Cannot reach the database .* \(ECONNREFUSED\); check that PostgreSQL is running/);
    expect(fileBytes(inst)).toEqual(before.files);
    await server.send('restart');
    await removeStall(inst.url);
    await expectNothingChangedThenApply(inst, before);
  }, 60_000);
});

/**
 * A TCP proxy in front of PostgreSQL that cuts the apply's connection at its
 * rotation COMMIT (recognised as the first simple-query COMMIT after the
 * canary's UPDATE): `before` drops the COMMIT itself; `after` forwards it,
 * waits until the server confirms it, and drops the confirmation.
 */
class CommitCutter {
  readonly server: Server;
  cuts = 0;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly upstream: { host: string; port: number },
    private readonly mode: 'before' | 'after',
  ) {
    this.server = createServer((client) => this.handle(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((res) => this.server.listen(0, '127.0.0.1', res));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((res) => this.server.close(res));
  }

  private handle(client: Socket): void {
    const up = createConnection(this.upstream);
    this.sockets.add(client).add(up);
    let pending = Buffer.alloc(0);
    let startup = true;
    let armed = false;
    let cut = false;
    up.on('data', (d) => {
      if (cut) {
        // The COMMIT went through: the server's confirmation is dropped with the connection.
        client.destroy();
        up.destroy();
      } else {
        client.write(d);
      }
    });
    client.on('data', (d) => {
      pending = Buffer.concat([pending, d]);
      for (;;) {
        const len = startup ? (pending.length >= 4 ? pending.readInt32BE(0) : Infinity) : pending.length >= 5 ? pending.readInt32BE(1) + 1 : Infinity;
        if (pending.length < len) return;
        const msg = pending.subarray(0, len);
        pending = pending.subarray(len);
        startup = false;
        const text = msg.toString('latin1');
        if (text.includes('master_key.canary SET')) armed = true;
        if (armed && msg[0] === 0x51 /* Q */ && text.slice(5).startsWith('COMMIT')) {
          this.cuts++;
          if (this.mode === 'before') {
            client.destroy();
            up.destroy();
            return;
          }
          cut = true;
        }
        up.write(msg);
      }
    });
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  }
}

describe('the connection cut at the COMMIT', () => {
  let inst: Installation;
  let realUrl: string;
  beforeAll(async () => {
    realUrl = await freshDatabase('fcut');
    inst = await createInstallation(realUrl, { perKind: 2, nodes: 2 });
  });

  async function throughProxy(mode: 'before' | 'after'): Promise<{ r: CliRun; cutter: CommitCutter }> {
    const u = new URL(realUrl);
    const cutter = new CommitCutter({ host: u.hostname, port: Number(u.port) }, mode);
    const port = await cutter.listen();
    u.port = String(port);
    try {
      const r = await runCli(inst, ['apply'], { env: { DATABASE_URL: u.toString() } });
      return { r, cutter };
    } finally {
      await cutter.close();
    }
  }

  it('before the COMMIT arrives: nothing committed, nothing changed, pending key discarded, next apply succeeds', async () => {
    const before = { snapshot: await dbSnapshot(inst.url), files: fileBytes(inst) };
    const { r, cutter } = await throughProxy('before');
    expect(cutter.cuts).toBe(1);
    expect(r.code).toBe(ExitCode.DATABASE);
    expect(r.stderr).toMatch(/nothing was committed/);
    await expectNothingChangedThenApply(inst, before);
  });

  it('after the COMMIT is applied but before its reply: the new key stays on disk and recover finishes the rotation', async () => {
    const gen = (await checkInvariant(inst)).generation!;
    const { r, cutter } = await throughProxy('after');
    expect(cutter.cuts).toBe(1);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/nothing was committed/);
    expect(r.stderr).toMatch(/master-key recover/);
    // The database did commit: the key that opens everything must still be on disk.
    const disk = await diskState(inst);
    expect(disk.opened).toBe(disk.total);
    expect(disk.canaryOpensWithBest).toBe(true);
    expect(disk.pendingKey?.fingerprint).toBe(disk.best?.fingerprint);
    // Everything waits for recover, which finishes the rotation.
    const status = await runCli(inst, ['status']);
    expect(status.code).toBe(ExitCode.INTERRUPTED);
    const rec = await runCli(inst, ['recover', '--json']);
    expect(rec.code).toBe(0);
    expect(JSON.parse(rec.stdout)).toMatchObject({ action: 'finished' });
    const after = await checkInvariant(inst);
    expect(after.violations).toEqual([]);
    expect(after.generation).toBe(gen + 1);
    const next = await runCli(inst, ['apply']);
    expect(next.code).toBe(0);
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });
});
