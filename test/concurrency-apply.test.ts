/**
 * One rotation at a time per database. Two applies started together: exactly
 * one runs, the other is refused at once naming the lock holder's start
 * time, and changes nothing. A recover started during an apply is refused
 * too. And recover decides from the pending file as it is once it holds the
 * lock, not as it was when it started (a slow connection makes the race
 * deterministic).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AddressInfo, Server, Socket, createConnection, createServer } from 'node:net';
import { ExitCode } from '../src/errors';
import { CliRun, Installation, checkInvariant, createInstallation, runCli } from '../scripts/soak-harness';
import { freshDatabase, withTestClient } from './support/db';
import { dbSnapshot } from './support/scenario';

const gates: Array<() => void> = [];
let gateCount = 0;
/**
 * A stop hook that holds the running apply (and its lock) until the test
 * opens the gate (at most 2 minutes), so each check runs while the apply is
 * surely inside its rotation, however loaded the machine is. Every gate is
 * opened after each test, also a failed one.
 */
function gatedStop(inst: Installation): { args: string[]; open: () => void } {
  const gate = join(inst.dir, `gate-${++gateCount}`);
  const open = () => writeFileSync(gate, '');
  gates.push(open);
  return { args: ['--stop-command', `i=0; while [ ! -e ${gate} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done`], open };
}
afterEach(() => {
  for (const open of gates.splice(0)) open();
});

async function waitUntil(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function historyOutcomes(url: string): Promise<string[]> {
  return withTestClient(url, async (c) => (await c.query<{ outcome: string }>('SELECT outcome FROM master_key.history ORDER BY id')).rows.map((r) => r.outcome));
}

describe('two applies at once', () => {
  let inst: Installation;
  beforeAll(async () => {
    inst = await createInstallation(await freshDatabase('conc'), { perKind: 2, nodes: 2 });
  });

  it('exactly one runs; the other is refused at once, naming the holder and its start time, and changes nothing', async () => {
    const before = await checkInvariant(inst);
    // The stop hook keeps the winner inside its rotation (holding the lock) until the gate opens.
    const gate = gatedStop(inst);
    const args = ['apply', ...gate.args];
    const a = runCli(inst, args);
    const b = runCli(inst, args);
    const first = await Promise.race([a, b]);
    // The refused one is done while the winner still holds the lock: who holds it, since when?
    const holder = await withTestClient(inst.url, async (c) =>
      (
        await c.query<{ started: Date; app: string }>(
          "SELECT backend_start AS started, application_name AS app FROM pg_stat_activity WHERE application_name LIKE 'master-key apply%' AND datname = current_database()",
        )
      ).rows,
    );
    // The winner may still be in its preflight (a loaded machine): its pending file appears before its stop hook.
    await waitUntil(() => existsSync(inst.pendingPath), 'the winner\'s pending file');
    const pendingWhileRunning = readFileSync(inst.pendingPath, 'utf8');
    gate.open();
    const [ra, rb] = await Promise.all([a, b]);
    const loser = ra.code === 0 ? rb : ra;
    expect([ra.code, rb.code].sort()).toEqual([0, ExitCode.LOCKED]);
    expect(first).toBe(loser);
    expect(holder).toHaveLength(1);
    expect(loser.stderr).toBe(
      `master-key: Another rotation started ${holder[0].started.toISOString()} (PostgreSQL pid ${/pid (\d+)/.exec(loser.stderr)?.[1]}, "${holder[0].app}") holds the lock on this database; wait for it to finish and run the command again (a rotation that died releases the lock; then run \`master-key recover\`). [LOCKED]\n`,
    );
    expect(loser.stdout).toBe('');
    // The refused apply touched nothing: the winner's pending file was intact while it ran, and one rotation happened.
    expect(pendingWhileRunning).toContain(`"startedAt": "${/master-key apply (\S+)/.exec(holder[0].app)?.[1]}"`);
    const after = await checkInvariant(inst);
    expect(after.violations).toEqual([]);
    expect(after.generation).toBe(before.generation! + 1);
    expect(after.historyRows).toBe(before.historyRows + 1);
    expect(await historyOutcomes(inst.url)).toEqual(['verified']);
  });

  it('a recover during an apply is refused with LOCKED and changes nothing', async () => {
    const gate = gatedStop(inst);
    const a = runCli(inst, ['apply', ...gate.args]);
    await waitUntil(() => existsSync(inst.pendingPath), 'the pending file');
    const pending = readFileSync(inst.pendingPath, 'utf8');
    const snapshot = await dbSnapshot(inst.url);
    const r = await runCli(inst, ['recover']);
    expect(r.code).toBe(ExitCode.LOCKED);
    expect(r.stderr).toMatch(/^master-key: Another rotation started \S+ .* holds the lock on this database/);
    expect(readFileSync(inst.pendingPath, 'utf8')).toBe(pending);
    expect(await dbSnapshot(inst.url)).toBe(snapshot);
    gate.open();
    expect((await a).code).toBe(0);
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });
});

/** A TCP proxy that holds each new connection for `delayMs` before connecting it through. */
class SlowConnect {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly upstream: { host: string; port: number },
    private readonly delayMs: number,
  ) {
    this.server = createServer((client) => {
      this.sockets.add(client);
      client.pause();
      setTimeout(() => {
        const up = createConnection(this.upstream);
        this.sockets.add(up);
        client.pipe(up).pipe(client);
        client.resume();
        const end = () => {
          client.destroy();
          up.destroy();
        };
        client.on('error', end).on('close', end);
        up.on('error', end).on('close', end);
      }, this.delayMs);
    });
  }

  /** The database URL through this proxy. */
  async url(realUrl: string): Promise<string> {
    await new Promise<void>((res) => this.server.listen(0, '127.0.0.1', res));
    const u = new URL(realUrl);
    u.port = String((this.server.address() as AddressInfo).port);
    return u.toString();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((res) => this.server.close(res));
  }
}

describe('recover reads the pending file under the lock', () => {
  let inst: Installation;
  let slow: SlowConnect;
  let slowUrl: string;
  beforeAll(async () => {
    inst = await createInstallation(await freshDatabase('concrec'), { perKind: 2 });
    const u = new URL(inst.url);
    // Long enough for a rotation to finish (or reach its commit) on a busy CI machine while recover waits.
    slow = new SlowConnect({ host: u.hostname, port: Number(u.port) }, 5000);
    slowUrl = await slow.url(inst.url);
  });
  afterAll(async () => {
    await slow.close();
  });

  const slowRecover = (): Promise<CliRun> => runCli(inst, ['recover', '--json'], { env: { DATABASE_URL: slowUrl } });

  it('a rotation that completes while recover connects is left alone (its history stays "verified")', async () => {
    // The stop hook keeps the pending file there while recover starts; the apply then finishes while recover connects.
    const a = runCli(inst, ['apply', '--stop-command', 'sleep 1']);
    await waitUntil(() => existsSync(inst.pendingPath), 'the pending file');
    const r = slowRecover();
    expect((await a).code).toBe(0);
    const rec = await r;
    expect(rec.code).toBe(0);
    expect(JSON.parse(rec.stdout)).toMatchObject({ action: 'none' });
    expect((await historyOutcomes(inst.url)).at(-1)).toBe('verified');
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });

  it('a rotation that dies after its commit while recover connects is finished by that recover', async () => {
    const r = slowRecover();
    await new Promise((res) => setTimeout(res, 300));
    const a = await runCli(inst, ['apply'], { kill: { phase: 'committed', n: 1 } });
    expect(a.signal).toBe('SIGKILL');
    const rec = await r;
    expect(rec.code).toBe(0);
    expect(JSON.parse(rec.stdout)).toMatchObject({ action: 'finished' });
    expect(existsSync(inst.pendingPath)).toBe(false);
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });
});
