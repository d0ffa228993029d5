/**
 * The SSH transport (ssh2, public API only; never the `ssh` binary): open a
 * verified, authenticated connection to a host, through one jump host when
 * asked, and run commands on it with standard input and streamed output.
 *
 * Nothing runs on a host whose key is not trusted (`host-keys.ts`): the
 * check is ssh2's `hostVerifier`, called during the key exchange, before
 * authentication. Every failure to connect is one sentence with a code:
 * HOST_KEY_UNKNOWN, HOST_KEY_MISMATCH, SSH_AUTH_FAILED, HOST_UNREACHABLE.
 * A connection that was up and went away makes a running command fail
 * with `ConnectionLost` (the caller decides whether to reconnect).
 */
import { readFileSync } from 'node:fs';
import { Duplex, Writable } from 'node:stream';
import { AuthenticationType, Client, ClientChannel, ConnectConfig, ServerHostKeyAlgorithm, utils } from 'ssh2';
import { MasterKeyError } from '../errors';
import { hostLabel } from './address';
import { SshEndpoint, SshHost } from './connection';
import { HostKeyVerdict, checkHostKey, fingerprintOf, keyTypeOf, knownHostsName, preferredKeyTypes } from './host-keys';

/** A connection that was established went away (the host, the network or its sshd dropped it). */
export class ConnectionLost extends Error {
  constructor(readonly host: string, why: string) {
    super(`the SSH connection to ${host} was lost (${why})`);
    this.name = 'ConnectionLost';
  }
}

/** How a command on the host ended: its exit code, or the signal that ended it. */
export interface ExecResult {
  readonly code: number | null;
  readonly signal?: string;
}

/** A command running on the host: its standard input, and its end. */
export interface RunningCommand {
  readonly stdin: Writable;
  /** Resolves when the command exits; rejects with `ConnectionLost` when the connection goes first. */
  readonly done: Promise<ExecResult>;
}

/** Output handlers of a command. */
export interface ExecHandlers {
  readonly onStdout?: (chunk: Buffer) => void;
  readonly onStderr?: (chunk: Buffer) => void;
}

/** Keepalives every 5 s, 3 unanswered ones drop the connection: a host gone silent is noticed within about 20 s. */
const KEEPALIVE_MS = 5_000;

/** Host-key algorithms for each key type a pin or known_hosts names (asked for first, as OpenSSH does, so the host presents the key that is known). */
const ALGORITHMS: Readonly<Record<string, readonly ServerHostKeyAlgorithm[]>> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** ssh2's default order of host-key algorithms (its README). */
const DEFAULT_HOST_KEY_ALGORITHMS: readonly ServerHostKeyAlgorithm[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

/** A verified, authenticated connection to one host (maybe through a jump host). */
export class SshSession {
  private lostWhy: string | undefined;
  private readonly channels = new Set<ClientChannel>();

  private constructor(
    readonly host: SshHost,
    private readonly client: Client,
    private readonly jump: Client | undefined,
  ) {
    const lost = (why: string) => {
      this.lostWhy ??= why;
      for (const ch of this.channels) ch.destroy();
    };
    client.on('error', (e) => lost(e.message));
    client.on('close', () => lost('closed'));
    jump?.on('error', (e) => lost(`jump host: ${e.message}`));
    jump?.on('close', () => lost('jump host closed'));
  }

  /** Connects (through the jump host when one is set); refuses, with nothing run, a host that is not trusted or does not let us in. */
  static async open(host: SshHost): Promise<SshSession> {
    const auth = authMethods(host);
    if (!host.bastion) return new SshSession(host, await connectEndpoint(host.target, auth, host.timeoutMs), undefined);
    const jump = await connectEndpoint(host.bastion, auth, host.timeoutMs);
    try {
      const sock = await forward(jump, host);
      return new SshSession(host, await connectEndpoint(host.target, auth, host.timeoutMs, sock), jump);
    } catch (e) {
      jump.end();
      throw e;
    }
  }

  /** True until the connection is lost or closed. */
  get alive(): boolean {
    return this.lostWhy === undefined;
  }

  /** Starts `command` (a shell command line: the user's shell on the host runs it). */
  start(command: string, h: ExecHandlers = {}): Promise<RunningCommand> {
    return new Promise((resolve, reject) => {
      if (this.lostWhy !== undefined) return reject(new ConnectionLost(this.host.label, this.lostWhy));
      this.client.exec(command, (err, ch) => {
        if (err) return reject(this.lostWhy !== undefined ? new ConnectionLost(this.host.label, this.lostWhy) : new ConnectionLost(this.host.label, err.message));
        this.channels.add(ch);
        let exit: ExecResult | undefined;
        ch.on('exit', (code: number | null, signal?: string) => (exit = { code: code ?? null, ...(signal ? { signal } : {}) }));
        ch.on('data', (d: Buffer) => h.onStdout?.(d));
        ch.stderr.on('data', (d: Buffer) => h.onStderr?.(d));
        const done = new Promise<ExecResult>((res, rej) => {
          ch.on('close', () => {
            this.channels.delete(ch);
            if (exit) res(exit);
            else rej(new ConnectionLost(this.host.label, this.lostWhy ?? 'the channel closed before the command exited'));
          });
        });
        ch.on('error', () => undefined);
        resolve({ stdin: ch, done });
      });
    });
  }

  /** Runs `command` with `stdin` (then end of input) and waits for it. */
  async exec(command: string, stdin: string | Buffer | undefined, h: ExecHandlers = {}): Promise<ExecResult> {
    const run = await this.start(command, h);
    run.stdin.end(stdin);
    return run.done;
  }

  close(): void {
    this.lostWhy ??= 'closed by us';
    this.client.end();
    this.jump?.end();
  }
}

interface AuthMethods {
  readonly methods: readonly AuthMethod[];
  /** What was offered, for the refusal's sentence. */
  readonly offered: readonly string[];
}
type AuthMethod = { type: 'agent'; agent: string } | { type: 'publickey'; key: Buffer };

/** The agent, then each private key file that exists and is not encrypted (a given file that cannot be used is an error). */
function authMethods(host: SshHost): AuthMethods {
  const methods: AuthMethod[] = [];
  const offered: string[] = [];
  if (host.agentSocket) {
    methods.push({ type: 'agent', agent: host.agentSocket });
    offered.push(`the agent at ${host.agentSocket}`);
  }
  for (const file of host.keyFiles) {
    let key: Buffer;
    try {
      key = readFileSync(file);
    } catch (e) {
      if (!host.keyFilesGiven) continue;
      throw new MasterKeyError('USAGE', `Cannot read the private key file ${file} (${(e as NodeJS.ErrnoException).code}); give a readable OpenSSH private key file with private_key_file (--private-key-file).`);
    }
    const parsed = utils.parseKey(key);
    if (parsed instanceof Error) {
      if (!host.keyFilesGiven) continue;
      const encrypted = /encrypted|passphrase/i.test(parsed.message);
      throw new MasterKeyError(
        'USAGE',
        encrypted
          ? `The private key file ${file} is encrypted; load it into ssh-agent (ssh-add) and use the agent instead, since a passphrase is never taken from a setting.`
          : `The private key file ${file} is not a private key ssh2 can use (${parsed.message}); give an OpenSSH private key.`,
      );
    }
    methods.push({ type: 'publickey', key });
    offered.push(`the key ${file}`);
  }
  return { methods, offered };
}

/** The error for a failed connection attempt, one sentence naming the host; nothing was run there. */
function connectError(ep: SshEndpoint, e: Error & { level?: string; code?: string }, verdict: { v?: HostKeyVerdict; presented?: Buffer }, auth: AuthMethods, timeoutMs: number): MasterKeyError {
  const where = hostLabel(ep.user, ep.host, ep.port);
  const v = verdict.v;
  if (v && !v.ok && verdict.presented) return hostKeyError(ep, v, verdict.presented);
  if (e.level === 'client-authentication') {
    const tried = auth.offered.length ? auth.offered.join(', ') : 'no key at all (no agent, no private_key_file, no ~/.ssh/id_ed25519 or ~/.ssh/id_rsa)';
    return new MasterKeyError('SSH_AUTH_FAILED', `${ep.host} did not let ${ep.user} log in with ${tried}; nothing was run there: check the user name and that its ~/.ssh/authorized_keys on ${ep.host} holds the matching public key.`, { host: where });
  }
  if (e.level === 'client-timeout') {
    return new MasterKeyError('HOST_UNREACHABLE', `${where} did not complete the SSH handshake within ${Math.round(timeoutMs / 1000)} s; nothing was run there: check that the host is up and its sshd listens on port ${ep.port}, or raise timeout.`, { host: where });
  }
  const why = e.code ?? e.message;
  return new MasterKeyError('HOST_UNREACHABLE', `Cannot reach ${where} over SSH (${why}); nothing was run there: check the host name, the port and the network (and the jump host, if any).`, { host: where });
}

/** HOST_KEY_UNKNOWN or HOST_KEY_MISMATCH: the host, the key it presented, what was expected, and how to pin it. */
function hostKeyError(ep: SshEndpoint, v: Extract<HostKeyVerdict, { ok: false }>, presented: Buffer): MasterKeyError {
  const fp = fingerprintOf(presented);
  const type = keyTypeOf(presented);
  const name = knownHostsName(ep.host, ep.port);
  const file = type.startsWith('ecdsa') ? 'ecdsa' : type === 'ssh-rsa' ? 'rsa' : type === 'ssh-dss' ? 'dsa' : 'ed25519';
  const check = `check it on the host (\`ssh-keygen -lf /etc/ssh/ssh_host_${file}_key.pub\`)`;
  const details = { host: hostLabel(ep.user, ep.host, ep.port), presented: fp, keyType: type, expected: v.expected };
  if (v.code === 'HOST_KEY_UNKNOWN') {
    return new MasterKeyError(
      'HOST_KEY_UNKNOWN',
      `${name} presented the ${type} host key ${fp}, which is not in ${v.why}; nothing was run there: ${check}, then pin it with host_key = "${fp}" (--host-key ${ep.port === 22 ? ep.host : `${ep.host}:${ep.port}`}=${fp}) or add it to known_hosts (\`ssh-keyscan -p ${ep.port} ${ep.host}\`, after checking).`,
      details,
    );
  }
  return new MasterKeyError(
    'HOST_KEY_MISMATCH',
    `${name} presented the ${type} host key ${fp}, but ${v.why} expects ${v.expected.length ? v.expected.join(' or ') : 'it not to be used'}: the host was reinstalled, or someone is in the middle; nothing was run there: ${check}, and only if it really changed, pin the new key or replace the known_hosts entry.`,
    details,
  );
}

/** Connects and authenticates to one endpoint (directly, or over `sock` from a jump host). */
function connectEndpoint(ep: SshEndpoint, auth: AuthMethods, timeoutMs: number, sock?: Duplex): Promise<Client> {
  const known = preferredKeyTypes(ep.hostKeys, ep.host, ep.port).flatMap((t) => ALGORITHMS[t] ?? []);
  // ssh2's `prepend` skips algorithms already listed, so the order is given whole: the known types first.
  const prefer = known.length ? [...known, ...DEFAULT_HOST_KEY_ALGORITHMS.filter((a) => !known.includes(a))] : [];
  return new Promise((resolve, reject) => {
    const c = new Client();
    const verdict: { v?: HostKeyVerdict; presented?: Buffer; error?: unknown } = {};
    let settled = false;
    c.on('ready', () => {
      settled = true;
      resolve(c);
    });
    c.on('error', (e: Error & { level?: string; code?: string }) => {
      if (settled) return;
      settled = true;
      c.end();
      reject(verdict.error ?? connectError(ep, e, verdict, auth, timeoutMs));
    });
    c.on('close', () => {
      if (settled) return;
      settled = true;
      reject(connectError(ep, Object.assign(new Error('the connection closed during the handshake'), { code: 'closed during the handshake' }), verdict, auth, timeoutMs));
    });
    const methods = auth.methods.map((m) => ({ ...m, username: ep.user }));
    const config: ConnectConfig = {
      host: ep.host,
      port: ep.port,
      username: ep.user,
      readyTimeout: timeoutMs,
      keepaliveInterval: KEEPALIVE_MS,
      keepaliveCountMax: 3,
      ...(sock ? { sock } : {}),
      ...(prefer.length ? { algorithms: { serverHostKey: prefer } } : {}),
      hostVerifier: (key: Buffer) => {
        verdict.presented = key;
        try {
          verdict.v = checkHostKey(ep.hostKeys, ep.host, ep.port, { type: keyTypeOf(key), blob: key });
        } catch (e) {
          verdict.error = e;
          return false;
        }
        return verdict.v.ok;
      },
      authHandler: methods as unknown as AuthenticationType[],
    };
    c.connect(config);
  });
}

/** A TCP stream to the target host from the jump host. */
function forward(jump: Client, host: SshHost): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    jump.forwardOut('127.0.0.1', 0, host.target.host, host.target.port, (err, stream) => {
      if (err) {
        const b = host.bastion!;
        reject(
          new MasterKeyError('HOST_UNREACHABLE', `The jump host ${hostLabel(b.user, b.host, b.port)} could not open a connection to ${host.target.host}:${host.target.port} (${err.message}); nothing was run there: check the target's address as the jump host sees it, and that the jump host allows TCP forwarding.`, {
            host: host.label,
          }),
        );
      } else resolve(stream);
    });
  });
}
