/**
 * `npm start`'s path: the demo script end to end, on a small database. With a
 * terraform binary the rotation runs through terraform's local-exec; without
 * one the demo says so and the CLI runs it.
 */
import { removeScratch, scratchDir } from '../scripts/scratch';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Client } from 'pg';
import { pgpassLine } from '../scripts/local-act';
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
      expect(out).toContain('Installed the release archive of terraform-provider-masterkey');
      // The archive's hashes are in the lock file before init: terraform verifies them and does not warn.
      expect(out).not.toContain('Incomplete lock file information');
      expect(readFileSync(join(dir, 'cdktf.out', 'stacks', 'master-key', '.terraform.lock.hcl'), 'utf8')).toMatch(/"h1:[A-Za-z0-9+/=]{44}",\n {4}"zh:[0-9a-f]{64}",/);
      expect(out).toContain('masterkey_key.master_key_act will be created');
      expect(out).toMatch(/\+ secrets\s+= 400/);
      expect(out).toMatch(/No changes\. Your infrastructure matches the configuration\./);
    }
    expect(out).toContain(`Look around in ${dir}`);

    const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(join(dir, 'act.env'), 'utf8'))![1]);
    expect(out).not.toContain(key.toHex());
    expect(statSync(join(dir, 'act.env')).mode & 0o777).toBe(0o600);
    expect(out).toMatch(/generation\s+1 -> 2/);
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

  it('--store sqlite tells the same story on an act.db beside act.env (named by ACT_DATABASE_URL)', () => {
    const sqliteDir = scratchDir('mk-demo-sqlite-');
    try {
      const r = spawnSync(process.execPath, [DEMO, '--store', 'sqlite', '--secrets', '200', '--no-terraform', '--dir', sqliteDir], { env: childEnv(), encoding: 'utf8', timeout: 170_000 });
      const out = r.stdout + r.stderr;
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(out).toContain(`Initialised ${join(sqliteDir, 'data', 'act.db')}`);
      expect(readFileSync(join(sqliteDir, 'act.env'), 'utf8')).toContain('ACT_DATABASE_URL=sqlite:data/act.db\n');
      expect(out).toMatch(/Processed (\d+) secrets, \1 updated, 0 left unchanged due to errors\./);
      expect(out).toMatch(/OK: (\d+) of \1 secrets open with mk:[0-9a-f]{12}/);
      expect(out).toContain(`database      ${join(sqliteDir, 'data', 'act.db')}`);
      const backups = readdirSync(join(sqliteDir, 'backups'));
      expect(readdirSync(join(sqliteDir, 'backups', backups[0])).sort()).toEqual(['config-1-act.env', 'database.sqlite', 'manifest.json']);
    } finally {
      removeScratch(sqliteDir);
    }
  }, 180_000);

  it('--keep keeps the database up until Ctrl-C, with its password in .pgpass-demo as a real pgpass line', async () => {
    const keepDir = scratchDir('mk-demo-keep-');
    const child = spawn(process.execPath, [DEMO, '--secrets', '8', '--no-terraform', '--keep', '--dir', keepDir], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    let dataDir = '';
    try {
      await new Promise<void>((res, rej) => {
        const t = setInterval(() => {
          if (out.includes('Ctrl-C')) {
            clearInterval(t);
            res();
          } else if (child.exitCode !== null) {
            clearInterval(t);
            rej(new Error(`the demo exited early:\n${out}`));
          }
        }, 100);
      });
      dataDir = /data in (\S+)\)/.exec(out)![1];
      const pgpass = join(keepDir, '.pgpass-demo');
      expect(statSync(pgpass).mode & 0o777).toBe(0o600);
      const line = readFileSync(pgpass, 'utf8');
      const m = /^127\.0\.0\.1:(\d+):act:postgres:([0-9a-f]+)\n$/.exec(line);
      expect(m).not.toBeNull();
      expect(out).toContain(`PGPASSFILE=${pgpass} psql -h 127.0.0.1 -p ${m![1]} -U postgres act`);
      expect(out).not.toContain(m![2]);
      // The password as a pgpass reader finds it in the file PGPASSFILE names (the parser node-postgres uses), then a real login.
      const conn = { host: '127.0.0.1', port: m![1], database: 'act', user: 'postgres' };
      const saved = process.env.PGPASSFILE;
      process.env.PGPASSFILE = pgpass;
      let password: string | undefined;
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const readPgpass = require('pgpass') as (c: typeof conn, cb: (pw?: string) => void) => void;
        password = await new Promise<string | undefined>((res) => readPgpass(conn, res));
      } finally {
        if (saved === undefined) delete process.env.PGPASSFILE;
        else process.env.PGPASSFILE = saved;
      }
      expect(password).toBe(m![2]);
      const c = new Client({ ...conn, port: Number(conn.port), password });
      await c.connect();
      const n = await c.query<{ n: string }>('SELECT count(*) AS n FROM servers');
      await c.end();
      expect(Number(n.rows[0].n)).toBeGreaterThan(0);
    } finally {
      child.kill('SIGINT');
      const code = await exited;
      if (dataDir && existsSync(dataDir)) removeScratch(dirname(dataDir));
      expect(code).toBe(0);
    }
    // Ctrl-C stopped the database and removed its folder.
    expect(out).toContain('Stopping the database.');
    expect(existsSync(dataDir)).toBe(false);
  }, 180_000);

  it('without --dir, works in .mk-work/demo (MK_WORK_DIR/demo), which the next run replaces: runs do not pile up, nothing is left in the temp directory', () => {
    const work = scratchDir('mk-demo-work-');
    // A temp directory of its own, so that what the demo leaves there is all that is there.
    const tmp = scratchDir('mk-demo-tmp-');
    const env = { ...childEnv(), MK_WORK_DIR: work, TMPDIR: tmp };
    for (let i = 0; i < 2; i++) {
      const r = spawnSync(process.execPath, [DEMO, '--store', 'sqlite', '--secrets', '8', '--no-terraform'], { env, encoding: 'utf8', timeout: 170_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`working directory ${join(work, 'demo')}`);
      if (i === 0) writeFileSync(join(work, 'demo', 'left-by-the-first-run'), '');
    }
    expect(readdirSync(work)).toEqual(['demo']);
    expect(existsSync(join(work, 'demo', 'left-by-the-first-run'))).toBe(false);
    expect(readdirSync(join(work, 'demo', 'backups'))).toHaveLength(1);
    expect(readdirSync(tmp)).toEqual([]);
  }, 180_000);

  it('pgpassLine escapes the separators', () => {
    expect(pgpassLine('postgresql://us%3Aer:p%5Cw%3Ad@127.0.0.1:5433/my%3Adb')).toBe('127.0.0.1:5433:my\\:db:us\\:er:p\\\\w\\:d');
    expect(pgpassLine('postgresql://postgres:secret@db.internal/act')).toBe('db.internal:5432:act:postgres:secret');
  });

  it('--help explains the options', () => {
    const r = spawnSync(process.execPath, [DEMO, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const o of ['--secrets', '--keep', '--use-database-url', '--dir', '--no-terraform', '--store']) expect(r.stdout).toContain(o);
  });
});
