/**
 * The SSH transport against real OpenSSH servers (test/support/sshd.ts):
 * host keys are always verified (pinned fingerprints and public keys, plain
 * and hashed known_hosts entries), and every refusal (unknown or changed
 * host key, wrong user or key, unreachable or silent host) is one sentence
 * with its code, before anything runs on the host. Commands run with their
 * standard input and stream their output; a connection killed under a
 * running command is reported as lost; one jump host works.
 */
import { createServer, Server, Socket } from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKeyError } from '../src/errors';
import { parseSshAddress } from '../src/remote/address';
import { SshSettings, resolveSshHost } from '../src/remote/connection';
import { ConnectionLost, SshSession } from '../src/remote/ssh';
import { SshdFleet, describeWithSshd, startFleet, stopFleet } from './support/sshd';

let fleet: SshdFleet;
beforeAll(async () => {
  fleet = await startFleet(3);
}, 60_000);
afterAll(() => stopFleet(fleet));

const NO_AGENT = { HOME: '/nonexistent-home' };

function hostOf(i: number, s: SshSettings, user = 'root') {
  const h = fleet.hosts[i];
  return resolveSshHost(parseSshAddress(`ssh://${user}@127.0.0.1:${h.port}/etc/act/act.env`), { privateKeyFile: fleet.clientKey, agent: false, timeout: '10s', ...s }, {}, NO_AGENT);
}

async function run(session: SshSession, command: string, stdin?: string): Promise<{ code: number | null; out: string; err: string }> {
  let out = '';
  let err = '';
  const r = await session.exec(command, stdin, { onStdout: (d) => (out += d.toString()), onStderr: (d) => (err += d.toString()) });
  return { code: r.code, out, err };
}

async function refusal(p: Promise<unknown>): Promise<MasterKeyError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof MasterKeyError) return e;
    throw e;
  }
  throw new Error('expected a refusal, the connection was made');
}

describeWithSshd('a trusted host', () => {
  it('runs a command with standard input and streams its output and exit code (pinned ed25519 fingerprint)', async () => {
    const s = await SshSession.open(hostOf(0, { hostKey: fleet.hosts[0].fingerprint }));
    try {
      const r = await run(s, 'cat; echo to-stderr >&2; exit 7', 'line one\nline two\n');
      expect(r).toEqual({ code: 7, out: 'line one\nline two\n', err: 'to-stderr\n' });
    } finally {
      s.close();
    }
  });

  it('accepts the host through a known_hosts file, plain or hashed by ssh-keygen -H, and a pinned public key line', async () => {
    for (const s of [{ knownHosts: fleet.knownHosts }, { knownHosts: fleet.hashedKnownHosts }, { hostKey: fleet.hosts[1].publicKey }]) {
      const session = await SshSession.open(hostOf(1, s));
      try {
        expect((await run(session, 'echo ok')).out).toBe('ok\n');
      } finally {
        session.close();
      }
    }
  });

  it('asks for the host-key type known_hosts lists, so an RSA-only entry is matched by the RSA key', async () => {
    const h = fleet.hosts[2];
    const rsaOnly = join(fleet.dir, 'known_hosts.rsa');
    const rsaLine = require('node:fs').readFileSync(join(fleet.dir, h.name, 'ssh_host_rsa_key.pub'), 'utf8').trim();
    writeFileSync(rsaOnly, `[127.0.0.1]:${h.port} ${rsaLine}\n`);
    const session = await SshSession.open(hostOf(2, { knownHosts: rsaOnly }));
    session.close();
    // The RSA fingerprint alone cannot say its type: the host presents ed25519 first, which the pin refuses, naming what it saw.
    const e = await refusal(SshSession.open(hostOf(2, { hostKey: h.rsaFingerprint })));
    expect(e.code).toBe('HOST_KEY_MISMATCH');
    expect(e.message).toContain(h.fingerprint);
  });

  it('reports a connection killed under a running command as lost', async () => {
    const s = await SshSession.open(hostOf(0, { hostKey: fleet.hosts[0].fingerprint }));
    try {
      const running = await s.start('sleep 30');
      running.stdin.end();
      setTimeout(() => fleet.hosts[0].killSessions(), 300);
      await expect(running.done).rejects.toBeInstanceOf(ConnectionLost);
      expect(s.alive).toBe(false);
    } finally {
      s.close();
    }
  });

  it('goes through one jump host (bastion_host, bastion_port, bastion_host_key)', async () => {
    const target = fleet.hosts[1];
    const jump = fleet.hosts[0];
    const s = await SshSession.open(hostOf(1, { hostKey: target.fingerprint, bastionHost: '127.0.0.1', bastionPort: jump.port, bastionHostKey: jump.fingerprint }));
    try {
      expect((await run(s, 'echo via-bastion')).out).toBe('via-bastion\n');
      expect(s.host.label).toBe(`root@127.0.0.1:${target.port} via root@127.0.0.1:${jump.port}`);
      expect(target.log()).toMatch(/Accepted publickey for root from 127\.0\.0\.1/);
    } finally {
      s.close();
    }
  });
});

describeWithSshd('refusals: nothing runs on the host', () => {
  /** A marker file the refused command would have created. */
  const marker = () => join(fleet.hosts[0].root, 'tmp', 'ran');
  const touch = () => `touch ${marker()}`;
  afterEach(() => expect(existsSync(marker())).toBe(false));

  async function tryRun(s: SshSettings, user?: string): Promise<MasterKeyError> {
    return refusal(
      (async () => {
        const session = await SshSession.open(hostOf(0, s, user));
        try {
          await run(session, touch());
        } finally {
          session.close();
        }
      })(),
    );
  }

  it('an unknown host key: HOST_KEY_UNKNOWN naming the host, the fingerprint it presented and how to pin it', async () => {
    const empty = join(fleet.dir, 'known_hosts.empty');
    writeFileSync(empty, '# nothing\n');
    const e = await tryRun({ knownHosts: empty });
    expect(e.code).toBe('HOST_KEY_UNKNOWN');
    const h = fleet.hosts[0];
    expect(e.message).toContain(`[127.0.0.1]:${h.port} presented the ssh-ed25519 host key ${h.fingerprint}, which is not in ${empty}; nothing was run there`);
    expect(e.message).toContain(`host_key = "${h.fingerprint}" (--host-key 127.0.0.1:${h.port}=${h.fingerprint})`);
    expect(e.exitCode).toBe(15);
  });

  it('a changed host key (known_hosts names another key for it): HOST_KEY_MISMATCH with both fingerprints', async () => {
    const h = fleet.hosts[0];
    const other = fleet.hosts[1];
    const swapped = join(fleet.dir, 'known_hosts.swapped');
    writeFileSync(swapped, `[127.0.0.1]:${h.port} ${other.publicKey}\n`);
    const e = await tryRun({ knownHosts: swapped });
    expect(e.code).toBe('HOST_KEY_MISMATCH');
    expect(e.message).toContain(`presented the ssh-ed25519 host key ${h.fingerprint}, but ${swapped} line 1 expects ${other.fingerprint}`);
    const pinned = await tryRun({ hostKey: other.fingerprint });
    expect(pinned.code).toBe('HOST_KEY_MISMATCH');
    expect(pinned.message).toContain(`but the pinned host_key expects ${other.fingerprint}`);
  });

  it('a key marked @revoked in known_hosts is refused even when listed', async () => {
    const h = fleet.hosts[0];
    const revoked = join(fleet.dir, 'known_hosts.revoked');
    writeFileSync(revoked, `[127.0.0.1]:${h.port} ${h.publicKey}\n@revoked * ${h.publicKey}\n`);
    const e = await tryRun({ knownHosts: revoked });
    expect(e.code).toBe('HOST_KEY_MISMATCH');
    expect(e.message).toContain('@revoked');
  });

  it('a wrong user or a key the host does not know: SSH_AUTH_FAILED', async () => {
    const pin = { hostKey: fleet.hosts[0].fingerprint };
    const wrongUser = await tryRun(pin, 'nobody');
    expect(wrongUser.code).toBe('SSH_AUTH_FAILED');
    expect(wrongUser.message).toBe(`127.0.0.1 did not let nobody log in with the key ${fleet.clientKey}; nothing was run there: check the user name and that its ~/.ssh/authorized_keys on 127.0.0.1 holds the matching public key.`);
    const stranger = await tryRun({ ...pin, privateKeyFile: fleet.strangerKey });
    expect(stranger.code).toBe('SSH_AUTH_FAILED');
    expect(stranger.message).toContain(`with the key ${fleet.strangerKey}`);
  });

  it('an unreachable host (nothing listens) and a silent one (accepts TCP, never speaks SSH): HOST_UNREACHABLE', async () => {
    const closed = await new Promise<number>((res) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
    const h = resolveSshHost(parseSshAddress(`ssh://root@127.0.0.1:${closed}/x`), { privateKeyFile: fleet.clientKey, agent: false, hostKey: fleet.hosts[0].fingerprint }, {}, NO_AGENT);
    const refused = await refusal(SshSession.open(h));
    expect(refused.code).toBe('HOST_UNREACHABLE');
    expect(refused.message).toBe(`Cannot reach root@127.0.0.1:${closed} over SSH (ECONNREFUSED); nothing was run there: check the host name, the port and the network (and the jump host, if any).`);
    let silent: Server | undefined;
    const accepted: Socket[] = [];
    try {
      const port = await new Promise<number>((res) => {
        silent = createServer((sock) => accepted.push(sock)).listen(0, '127.0.0.1', () => res((silent!.address() as { port: number }).port));
      });
      const t0 = Date.now();
      const quiet = resolveSshHost(parseSshAddress(`ssh://root@127.0.0.1:${port}/x`), { privateKeyFile: fleet.clientKey, agent: false, hostKey: fleet.hosts[0].fingerprint, timeout: '2s' }, {}, NO_AGENT);
      const e = await refusal(SshSession.open(quiet));
      expect(e.code).toBe('HOST_UNREACHABLE');
      expect(e.message).toContain('did not complete the SSH handshake within 2 s');
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      for (const sock of accepted) sock.destroy();
      await new Promise((r) => (silent ? silent.close(r) : r(undefined)));
    }
  });

  it('an encrypted or missing private key file is one sentence before connecting', async () => {
    const e = await refusal(SshSession.open(hostOf(0, { hostKey: fleet.hosts[0].fingerprint, privateKeyFile: join(fleet.dir, 'no-such-key') })));
    expect(e.code).toBe('USAGE');
    expect(e.message).toContain('Cannot read the private key file');
  });
});
