/**
 * ACT installations on the "hosts" of test/support/sshd.ts: each node's
 * `act.env` (0600) in `<host root>/etc/act/`, ACT's SQLite database in
 * `<host root>/var/lib/act/act.db` (named by ACT_DATABASE_URL in the
 * primary's act.env) or one PostgreSQL database for every node (its URL
 * from the runner's DATABASE_URL), secrets of every kind sealed under a
 * known key, and stop/start/health hooks that log to `<host root>/hooks.log`.
 * The CLI runs on the runner (this machine) with `--config ssh://…` and the
 * SSH options that trust the fleet's hosts.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createDecipheriv } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MasterKey, parseKey } from '../../src/crypto/key';
import { ExitCode } from '../../src/errors';
import { storedValue } from './act-data';
import { CLI, CliResult, childEnv, keyLine, runCli } from './scenario';
import { withTestSql } from './sql';
import { SshdFleet, SshdHost } from './sshd';
import { StoreFixture } from './stores';

export interface RemoteAct {
  readonly fleet: SshdFleet;
  /** The hosts of the nodes, the primary's first. */
  readonly hosts: readonly SshdHost[];
  readonly store: StoreFixture;
  /** The database URL as the runner or the primary host sees it. */
  readonly url: string;
  /** Each node's act.env on its host (a path there). */
  readonly configPaths: readonly string[];
  /** Each node's address, ssh://root@127.0.0.1:<port>/… */
  readonly addresses: readonly string[];
  readonly key: MasterKey;
  readonly plaintexts: ReadonlyMap<string, string>;
  /** The runner's environment (DATABASE_URL for PostgreSQL; no agent, HOME with no ~/.ssh). */
  readonly env: NodeJS.ProcessEnv;
  /** The runner's working directory (its report copies go to ./master-key-reports there). */
  readonly runnerDir: string;
  /** The SSH options that trust the fleet (known_hosts, the client key, the remote command). */
  readonly sshArgs: readonly string[];
  /** `master-key <args> --config <every node> <ssh options>` on the runner. */
  cli(args: readonly string[], o?: CliOptions): CliResult;
  /** The same, started without waiting: the child, and its result when it exits. */
  start(args: readonly string[], o?: CliOptions): { child: ChildProcess; done: Promise<CliResult> };
  /** The key in a node's act.env (read on its host's files). */
  nodeKey(i?: number): MasterKey;
}

export interface CliOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly input?: string;
  /** Instead of every node's address. */
  readonly configs?: readonly string[];
  /** Instead of `sshArgs`. */
  readonly ssh?: readonly string[];
}

export interface RemoteActOptions {
  readonly store: StoreFixture;
  readonly perKind?: number;
  /** The hosts to put a node on (the first is the primary). @default the first host */
  readonly hosts?: readonly SshdHost[];
  /** Stop/start/health hooks on every host, logging to <root>/hooks.log. */
  readonly hooks?: boolean;
  readonly runnerDir: string;
}

/** The hooks: each appends its name and the time (ns) to the hooks.log of the host it runs on (sshd sets MK_HOST_ROOT per host). */
export function hookArgs(): string[] {
  const hook = (which: string) => `echo ${which} $(date +%s%N) >> "$MK_HOST_ROOT/hooks.log"`;
  return ['--stop-command', hook('stop'), '--start-command', hook('start'), '--health-command', hook('health')];
}

/** The hooks a host ran, in order, with when (ns since the epoch). */
export function hookTimes(h: SshdHost): Array<{ which: string; ns: bigint }> {
  const f = join(h.root, 'hooks.log');
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => ({ which: l.split(' ')[0], ns: BigInt(l.split(' ')[1]) }));
}

/** The hooks a host ran, in order. */
export function hooksRun(h: SshdHost): string[] {
  return hookTimes(h).map((x) => x.which);
}

export async function remoteAct(fleet: SshdFleet, o: RemoteActOptions): Promise<RemoteAct> {
  const hosts = o.hosts ?? [fleet.hosts[0]];
  const key = MasterKey.generate();
  const dbDir = join(hosts[0].root, 'var', 'lib', 'act');
  const url = await o.store.create(o.store.kind === 'sqlite' ? dbDir : undefined);
  const plaintexts = await o.store.seed(url, key, o.perKind ?? 3);
  const configPaths = hosts.map((h) => join(h.root, 'etc', 'act', 'act.env'));
  hosts.forEach((h, i) => {
    const urlLine = o.store.kind === 'sqlite' && i === 0 ? `ACT_DATABASE_URL=${url}\n` : '';
    writeFileSync(configPaths[i], `# ACT on ${h.name}\nACT_LISTEN=127.0.0.1:8080\n${keyLine(key)}\n${urlLine}ACT_LOG_LEVEL=info\n`, { mode: 0o600 });
  });
  const addresses = hosts.map((h, i) => `ssh://root@127.0.0.1:${h.port}${configPaths[i]}`);
  const env = childEnv({ ...(o.store.kind === 'postgres' ? { DATABASE_URL: url } : {}), HOME: join(fleet.dir, 'runner-home') });
  const sshArgs = ['--known-hosts', fleet.knownHosts, '--private-key-file', fleet.clientKey, '--no-ssh-agent', '--ssh-timeout', '10s'];
  const fullArgs = (args: readonly string[], c: CliOptions): string[] => {
    const configs = (c.configs ?? addresses).flatMap((a) => ['--config', a]);
    const hooks = !o.hooks ? [] : ['apply', 'plan'].includes(args[0]) ? hookArgs() : args[0] === 'recover' ? hookArgs().slice(2) : [];
    return [...args, ...configs, ...(c.ssh ?? sshArgs), ...hooks];
  };
  const r: RemoteAct = {
    fleet,
    hosts,
    store: o.store,
    url,
    configPaths,
    addresses,
    key,
    plaintexts,
    env,
    runnerDir: o.runnerDir,
    sshArgs,
    cli(args, c = {}) {
      return runCliIn(o.runnerDir, fullArgs(args, c), { ...env, ...(c.env ?? {}) }, c.input);
    },
    start(args, c = {}) {
      const child = spawn(process.execPath, [CLI, ...fullArgs(args, c)], { cwd: o.runnerDir, env: { ...env, ...(c.env ?? {}) }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdin!.end(c.input);
      const done = new Promise<CliResult>((res) => child.on('close', (code) => res({ code: code ?? -1, stdout, stderr })));
      return { child, done };
    },
    nodeKey(i = 0) {
      const m = /^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(configPaths[i], 'utf8'));
      if (!m) throw new Error(`no ACT_MASTER_KEY in ${configPaths[i]}`);
      return parseKey(m[1]);
    },
  };
  const init = runCli(['init', '--config', configPaths[0]], { ...env, ...(o.store.kind === 'postgres' ? { DATABASE_URL: url } : {}) });
  if (init.code !== ExitCode.OK) throw new Error(`init failed: ${init.stderr}`);
  return r;
}

/** The CLI on the runner, in its working directory. */
export function runCliIn(cwd: string, args: readonly string[], env: NodeJS.ProcessEnv, input?: string): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, env, input, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * An independent reader: every value the seed wrote, read with plain SQL and
 * opened with node:crypto alone (ACT's format, Base64(nonce(12) ||
 * ciphertext || tag(16)), AES-256-GCM, no additional data) under `keyHex`.
 * Returns the locations whose plaintext is not the seeded one.
 */
export async function notOpening(url: string, keyHex: string, plaintexts: ReadonlyMap<string, string>): Promise<string[]> {
  const key = Buffer.from(keyHex, 'hex');
  const bad: string[] = [];
  await withTestSql(url, async (db) => {
    for (const [loc, want] of plaintexts) {
      const v = await storedValue(db, loc);
      try {
        const raw = Buffer.from(String(v), 'base64');
        const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
        d.setAuthTag(raw.subarray(raw.length - 16));
        const plain = Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8');
        if (plain !== want) bad.push(`${loc}: another plaintext`);
      } catch (e) {
        bad.push(`${loc}: ${(e as Error).message}`);
      }
    }
  });
  return bad;
}

/** The job directories left beside a config file on a host (none once every job is finished). */
export function jobsLeft(configPath: string): string[] {
  const dir = join(dirname(configPath), '.master-key-jobs');
  try {
    // A directory holding only `claim` is no job: a runner claimed that id as never started, and it stays a minute
    // so that a connection still on its way cannot start it (src/remote/jobs.ts).
    return readdirSync(dir).filter((id) => {
      try {
        return readdirSync(join(dir, id)).join() !== 'claim';
      } catch {
        return false; // removed meanwhile
      }
    });
  } catch {
    return [];
  }
}

/**
 * Samples the command line of every process on this machine (the runner's
 * and, the hosts being loopback sshd servers, the hosts' too) every few
 * milliseconds until stopped; returns each distinct command line seen.
 */
export function sampleCommandLines(everyMs = 5): { stop(): Promise<string[]> } {
  const seen = new Set<string>();
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const d of readdirSync('/proc')) {
        if (!/^\d+$/.test(d)) continue;
        try {
          seen.add(readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
        } catch {
          // gone
        }
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return [...seen].filter(Boolean);
    },
  };
}

/** The key in a host's pending-key file beside `configPath`, if there is one. */
export function pendingKey(configPath: string): MasterKey | undefined {
  const p = join(dirname(configPath), `.${configPath.split('/').pop()}.mk-pending`);
  if (!existsSync(p)) return undefined;
  return parseKey((JSON.parse(readFileSync(p, 'utf8')) as { newKey: string }).newKey);
}
