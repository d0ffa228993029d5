/**
 * Node addresses, `ssh://[user@]host[:port]/path`, wherever a config path is
 * accepted (`--config`, the provider's `config_files` and import ids, the
 * construct's `configFiles`): `parseSshAddress` (src/remote/address.ts),
 * then `configNode` (src/config/nodes.ts), which every surface calls.
 *
 * For every input: typed rejections only (USAGE), each one sentence; no
 * message or detail shows a password written into the address
 * (`user:password@`, which is always refused); an accepted address written
 * back by `formatSshAddress` parses to the same address.
 */
import fc from 'fast-check';
import { configNode } from '../../../src/config/nodes';
import { formatSshAddress, parseSshAddress } from '../../../src/remote/address';
import { FuzzTarget, invariant, typed } from '../harness';
import { anyText, applyEdits, edits } from '../mutate';

export interface SshAddressInput {
  readonly address: string;
  /** The password written into the address, if any: it must never be shown. */
  readonly password?: string;
}

const PASSWORDS = ['s3cret-Passw0rd', 'p@ss-w0rd-long', 'pa%40ss%3Aword', 'änd-ünïcode-pw', 'pw/with/slashes'];
const TOKENS = [':', '/', '//', '@', '%', '%2F', '%40', '[', ']', '?', '#', '.', '..', '~', ' ', '\n', '\u0000', 'ssh://', 'sftp://'];

const structured = fc
  .record({
    scheme: fc.constantFrom('ssh://', 'SSH://', 'ssh:/', 'sftp://', 'scp://', 'ssh:'),
    user: fc.constantFrom('', 'root', 'act', 'a.b-c_d', 'svc$', '-x', 'r%6F%6Ft', 'ü', 'a b'),
    password: fc.option(fc.constantFrom(...PASSWORDS), { nil: undefined }),
    host: fc.constantFrom('127.0.0.1', 'db.example.com', 'act-1', '[::1]', '[::1', '::1', '[fe80::1%eth0]', 'h_o', '', '999.1.1.1', 'a..b', 'host.'),
    port: fc.constantFrom('', ':22', ':0', ':65536', ':2222', ':x', ':'),
    path: fc.constantFrom('/etc/act/act.env', '/etc/act/', '/', '', '/~/act.env', '/etc/../act.env', '//etc/act.env', '/a%20b.env', '/a%zz', '/a?b', '/a#b', '/%00', '/Octopus/OctopusServer.config'),
    extra: anyText(6),
  })
  .map((a) => {
    const auth = a.user || a.password ? `${a.user}${a.password !== undefined ? `:${a.password}` : ''}@` : '';
    return { address: `${a.scheme}${auth}${a.host}${a.port}${a.path}${a.extra.length % 3 === 0 ? a.extra : ''}`, ...(a.password !== undefined ? { password: a.password } : {}) };
  });

function check(input: SshAddressInput): void {
  const secrets = input.password ? [input.password, decodeURIComponentSafe(input.password)] : [];
  const parsed = typed('parseSshAddress', () => parseSshAddress(input.address), ['USAGE'], secrets);
  const node = typed('configNode', () => configNode(input.address, 'ACT_MASTER_KEY', undefined, { env: {} }), ['USAGE', 'CONFIG_MISSING', 'FILE_ERROR'], secrets);
  if (!parsed.ok) return;
  invariant(input.password === undefined, 'an address with a password was accepted');
  const a = parsed.value;
  invariant(a.path.startsWith('/'), `an accepted address has the path ${JSON.stringify(a.path)}, which is not absolute`);
  const again = typed('parseSshAddress (written back)', () => parseSshAddress(formatSshAddress(a)), ['USAGE']);
  invariant(again.ok, `an accepted address written back (${JSON.stringify(formatSshAddress(a))}) is refused`);
  if (again.ok) invariant(JSON.stringify(again.value) === JSON.stringify(a), `an accepted address written back parses to another address (${JSON.stringify(again.value)} for ${JSON.stringify(a)})`);
  if (node.ok) invariant(node.value.target.path === a.path, 'configNode names another file than the address');
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export const SSH_ADDRESS_TARGET: FuzzTarget<SshAddressInput> = {
  name: 'ssh-address',
  entry: 'node addresses: parseSshAddress (src/remote/address.ts) and configNode (src/config/nodes.ts), as --config, config_files, import ids and configFiles reach them',
  arbitrary: fc.oneof(
    structured,
    // An edited address may hold the password anywhere or nowhere: only where the parser reads a password (user:password@) is it one.
    fc.record({ base: structured, es: edits(TOKENS) }).map(({ base, es }) => ({ address: applyEdits(base.address, es) })),
    anyText(40).map((address) => ({ address: `ssh://${address}` })),
  ),
  check,
  toJson: (i) => i,
  fromJson: (j) => j as SshAddressInput,
};
