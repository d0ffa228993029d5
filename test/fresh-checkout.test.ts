/**
 * `npm run plan` / `npm run deploy` on a fresh checkout, as the README says:
 * `npm run dev-db` starts a local ACT installation and prints exactly the
 * export line; the plan then shows the provider's view of the key (offline
 * init from the implicit local mirror tf.js installs into, with no CLI
 * configuration), the deploy rotates and the next plan has no changes; what
 * could not work (no terminal to confirm an apply on; no DATABASE_URL, which
 * the provider needs at plan time already) is refused before terraform
 * runs, in one sentence naming `npm run dev-db` and its export line;
 * terraform's output has no colour codes off a terminal, no
 * CLI-configuration warning and no incomplete-lock-file warning; `dev-db --stop` removes the installation.
 * MK_WORK_DIR and CDKTF_OUTDIR keep it all in a scratch folder instead of
 * the checkout's .mk-work/ and cdktf.out/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { exampleSettings, exampleStack, newApp } from '../main';
import { parseKey } from '../src/crypto/key';
import { scratchDir } from '../scripts/scratch';
import { rotationProblems } from '../scripts/tf';
import { describeTerraform } from './support/terraform';

const REPO = resolve(__dirname, '..');
const EXPORT = /^export DATABASE_URL='(postgresql:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/act)'\n$/;

describe('npm run dev-db, then npm run plan / npm run deploy', () => {
  let work: string;
  let env: NodeJS.ProcessEnv;
  let url = '';

  const node = (script: string, args: string[], extra: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [join(REPO, 'dist', 'scripts', script), ...args], { cwd: REPO, env: { ...env, ...extra }, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'] });
  /** Runs a shell line the way a user would after `npm run dev-db`: with the printed export line evaluated first. */
  const afterExport = (line: string, extra: NodeJS.ProcessEnv = {}) => spawnSync('/bin/sh', ['-c', `eval "$MK_EXPORT_LINE" && ${line}`], { cwd: REPO, env: { ...env, ...extra }, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'] });

  beforeAll(() => {
    work = scratchDir('mk-fresh-');
    const { DATABASE_URL: _, ...rest } = process.env;
    env = { ...rest, MK_WORK_DIR: work, CDKTF_OUTDIR: join(work, 'cdktf.out'), MK_STATE_FILE: join(work, 'terraform.tfstate') };
  });
  afterAll(() => {
    node('dev-db.js', ['--stop']);
  });

  it('dev-db prints exactly the export line on stdout; the config file it writes is 0600; run again, it prints the same', () => {
    const r = node('dev-db.js', ['--secrets', '16']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(EXPORT);
    url = EXPORT.exec(r.stdout)![1];
    env.MK_EXPORT_LINE = r.stdout.trim();
    expect(r.stderr).toContain(`the key in ${join(work, 'act.env')} (0600); master-key init done`);
    expect(statSync(join(work, 'act.env')).mode & 0o777).toBe(0o600);
    const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(join(work, 'act.env'), 'utf8'))![1]);
    expect(r.stdout + r.stderr).not.toContain(key.toHex());
    const again = node('dev-db.js', []);
    expect(again.stdout).toBe(r.stdout);
    expect(again.stderr).toContain('already running');
  });

  describeTerraform('with terraform', () => {
    const noise = (out: string) => {
      expect(out).not.toMatch(/\x1b\[/);
      expect(out).not.toContain('Unable to open CLI configuration file');
      // The release archive's hashes are in the stack's lock file before init (src/provider/release.ts).
      expect(out).not.toContain('Incomplete lock file information');
    };

    const state = () => JSON.parse(readFileSync(join(work, 'terraform.tfstate'), 'utf8')).resources[0].instances[0].attributes;
    const configKey = () => parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(join(work, 'act.env'), 'utf8'))![1]);

    it("npm run plan installs the provider where an offline init finds it and shows the provider's plan: fingerprint and secrets by kind, without colour codes or CLI-config warnings", () => {
      // This machine's environment may name a missing TF_CLI_CONFIG_FILE: tf.js then uses the checkout's .terraformrc.
      const r = afterExport('node dist/scripts/tf.js plan', { TF_CLI_CONFIG_FILE: join(work, 'no-such.tfrc') });
      expect(r.stderr).not.toContain('Warning: the plan is shown, but an apply would fail');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('Installed cdktf-master-key/masterkey v');
      expect(r.stdout).toContain('# masterkey_key.master_key_act will be created');
      expect(r.stdout).toMatch(new RegExp(`\\+ fingerprint\\s+= "${configKey().fingerprint}"`));
      expect(r.stdout).toMatch(/\+ secrets\s+= 16\b/);
      expect(r.stdout).toMatch(/"git access token"\s+= \d+/);
      expect(existsSync(join(work, 'cdktf.out', 'stacks', 'master-key', '.terraform.lock.hcl'))).toBe(true);
      noise(r.stdout + r.stderr);
    });

    it('npm run deploy without a terminal and without -auto-approve is refused before terraform runs', () => {
      const r = afterExport('node dist/scripts/tf.js apply');
      expect(r.status).toBe(3);
      expect(r.stderr).toContain('there is no terminal to answer on: run `npm run deploy -- -auto-approve`');
      expect(r.stdout).not.toContain('Terraform');
      expect(existsSync(join(work, 'terraform.tfstate'))).toBe(false);
    });

    it('npm run plan and npm run deploy without DATABASE_URL are refused before terraform runs, in one sentence naming npm run dev-db and its export line', () => {
      const sentence =
        'DATABASE_URL is not set, so terraform cannot reach the database of "act": run `npm run dev-db` for a local one and then run the `export DATABASE_URL=…` line it prints, or export the URL of your database.';
      for (const [args, header] of [
        [['apply', '-auto-approve'], 'Not applying (terraform was not run, nothing changed):'],
        [['plan'], 'Not planning (terraform was not run, nothing changed):'],
      ] as const) {
        const r = node('tf.js', [...args]);
        expect(r.status).toBe(3);
        expect(r.stderr).toContain(`${header}\n${sentence}\n`);
        expect(r.stdout).not.toContain('Terraform');
      }
      expect(existsSync(join(work, 'terraform.tfstate'))).toBe(false);
      // Declared as terraform_data, the key is only needed at apply: the plan runs, with the warning.
      const plan = node('tf.js', ['plan'], { MK_RESOURCE: 'terraform_data' });
      expect(plan.status).toBe(0);
      expect(plan.stderr).toContain(`Warning: the plan is shown, but an apply would fail:\n${sentence}\n`);
      expect(plan.stdout).toContain('# terraform_data.master_key_act will be created');
    });

    it('npm run deploy -- -auto-approve at generation 2 rotates every secret and the config file through the provider; the next plan has no changes', () => {
      const before = configKey();
      const r = afterExport('node dist/scripts/tf.js apply -auto-approve', { MK_GENERATION: '2' });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('masterkey_key.master_key_act: Creation complete');
      expect(r.stdout).toContain('Apply complete! Resources: 1 added');
      noise(r.stdout + r.stderr);
      const after = configKey();
      expect(after.equals(before)).toBe(false);
      expect(state()).toEqual(expect.objectContaining({ fingerprint: after.fingerprint, database_generation: 2, secrets: 16, undecryptable: 0, nodes_in_sync: true }));
      expect(readFileSync(state().last_report, 'utf8')).toMatch(/Processed 16 secrets, 16 updated, 0 left unchanged due to errors\./);
      expect(r.stdout + r.stderr).not.toContain(new URL(url).password);
      expect(r.stdout + r.stderr).not.toContain(after.toHex());
      const again = afterExport('node dist/scripts/tf.js plan -detailed-exitcode', { MK_GENERATION: '2' });
      expect(again.status).toBe(0);
      expect(again.stdout).toContain('No changes.');
    });
  });

  it('dev-db --stop stops the server and removes what it wrote', async () => {
    const r = node('dev-db.js', ['--stop']);
    expect(r.status).toBe(0);
    expect(existsSync(join(work, 'act.env'))).toBe(false);
    expect(existsSync(join(work, 'dev-db.json'))).toBe(false);
    const c = new Client({ connectionString: url });
    await expect(c.connect()).rejects.toThrow(/ECONNREFUSED/);
    expect(node('dev-db.js', ['--stop']).stderr).toContain('nothing to stop');
  });
});

describe('what tf.js refuses before terraform runs (rotationProblems)', () => {
  const keyOf = (env: NodeJS.ProcessEnv) => exampleStack(newApp({ outdir: scratchDir('mk-app-') }, {}), exampleSettings(() => undefined, env, '/srv/checkout')).key;

  it('a fresh checkout (no URL, no config file) gets one sentence per key, naming npm run dev-db, which writes the config file too, and its export line; it fails the plan of a provider key only', () => {
    const nothing = () => false;
    expect(rotationProblems([keyOf({})], {}, nothing)).toEqual([
      {
        text: 'DATABASE_URL is not set, so terraform cannot reach the database of "act": run `npm run dev-db` for a local one (it writes the example\'s config file too) and then run the `export DATABASE_URL=…` line it prints, or export the URL of your database',
        failsPlan: true,
      },
    ]);
    expect(rotationProblems([keyOf({ MK_RESOURCE: 'terraform_data' })], {}, nothing)).toEqual([expect.objectContaining({ failsPlan: false })]);
    expect(rotationProblems([keyOf({ MK_DATABASE_URL_ENV: 'ACT_DB' })], {}, () => true)[0].text).toContain('run `npm run dev-db` for a local one and export the URL it prints as ACT_DB, or export');
  });

  it('with the URL set, a missing config file is its own sentence; with both there, nothing', () => {
    expect(rotationProblems([keyOf({})], { DATABASE_URL: 'postgresql://u@h/db' }, () => false)).toEqual([
      { text: 'the config file /srv/checkout/.mk-work/act.env of "act" does not exist: `npm run dev-db` creates the example\'s, or point MK_CONFIG at your server\'s config file', failsPlan: true },
    ]);
    expect(rotationProblems([keyOf({})], { DATABASE_URL: 'postgresql://u@h/db' }, () => true)).toEqual([]);
  });
});
