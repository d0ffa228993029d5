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
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKey, parseKey } from '../../src/crypto/key';
import { ExitCode } from '../../src/errors';
import { CliResult, childEnv, keyLine, runCli } from './scenario';
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
  cli(args: readonly string[], o?: { env?: NodeJS.ProcessEnv; input?: string; configs?: readonly string[]; ssh?: readonly string[] }): CliResult;
  /** The key in a node's act.env (read on its host's files). */
  nodeKey(i?: number): MasterKey;
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

/** The hooks: each appends its name to the hooks.log of the host it runs on (sshd sets MK_HOST_ROOT per host). */
export function hookArgs(): string[] {
  const hook = (which: string) => `echo ${which} >> "$MK_HOST_ROOT/hooks.log"`;
  return ['--stop-command', hook('stop'), '--start-command', hook('start'), '--health-command', hook('health')];
}

/** The hooks a host ran, in order. */
export function hooksRun(h: SshdHost): string[] {
  const f = join(h.root, 'hooks.log');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ')[0]) : [];
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
      const configs = (c.configs ?? addresses).flatMap((a) => ['--config', a]);
      const full = [...args, ...configs, ...(c.ssh ?? sshArgs), ...(o.hooks && ['apply', 'recover', 'plan'].includes(args[0]) ? hookArgs() : [])];
      return runCliIn(o.runnerDir, full, { ...env, ...(c.env ?? {}) }, c.input);
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
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  const { CLI } = require('./scenario') as typeof import('./scenario');
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, env, input, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
