/**
 * `npm run bench:fleet -- --rows N --store sqlite --inventory act`, small:
 * one SQLite installation of the ACT preset's secrets through the provider
 * on real terraform, reported as JSON (what it times, not how fast: speed is
 * the benchmark's to measure); options that need `--rows` are refused.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describeTerraform } from './support/terraform';

const SCRIPT = join(__dirname, '..', 'dist', 'scripts', 'bench-fleet.js');
const run = (args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8', timeout: 300_000, env: { ...process.env, TF_LOG: undefined } });

describeTerraform('npm run bench:fleet, one installation on SQLite', () => {
  it('times refresh and plan of the ACT preset in a SQLite file through the provider, and reports it as JSON', () => {
    const r = run(['--rows', '300', '--store', 'sqlite', '--inventory', 'act', '--json']);
    expect(r.stderr).toContain('seeding 300 secrets (sqlite, act inventory)');
    expect(r.status).toBe(0);
    const large = JSON.parse(r.stdout).large;
    expect(large).toMatchObject({ rows: 300, store: 'sqlite', inventory: 'act' });
    for (const k of ['refreshPlanSeconds', 'readResourceMs', 'planResourceChangeMs', 'rotationPlanSeconds', 'rotationPlanResourceChangeMs', 'cliFullPlanSeconds']) {
      expect(large[k]).toEqual(expect.any(Number));
    }
  }, 300_000);

  it('refuses --store sqlite and --inventory without --rows, saying what to add', () => {
    const r = run(['--store', 'sqlite']);
    expect(r.status).toBe(3);
    expect(r.stderr).toContain('--store and --inventory time one installation: give --rows N too');
  });
});
