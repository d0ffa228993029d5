/**
 * The provider's parts without terraform: msgpack values as the wire format
 * describes them (counting by query is the store contract's, in
 * test/support/store-contract.ts, on every store), arguments and import ids, the
 * per-launch certificate, and the plugin process itself spoken to over gRPC
 * with mutual TLS exactly as go-plugin does (handshake line, health, schema,
 * shutdown), plus its refusal to run without the magic cookie.
 */
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { settingsOf, validateKey } from '../src/provider/arguments';
import { installationOf } from '../src/provider/rotation-seam';
import { describeLockTimeout, lockTimeoutMs } from '../src/lock-timeout';
import { LISTED_ROWS, errorDiagnostic, failureList } from '../src/provider/diagnostics';
import { MasterKeyError } from '../src/errors';
import { makeIdentity } from '../src/provider/certificate';
import { UNKNOWN, Value, decodeDynamic, encodeDynamic, hasUnknown } from '../src/provider/cty';
import { MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, loadProto } from '../src/provider/plugin-server';
import { parseImportId } from '../src/provider/key-resource';
import { providerService } from '../src/provider/provider';
import { KEY_RESOURCE, KeyObject, objectOf, typed } from '../src/provider/schema';
import { caught } from './support/errors';

const MAIN = join(__dirname, '..', 'dist', 'src', 'provider', 'main.js');

describe('msgpack DynamicValues', () => {
  it('encodes an unknown as cty does (fixext1, type 0) and decodes refined (type 12) and other extensions as unknown', () => {
    expect([...encodeDynamic(UNKNOWN).msgpack]).toEqual([0xd4, 0x00, 0x00]);
    // [refined unknown, "x"]: fixext4 of type 12 holding the refinement map {1: false} (not null) and a pad byte.
    expect(decodeDynamic({ msgpack: Buffer.from([0x92, 0xd6, 0x0c, 0x81, 0x01, 0xc2, 0x00, 0xa1, 0x78]) })).toEqual([UNKNOWN, 'x']);
    expect(decodeDynamic({ msgpack: Buffer.from([0xd4, 0x05, 0x00]) })).toBe(UNKNOWN);
  });

  it('round-trips objects, lists, maps, numbers, booleans and nulls; JSON is the fallback', () => {
    const v: Value = { name: 'act', generation: 3, files: ['/a', '/b'], by_kind: { 'git access token': 5 }, ok: true, none: null, later: UNKNOWN };
    const back = decodeDynamic(encodeDynamic(v));
    expect(back).toEqual(v);
    expect(hasUnknown(back)).toBe(true);
    expect(decodeDynamic({ json: Buffer.from('{"a":[1,2.5,"x"]}') })).toEqual({ a: [1, 2.5, 'x'] });
    expect(decodeDynamic(null)).toBeNull();
  });

  it('refuses bytes that do not decode, and a configuration or state that is not an object, as USAGE: never an internal error', async () => {
    for (const bytes of [[0x81], [0xc1], [0x92, 0x01], [0xdf, 0xff, 0xff, 0xff, 0xff]]) expect(caught(() => decodeDynamic({ msgpack: Buffer.from(bytes) })).code).toBe('USAGE');
    expect(caught(() => decodeDynamic({ json: Buffer.from('{"a":') })).code).toBe('USAGE');
    const quiet = jest.spyOn(process.stderr, 'write').mockImplementation(() => true); // the provider's hclog lines
    try {
      const service = providerService();
      const rpc = (name: string, request: unknown) =>
        new Promise<{ diagnostics?: Array<{ summary: string; detail: string }> }>((resolve) => (service[name] as (c: unknown, cb: (e: unknown, r: never) => void) => void)({ request }, (_e, r) => resolve(r)));
      const codes = async (name: string, request: unknown) => ((await rpc(name, request)).diagnostics ?? []).map((d) => /Error code (\w+)/.exec(d.detail)?.[1] ?? 'attribute');
      for (const config of [{ msgpack: Buffer.from([0x81]) }, encodeDynamic('not an object'), encodeDynamic([1, 2]), {}]) {
        expect(await codes('ValidateResourceConfig', { config })).not.toContain('INTERNAL');
        expect(await codes('ValidateDataResourceConfig', { config })).not.toContain('INTERNAL');
      }
      expect(await codes('ValidateResourceConfig', { config: encodeDynamic('not an object') })).toEqual(['USAGE']);
      for (const json of ['{', '[1]', '"x"', '']) expect(await codes('UpgradeResourceState', { type_name: 'masterkey_key', raw_state: { json: Buffer.from(json) } })).toEqual(['USAGE']);
    } finally {
      quiet.mockRestore();
    }
  });

  it('types numbers cty sends as decimal strings (when float64 cannot hold them exactly) by the schema', () => {
    const v = typed(KEY_RESOURCE, { ...objectOf(KEY_RESOURCE, {}), generation: '3', rotation_period_days: '0.1', secrets_by_kind: { a: '2' }, name: '42' });
    expect(v).toEqual(expect.objectContaining({ generation: 3, rotation_period_days: 0.1, secrets_by_kind: { a: 2 }, name: '42' }));
  });
});

describe('arguments and import ids', () => {
  const base = objectOf(KEY_RESOURCE, { name: 'act', generation: 1, config_files: ['/etc/act.env'] });
  /** An object with values of types the schema does not allow, as a broken state or a bad msgpack value could hold. */
  const untyped = (o: Record<string, unknown>) => o as unknown as KeyObject;

  it('accepts good arguments and names each bad one with the fix', () => {
    expect(validateKey(base)).toEqual([]);
    const bad = validateKey({ ...base, generation: -1, config_files: ['etc/act.env', 'etc/act.env'], config_format: 'yaml', database_url_env: 'postgres://u:p@h/db', database_url_entry: 'X', rotation_epoch: 'yesterday', backup_dir: 'backups' });
    const text = bad.map((d) => d.summary).join('\n');
    expect(text).toContain('generation -1 is not a whole number');
    expect(text).toContain('config_files[0] "etc/act.env" is not an absolute path');
    expect(text).toContain('lists the same file twice');
    expect(text).toContain('config_format "yaml" is not a known format');
    expect(text).toContain('database_url_env and database_url_entry are both set');
    expect(text).toContain('database_url_env is not an environment variable name');
    expect(text).not.toContain('u:p@h');
    expect(text).toContain('rotation_epoch "yesterday" is not a UTC date');
    expect(text).toContain('backup_dir "backups" is not an absolute path');
    expect(bad.every((d) => d.severity === 'ERROR' && d.attribute)).toBe(true);
    expect(validateKey({ ...base, generation: UNKNOWN, config_files: UNKNOWN })).toEqual([]);
    // config_files as terraform could send it in a broken state: not a list, or with an element that is not a path.
    expect(validateKey(untyped({ ...base, config_files: '/etc/act.env' })).map((d) => d.summary)).toEqual(['config_files is not a list; list the absolute paths of the config files holding the key.']);
    expect(validateKey(untyped({ ...base, config_files: ['/etc/act.env', null, 7] })).map((d) => d.summary)).toEqual([
      'config_files[1] is null, not a path; give the absolute path of a config file.',
      'config_files[2] is 7, not a path; give the absolute path of a config file.',
    ]);
    expect(caught(() => installationOf({ ...base, config_files: null }, () => undefined)).message).toBe(
      'No config file was given; name the config file that holds the master key (one per server node).',
    );
    // What a summary quotes is quoted as JSON, so a line break cannot split it across lines.
    const odd = validateKey(untyped({ ...base, generation: '\f\n', config_files: ['a\nb'], rotation_epoch: 'x\ny', rotation_period_days: 30, new_key_file: 'k\r' })).map((d) => d.summary);
    expect(odd).toEqual([
      'config_files[0] "a\\nb" is not an absolute path; write it absolute, e.g. with abspath().',
      'generation "\\f\\n" is not a whole number of at least 0; give the key generation as an integer such as 1, and raise it by one to rotate.',
      'rotation_epoch "x\\ny" is not a UTC date; write it like 1970-01-01 or 1970-01-01T00:00:00Z.',
      'new_key_file "k\\r" is not an absolute path; write it absolute, e.g. with abspath().',
    ]);
  });

  it('checks the ssh settings and every node on another host at validation, each on its attribute', () => {
    const a = 'ssh://root@10.0.0.2:2222/etc/act/act.env';
    const ok = { ...base, config_files: [a], ssh: { known_hosts: '/k', private_key_file: '/id', agent: 'false' }, ssh_nodes: { [a]: { host_key: 'SHA256:' + 'A'.repeat(43) } } };
    expect(validateKey(ok)).toEqual([]);
    const bad = validateKey({ ...base, config_files: [a, 'ssh://root@/x'], ssh: { known_hosts: 'k' } });
    expect(bad.map((d) => [d.attribute?.steps[0], d.summary])).toEqual([[{ attribute_name: 'ssh' }, 'ssh.known_hosts "k" is not an absolute path; write it absolute, e.g. with abspath().']]);
    const nodes = validateKey({ ...base, config_files: [a, 'ssh://root@/x'], ssh_nodes: { 'ssh://h/y': { user: 'x' }, [a]: { host_key: 'nope' } } });
    const text = nodes.map((d) => d.summary).join('\n');
    expect(text).toContain('ssh_nodes names "ssh://h/y", which config_files does not list');
    expect(nodes.filter((d) => JSON.stringify(d.attribute?.steps[0]) === '{"attribute_name":"config_files"}').length).toBe(2);
    expect(validateKey({ ...base, config_files: [a], ssh: UNKNOWN })).toEqual([]);
  });

  it('lock_timeout: a duration as the CLI takes it (into the context, in ms), anything else an error on the attribute', () => {
    expect(validateKey({ ...base, lock_timeout: '1500ms' })).toEqual([]);
    expect(settingsOf({ ...base, lock_timeout: '2min' }).lockTimeoutMs).toBe(120_000);
    expect(settingsOf(base).lockTimeoutMs).toBeUndefined();
    const [d] = validateKey({ ...base, lock_timeout: '3m' });
    expect(d).toEqual(expect.objectContaining({ severity: 'ERROR', attribute: { steps: [{ attribute_name: 'lock_timeout' }] } }));
    expect(d.summary).toBe('lock_timeout "3m" is not a lock timeout; give a duration of more than 0 and at most a day, such as 30s, 500ms, 2min or 1h.');
  });

  it('the lock timeout text: ms, s, min, h or plain seconds; never 0, m or more than a day', () => {
    expect([lockTimeoutMs('30s'), lockTimeoutMs('500ms'), lockTimeoutMs(' 2min '), lockTimeoutMs('1h'), lockTimeoutMs('0.5'), lockTimeoutMs('45')]).toEqual([30_000, 500, 120_000, 3_600_000, 500, 45_000]);
    for (const bad of ['0', '0s', '3m', '25h', '-1s', 'soon', '', '1 day']) expect(lockTimeoutMs(bad)).toBeUndefined();
    expect(describeLockTimeout(30_000)).toBe('30 s');
    expect(describeLockTimeout(500)).toBe('500 ms');
    expect(describeLockTimeout(120_000)).toBe('2 min');
  });

  it('backup_recipients and backup_retention (issue 19): good ones pass; a bad one is named with the fix, never echoing an identity', () => {
    const escrow = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
    expect(validateKey({ ...base, backup_recipients: [escrow], backup_retention: 'keep 3' })).toEqual([]);
    expect(validateKey({ ...base, backup_retention: '30d' })).toEqual([]);
    const identity = `AGE-SECRET-KEY-1${'Q'.repeat(58)}`;
    const bad = validateKey({ ...base, backup_recipients: [identity], backup_retention: 'keep 0' });
    expect(bad.map((d) => d.attribute?.steps[0])).toEqual([{ attribute_name: 'backup_recipients' }, { attribute_name: 'backup_retention' }]);
    expect(bad[0].summary).toContain('backup_recipients[0] is an age identity (a secret key), not a recipient');
    expect(JSON.stringify(bad)).not.toContain(identity);
    expect(bad[1].summary).toContain('backup_retention must keep at least 1 backup');
    expect(validateKey({ ...base, backup_retention: 'weekly' })[0].summary).toContain('backup_retention must be "keep N" (the newest N backups) or an age such as 30d');
  });

  it('parses NAME:PATH[,PATH] and JSON import ids, refusing unknown arguments', () => {
    expect(parseImportId('act:ssh://root@10.0.0.2:2222/etc/act/act.env')).toEqual(expect.objectContaining({ name: 'act', config_files: ['ssh://root@10.0.0.2:2222/etc/act/act.env'] }));
    expect(parseImportId('{"name":"act","config_files":["ssh://h/etc/act.env"],"ssh":{"known_hosts":"/k"}}')).toEqual(expect.objectContaining({ ssh: { known_hosts: '/k' } }));
    expect(parseImportId('act:/etc/a.env,/etc/b.env')).toEqual(expect.objectContaining({ name: 'act', config_files: ['/etc/a.env', '/etc/b.env'], generation: null }));
    expect(parseImportId('{"name":"x","config_files":["/c.json"],"config_format":"json","generation":4}')).toEqual(expect.objectContaining({ name: 'x', config_format: 'json', generation: 4 }));
    expect(caught(() => parseImportId('/etc/a.env')).message).toContain('is not NAME:PATH[,PATH...] nor a JSON object');
    expect(caught(() => parseImportId('{"name":"x","fingerprint":"mk:1"}')).message).toContain('names "fingerprint", which masterkey_key does not take');
    // What it quotes is quoted as JSON: a line break cannot split the sentence.
    expect(caught(() => parseImportId('a\nb')).message).toContain('The import id "a\\nb" is not NAME:PATH');
    expect(caught(() => parseImportId('{"name":"x","a\\nb":1}')).message).toContain('names "a\\nb", which');
    expect(caught(() => parseImportId('{nope')).message).toContain('not valid JSON');
  });
});

describe('diagnostics', () => {
  const failure = (id: number) => ({ table: 'services', column: 'spec', id: String(id), kind: 'service environment variable', path: 'env.2.value', code: 'SEALED_WRONG_KEY' as const });

  it('list values that do not open by place (table, column, JSON path, id, kind, code), the first LISTED_ROWS and how many more', () => {
    const rows = Array.from({ length: LISTED_ROWS + 3 }, (_, i) => failure(i + 1));
    const text = failureList(rows, 1234);
    expect(text.split('\n')[0]).toBe('  - services.spec#env.2.value id=1 (service environment variable): SEALED_WRONG_KEY');
    expect(text.split('\n')).toHaveLength(LISTED_ROWS + 1);
    expect(text).not.toContain(`id=${LISTED_ROWS + 1} `);
    expect(text.split('\n').at(-1)).toBe(`  … and ${(1234 - LISTED_ROWS).toLocaleString('en-US')} more (1,234 in all).`);
    expect(failureList([failure(7)], 1)).toBe('  - services.spec#env.2.value id=7 (service environment variable): SEALED_WRONG_KEY');
  });

  it("carry the CLI's sentence as the summary, and the code (with the rows an error names) in the detail", () => {
    const d = errorDiagnostic(new MasterKeyError('UNDECRYPTABLE_ROWS', '2 stored value(s) do not open.', { failures: [failure(1)], failureCount: 2 }));
    expect(d).toEqual({
      severity: 'ERROR',
      summary: '2 stored value(s) do not open.',
      detail: 'Values that do not open:\n  - services.spec#env.2.value id=1 (service environment variable): SEALED_WRONG_KEY\n  … and 1 more (2 in all).\n\nError code UNDECRYPTABLE_ROWS (`master-key` reports the same and exits 6).',
    });
    expect(errorDiagnostic(new MasterKeyError('PLAN_STALE', 'Stale.')).detail).toBe('Error code PLAN_STALE (`master-key` reports the same and exits 12).');
  });
});

describe('the certificate made at each launch', () => {
  it('is a fresh self-signed ECDSA certificate for localhost whose key matches', async () => {
    const [a, b] = [await makeIdentity(), await makeIdentity()];
    const cert = new X509Certificate(a.certPem);
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(cert.ca).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(a.keyPem))).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.raw.equals(a.certDer)).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe('ec');
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(Date.now());
    expect(a.certDer.equals(b.certDer)).toBe(false);
  });
});

describe('the plugin process, spoken to as go-plugin does', () => {
  beforeAll(() => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm test does).`);
  });

  it('refuses to run without the magic cookie, saying it is a plugin', () => {
    const r = spawnSync(process.execPath, [MAIN], { encoding: 'utf8', env: { PATH: process.env.PATH }, timeout: 30_000 });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('This binary is a plugin');
  });

  it('prints the handshake line with its loopback address and certificate, serves health, schema and shutdown over mutual TLS, and trusts only the given client', async () => {
    const client = await makeIdentity();
    const stranger = await makeIdentity();
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH, [MAGIC_COOKIE_KEY]: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: '5,6', PLUGIN_CLIENT_CERT: client.certPem },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once('line', resolve);
        child.once('exit', () => reject(new Error('the plugin exited before its handshake')));
      });
      const [core, app, network, address, protocol, cert] = line.split('|');
      expect([core, app, network, protocol]).toEqual(['1', '6', 'tcp', 'grpc']);
      expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(cert).not.toMatch(/=$/);
      const serverCert = new X509Certificate(Buffer.from(cert, 'base64'));
      expect(serverCert.subjectAltName).toContain('DNS:localhost');
      const creds = (id: typeof client) =>
        grpc.credentials.createSsl(Buffer.from(serverCert.toString()), Buffer.from(id.keyPem), Buffer.from(id.certPem));
      const opts = { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' };
      const tf = loadProto('tfplugin6.proto').tfplugin6;
      const health = loadProto('health.proto').grpc.health.v1;
      const gp = loadProto('go-plugin.proto').plugin;
      const call = <T>(svc: grpc.Client, method: string, req: unknown): Promise<T> =>
        new Promise((resolve, reject) => (svc as unknown as Record<string, (r: unknown, cb: (e: Error | null, v: T) => void) => void>)[method](req, (e, v) => (e ? reject(e) : resolve(v))));

      const h = new health.Health(address, creds(client), opts);
      expect(await call(h, 'Check', { service: 'plugin' })).toEqual({ status: 'SERVING' });
      const p = new tf.Provider(address, creds(client), opts);
      const schema = await call<{ resource_schemas: Record<string, { block: { attributes: Array<{ name: string; computed: boolean; sensitive: boolean }> } }> }>(p, 'GetProviderSchema', {});
      const attrs = schema.resource_schemas.masterkey_key.block.attributes;
      expect(attrs.find((a) => a.name === 'fingerprint')?.computed).toBe(true);
      expect(attrs.map((a) => a.name)).toEqual(expect.arrayContaining(['secrets_by_kind', 'nodes_in_sync', 'undecryptable', 'last_report', 'database_generation']));
      const meta = await call<{ resources: Array<{ type_name: string }>; data_sources: Array<{ type_name: string }> }>(p, 'GetMetadata', {});
      expect(meta.resources).toEqual([{ type_name: 'masterkey_key' }]);
      expect(meta.data_sources).toEqual([{ type_name: 'masterkey_status' }]);
      // A client whose certificate is not the one Terraform passed is refused.
      const other = new health.Health(address, creds(stranger), { ...opts, 'grpc.initial_reconnect_backoff_ms': 100 });
      await expect(call(other, 'Check', { service: 'plugin' })).rejects.toThrow();
      other.close();
      h.close();
      p.close();
      const ctl = new gp.GRPCController(address, creds(client), opts);
      await call(ctl, 'Shutdown', {});
      ctl.close();
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
