/**
 * `npm run plan` / `npm run deploy` on a fresh checkout, as the README says:
 * `npm run dev-db` starts a local ACT installation and prints exactly the
 * export line; the plan then runs, the deploy rotates; an apply that could
 * not work (no terminal to confirm on, no DATABASE_URL) is refused before
 * terraform runs; terraform's output has no colour codes off a terminal and
 * no CLI-configuration warning; `dev-db --stop` removes the installation.
 * MK_WORK_DIR and CDKTF_OUTDIR keep it all in a scratch folder instead of
 * the checkout's .mk-work/ and cdktf.out/.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { parseKey } from '../src/crypto/key';
import { scratchDir } from '../scripts/scratch';
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
    };

    it('npm run plan shows the rotation resource, without colour codes or CLI-config warnings', () => {
      // This machine's environment may name a missing TF_CLI_CONFIG_FILE: tf.js then uses the checkout's .terraformrc.
      const r = afterExport('node dist/scripts/tf.js plan', { TF_CLI_CONFIG_FILE: join(work, 'no-such.tfrc') });
      expect(r.stderr).not.toContain('Warning: the plan is shown, but an apply would fail');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('# terraform_data.master_key_act will be created');
      noise(r.stdout + r.stderr);
    });

    it('npm run deploy without a terminal and without -auto-approve is refused before terraform runs', () => {
      const r = afterExport('node dist/scripts/tf.js apply');
      expect(r.status).toBe(3);
      expect(r.stderr).toContain('there is no terminal to answer on: run `npm run deploy -- -auto-approve`');
      expect(r.stdout).not.toContain('Terraform');
      expect(existsSync(join(work, 'terraform.tfstate'))).toBe(false);
    });

    it('npm run deploy without DATABASE_URL is refused before terraform runs, pointing at npm run dev-db', () => {
      const r = node('tf.js', ['apply', '-auto-approve']);
      expect(r.status).toBe(3);
      expect(r.stderr).toContain('Not applying (terraform was not run, nothing changed):');
      expect(r.stderr).toContain('DATABASE_URL is not set, so the rotation of "act" could not reach the database: run `npm run dev-db`');
      expect(existsSync(join(work, 'terraform.tfstate'))).toBe(false);
      const plan = node('tf.js', ['plan']);
      expect(plan.status).toBe(0);
      expect(plan.stderr).toContain('Warning: the plan is shown, but an apply would fail:');
    });

    it('npm run deploy -- -auto-approve at generation 2 rotates every secret and the config file', () => {
      const before = readFileSync(join(work, 'act.env'), 'utf8');
      const r = afterExport('node dist/scripts/tf.js apply -auto-approve', { MK_GENERATION: '2' });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/Processed 16 secrets, 16 updated, 0 left unchanged due to errors\./);
      expect(r.stdout).toContain('Apply complete! Resources: 1 added');
      noise(r.stdout + r.stderr);
      expect(readFileSync(join(work, 'act.env'), 'utf8')).not.toBe(before);
      expect(r.stdout).not.toContain(new URL(url).password);
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
