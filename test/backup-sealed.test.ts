/**
 * Backups sealed to age recipients (issue 19), through the real CLI on
 * both stores: apply seals every backup file (the values file or the
 * database copy, the config copies) to an X25519 and a hybrid recipient,
 * the manifest stays in clear and names them; the `age` CLI (an
 * independent reader) opens the sealed files with the X25519 identity;
 * restore and drill need an identity (0600) of one recipient, and refuse,
 * changing nothing, without one, with a wrong one, or when one byte of a
 * sealed file changed; no file under the backup or report directories
 * holds the old key in any encoding.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Encrypter, generateHybridIdentity, generateX25519Identity, identityToRecipient } from 'age-encryption';
import Ajv2020 from 'ajv/dist/2020';
import { ExitCode } from '../src/errors';
import { scenarioForBlock } from './support/block';
import { Scenario, dbSnapshot, keyLeaks, readPlaintexts } from './support/scenario';
import { CLI_STORES } from './support/stores';
import type { MasterKey } from '../src/crypto/key';
import { actCodec } from '../src/crypto/codec';
import { Keyring } from '../src/crypto/keyring';
import { withTestSql } from './support/sql';

interface Identity {
  readonly file: string;
  readonly recipient: string;
}

async function identity(dir: string, name: string, hybrid: boolean): Promise<Identity> {
  const id = hybrid ? await generateHybridIdentity() : await generateX25519Identity();
  const file = join(dir, name);
  writeFileSync(file, `# created for a test\n${id}\n`, { mode: 0o600 });
  return { file, recipient: await identityToRecipient(id) };
}

/** Every file under dir, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

/** What restore must leave as it was when it refuses: the database and the config file. */
async function state(s: Scenario): Promise<string> {
  return `${await dbSnapshot(s.url)}\n${readFileSync(s.configPath, 'utf8')}`;
}

describe.each(CLI_STORES)('sealed backups on $name', (store) => {
  let x25519: Identity;
  let hybrid: Identity;
  let stranger: Identity;
  let backup: string;
  let oldKey: MasterKey;
  let newKey: MasterKey;
  let report: unknown;
  const scenario = scenarioForBlock({ perKind: 3, store }, async (s) => {
    x25519 = await identity(s.dir, 'escrow-x25519.txt', false);
    hybrid = await identity(s.dir, 'escrow-hybrid.txt', true);
    stranger = await identity(s.dir, 'stranger.txt', false);
    writeFileSync(join(s.dir, 'recipients.txt'), `# escrow (post-quantum)\n\n${hybrid.recipient}\n`);
    oldKey = s.key;
    const r = s.cli(['apply', '--json', '--backup-recipient', x25519.recipient, '--backup-recipients-file', join(s.dir, 'recipients.txt')]);
    if (r.code !== 0) throw new Error(`apply failed (${r.code}): ${r.stderr}`);
    report = (JSON.parse(r.stdout) as { report: unknown }).report;
    backup = (report as { backup: { path: string } }).backup.path;
    newKey = s.configKey();
  });

  it('the sealed manifest and the report (backup.sealedTo, custody) match their JSON Schemas', () => {
    const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
    const schema = (f: string) => ajv.compile(JSON.parse(readFileSync(join(__dirname, '..', 'docs', 'schemas', f), 'utf8')));
    const manifest = schema('backup-manifest.schema.json');
    const rep = schema('report.schema.json');
    expect(manifest(JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8'))) ? [] : manifest.errors).toEqual([]);
    expect(rep(report) ? [] : rep.errors).toEqual([]);
    expect((report as { backup: { sealedTo: string[] } }).backup.sealedTo).toEqual([x25519.recipient, hybrid.recipient]);
    expect((report as { custody: { backups: Array<{ sealedTo: string[] }> } }).custody.backups[0].sealedTo).toEqual([x25519.recipient, hybrid.recipient]);
  });

  it('seals every backup file to both recipients; the manifest is in clear, lists the checksums of the sealed bytes and the recipients, and holds no key', () => {
    const s = scenario();
    const names = readdirSync(backup).sort();
    expect(names.filter((n) => n !== 'manifest.json').every((n) => n.endsWith('.age'))).toBe(true);
    expect(names).toContain(store.kind === 'sqlite' ? 'database.sqlite.age' : 'secrets.jsonl.age');
    expect(names.some((n) => n.startsWith('config-1-act.env'))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8')) as { sealed: { format: string; recipients: string[] }; files: Array<{ name: string; sha256: string }> };
    expect(manifest.sealed).toEqual({ format: 'age', recipients: [x25519.recipient, hybrid.recipient] });
    for (const f of manifest.files) {
      const bytes = readFileSync(join(backup, f.name));
      expect(bytes.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
      expect(require('node:crypto').createHash('sha256').update(bytes).digest('hex')).toBe(f.sha256);
      expect(statSync(join(backup, f.name)).mode & 0o777).toBe(0o600);
    }
    // The leak scan: no file under the backup or report directories holds the old (or new) key, in any encoding.
    for (const f of [...filesUnder(join(s.dir, 'master-key-backups')), ...filesUnder(join(s.dir, 'master-key-reports'))]) {
      expect({ file: f, leaks: keyLeaks(readFileSync(f).toString('latin1'), [oldKey, newKey]) }).toEqual({ file: f, leaks: [] });
    }
  });

  it('the age CLI opens every sealed file with the X25519 identity: the config copy holds the old key, the values are there', () => {
    const config = spawnSync('age', ['--decrypt', '--identity', x25519.file, join(backup, 'config-1-act.env.age')], { encoding: 'utf8' });
    expect(config.status).toBe(0);
    expect(config.stdout).toContain(`ACT_MASTER_KEY=${oldKey.toHex()}`);
    const values = spawnSync('age', ['--decrypt', '--identity', x25519.file, join(backup, store.kind === 'sqlite' ? 'database.sqlite.age' : 'secrets.jsonl.age')], { maxBuffer: 1 << 28 });
    expect(values.status).toBe(0);
    if (store.kind === 'sqlite') expect(values.stdout.subarray(0, 16).toString('latin1')).toBe('SQLite format 3\u0000');
    else {
      const lines = values.stdout.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { t: string; v: string });
      const manifest = JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8')) as { values: number };
      expect(lines).toHaveLength(manifest.values);
      expect(lines.every((l) => typeof l.t === 'string' && typeof l.v === 'string')).toBe(true);
    }
  });

  it('restore and drill refuse without an identity, naming the recipients, and change nothing', async () => {
    const s = scenario();
    const before = await state(s);
    for (const args of [['restore', '--drill'], ['restore']]) {
      const r = s.cli([...args, '--backup', backup]);
      expect(r.code).toBe(ExitCode.FILES);
      expect(r.stderr).toContain('[IDENTITY_REQUIRED]');
      expect(r.stderr).toContain(x25519.recipient);
      expect(r.stderr).toContain(hybrid.recipient.slice(0, 20));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(await state(s)).toBe(before);
  });

  it('refuses an identity file others can read, and a wrong identity, in one sentence with a code; nothing changes', async () => {
    const s = scenario();
    const before = await state(s);
    chmodSync(x25519.file, 0o644);
    try {
      const r = s.cli(['restore', '--backup', backup, '--identity-file', x25519.file]);
      expect(r.code).toBe(ExitCode.FILES);
      expect(r.stderr).toMatch(/readable by others \(mode 0644\).*\[IDENTITY_UNSAFE\]/);
    } finally {
      chmodSync(x25519.file, 0o600);
    }
    for (const args of [['restore', '--drill'], ['restore']]) {
      const r = s.cli([...args, '--backup', backup, '--identity-file', stranger.file]);
      expect(r.code).toBe(ExitCode.KEY_MISMATCH);
      expect(r.stderr).toContain('[IDENTITY_MISMATCH]');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toContain('AGE-SECRET-KEY');
    }
    expect(await state(s)).toBe(before);
  });

  it('refuses a sealed file with one byte changed, and one re-sealed to another recipient behind a matching checksum; nothing changes', async () => {
    const s = scenario();
    const before = await state(s);
    const file = join(backup, store.kind === 'sqlite' ? 'database.sqlite.age' : 'secrets.jsonl.age');
    const original = readFileSync(file);
    const manifestPath = join(backup, 'manifest.json');
    const manifest = readFileSync(manifestPath, 'utf8');
    try {
      const changed = Buffer.from(original);
      changed[changed.length - 100] ^= 0x01;
      writeFileSync(file, changed);
      let r = s.cli(['restore', '--backup', backup, '--identity-file', x25519.file]);
      expect(r.code).toBe(ExitCode.FILES);
      expect(r.stderr).toMatch(/fails its SHA-256 checksum.*\[BACKUP_CORRUPT\]/);
      // The same change with the manifest's checksum made to match: age's authentication refuses it, inside the restore's transaction.
      const sha = require('node:crypto').createHash('sha256').update(changed).digest('hex') as string;
      writeFileSync(manifestPath, manifest.replace(JSON.parse(manifest).files.find((f: { name: string }) => file.endsWith(f.name)).sha256, sha));
      r = s.cli(['restore', '--backup', backup, '--identity-file', x25519.file]);
      expect(r.code).toBe(ExitCode.FILES);
      expect(r.stderr).toMatch(/does not open with the identity .*altered or damaged.*\[BACKUP_CORRUPT\]/);
      expect(await state(s)).toBe(before);
    } finally {
      writeFileSync(file, original);
      writeFileSync(manifestPath, manifest);
    }
  });

  it('a header naming fewer recipients than the manifest is refused before anything is decrypted', async () => {
    const s = scenario();
    const before = await state(s);
    const file = join(backup, 'config-1-act.env.age');
    const original = readFileSync(file);
    const manifestPath = join(backup, 'manifest.json');
    const manifest = readFileSync(manifestPath, 'utf8');
    try {
      const e = new Encrypter();
      e.addRecipient(x25519.recipient);
      const resealed = Buffer.from(await e.encrypt(`ACT_MASTER_KEY=${newKey.toHex()}\n`));
      writeFileSync(file, resealed);
      const sha = require('node:crypto').createHash('sha256').update(resealed).digest('hex') as string;
      writeFileSync(manifestPath, manifest.replace(JSON.parse(manifest).files.find((f: { name: string }) => f.name === 'config-1-act.env.age').sha256, sha));
      const r = s.cli(['restore', '--drill', '--backup', backup, '--identity-file', x25519.file]);
      expect(r.code).toBe(ExitCode.FILES);
      expect(r.stderr).toMatch(/sealed to 1 recipient\(s\) but the manifest lists 2.*\[BACKUP_CORRUPT\]/);
      expect(await state(s)).toBe(before);
    } finally {
      writeFileSync(file, original);
      writeFileSync(manifestPath, manifest);
    }
  });

  it('drills with the X25519 identity and with the hybrid one', () => {
    const s = scenario();
    for (const id of [x25519, hybrid]) {
      const r = s.cli(['restore', '--drill', '--json', '--backup', backup, '--identity-file', id.file]);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as { verification: { ok: boolean; checked: number }; fingerprint: string };
      expect(out.verification).toMatchObject({ ok: true, checked: s.plaintexts.size });
      expect(out.fingerprint).toBe(oldKey.fingerprint);
      expect(keyLeaks(r.stdout + r.stderr, [oldKey, newKey])).toEqual([]);
    }
  });

  it('restores with the hybrid identity: the old key back in the config, every secret opens with it', async () => {
    const s = scenario();
    const r = s.cli(['restore', '--json', '--backup', backup, '--identity-file', hybrid.file]);
    expect(r.code).toBe(0);
    expect(s.configKey().equals(oldKey)).toBe(true);
    expect(await readPlaintexts(s.url, oldKey, s.plaintexts.keys())).toEqual(new Map(s.plaintexts));
    expect(keyLeaks(r.stdout + r.stderr, [oldKey, newKey])).toEqual([]);
  });
});

/**
 * The server's last writes at its stop hook, after seal-ahead: one git
 * access token changed, one added, each sealed under the key act.env holds
 * (still the old one); their places and plaintexts go to `last-writes.json`.
 */
function lastWritesScript(dir: string): string {
  const root = join(__dirname, '..');
  const req = (m: string) => JSON.stringify(require.resolve(m, { paths: [root] }));
  return `
const { readFileSync, writeFileSync } = require('node:fs');
const { actCodec } = require(${JSON.stringify(join(root, 'dist', 'src', 'crypto', 'codec.js'))});
const { parseKey } = require(${JSON.stringify(join(root, 'dist', 'src', 'crypto', 'key.js'))});
const dir = ${JSON.stringify(dir)};
const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(dir + '/act.env', 'utf8'))[1]);
const seal = (text) => actCodec().seal(key, Buffer.from(text, 'utf8'));
const url = process.env.DATABASE_URL;
async function main() {
  let q, end;
  if (url.startsWith('sqlite:')) {
    const db = new (require(${req('better-sqlite3')}))(url.slice('sqlite:'.length), { timeout: 10000 });
    q = async (sql, params) => { const s = db.prepare(sql.replace(/\\$\\d+/g, '?')); return s.reader ? s.all(...params) : (s.run(...params), []); };
    end = async () => db.close();
  } else {
    const c = new (require(${req('pg')}).Client)({ connectionString: url });
    await c.connect();
    q = async (sql, params) => (await c.query(sql, params)).rows;
    end = () => c.end();
  }
  const [{ id: changed }] = await q('SELECT min(id) AS id FROM git_credentials', []);
  await q('UPDATE git_credentials SET access_token = $1 WHERE id = $2', [seal('changed at the stop hook'), changed]);
  // Not the last row: SQLite would give its id to the row added next.
  const [{ id: deleted }] = await q('SELECT min(id) AS id FROM git_credentials WHERE id > $1', [changed]);
  await q('DELETE FROM git_credentials WHERE id = $1', [deleted]);
  const [{ id: added }] = await q("INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1) RETURNING id", [seal('added at the stop hook')]);
  // null: the row was deleted.
  writeFileSync(dir + '/last-writes.json', JSON.stringify({ ['git_credentials.access_token:' + changed]: 'changed at the stop hook', ['git_credentials.access_token:' + deleted]: null, ['git_credentials.access_token:' + added]: 'added at the stop hook' }));
  await end();
}
main().catch((e) => { console.error(e); process.exit(1); });
`;
}

describe.each(CLI_STORES)('a sealed backup after seal-ahead on $name, with rows changed and added after staging', (store) => {
  let x25519: Identity;
  let backup: string;
  let oldKey: MasterKey;
  let atLock: Map<string, string>;
  const scenario = scenarioForBlock({ perKind: 3, store }, async (s) => {
    x25519 = await identity(s.dir, 'escrow-x25519.txt', false);
    oldKey = s.key;
    writeFileSync(join(s.dir, 'last-writes.js'), lastWritesScript(s.dir));
    const r = s.cli(['apply', '--json', '--seal-ahead', '--backup-recipient', x25519.recipient, '--stop-command', `node '${join(s.dir, 'last-writes.js')}'`]);
    if (r.code !== 0) throw new Error(`apply failed (${r.code}): ${r.stderr}`);
    backup = (JSON.parse(r.stdout) as { report: { backup: { path: string } } }).report.backup.path;
    const last = Object.entries(JSON.parse(readFileSync(join(s.dir, 'last-writes.json'), 'utf8')) as Record<string, string | null>);
    atLock = new Map([...s.plaintexts, ...last.filter((e): e is [string, string] => e[1] !== null)]);
    for (const [place, plain] of last) if (plain === null) atLock.delete(place);
  });

  it('the backup is every file sealed: the bulk made ahead and the changes, which the age CLI opens: the rows changed and added at the lock are there', async () => {
    const s = scenario();
    const names = readdirSync(backup).filter((n) => !n.startsWith('config-')).sort();
    expect(names).toEqual(store.kind === 'sqlite' ? ['changes.sqlite.age', 'database.sqlite.age', 'manifest.json'] : ['changes.jsonl.age', 'manifest.json', 'secrets-ahead.jsonl.age']);
    for (const n of readdirSync(backup)) expect(statSync(join(backup, n)).mode & 0o777).toBe(0o600);
    const ring = new Keyring([oldKey]);
    let rows: Array<{ t: string; c: string; id: unknown; v: string | null }>;
    if (store.kind === 'sqlite') {
      const opened = join(s.dir, 'changes-opened.sqlite');
      const r = spawnSync('age', ['--decrypt', '--identity', x25519.file, '--output', opened, join(backup, 'changes.sqlite.age')]);
      expect(r.status).toBe(0);
      chmodSync(opened, 0o600);
      rows = await withTestSql(`sqlite:${opened}`, (db) => db.query<{ t: string; c: string; id: unknown; v: string | null }>('SELECT t, c, id, v FROM changes'));
    } else {
      const r = spawnSync('age', ['--decrypt', '--identity', x25519.file, join(backup, 'changes.jsonl.age')], { maxBuffer: 1 << 26 });
      expect(r.status).toBe(0);
      rows = r.stdout.toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { t: string; c: string; id: string; v: string | null });
      // The bulk opens too: one line per value of seal-ahead's snapshot, every one under the old key.
      const bulk = spawnSync('age', ['--decrypt', '--identity', x25519.file, join(backup, 'secrets-ahead.jsonl.age')], { maxBuffer: 1 << 28 });
      expect(bulk.status).toBe(0);
      const lines = bulk.stdout.toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { t: string; c: string; v: string });
      expect(lines.length).toBeGreaterThan(rows.length);
      expect(lines.filter((l) => l.t === 'git_credentials').every((l) => ring.openText(actCodec(), l.v).length > 0)).toBe(true);
    }
    const changes = new Map(rows.map((x) => [`${x.t}.${x.c}:${String(x.id)}`, x.v === null ? null : ring.openText(actCodec(), x.v)]));
    const last = JSON.parse(readFileSync(join(s.dir, 'last-writes.json'), 'utf8')) as Record<string, string | null>;
    expect(Object.values(last)).toContain(null);
    for (const [place, plain] of Object.entries(last)) expect(changes.get(place)).toBe(plain);
  });

  it('drills with the identity: every value at the lock opens; restore brings them back under the old key', async () => {
    const s = scenario();
    const drill = s.cli(['restore', '--drill', '--json', '--backup', backup, '--identity-file', x25519.file]);
    expect(drill.code).toBe(0);
    const drilled = JSON.parse(drill.stdout) as { values: number; verification: { ok: boolean; checked: number } };
    // Every sealed value at the lock (the added one too), in as many stored values as the manifest lists.
    expect(drilled.verification).toMatchObject({ ok: true, checked: atLock.size });
    expect(drilled.values).toBe((JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8')) as { values: number }).values);
    const r = s.cli(['restore', '--json', '--backup', backup, '--identity-file', x25519.file]);
    expect(r.code).toBe(0);
    expect(s.configKey().equals(oldKey)).toBe(true);
    expect(await readPlaintexts(s.url, oldKey, atLock.keys())).toEqual(atLock);
  });
});
