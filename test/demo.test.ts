/**
 * `npm start`'s path: the demo script end to end, on a small database. With a
 * terraform binary the rotation runs through terraform's local-exec; without
 * one the demo says so and the CLI runs it.
 */
import { removeScratch, scratchDir } from '../scripts/scratch';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseKey } from '../src/crypto/key';
import { childEnv } from './support/scenario';
import { HAS_TERRAFORM, terraformGate } from './support/terraform';

const DEMO = resolve(__dirname, '..', 'dist', 'scripts', 'demo.js');
const hasTerraform = HAS_TERRAFORM;

describe('npm start (scripts/demo.ts)', () => {
  let dir: string;
  afterAll(() => removeScratch(dir));

  it('runs the whole story and leaves a rotated key, a report and a backup', () => {
    if (terraformGate(HAS_TERRAFORM, !!process.env.CI) === 'fail') throw new Error('CI is set and there is no terraform binary on PATH: the demo would skip terraform; install it in CI.');
    if (!hasTerraform) console.warn('terraform is not on PATH: the demo runs the rotation through the CLI directly');
    dir = scratchDir('mk-demo-test-');
    const env = childEnv();
    const r = spawnSync(process.execPath, [DEMO, '--secrets', '400', '--dir', dir], { env, encoding: 'utf8', timeout: 170_000 });
    const out = r.stdout + r.stderr;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(out).toContain('Initialised postgres@127.0.0.1:');
    expect(out).toContain('Plan: 1 key to rotate');
    expect(out).toMatch(/Processed (\d+) secrets, \1 updated, 0 left unchanged due to errors\./);
    expect(out).toMatch(/OK: (\d+) of \1 secrets open with mk:[0-9a-f]{12}/);
    if (hasTerraform) {
      expect(out).toContain('terraform_data.master_key_act will be created');
      expect(out).toMatch(/No changes\. Your infrastructure matches the configuration\./);
    }
    expect(out).toContain(`Look around in ${dir}`);

    const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(join(dir, 'act.env'), 'utf8'))![1]);
    expect(out).not.toContain(key.toHex());
    expect(statSync(join(dir, 'act.env')).mode & 0o777).toBe(0o600);
    expect(out).toContain(`generation 1 -> 2`);
    expect(readdirSync(join(dir, 'reports')).some((f) => f.endsWith('.md'))).toBe(true);
    const backups = readdirSync(join(dir, 'backups'));
    expect(backups).toHaveLength(1);
    const oldKey = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(join(dir, 'backups', backups[0], 'config-1-act.env'), 'utf8'))![1]);
    expect(oldKey.equals(key)).toBe(false);
    expect(out).not.toContain(oldKey.toHex());
    if (hasTerraform) {
      const state = readFileSync(join(dir, 'terraform.tfstate'), 'utf8');
      expect(state).not.toContain(key.toHex());
      expect(readFileSync(join(dir, 'cdktf.out', 'stacks', 'master-key', 'cdk.tf.json'), 'utf8')).not.toContain(key.toHex());
    }
  }, 180_000);

  it('--help explains the options', () => {
    const r = spawnSync(process.execPath, [DEMO, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const o of ['--secrets', '--keep', '--use-database-url', '--dir', '--no-terraform']) expect(r.stdout).toContain(o);
  });
});
