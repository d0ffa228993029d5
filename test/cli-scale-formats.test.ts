/**
 * A rotation at scale (thousands of secrets of every kind, columns and jsonb)
 * and through JSON and XML config files.
 */
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKey, parseKey } from '../src/crypto/key';
import { actScenario, keyLine, readPlaintexts, Scenario } from './support/scenario';

describe('an ACT database with thousands of secrets', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 300 });
  }, 120_000);

  it('rotates all of them; each opens with the new key from the config file and equals its plaintext; the old key opens none', async () => {
    expect(s.plaintexts.size).toBeGreaterThan(3000);
    const n = s.plaintexts.size.toLocaleString('en-US');
    const plan = s.cli(['plan', '--generation', '2']);
    expect(plan.stdout).toContain(`Plan: 1 key to rotate, ${n} secrets to re-encrypt`);
    const r = s.cli(['apply', '--generation', '2', '--batch-size', '700']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Processed ${n} secrets, ${n} updated, 0 left unchanged due to errors.`);
    expect(r.stdout).toContain(`Committed: ${n} secrets`);
    const verify = s.cli(['verify']);
    expect(verify.stdout).toContain(`OK: ${n} of ${n} secrets open`);
    const status = s.cli(['status']);
    expect(status.stdout).toContain(`${n} secrets, verified`);
    // Every count in human output has thousands separators (fingerprints, hashes, paths and times aside).
    for (const out of [plan.stdout, r.stdout, verify.stdout, status.stdout]) expect(out.match(/(?<![\w:/.,-])\d{4,}(?![\w:/.,-])/g)).toBeNull();
    const newKey = s.configKey();
    expect(newKey.equals(s.key)).toBe(false);
    expect(await readPlaintexts(s.url, newKey, s.plaintexts.keys())).toEqual(s.plaintexts);
    const old = await readPlaintexts(s.url, s.key, s.plaintexts.keys());
    expect([...old.values()].filter((v) => !v.startsWith('!SEALED_'))).toEqual([]);
  }, 120_000);
});

describe('JSON and XML config files', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 2 });
  });

  it('rotates a key held in a JSON config, changing only the key', () => {
    const path = join(s.dir, 'act.json');
    const text = `{\n  "listen": "127.0.0.1:8080",\n  "security": { "masterKey": "${s.key.toHex()}", "rounds": 3 }\n}\n`;
    writeFileSync(path, text);
    chmodSync(path, 0o600);
    const r = s.cli(['apply', '--config', path, '--key-name', 'security.masterKey']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const after = readFileSync(path, 'utf8');
    const k = parseKey(JSON.parse(after).security.masterKey);
    expect(after).toBe(text.replace(s.key.toHex(), k.toHex()));
    // act.env still holds the old key: point it at the new one for the next test
    writeFileSync(s.configPath, keyLine(k) + '\n');
  });

  it('rotates a key held in an Octopus-style XML config', () => {
    const current = s.configKey();
    const path = join(s.dir, 'OctopusServer.config');
    const text = `<?xml version="1.0" encoding="utf-8"?>\n<octopus-settings>\n  <!-- <set key="Octopus.Storage.MasterKey">old</set> -->\n  <set key="Octopus.Storage.MasterKey">${current.toHex()}</set>\n  <set key="Octopus.WebPortal.ListenPrefixes">http://localhost:80/</set>\n</octopus-settings>\n`;
    writeFileSync(path, text);
    const r = s.cli(['apply', '--config', path, '--key-name', 'Octopus.Storage.MasterKey']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const after = readFileSync(path, 'utf8');
    const m = /<set key="Octopus.Storage.MasterKey">([0-9a-f]{64})<\/set>/.exec(after)!;
    const k: MasterKey = parseKey(m[1]);
    expect(k.equals(current)).toBe(false);
    expect(after).toBe(text.replace(current.toHex(), k.toHex()));
  });
});
