/**
 * A restore that strands nothing (issue 9, item 4), through the real CLI:
 * values written after the backup are re-sealed under the restored key and
 * kept; a value no key on disk opens is put back from the backup, or the
 * restore is refused naming it, with nothing changed; `restore --drill`
 * proves a backup restores without touching the live database.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { liveCells, plaintextsOf } from './support/cells';
import { sqlQuery } from './support/sql';
import { CLI_STORES } from './support/stores';
import { Scenario, dbSnapshot, keyLeaks, keyLine, readPlaintexts } from './support/scenario';
import { scenarioForBlock } from './support/block';

interface RestoreJson {
  ok: boolean;
  action: string;
  fingerprint: string;
  values: { inBackup: number; unchanged: number; changed: number; added: number; putBack: number; removed: number };
  liveKey: { fingerprint?: string; used: boolean; note: string };
  verification: { ok: boolean; checked: number; failures: number; proved: string };
}

const seal = (key: MasterKey, p: string) => actCodec().seal(key, Buffer.from(p, 'utf8'));

/** Rotates once; returns the backup directory and the new key. */
function rotate(s: Scenario): { backup: string; newKey: MasterKey } {
  const r = s.cli(['apply', '--json']);
  if (r.code !== 0) throw new Error(`apply failed (${r.code}): ${r.stderr}`);
  return { backup: (JSON.parse(r.stdout) as { report: { backup: { path: string } } }).report.backup.path, newKey: s.configKey() };
}

describe.each(CLI_STORES)('on $name', (store) => {
  describe('the user story: apply, the server writes under the new key, restore', () => {
    const scenario = scenarioForBlock({ perKind: 3, store });

    it('re-seals the new and the changed secret under the restored key; every secret opens with the key now in the config, verified and reported', async () => {
      const s = scenario();
      const { backup, newKey } = rotate(s);
      // The server, running again under the new key, stores one new secret and changes one.
      const [a] = await sqlQuery<{ id: unknown }>(s.url, "INSERT INTO registry_credentials (registry, username, password) VALUES ('quay.io', 'bot', $1) RETURNING id", [seal(newKey, 'stored after the rotation')]);
      const [ch] = await sqlQuery<{ id: unknown }>(s.url, 'UPDATE git_credentials SET access_token = $1 WHERE id = (SELECT min(id) FROM git_credentials) RETURNING id', [seal(newKey, 'changed after the rotation')]);
      const added = `registry_credentials.password:${String(a.id)}`;
      const changed = `git_credentials.access_token:${String(ch.id)}`;
      const r = s.cli(['restore', '--json', '--backup', backup]);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as RestoreJson;
      const inBackup = out.values.inBackup;
      expect(out).toMatchObject({ ok: true, action: 'restored', fingerprint: s.key.fingerprint, liveKey: { fingerprint: newKey.fingerprint, used: true } });
      expect(out.values).toEqual({ inBackup, unchanged: inBackup - 1, changed: 1, added: 1, putBack: 0, removed: 0 });
      expect(out.verification).toMatchObject({ ok: true, checked: s.plaintexts.size + 1, failures: 0 });
      expect(out.verification.proved).toContain(`opens with ${s.key.fingerprint}`);
      expect(r.stderr).toMatch(/^Stored values: [\d,]+ as backed up; 1 changed and 1 added since the backup, re-sealed under mk:[0-9a-f]{12} and kept;/m);
      expect(keyLeaks(r.stdout + r.stderr, [s.key, newKey])).toEqual([]);

      // The key in the config is the backup's, and it opens every secret, the new and the changed one with their newest plaintexts.
      expect(s.configKey().equals(s.key)).toBe(true);
      const expected = new Map(s.plaintexts);
      expected.set(changed, 'changed after the rotation');
      expected.set(added, 'stored after the rotation');
      expect(await readPlaintexts(s.url, s.key, expected.keys())).toEqual(expected);
      const verify = s.cli(['verify']);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toContain(`OK: ${s.plaintexts.size + 1} of ${s.plaintexts.size + 1} secrets open with ${s.key.fingerprint}`);
      // The next rotation works from here.
      expect(s.cli(['apply']).code).toBe(0);
    });
  });

  describe('when the live key is lost', () => {
    let s: Scenario;
    let backup: string;
    let newKey: MasterKey;
    scenarioForBlock({ perKind: 2, store }, (made) => {
      s = made;
      ({ backup, newKey } = rotate(s));
      // The config file now holds a key that is not the database's (the new key was lost).
      writeFileSync(s.configPath, keyLine(MasterKey.generate()) + '\n', { mode: 0o600 });
    });

    it('refuses, naming it and changing nothing, when a secret added since opens with no key on disk', async () => {
      const id = String((await sqlQuery<{ id: unknown }>(s.url, "INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1) RETURNING id", [seal(newKey, 'only the lost key opens me')]))[0].id);
      const db = await dbSnapshot(s.url);
      const cfg = readFileSync(s.configPath, 'utf8');
      const r = s.cli(['restore', '--backup', backup]);
      expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
      expect(r.stderr).toMatch(new RegExp(`^master-key: 1 stored value\\(s\\) open with no key on disk \\(the key in .*act\\.env \\(mk:[0-9a-f]{12}\\) does not open the database's canary .*git_credentials\\.access_token id=${id} \\(git access token, SEALED_WRONG_KEY\\).*nothing was changed.* \\[UNDECRYPTABLE_ROWS\\]\\n$`));
      expect(await dbSnapshot(s.url)).toBe(db);
      expect(readFileSync(s.configPath, 'utf8')).toBe(cfg);
      await sqlQuery(s.url, 'DELETE FROM git_credentials WHERE id = $1', [Number(id)]);
    });

    it('puts back from the backup every value no key on disk opens, and verifies', async () => {
      const r = s.cli(['restore', '--json', '--backup', backup]);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as RestoreJson;
      expect(out.liveKey.used).toBe(false);
      expect(out.values).toEqual({ inBackup: out.values.inBackup, unchanged: 0, changed: 0, added: 0, putBack: out.values.inBackup, removed: 0 });
      expect(out.verification).toMatchObject({ ok: true, checked: s.plaintexts.size });
      expect(s.configKey().equals(s.key)).toBe(true);
      expect(await readPlaintexts(s.url, s.key, s.plaintexts.keys())).toEqual(s.plaintexts);
    });
  });

});

describe('restore --drill (PostgreSQL: its backup is a JSON-lines file the test can alter)', () => {
  let s: Scenario;
  let backup: string;
  scenarioForBlock({ perKind: 2 }, (made) => {
    s = made;
    ({ backup } = rotate(s));
  });

  it('restores into a scratch copy, opens every value with the backup key, reports, and leaves the live database and config untouched', async () => {
    const db = await dbSnapshot(s.url);
    const cfg = readFileSync(s.configPath, 'utf8');
    const r = s.cli(['restore', '--drill', '--json', '--backup', backup]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as RestoreJson & { values: number; byKind: Record<string, number> };
    const manifest = JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8')) as { values: number };
    expect(out).toMatchObject({ ok: true, action: 'drill', fingerprint: s.key.fingerprint, values: manifest.values, verification: { ok: true, checked: s.plaintexts.size, failures: 0 } });
    expect(Object.values(out.byKind).reduce((a, b) => a + b, 0)).toBe(s.plaintexts.size);
    expect(await dbSnapshot(s.url)).toBe(db);
    expect(readFileSync(s.configPath, 'utf8')).toBe(cfg);
    const human = s.cli(['restore', '--drill', '--backup', backup]);
    expect(human.stdout).toMatch(/^Drill of .*: The backup restores: its [\d,]+ stored values were put into a scratch copy and all [\d,]+ sealed values in them open with its key mk:[0-9a-f]{12}/);
  });

  it('reports a backed-up value that does not open with the backup key (the checksums made to match), and still changes nothing', async () => {
    const file = join(backup, 'secrets.jsonl');
    const original = readFileSync(file, 'utf8');
    const lines = original.split('\n');
    const i = lines.findIndex((l) => l !== '' && (JSON.parse(l) as { t: string }).t === 'git_credentials');
    const line = JSON.parse(lines[i]) as { id: string; v: string };
    lines[i] = JSON.stringify({ ...JSON.parse(lines[i]), v: seal(MasterKey.generate(), 'not under the backup key') });
    const manifestPath = join(backup, 'manifest.json');
    const manifestText = readFileSync(manifestPath, 'utf8');
    const manifest = JSON.parse(manifestText) as { files: Array<{ name: string; sha256: string; bytes: number }> };
    const altered = lines.join('\n');
    const entry = manifest.files.find((f) => f.name === 'secrets.jsonl')!;
    entry.sha256 = createHash('sha256').update(altered).digest('hex');
    entry.bytes = Buffer.byteLength(altered);
    writeFileSync(file, altered);
    writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
    try {
      const db = await dbSnapshot(s.url);
      const r = s.cli(['restore', '--drill', '--json', '--backup', backup]);
      expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
      const out = JSON.parse(r.stdout) as { ok: boolean; verification: { ok: boolean; failures: number }; failures: Array<Record<string, string>> };
      expect(out.ok).toBe(false);
      expect(out.verification).toMatchObject({ ok: false, failures: 1 });
      expect(out.failures).toEqual([{ table: 'git_credentials', column: 'access_token', id: line.id, kind: 'git access token', code: 'SEALED_WRONG_KEY' }]);
      expect(await dbSnapshot(s.url)).toBe(db);
    } finally {
      writeFileSync(file, original);
      writeFileSync(manifestPath, manifestText);
    }
  });

  it('the live rows were never read into the copy: a drill of a backup whose rows were deleted since still opens everything', async () => {
    await sqlQuery(s.url, 'DELETE FROM git_credentials');
    const r = s.cli(['restore', '--drill', '--json', '--backup', backup]);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as RestoreJson).verification).toMatchObject({ ok: true, checked: s.plaintexts.size });
    expect(plaintextsOf(await liveCells(s.url, ACT_PRESET), ACT_PRESET, s.configKey()).size).toBeLessThan(s.plaintexts.size);
  });
});
