/**
 * Real OpenSSH servers for the tests and the benchmark of nodes on other hosts: each "host" is
 * an `sshd` (Debian's openssh-server) started as root on a free loopback
 * port, with host keys made for this run, its own config, PidFile and log,
 * and a root directory of its own (its config files, act.db, hooks). The
 * client keys, known_hosts files and every server file live in one scratch
 * directory; the machine's own sshd, /etc/ssh and ~/.ssh are never read or
 * written (only /run/sshd, the privilege-separation directory sshd needs,
 * is created when missing and left for the next run).
 *
 * On a host, `master-key` is this checkout's built CLI
 * (`node <checkout>/dist/src/cli/main.js`), on the session's PATH.
 *
 * `stopFleet` stops every sshd, kills whatever still runs from a host's
 * directory (a detached rotation job, say) and removes every file, also
 * after a failure.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { removeScratch, scratchDir } from './scratch';

export const SSHD = '/usr/sbin/sshd';
/** The checkout: the nearest directory up with a package.json (this file runs from scripts/ under ts-jest and from dist/scripts/ when built). */
function checkout(from: string): string {
  for (let d = from; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d;
    if (dirname(d) === d) return resolve(from, '..');
  }
}
const CHECKOUT = checkout(__dirname);
export const BUILT_CLI = join(CHECKOUT, 'dist', 'src', 'cli', 'main.js');

/** Why the SSH tests cannot run here (undefined: they can). */
export function sshdMissing(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} is missing: install it with \`apt-get install openssh-server\` (Debian's package; .ci/run does this) to run the tests of nodes on other hosts`;
  if (spawnSync('ssh-keygen', ['-?'], { stdio: 'ignore' }).error) return 'ssh-keygen is missing: install openssh-client (`apt-get install openssh-client`)';
  if (process.getuid?.() !== 0) return 'the tests of nodes on other hosts start sshd servers, which needs root; run them as root (as CI does)';
  return undefined;
}

/** One host: an sshd and its root directory. */
export interface SshdHost {
  readonly name: string;
  /** The host's own files: etc/, var/lib/act/, hooks, a bin/ with master-key. */
  readonly root: string;
  readonly port: number;
  /** `SHA256:…` of its ed25519 host key (as `ssh-keygen -lf` prints it). */
  readonly fingerprint: string;
  /** Its ed25519 public key line (`ssh-ed25519 AAAA…`). */
  readonly publicKey: string;
  /** The fingerprint of its RSA host key (it has both). */
  readonly rsaFingerprint: string;
  /** The listening sshd's pid, or undefined once stopped. */
  pid(): number | undefined;
  /** The pids of the sshd processes serving connections (children of the listener). */
  sessionPids(): number[];
  /** Kills (SIGKILL) every sshd process serving a connection; returns how many. */
  killSessions(): number;
  /** Stops the listener (and its sessions): the host becomes unreachable. */
  stop(): Promise<void>;
  /** Starts the listener again on the same port (after `stop`). */
  start(): Promise<void>;
  /** `ssh://root@127.0.0.1:<port><path>` for a path under the host's root. */
  address(path: string): string;
  /** The sshd log so far. */
  log(): string;
}

export interface SshdFleet {
  readonly dir: string;
  /** A private key authorized on every host. */
  readonly clientKey: string;
  /** A private key authorized nowhere. */
  readonly strangerKey: string;
  /** A known_hosts file naming every host in plain text (`[127.0.0.1]:port`). */
  readonly knownHosts: string;
  /** The same entries hashed by `ssh-keygen -H`. */
  readonly hashedKnownHosts: string;
  readonly hosts: readonly SshdHost[];
  /** The remote command that runs this checkout's CLI on a host (it is also `master-key` on the host's PATH). */
  readonly remoteCommand: string;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function keygen(file: string, type: 'ed25519' | 'rsa', comment: string): void {
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', comment, '-f', file], { stdio: 'ignore' });
}

/** `ssh-keygen -lf` of a public key file: its SHA256 fingerprint, as OpenSSH prints it. */
export function sshKeygenFingerprint(pubFile: string): string {
  const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile], { encoding: 'utf8' });
  return out.split(/\s+/)[1];
}

function waitForPort(port: number, child: ChildProcess, logFile: string, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  return new Promise((res, rej) => {
    const tick = () => {
      if (child.exitCode !== null) return rej(new Error(`sshd exited (${child.exitCode}): ${readFileSync(logFile, 'utf8')}`));
      if (readFileSync(logFile, 'utf8').includes('Server listening')) return res();
      if (Date.now() - t0 > timeoutMs) return rej(new Error(`sshd did not listen on ${port} within ${timeoutMs} ms: ${readFileSync(logFile, 'utf8')}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}

function childrenOf(pid: number): number[] {
  const kids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) kids.push(Number(d));
    } catch {
      // gone
    }
  }
  return kids;
}

/** Pids of processes whose command line or working directory is under `dir` (left-over jobs of a host). */
export function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${d}/cwd`);
      } catch {
        // not ours to read
      }
      if (cmd.includes(dir) || cwd.startsWith(dir)) found.push(Number(d));
    } catch {
      // gone
    }
  }
  return found;
}

const live = new Set<SshdFleet>();

/**
 * Starts `n` sshd servers ("hosts") in one scratch directory. `bastionOnly`
 * hosts listen like the others; a test reaches the rest through them.
 */
export async function startFleet(n: number): Promise<SshdFleet> {
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const dir = scratchDir('mk-sshd-', 0o700);
  const clientKey = join(dir, 'id_client');
  const strangerKey = join(dir, 'id_stranger');
  keygen(clientKey, 'ed25519', 'mk-test-client');
  keygen(strangerKey, 'ed25519', 'mk-test-stranger');
  const authorized = join(dir, 'authorized_keys');
  writeFileSync(authorized, readFileSync(`${clientKey}.pub`), { mode: 0o600 });
  const wrapper = `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BUILT_CLI)} "$@"\n`;
  const hosts: SshdHost[] = [];
  const fleet: SshdFleet = {
    dir,
    clientKey,
    strangerKey,
    knownHosts: join(dir, 'known_hosts'),
    hashedKnownHosts: join(dir, 'known_hosts.hashed'),
    hosts,
    remoteCommand: `${process.execPath} ${BUILT_CLI}`,
  };
  live.add(fleet);
  try {
    for (let i = 0; i < n; i++) hosts.push(await startHost(dir, `host${i + 1}`, authorized, wrapper));
    const known = hosts.map((h) => `[127.0.0.1]:${h.port} ${h.publicKey}\n[127.0.0.1]:${h.port} ${readFileSync(join(dir, h.name, 'ssh_host_rsa_key.pub'), 'utf8').trim()}`).join('\n') + '\n';
    writeFileSync(fleet.knownHosts, known);
    writeFileSync(fleet.hashedKnownHosts, known);
    execFileSync('ssh-keygen', ['-H', '-f', fleet.hashedKnownHosts], { stdio: 'ignore' });
    spawnSync('rm', ['-f', `${fleet.hashedKnownHosts}.old`]);
  } catch (e) {
    await stopFleet(fleet);
    throw e;
  }
  return fleet;
}

async function startHost(dir: string, name: string, authorized: string, wrapper: string): Promise<SshdHost> {
  const home = join(dir, name);
  const root = join(home, 'root');
  for (const d of [home, root, join(root, 'etc', 'act'), join(root, 'var', 'lib', 'act'), join(root, 'bin'), join(root, 'tmp')]) mkdirSync(d, { recursive: true, mode: 0o755 });
  chmodSync(home, 0o700);
  writeFileSync(join(root, 'bin', 'master-key'), wrapper, { mode: 0o755 });
  keygen(join(home, 'ssh_host_ed25519_key'), 'ed25519', name);
  keygen(join(home, 'ssh_host_rsa_key'), 'rsa', name);
  const port = await freePort();
  const config = join(home, 'sshd_config');
  const logFile = join(home, 'sshd.log');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(home, 'ssh_host_ed25519_key')}`,
      `HostKey ${join(home, 'ssh_host_rsa_key')}`,
      `PidFile ${join(home, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorized}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding yes',
      'PrintMotd no',
      'MaxStartups 100',
      'MaxSessions 100',
      'LogLevel VERBOSE',
      // HOME: the host's own (bash run by sshd reads ~/.bashrc even for a command; this machine's root has a slow one).
      `SetEnv PATH=${join(root, 'bin')}:/usr/local/bin:/usr/bin:/bin TMPDIR=${join(root, 'tmp')} MK_HOST_ROOT=${root} HOME=${root}`,
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  const begin = async () => {
    const out = openSync(logFile, 'a');
    try {
      child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
    await waitForPort(port, child, logFile);
  };
  const publicKey = readFileSync(join(home, 'ssh_host_ed25519_key.pub'), 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  const host: SshdHost = {
    name,
    root,
    port,
    fingerprint: sshKeygenFingerprint(join(home, 'ssh_host_ed25519_key.pub')),
    rsaFingerprint: sshKeygenFingerprint(join(home, 'ssh_host_rsa_key.pub')),
    publicKey,
    pid: () => (child && child.exitCode === null && child.signalCode === null ? child.pid : undefined),
    sessionPids: () => {
      const pid = host.pid();
      return pid === undefined ? [] : childrenOf(pid);
    },
    killSessions: () => {
      const pids = host.sessionPids();
      for (const p of pids) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      return pids.length;
    },
    stop: async () => {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      host.killSessions();
      const exited = new Promise((res) => c.once('exit', res));
      c.kill('SIGTERM');
      await exited;
    },
    start: async () => {
      if (host.pid() !== undefined) return;
      await begin();
    },
    address: (path) => `ssh://root@127.0.0.1:${port}${join(root, path)}`,
    log: () => readFileSync(logFile, 'utf8'),
  };
  await begin();
  return host;
}

/** Stops every sshd of the fleet, kills what still runs from its directories, removes every file. */
export async function stopFleet(fleet: SshdFleet | undefined): Promise<void> {
  if (!fleet) return;
  live.delete(fleet);
  for (const h of fleet.hosts) await h.stop();
  for (let i = 0; i < 20; i++) {
    const left = processesUnder(fleet.dir);
    if (left.length === 0) break;
    for (const p of left) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  removeScratch(fleet.dir);
}

/** Every fleet still running (for a test file's afterAll). */
export async function stopAllFleets(): Promise<void> {
  for (const f of [...live]) await stopFleet(f);
}
