/**
 * The MasterKey construct driven by the real `terraform` binary:
 *
 * 1. with a stand-in CLI that records its argv and environment variable
 *    names (no rotation code needed): triggers in the plan, "must be replaced" on a
 *    generation bump or a new policy window, the exact argv, a failed apply
 *    leaving the resource tainted and the next apply succeeding;
 * 2. end to end with the real rotation CLI and PostgreSQL: the first apply
 *    adopts the key, a generation bump rotates every secret, the canary and
 *    both config files, a failed apply (database not accepting connections)
 *    changes nothing and the next apply succeeds.
 *
 * Both scan cdk.tf.json, the state and every plan/apply output for key
 * material and the database password. Skipped only when no terraform binary
 * is on PATH (and says so).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { MasterKey, MasterKeyProps } from '../constructs';
import { actCodec } from '../src/crypto/codec';
import { MasterKey as Key, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { removeScratch } from '../scripts/scratch';
import { describeTerraform } from './support/terraform';
import { adminUrl, dropDatabase, freshDatabase, withTestClient } from './support/db';

const describeTf = describeTerraform;

const REPO = resolve(__dirname, '..');
const CLI = join(REPO, 'dist/src/cli/main.js');
const STACK = 'rotation';

/**
 * A scratch folder with an empty terraform CLI config; collects every
 * terraform output. Created by `create()` in a beforeAll, so that skipped or
 * filtered-out tests leave nothing behind.
 */
class Workspace {
  readonly dir = join(tmpdir(), `mk-tf-${randomBytes(6).toString('hex')}`);
  readonly outdir = join(this.dir, 'cdktf.out');
  readonly stateFile = join(this.dir, 'terraform.tfstate');
  readonly stackDir = join(this.outdir, 'stacks', STACK);
  readonly transcript: string[] = [];
  readonly synthesized: string[] = [];
  private readonly cliConfig = join(this.dir, 'empty.tfrc');

  create(): void {
    mkdirSync(this.dir, { mode: 0o700 });
    writeFileSync(this.cliConfig, '');
  }

  /** Synthesizes one stack with one key, as `cdktf synth` would (policy errors fail it). */
  synth(props: MasterKeyProps): MasterKey {
    const app = new App({ outdir: this.outdir, stackTraces: false });
    const stack = new TerraformStack(app, STACK);
    new LocalBackend(stack, { path: this.stateFile });
    const key = new MasterKey(stack, 'master-key', props);
    app.synth();
    this.synthesized.push(readFileSync(join(this.stackDir, 'cdk.tf.json'), 'utf8'));
    return key;
  }

  /** The environment terraform runs in: the test's, an empty CLI config, no checkpoint calls. */
  env(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
    return { ...process.env, TF_CLI_CONFIG_FILE: this.cliConfig, TF_IN_AUTOMATION: '1', CHECKPOINT_DISABLE: '1', ...extra };
  }

  /** Runs terraform in the stack directory with the test's environment. */
  tf(args: string[], env: Record<string, string | undefined>): { code: number; out: string } {
    const r = spawnSync('terraform', [...args, '-input=false', '-no-color'], { cwd: this.stackDir, encoding: 'utf8', env: this.env(env) });
    const out = `${r.stdout}${r.stderr}`;
    this.transcript.push(`$ terraform ${args.join(' ')}\n${out}`);
    return { code: r.status ?? -1, out };
  }

  init(env: Record<string, string | undefined>): void {
    const r = this.tf(['init'], env);
    expect(r.code).toBe(0);
  }

  /** `terraform plan -detailed-exitcode`: 0 no changes, 2 changes. */
  plan(env: Record<string, string | undefined>, expected: 0 | 2): string {
    const r = this.tf(['plan', '-detailed-exitcode'], env);
    if (r.code !== expected) throw new Error(`terraform plan exited ${r.code}, expected ${expected}:\n${r.out}`);
    return r.out;
  }

  apply(env: Record<string, string | undefined>): { code: number; out: string } {
    return this.tf(['apply', '-auto-approve'], env);
  }

  /** Everything a secret must not appear in: synthesized config, state, outputs. */
  everything(): string {
    const state = existsSync(this.stateFile) ? readFileSync(this.stateFile, 'utf8') : '';
    return [...this.synthesized, state, ...this.transcript].join('\n');
  }

  remove(): void {
    removeScratch(this.dir);
  }
}

/** The hex of every secret, as it would appear if leaked, and its occurrences. */
function leaks(haystack: string, secrets: readonly string[]): string[] {
  return secrets.filter((s) => s.length > 0 && haystack.toLowerCase().includes(s.toLowerCase()));
}

describeTf('terraform with a recording stand-in for the CLI (no rotation code)', () => {
  const ws = new Workspace();
  const record = join(ws.dir, 'calls.jsonl');
  const recorder = join(ws.dir, 'recorder.js');
  const password = randomBytes(9).toString('hex');
  const env = { DATABASE_URL: `postgres://act:${password}@127.0.0.1:1/act` };
  // Odd but legal characters in a path: quotes, spaces, shell and terraform template syntax.
  const oddConfig = join(ws.dir, "it's ${HOME} %{x} $(id)", 'act.env');
  const props = (generation: number, evaluatedAt = '2026-03-10T12:00:00Z'): MasterKeyProps => ({
    name: 'act',
    generation,
    rotationPolicy: { periodDays: 90, evaluatedAt },
    configFiles: [join(ws.dir, 'act.env'), oddConfig],
    backupDir: join(ws.dir, 'backups'),
    reportDir: join(ws.dir, 'reports'),
    cliCommand: [process.execPath, recorder],
    environment: { RECORD_FILE: record },
  });
  const calls = (): Array<{ argv: string[]; env: string[]; urlSha: string }> =>
    existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];

  beforeAll(() => {
    ws.create();
    writeFileSync(
      recorder,
      [
        "const fs = require('fs');",
        "const sha = (s) => require('crypto').createHash('sha256').update(String(s)).digest('hex');",
        'const out = process.env.RECORD_FILE;',
        "if (fs.existsSync(out + '.fail')) { console.error('recorder: told to fail'); process.exit(7); }",
        'fs.appendFileSync(out, JSON.stringify({ argv: process.argv.slice(2), env: Object.keys(process.env).sort(), urlSha: sha(process.env.DATABASE_URL) }) + "\\n");',
        "console.log('recorder: ran generation ' + process.argv[process.argv.indexOf('--generation') + 1]);",
      ].join('\n'),
    );
  });
  afterAll(() => ws.remove());

  it('plans the rotation resource with readable triggers, and apply runs the exact command', () => {
    const key = ws.synth(props(1));
    ws.init(env);
    const plan = ws.plan(env, 2);
    expect(plan).toContain('# terraform_data.master_key_act will be created');
    expect(plan).toContain('will be created');
    expect(plan).toMatch(/generation\s+= "1"/);
    expect(plan).toMatch(/policy_window\s+= "90d #228 from 2026-03-08"/);
    expect(plan).toMatch(/\bkey\s+= "act"/);
    expect(plan).toMatch(/inventory\s+= "act sha256:[0-9a-f]{16} \(9 locations, 7 kinds\)"/);
    const applied = ws.apply(env);
    expect(applied.code).toBe(0);
    expect(applied.out).toContain('recorder: ran generation 1');
    const [call] = calls();
    expect(calls()).toHaveLength(1);
    expect(call.argv).toEqual(key.argv.slice(2));
    expect(call.argv).toContain(oddConfig);
    // The URL reached the script through terraform's environment, not the config.
    expect(call.env).toEqual(expect.arrayContaining(['DATABASE_URL', 'RECORD_FILE']));
    expect(call.urlSha).toBe(createHash('sha256').update(env.DATABASE_URL).digest('hex'));
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('shows a generation bump as "must be replaced"; a failed run leaves the resource tainted and the next apply runs it again', () => {
    ws.synth(props(2));
    const plan = ws.plan(env, 2);
    expect(plan).toContain('# terraform_data.master_key_act must be replaced');
    expect(plan).toMatch(/~ generation\s+= "1" -> "2"/);
    expect(plan).toContain('Plan: 1 to add, 0 to change, 1 to destroy.');

    writeFileSync(`${record}.fail`, '');
    const failed = ws.apply(env);
    expect(failed.code).not.toBe(0);
    expect(failed.out).toContain('recorder: told to fail');
    expect(failed.out).toContain('local-exec provisioner error');
    expect(calls()).toHaveLength(1);
    expect(ws.plan(env, 2)).toMatch(/is tainted, so must be replaced/);

    rmSync(`${record}.fail`);
    const retried = ws.apply(env);
    expect(retried.code).toBe(0);
    expect(calls().map((c) => c.argv[c.argv.indexOf('--generation') + 1])).toEqual(['1', '2']);
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('shows a new policy window as "must be replaced" and passes its start to the script', () => {
    ws.synth(props(2, '2026-06-06T00:00:01Z'));
    const plan = ws.plan(env, 2);
    expect(plan).toMatch(/~ policy_window\s+= "90d #228 from 2026-03-08" -> "90d #229 from 2026-06-06"/);
    expect(plan).toContain('must be replaced');
    expect(ws.apply(env).code).toBe(0);
    const last = calls().at(-1)!;
    expect(last.argv.join(' ')).toContain('--generation 2 --policy-days 90 --window-start 2026-06-06T00:00:00Z');
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('puts no database password anywhere: cdk.tf.json, state, plan and apply output', () => {
    expect(ws.synthesized.length).toBeGreaterThanOrEqual(3);
    expect(ws.transcript.length).toBeGreaterThanOrEqual(10);
    expect(leaks(ws.everything(), [password, env.DATABASE_URL])).toEqual([]);
  });
});

describeTf('terraform end to end with the rotation CLI and PostgreSQL', () => {
  const ws = new Workspace();
  const etc = join(ws.dir, 'etc');
  const primary = join(etc, 'act.env');
  const node2 = join(etc, 'node2.env');
  const backups = join(ws.dir, 'backups');
  const reports = join(ws.dir, 'reports');
  const plaintexts = ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----', 'ssh passphrase', 'ghp_exampletoken', 'registry pw', 'AKIA secret', 'service secret'];
  let url = '';
  let env: Record<string, string> = {};
  const keys: Key[] = [];

  const props = (generation: number, evaluatedAt?: string): MasterKeyProps => ({
    name: 'act',
    generation,
    rotationPolicy: { periodDays: 90, ...(evaluatedAt ? { evaluatedAt } : {}) },
    configFiles: [primary, node2],
    backupDir: backups,
    reportDir: reports,
  });

  const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  const status = (): { fingerprint: string; generation: number } => {
    const r = cli(['status', '--json', '--config', primary, '--config', node2]);
    if (r.status !== 0) throw new Error(`status failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const configKey = (file: string): Key => parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(file, 'utf8'))![1], file);

  /** Every sealed value in the database, in a stable order. */
  const sealedValues = (): Promise<string[]> =>
    withTestClient(url, async (c) => {
      const q = async (sql: string) => (await c.query<{ v: string }>(sql)).rows.map((r) => r.v);
      return [
        ...(await q('SELECT ssh_private_key AS v FROM servers ORDER BY id')),
        ...(await q('SELECT ssh_passphrase AS v FROM servers ORDER BY id')),
        ...(await q('SELECT access_token AS v FROM git_credentials ORDER BY id')),
        ...(await q('SELECT password AS v FROM registry_credentials ORDER BY id')),
        ...(await q("SELECT settings->'credentials'->>'secret' AS v FROM storage_providers ORDER BY id")),
        ...(await q("SELECT spec->'env'->0->>'value' AS v FROM services ORDER BY id")),
      ];
    });
  const opened = async (key: Key) => {
    const ring = new Keyring([key]);
    return (await sealedValues()).map((v) => ring.openText(actCodec(), v));
  };

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`The rotation CLI is not built (${CLI} is missing): run \`npm run build\` first.`);
    ws.create();
    url = await freshDatabase('tf_e2e');
    env = { DATABASE_URL: url };
    mkdirSync(etc, { recursive: true });
    keys.push(Key.generate());
    for (const f of [primary, node2]) {
      writeFileSync(f, `# ACT server\nACT_BASE_URL=https://act.example.invalid\nACT_MASTER_KEY=${keys[0].toHex()}\n`, { mode: 0o600 });
      chmodSync(f, 0o600);
    }
    const init = cli(['init', '--config', primary, '--create-act-schema']);
    if (init.status !== 0) throw new Error(`master-key init failed: ${init.stderr}${init.stdout}`);
    const seal = (s: string) => actCodec().seal(keys[0], Buffer.from(s, 'utf8'));
    await withTestClient(url, async (c) => {
      await c.query('INSERT INTO servers (name, host, ssh_private_key, ssh_passphrase) VALUES ($1, $2, $3, $4)', ['web-1', '10.0.0.1', seal(plaintexts[0]), seal(plaintexts[1])]);
      await c.query('INSERT INTO git_credentials (provider, access_token) VALUES ($1, $2)', ['github', seal(plaintexts[2])]);
      await c.query('INSERT INTO registry_credentials (registry, username, password) VALUES ($1, $2, $3)', ['ghcr.io', 'act', seal(plaintexts[3])]);
      await c.query('INSERT INTO storage_providers (name, settings) VALUES ($1, $2)', ['s3', { credentials: { secret: seal(plaintexts[4]) } }]);
      await c.query('INSERT INTO services (name, spec) VALUES ($1, $2)', ['api', { env: [{ name: 'TOKEN', value: seal(plaintexts[5]), secret: true }, { name: 'MODE', value: 'prod', secret: false }] }]);
    });
  });

  afterAll(async () => {
    if (url) {
      await withTestClient(adminUrl(), (c) => c.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" WITH ALLOW_CONNECTIONS true`));
      await dropDatabase(url);
    }
    ws.remove();
  });

  it('first apply at the current generation adopts the key and changes no secret; the next plan shows no changes', async () => {
    const before = await sealedValues();
    const fp = status().fingerprint;
    expect(fp).toBe(keys[0].fingerprint);
    ws.synth(props(1));
    ws.init(env);
    const plan = ws.plan(env, 2);
    expect(plan).toMatch(/generation\s+= "1"/);
    const applied = ws.apply(env);
    expect(applied.code).toBe(0);
    expect(applied.out).toMatch(/Nothing to do/i);
    expect(await sealedValues()).toEqual(before);
    expect(configKey(primary).equals(keys[0])).toBe(true);
    expect(status()).toEqual(expect.objectContaining({ fingerprint: fp, generation: 1 }));
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('a generation bump plans a replacement, apply rotates secrets, canary and every config file, and the next plan is clean', async () => {
    ws.synth(props(2));
    const plan = ws.plan(env, 2);
    expect(plan).toMatch(/must be replaced/);
    expect(plan).toMatch(/~ generation\s+= "1" -> "2"/);
    const before = await sealedValues();
    const applied = ws.apply(env);
    if (applied.code !== 0) throw new Error(`apply failed:\n${applied.out}`);
    expect(applied.out).toContain(`Rotation complete: ${keys[0].fingerprint} -> `);
    keys.push(configKey(primary));
    expect(keys[1].equals(keys[0])).toBe(false);
    expect(configKey(node2).equals(keys[1])).toBe(true);
    expect(statSync(primary).mode & 0o777).toBe(0o600);
    expect(readFileSync(primary, 'utf8')).toContain('ACT_BASE_URL=https://act.example.invalid');
    const after = await sealedValues();
    expect(after.every((v, i) => v !== before[i])).toBe(true);
    expect(await opened(keys[1])).toEqual(plaintexts);
    await expect(opened(keys[0])).rejects.toThrow();
    expect(status()).toEqual(expect.objectContaining({ fingerprint: keys[1].fingerprint, generation: 2 }));
    expect(readdirSync(reports).length).toBeGreaterThan(0);
    expect(readdirSync(backups).length).toBeGreaterThan(0);
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('a failed apply (database not accepting connections) changes nothing, and the next apply succeeds', async () => {
    const db = new URL(url).pathname.slice(1);
    ws.synth(props(3));
    ws.plan(env, 2);
    const before = await sealedValues();
    const configsBefore = [readFileSync(primary, 'utf8'), readFileSync(node2, 'utf8')];
    await withTestClient(adminUrl(), (c) => c.query(`ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS false`));
    let failed: { code: number; out: string };
    try {
      failed = ws.apply(env);
    } finally {
      await withTestClient(adminUrl(), (c) => c.query(`ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS true`));
    }
    expect(failed.code).not.toBe(0);
    expect(failed.out).toContain('local-exec provisioner error');
    expect(await sealedValues()).toEqual(before);
    expect([readFileSync(primary, 'utf8'), readFileSync(node2, 'utf8')]).toEqual(configsBefore);
    expect(status()).toEqual(expect.objectContaining({ fingerprint: keys[1].fingerprint, generation: 2 }));
    expect(ws.plan(env, 2)).toMatch(/tainted, so must be replaced/);

    const retried = ws.apply(env);
    if (retried.code !== 0) throw new Error(`apply failed:\n${retried.out}`);
    keys.push(configKey(primary));
    expect(status()).toEqual(expect.objectContaining({ fingerprint: keys[2].fingerprint, generation: 3 }));
    expect(await opened(keys[2])).toEqual(plaintexts);
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('a new policy window plans a replacement and rotates a key set before it started', async () => {
    const nextWindow = new Date(Date.now() + 91 * 86_400_000).toISOString();
    ws.synth(props(3, nextWindow));
    const plan = ws.plan(env, 2);
    expect(plan).toMatch(/~ policy_window\s+= "90d #\d+ from [\d-]+" -> "90d #\d+ from [\d-]+"/);
    expect(plan).not.toMatch(/~ generation/);
    const applied = ws.apply(env);
    if (applied.code !== 0) throw new Error(`apply failed:\n${applied.out}`);
    keys.push(configKey(primary));
    expect(keys[3].equals(keys[2])).toBe(false);
    expect(await opened(keys[3])).toEqual(plaintexts);
    expect(ws.plan(env, 0)).toContain('No changes.');
  });

  it('no key and no database password appear in cdk.tf.json, the state, or any plan or apply output', () => {
    if (process.env.MK_SHOW_TRANSCRIPT) writeFileSync(process.env.MK_SHOW_TRANSCRIPT, ws.transcript.join('\n'));
    expect(keys).toHaveLength(4);
    const password = decodeURIComponent(new URL(url).password);
    const haystack = ws.everything();
    expect(haystack).toContain('Rotation complete');
    expect(leaks(haystack, [...keys.map((k) => k.toHex()), password])).toEqual([]);
    // Fingerprints are the only form in which keys show up.
    expect(haystack).toContain(keys[1].fingerprint);
  });
});

describeTf('npm run plan (scripts/tf.ts): synth with the example app, then terraform in the stack directory', () => {
  const ws = new Workspace();
  const script = join(REPO, 'dist/scripts/tf.js');
  const run = (extra: Record<string, string>) =>
    spawnSync(process.execPath, [script, 'plan', '-no-color'], {
      encoding: 'utf8',
      env: ws.env({
        CDKTF_OUTDIR: ws.outdir,
        MK_STACK: STACK,
        MK_STATE_FILE: ws.stateFile,
        MK_CONFIG: join(ws.dir, 'act.env'),
        MK_BACKUP_DIR: join(ws.dir, 'backups'),
        MK_GENERATION: '4',
        MK_RESOURCE: 'terraform_data',
        ...extra,
      }),
    });
  beforeAll(() => ws.create());
  afterAll(() => ws.remove());

  it('synthesizes, prints policy warnings, inits and plans the rotation resource', () => {
    if (!existsSync(script)) throw new Error(`${script} is missing: run \`npm run build\` first.`);
    const r = run({ MK_POLICY_DAYS: 'none' });
    expect(r.stderr).toContain('[warn] rotation/master-key: [MasterKey-RotationPolicy]');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`== stack ${STACK} (${ws.stackDir}) ==`);
    expect(r.stdout).toContain('Terraform has been successfully initialized!');
    expect(r.stdout).toContain('# terraform_data.master_key_act will be created');
    expect(r.stdout).toMatch(/generation\s+= "4"/);
    expect(r.stdout).toMatch(/policy_window\s+= "none"/);
    expect(readFileSync(join(ws.stackDir, 'cdk.tf.json'), 'utf8')).toContain(ws.stateFile);
  });

  it('stops before terraform when a policy error fails synth, naming the construct, the rule and the fix', () => {
    const r = run({ MK_CONFIG: 'etc/act.env' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('Synth failed');
    expect(r.stderr).toContain('[rotation/master-key] [MasterKey-AbsolutePaths] configFiles[0] "etc/act.env" is a relative path');
    expect(r.stdout).not.toContain('terraform_data');
  });
});
