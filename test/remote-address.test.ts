/**
 * The pure parts of reaching other hosts: the `ssh://` address parser (every
 * string becomes an address or one USAGE sentence), known_hosts host
 * patterns (wildcards, negations, `[host]:port`, hashed entries made by
 * `ssh-keygen -H`), host-key pins, fingerprints as `ssh-keygen -lf` prints
 * them, and the connection settings' defaults and precedence.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMasterKeyError } from '../src/errors';
import { formatSshAddress, parseSshAddress } from '../src/remote/address';
import { connectionOf, parseTimeout, resolveSshHost } from '../src/remote/connection';
import { fingerprintOf, hostsMatch, knownHostsName, parseHostKeyPin, parseKnownHosts } from '../src/remote/host-keys';
import { removeScratch, scratchDir } from '../scripts/scratch';

function refusal(address: string): string {
  try {
    parseSshAddress(address);
  } catch (e) {
    if (isMasterKeyError(e, 'USAGE')) return e.message;
    throw e;
  }
  throw new Error(`${address} was accepted`);
}

describe('ssh:// addresses', () => {
  it.each([
    ['ssh://root@10.0.0.2:2222/etc/act/act.env', { user: 'root', host: '10.0.0.2', port: 2222, path: '/etc/act/act.env' }],
    ['ssh://act.example.com/etc/act/act.env', { host: 'act.example.com', path: '/etc/act/act.env' }],
    ['SSH://deploy@[::1]:22/srv/app%20one/web.config', { user: 'deploy', host: '::1', port: 22, path: '/srv/app one/web.config' }],
    ['ssh://svc$@host/a.json', { user: 'svc$', host: 'host', path: '/a.json' }],
  ])('%s', (address, want) => {
    expect(parseSshAddress(address)).toEqual(want);
    expect(parseSshAddress(formatSshAddress(parseSshAddress(address)))).toEqual(want);
  });

  it.each([
    ['ssh://host', 'names no file'],
    ['ssh://host/', 'names a directory'],
    ['ssh://user:secret@host/etc/act.env', 'holds a password'],
    ['ssh://host:0/x', 'not a number from 1 to 65535'],
    ['ssh://host:99999/x', 'not a number from 1 to 65535'],
    ['ssh://ho_st/x', 'not a host name'],
    ['ssh://[::1/x', 'does not close it'],
    ['ssh://[nothost]/x', 'not an IPv6 address'],
    ['ssh://host/etc/../act.env', '. or ..'],
    ['ssh://host//etc/act.env', 'doubled slashes'],
    ['ssh://host/~/act.env', 'not expanded'],
    ['ssh://host/etc/act.env?x=1', '%3F'],
    ['ssh://host/etc/a b', 'a space'],
    ['ssh://host/etc/%zz', 'malformed percent-escape'],
    ['ssh://bad user@host/x', 'a space'],
    ['ssh://-x@host/x', 'not a login name'],
    ['http://host/x', 'is not an ssh:// address'],
  ])('%s is refused: %s', (address, why) => {
    const m = refusal(address);
    expect(m).toContain(why);
    expect(m).toMatch(/; write it as ssh:\/\/\[user@\]host\[:port\]\/absolute\/path, e\.g\. ssh:\/\/root@10\.0\.0\.2:22\/etc\/act\/act\.env\.$/);
    expect(m).not.toContain('secret');
  });
});

describe('known_hosts', () => {
  it('matches host patterns as OpenSSH does: [host]:port, wildcards, negations, case', () => {
    expect(knownHostsName('10.0.0.2', 22)).toBe('10.0.0.2');
    expect(knownHostsName('10.0.0.2', 2222)).toBe('[10.0.0.2]:2222');
    expect(hostsMatch('act1,act2', 'act2')).toBe(true);
    expect(hostsMatch('*.example.com,!bad.example.com', 'ACT.example.com')).toBe(true);
    expect(hostsMatch('*.example.com,!bad.example.com', 'bad.example.com')).toBe(false);
    expect(hostsMatch('10.0.0.?', '10.0.0.7')).toBe(true);
    expect(hostsMatch('10.0.0.2', '[10.0.0.2]:2222')).toBe(false);
    expect(hostsMatch('[10.0.0.2]:2222', '[10.0.0.2]:2222')).toBe(true);
  });

  it('reads hashed entries written by ssh-keygen -H, and fingerprints as ssh-keygen -lf prints them', () => {
    const dir = scratchDir('mk-kh-');
    try {
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
      const pub = readFileSync(join(dir, 'k.pub'), 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
      const file = join(dir, 'known_hosts');
      writeFileSync(file, `# comment\n\n[10.0.0.2]:2222 ${pub}\nact.example.com ${pub}\n`);
      execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
      const entries = parseKnownHosts(`${readFileSync(file, 'utf8')}@cert-authority *.example.com ${pub}\nnot a line\n`, file);
      expect(entries).toHaveLength(2);
      expect(entries.every((e) => e.hosts.startsWith('|1|'))).toBe(true);
      expect(hostsMatch(entries[0].hosts, '[10.0.0.2]:2222')).toBe(true);
      expect(hostsMatch(entries[0].hosts, '10.0.0.2')).toBe(false);
      expect(hostsMatch(entries[1].hosts, 'act.example.com')).toBe(true);
      const keygen = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, 'k.pub')], { encoding: 'utf8' }).split(/\s+/)[1];
      expect(fingerprintOf(entries[0].key.blob)).toBe(keygen);
      expect(parseHostKeyPin(pub)).toEqual({ fingerprint: keygen, type: 'ssh-ed25519' });
      expect(parseHostKeyPin(keygen)).toEqual({ fingerprint: keygen });
    } finally {
      removeScratch(dir);
    }
  });

  it('refuses a pin that is neither a fingerprint nor a public key, in one sentence', () => {
    expect(() => parseHostKeyPin('MD5:aa:bb')).toThrow(/is neither a SHA256 fingerprint \(SHA256: and 43 base64 characters, as `ssh-keygen -lf/);
  });
});

describe('connection settings', () => {
  const a = parseSshAddress('ssh://10.0.0.2/etc/act/act.env');

  it("uses OpenSSH's defaults from the environment: the local user, port 22, ~/.ssh/known_hosts, the agent, then ~/.ssh/id_ed25519 and id_rsa", () => {
    const h = resolveSshHost(a, {}, {}, { HOME: '/home/ci', USER: 'ci', SSH_AUTH_SOCK: '/run/agent.sock' });
    expect(h.target).toEqual({ host: '10.0.0.2', port: 22, user: 'ci', hostKeys: { kind: 'known-hosts', files: ['/home/ci/.ssh/known_hosts', '/etc/ssh/ssh_known_hosts'], explicit: false } });
    expect(h.agentSocket).toBe('/run/agent.sock');
    expect(h.keyFiles).toEqual(['/home/ci/.ssh/id_ed25519', '/home/ci/.ssh/id_rsa']);
    expect(h.timeoutMs).toBe(30_000);
    expect(h.remoteCommand).toBe('master-key');
    expect(h.label).toBe('ci@10.0.0.2:22');
  });

  it('takes the address over the node settings over the shared ones; agent = false and a pinned key', () => {
    const h = resolveSshHost(parseSshAddress('ssh://deploy@10.0.0.2:2200/x'), { user: 'root', port: 22, agent: false, timeout: '5m' }, { port: 2201, hostKey: 'SHA256:' + 'A'.repeat(43) }, { HOME: '/h', SSH_AUTH_SOCK: '/s' });
    expect(h.target.user).toBe('deploy');
    expect(h.target.port).toBe(2200);
    expect(h.agentSocket).toBeUndefined();
    expect(h.target.hostKeys).toEqual({ kind: 'pinned', pins: [{ fingerprint: 'SHA256:' + 'A'.repeat(43) }], setting: 'host_key' });
    expect(h.timeoutMs).toBe(300_000);
  });

  it('reads timeouts as terraform writes them and refuses the rest', () => {
    expect(parseTimeout('1m30s')).toBe(90_000);
    expect(parseTimeout('45')).toBe(45_000);
    expect(() => parseTimeout('soon')).toThrow(/write it like 30s, 5m or 1m30s/);
    expect(() => parseTimeout('0s')).toThrow(/from 1s to 1h/);
  });

  it("reads terraform's connection names from the provider's string map: ports as numbers, agent as a boolean, files absolute, key content refused unrepeated", () => {
    expect(connectionOf({ user: 'deploy', port: '2222', agent: 'false', known_hosts: '/k', private_key_file: '/id', bastion_host: 'jump', bastion_port: '22', timeout: '1m', remote_command: 'npx master-key', host_key: 'SHA256:x' })).toEqual({
      user: 'deploy',
      port: 2222,
      agent: false,
      knownHosts: '/k',
      privateKeyFile: '/id',
      bastionHost: 'jump',
      bastionPort: 22,
      timeout: '1m',
      remoteCommand: 'npx master-key',
      hostKey: 'SHA256:x',
    });
    expect(() => connectionOf({ password: 'x' })).toThrow(/ssh has no setting "password"; use the names of terraform's connection block: user, port/);
    expect(() => connectionOf({ port: '70000' })).toThrow(/ssh\.port "70000" is not a port number/);
    expect(() => connectionOf({ agent: 'yes' })).toThrow(/ssh\.agent "yes" is neither true nor false/);
    expect(() => connectionOf({ known_hosts: 'known_hosts' }, 'ssh_nodes["ssh://h/x"]')).toThrow(/ssh_nodes\["ssh:\/\/h\/x"\]\.known_hosts "known_hosts" is not an absolute path/);
    expect(() => connectionOf({ timeout: 'soon' })).toThrow(/ssh\.timeout "soon" is not a duration/);
    let refusal = '';
    try {
      connectionOf({ private_key_file: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk' });
    } catch (e) {
      refusal = (e as Error).message;
    }
    expect(refusal).toBe("ssh.private_key_file holds a key, not a file's path; give the path of the private key file (its content must never be in the configuration or state).");
  });

  it('refuses bastion settings without a bastion host', () => {
    expect(() => resolveSshHost(a, { bastionUser: 'jump' }, {}, {})).toThrow(/without bastion_host/);
  });
});
