/**
 * HA nodes: one config file per server node (dotenv, JSON and XML here). One
 * rotation updates every node; `set --config <node>` writes a key into a
 * node's config only if that key opens the database's canary; `status`
 * reports every node whose key differs from the database's.
 */
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { Installation, KEY_ENTRY, checkInvariant, configKeys, createInstallation, runCli, runCliRaw } from '../scripts/soak-harness';
import { freshDatabase } from './support/db';
import { keyLeaks } from './support/scenario';

let inst: Installation;
beforeAll(async () => {
  inst = await createInstallation(await freshDatabase('ha'), { perKind: 2, nodes: 3 });
});

function currentKey(): MasterKey {
  const k = configKeys(inst)[0];
  if (!(k instanceof MasterKey)) throw k;
  return k;
}

/** The file with every occurrence of one key's hex replaced by another's. */
function withKey(text: string, from: MasterKey, to: MasterKey): string {
  return text.split(from.toHex()).join(to.toHex());
}

/** Puts a key into one node's file by hand (as a stale node restored from an old image would have). */
function plantKey(path: string, from: MasterKey, to: MasterKey): void {
  const mode = statSync(path).mode & 0o7777;
  writeFileSync(path, withKey(readFileSync(path, 'utf8'), from, to));
  chmodSync(path, mode);
}

/** `master-key set` for one node, the key coming through standard input (never argv). */
function setNode(path: string, key: MasterKey): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return runCliRaw(['set', '--config', path, '--key-name', KEY_ENTRY, '--key-env', 'NODE_KEY'], { ...inst.env, NODE_KEY: key.toHex() });
}

interface StatusJson {
  fingerprint: string;
  nodes: Array<{ path: string; fingerprint?: string; error?: string; matchesDatabase: boolean }>;
  mismatchedNodes: number;
}

describe('one rotation updates every node', () => {
  it('writes the new key into the dotenv, JSON and XML node files, keeping every other byte and each mode', async () => {
    const old = currentKey();
    const before = inst.configs.map((p) => ({ text: readFileSync(p, 'utf8'), mode: statSync(p).mode & 0o7777 }));
    const r = await runCli(inst, ['apply', '--json']);
    expect(r.code).toBe(0);
    const fresh = currentKey();
    expect(fresh.equals(old)).toBe(false);
    inst.configs.forEach((p, i) => {
      expect(readFileSync(p, 'utf8')).toBe(withKey(before[i].text, old, fresh));
      expect(statSync(p).mode & 0o7777).toBe(before[i].mode);
    });
    const report = (JSON.parse(r.stdout) as { report: { configs: Array<{ path: string; before: string; after: string }> } }).report;
    expect(report.configs).toEqual(inst.configs.map((path) => ({ path, before: old.fingerprint, after: fresh.fingerprint })));
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });
});

describe('status and set', () => {
  let stale: MasterKey;
  beforeAll(async () => {
    // One more rotation, so a real earlier key of this database exists.
    stale = currentKey();
    expect((await runCli(inst, ['apply'])).code).toBe(0);
  });

  it('status lists every node that differs from the database, and exits 13', async () => {
    const cur = currentKey();
    plantKey(inst.configs[1], cur, stale);
    plantKey(inst.configs[2], cur, MasterKey.generate());
    const r = await runCli(inst, ['status', '--json']);
    expect(r.code).toBe(ExitCode.NODE_MISMATCH);
    const s = JSON.parse(r.stdout) as StatusJson;
    expect(s.fingerprint).toBe(cur.fingerprint);
    expect(s.mismatchedNodes).toBe(2);
    expect(s.nodes.map((n) => [n.path, n.matchesDatabase])).toEqual([
      [inst.configs[0], true],
      [inst.configs[1], false],
      [inst.configs[2], false],
    ]);
    expect(s.nodes[1].fingerprint).toBe(stale.fingerprint);
    const human = await runCli(inst, ['status']);
    expect(human.code).toBe(ExitCode.NODE_MISMATCH);
    for (const p of inst.configs.slice(1)) expect(human.stdout).toContain(`config        ${p}: mk:`);
    expect(human.stdout.match(/DIFFERS from the database/g)).toHaveLength(2);
    expect(keyLeaks(r.stdout + r.stderr + human.stdout + human.stderr, [cur, stale])).toEqual([]);
  });

  it('set refuses a key that does not open the canary (an older key, a random key) and leaves the node file as it was', async () => {
    const before = readFileSync(inst.configs[1]);
    for (const k of [stale, MasterKey.generate()]) {
      const r = await setNode(inst.configs[1], k);
      expect(r.code).toBe(ExitCode.KEY_MISMATCH);
      expect(r.stderr).toMatch(new RegExp(`^master-key: The key ${k.fingerprint} does not open this database's integrity canary \\(sealed under mk:[0-9a-f]{12}\\); .*node2\\.json was not changed: supply the database's current key\\. \\[KEY_NOT_FOR_DATABASE\\]\\n$`));
      expect(keyLeaks(r.stdout + r.stderr, [k])).toEqual([]);
      expect(readFileSync(inst.configs[1]).equals(before)).toBe(true);
    }
  });

  it('set writes the database key into each differing node (mode and other bytes kept); status is then clean', async () => {
    const cur = currentKey();
    for (const p of inst.configs.slice(1)) {
      const text = readFileSync(p, 'utf8');
      const held = configKeys(inst)[inst.configs.indexOf(p)] as MasterKey;
      const mode = statSync(p).mode & 0o7777;
      const r = await setNode(p, cur);
      expect(r.code).toBe(0);
      expect(readFileSync(p, 'utf8')).toBe(withKey(text, held, cur));
      expect(statSync(p).mode & 0o7777).toBe(mode);
    }
    const st = await runCli(inst, ['status', '--json']);
    expect(st.code).toBe(0);
    expect((JSON.parse(st.stdout) as StatusJson).mismatchedNodes).toBe(0);
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });
});
