/**
 * A fleet through the provider: one stack declaring 20 installations (20
 * databases on one server, 20 config files), applied with -parallelism=5.
 * The plan is saved and reviewed, then one installation's config gets a
 * wrong key: applying the saved plan rotates the other 19 and fails that
 * one alone, with its diagnostic and its data untouched; once fixed, a
 * second apply finishes it and the next plan has no changes.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseKey } from '../src/crypto/key';
import { Installation, createFleet, declareFleet, dropFleet, fleetEnv } from '../scripts/fleet';
import { RotationResourceType } from '../constructs';
import { dbSnapshot, keyLeaks, keyLine } from './support/scenario';
import { TfWorkspace, describeTerraform } from './support/terraform';
import { Keyring } from '../src/crypto/keyring';
import { actCodec } from '../src/crypto/codec';
import { adminUrl, withTestClient } from './support/db';

const SIZE = 20;

jest.setTimeout(900_000);
const BROKEN = 7;

describeTerraform('a fleet of 20 installations through the provider', () => {
  const ws = new TfWorkspace('fleet');
  let fleet: Installation[] = [];
  let env: Record<string, string> = {};
  const root = join(ws.dir, 'installations');
  const configKey = (i: Installation) => parseKey(/ACT_MASTER_KEY=(\w+)/.exec(readFileSync(i.configPath, 'utf8'))![1]);

  /** Every sealed server key of an installation opens with `key`. */
  const opensWith = (i: Installation, key: ReturnType<typeof configKey>) =>
    withTestClient(i.url, async (c) => {
      const rows = (await c.query<{ v: string }>('SELECT ssh_private_key AS v FROM servers UNION ALL SELECT access_token FROM git_credentials')).rows;
      const ring = new Keyring([key]);
      return rows.length > 0 && rows.every((r) => ring.openText(actCodec(), r.v).length > 0);
    });

  beforeAll(async () => {
    ws.create();
    fleet = await createFleet(adminUrl(), root, SIZE, { secrets: 12 });
    env = fleetEnv(fleet);
  });

  afterAll(async () => {
    await dropFleet(adminUrl(), fleet);
    rmSync(root, { recursive: true, force: true });
    ws.remove();
  });

  it('rotates 19 with -parallelism=5 while the one with a wrong key fails alone, then finishes it', async () => {
    ws.synth((stack) => declareFleet(stack, fleet, 2, RotationResourceType.PROVIDER, root));
    ws.ok(['init'], env);
    const plan = ws.ok(['plan', '-parallelism=5', '-out=fleet.tfplan'], env);
    expect(plan).toContain(`Plan: ${SIZE} to add, 0 to change, 0 to destroy.`);

    const broken = fleet[BROKEN - 1];
    const good = readFileSync(broken.configPath, 'utf8');
    const before = await dbSnapshot(broken.url);
    const wrong = parseKey('ab'.repeat(32));
    writeFileSync(broken.configPath, good.replace(/ACT_MASTER_KEY=\w+/, keyLine(wrong)));
    const failed = ws.tf(['apply', '-parallelism=5', 'fleet.tfplan'], env);
    expect(failed.code).toBe(1);
    const errors = failed.out.split('\n').filter((l) => l.startsWith('Error: '));
    expect(errors).toEqual([expect.stringContaining('Error: Old master key incorrect')]);
    expect(failed.out).toContain(`with masterkey_key.master_key_${broken.name}`);
    expect(failed.out.match(/Creation complete after/g)).toHaveLength(SIZE - 1);
    expect(await dbSnapshot(broken.url)).toBe(before);
    for (const i of fleet.filter((x) => x !== broken)) {
      const k = configKey(i);
      expect(k.equals(i.key)).toBe(false);
      expect(await opensWith(i, k)).toBe(true);
    }

    writeFileSync(broken.configPath, good);
    const second = ws.ok(['apply', '-auto-approve', '-parallelism=5'], env);
    expect(second).toContain('Apply complete! Resources: 1 added, 0 changed, 0 destroyed.');
    const fixed = configKey(broken);
    expect(fixed.equals(broken.key)).toBe(false);
    expect(await opensWith(broken, fixed)).toBe(true);
    expect(ws.ok(['plan', '-detailed-exitcode', '-parallelism=5'], env, 0)).toContain('No changes.');
    expect(keyLeaks(ws.everything(), [...fleet.map((i) => i.key), ...fleet.map(configKey)])).toEqual([]);
  });
});
