/**
 * The scheduled-rotation pipeline in examples/scheduled-rotation: the
 * workflow file's own `run` commands (with the pipeline's secrets replaced
 * by a test database), executed as the scheduled job would, day after day,
 * against a real ACT installation with real terraform:
 *
 * 1. no state yet: the plan shows the resource (through the provider, with
 *    the key's fingerprint); apply adopts the key (not due);
 * 2. the next day: no change, nothing applied, the age gate passes;
 * 3. a new 90-day window starts: the plan shows the rotation (the new
 *    fingerprint known after apply), apply rotates every secret and the
 *    config file;
 * 4. a key older than MAX_AGE that the plan does not rotate fails the job
 *    at the gate (exit 11).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { load } from 'js-yaml';
import { Client } from 'pg';
import { scratchDir } from '../scripts/scratch';
import { actScenario, readPlaintexts, Scenario } from './support/scenario';
import { describeTerraform } from './support/terraform';

const REPO = resolve(__dirname, '..');
const EXAMPLE = join(REPO, 'examples', 'scheduled-rotation');

interface Step {
  readonly name?: string;
  readonly uses?: string;
  readonly run?: string;
}
interface Workflow {
  readonly on: { readonly schedule: ReadonlyArray<{ readonly cron: string }> };
  readonly jobs: Record<string, { readonly env: Record<string, string>; readonly steps: readonly Step[] }>;
}

const workflow = load(readFileSync(join(EXAMPLE, 'github-actions.yml'), 'utf8')) as Workflow;
const job = Object.values(workflow.jobs)[0];

/** Replaces `${{ secrets.X }}` with the test's value for X. */
function resolveExpressions(value: string, secrets: Record<string, string>): string {
  return value.replace(/\$\{\{\s*secrets\.(\w+)\s*\}\}/g, (_, name: string) => {
    if (!(name in secrets)) throw new Error(`the workflow uses secrets.${name}, which the test does not provide`);
    return secrets[name];
  });
}

describe('the workflow file', () => {
  it('runs on a schedule, installs and builds, then runs the rotation script, which is executable', () => {
    expect(workflow.on.schedule[0].cron).toMatch(/^\S+ \S+ \* \* \*$/);
    expect(job.steps.filter((s) => s.run).map((s) => s.run!.trim())).toEqual(['npm ci', 'npm run build', 'examples/scheduled-rotation/rotate-when-due.sh']);
    expect(statSync(join(EXAMPLE, 'rotate-when-due.sh')).mode & 0o111).toBe(0o111);
    expect(job.env.DATABASE_URL).toBe('${{ secrets.ACT_DATABASE_URL }}');
    // The runner reaches the server's host over SSH, not its files.
    expect(job.env.MK_CONFIG).toMatch(/^ssh:\/\/\w+@[\w.-]+\/etc\/act\/act\.env$/);
  });
});

describeTerraform('the scheduled job, run after run', () => {
  let s: Scenario;
  let work: string;

  beforeAll(async () => {
    s = await actScenario({ perKind: 2 });
    work = scratchDir('mk-pipeline-');
  });

  /** Runs the workflow's commands (npm ci and the build are done: npm test built dist) with the job's environment. */
  function runJob(extra: Record<string, string> = {}): { code: number; out: string } {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of Object.entries(job.env)) env[k] = resolveExpressions(v, { ACT_DATABASE_URL: s.url });
    Object.assign(env, {
      // Where this test's installation is, instead of the server's host in the file (the SSH path is test/remote-terraform.test.ts's).
      MK_CONFIG: s.configPath,
      MK_HOST_KEY: '',
      MK_BACKUP_DIR: join(work, 'backups'),
      MK_REPORT_DIR: join(work, 'reports'),
      MK_STATE_FILE: join(work, 'terraform.tfstate'),
      CDKTF_OUTDIR: join(work, 'cdktf.out'),
      ...extra,
    });
    let out = '';
    for (const step of job.steps) {
      if (!step.run || ['npm ci', 'npm run build'].includes(step.run.trim())) continue;
      const r = spawnSync('/bin/sh', ['-c', step.run], { cwd: REPO, env, encoding: 'utf8', timeout: 180_000 });
      out += `${r.stdout}${r.stderr}`;
      if (r.status !== 0) return { code: r.status ?? -1, out };
    }
    return { code: 0, out };
  }

  it("first run: no state, so the plan shows the resource with the key's fingerprint; apply adopts the key without rotating", () => {
    const r = runJob();
    expect(r.out).toContain('the plan shows a change; applying');
    expect(r.out).toContain('# masterkey_key.master_key_act will be created');
    expect(r.out).toMatch(new RegExp(`\\+ fingerprint\\s+= "${s.key.fingerprint}"`));
    expect(r.out).toContain('masterkey_key.master_key_act: Creation complete');
    expect(r.out).toMatch(/policy allows 91 days: ok/);
    expect(r.code).toBe(0);
    expect(s.configKey().equals(s.key)).toBe(true);
  }, 240_000);

  it('the next day: no change, nothing applied, the gate passes', () => {
    const r = runJob();
    expect(r.out).toContain('the plan shows no change; nothing to apply');
    expect(r.out).not.toContain('Apply complete');
    expect(r.code).toBe(0);
  }, 240_000);

  it('when a new policy window starts, the plan shows it and the apply rotates every secret', async () => {
    const in91Days = new Date(Date.now() + 91 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
    const r = runJob({ MK_POLICY_AT: in91Days });
    expect(r.out).toContain('the plan shows a change; applying');
    expect(r.out).toContain('# masterkey_key.master_key_act will be updated in-place');
    expect(r.out).toMatch(new RegExp(`~ fingerprint\\s+= "${s.key.fingerprint}" -> \\(known after apply\\)`));
    expect(r.out).toContain('Apply complete! Resources: 0 added, 1 changed, 0 destroyed.');
    expect(r.code).toBe(0);
    const newKey = s.configKey();
    expect(newKey.equals(s.key)).toBe(false);
    expect(r.out).not.toContain(newKey.toHex());
    expect(r.out).not.toContain(s.key.toHex());
    expect(r.out).not.toContain(new URL(s.url).password);
    expect(await readPlaintexts(s.url, newKey, s.plaintexts.keys())).toEqual(s.plaintexts);
    const reports = readdirSync(join(work, 'reports'));
    expect(reports.filter((f) => f.endsWith('.json'))).toHaveLength(1);
    expect(readFileSync(join(work, 'reports', reports.find((f) => f.endsWith('.md'))!), 'utf8')).toContain(`Processed ${s.plaintexts.size} secrets, ${s.plaintexts.size} updated, 0 left unchanged due to errors.`);
  }, 240_000);

  it('a key older than MAX_AGE that no plan rotates fails the job at the gate', async () => {
    const c = new Client({ connectionString: s.url });
    await c.connect();
    try {
      await c.query("UPDATE master_key.canary SET key_created_at = now() - interval '400 days'");
    } finally {
      await c.end();
    }
    const r = runJob({ MK_POLICY_DAYS: 'none' });
    expect(r.out).toMatch(/OVERDUE, rotate now/);
    expect(r.code).toBe(11);
  }, 240_000);
});
