/**
 * The package as a team installs it: `npm pack` makes the tarball, and the
 * README's "Install into your own app" section runs, line for line, in a
 * fresh app: its install block (with the tarball in place of the registry's
 * `cdktf-master-key`), its main.js, and its use block (with this test's
 * database and paths in the three `export` lines): `npx master-key
 * --version` (the prebuilt OpenSSL addon, no compiler), `master-key init`,
 * the synth of a `MasterKey`, `master-key provider install`, terraform
 * `init` and `plan`, and a rotation. One app with cdktf on PostgreSQL and
 * on SQLite; a second with cdktn whose allowScripts denies better-sqlite3's
 * build (`false` in the README's line), on PostgreSQL, where a sqlite: URL
 * gets the one sentence naming that line.
 *
 * npm may use its cache; when the registry cannot be reached the test says
 * so and fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { scratchDir } from '../scripts/scratch';
import { actScenario, Scenario } from './support/scenario';
import { POSTGRES, SQLITE_WAL } from './support/stores';
import { describeTerraform } from './support/terraform';

const REPO = resolve(__dirname, '..');
const README = readFileSync(join(REPO, 'README.md'), 'utf8');

/** The code blocks of the README's install section, in order: install (sh), main.js (js), use (sh). */
function installSection(readme: string = README): { install: string; mainJs: string; use: string } {
  const start = readme.indexOf('\n## Install into your own app\n');
  const end = readme.indexOf('\n## ', start + 1);
  const blocks = [...readme.slice(start, end).matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1], code: m[2] }));
  expect(blocks.map((b) => b.lang)).toEqual(['sh', 'js', 'sh']);
  return { install: blocks[0].code, mainJs: blocks[1].code, use: blocks[2].code };
}

/** What npm says when it cannot reach the registry (its error codes). */
const OFFLINE = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|CERT_|UNABLE_TO_GET_ISSUER_CERT|request to https?:\/\/\S+ failed)/;

interface App {
  readonly lib: 'cdktf' | 'cdktn';
  readonly parent: string;
  readonly dir: string;
  readonly home: string;
}

describeTerraform('the packed package installed into a fresh app, as the README says', () => {
  let tarball: string;
  let npmEnv: NodeJS.ProcessEnv;

  beforeAll(() => {
    const out = scratchDir('mk-pack-');
    const r = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], { cwd: REPO, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    tarball = join(out, (JSON.parse(r.stdout) as Array<{ filename: string }>)[0].filename);
    const npmConfig = (key: string) => spawnSync('npm', ['config', 'get', key], { encoding: 'utf8' }).stdout.trim();
    // A scratch HOME (the provider goes to ~/.terraform.d/plugins), with npm's own cache and configuration kept.
    const { TF_CLI_CONFIG_FILE: _c, TF_PLUGIN_CACHE_DIR: _p, DATABASE_URL: _d, ...rest } = process.env;
    npmEnv = {
      ...rest,
      npm_config_cache: npmConfig('cache'),
      npm_config_userconfig: npmConfig('userconfig'),
      // better-sqlite3 builds against this node's headers (no download).
      npm_config_nodedir: resolve(process.execPath, '..', '..'),
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
      CHECKPOINT_DISABLE: '1',
      TF_IN_AUTOMATION: '1',
    };
  });

  /** Runs lines as a shell script (bash -e: the first failing line stops it), in dir, with the app's HOME. */
  function sh(app: App, script: string, cwd: string, env: NodeJS.ProcessEnv = {}) {
    const r = spawnSync('bash', ['-eo', 'pipefail', '-c', script], { cwd, encoding: 'utf8', timeout: 900_000, env: { ...npmEnv, HOME: app.home, ...env } });
    // terraform colours its output even off a terminal (the README's lines do not pass -no-color).
    const plain = (text: string | null) => (text ?? '').replace(/\x1b\[[0-9;]*m/g, '');
    const out = `${plain(r.stdout)}${plain(r.stderr)}`;
    if (r.status !== 0 && OFFLINE.test(out)) {
      throw new Error(`The npm registry cannot be reached (${OFFLINE.exec(out)![0]}): this test installs the packed tarball into a fresh app next to ${app.lib} and constructs from the registry (npm uses its cache where it has them); give this machine access to the registry, or a registry mirror in npm's configuration, and run it again.\n${out.slice(-2000)}`);
    }
    return { code: r.status, stdout: plain(r.stdout), stderr: plain(r.stderr), out };
  }

  /** The README's install block in a new folder: the tarball for `cdktf-master-key`, and for cdktn its package instead of cdktf. */
  function install(lib: App['lib'], opts: { allowScripts: boolean }): App {
    const parent = scratchDir(`mk-consumer-${lib}-`);
    const home = join(parent, 'home');
    mkdirSync(home);
    const app: App = { lib, parent, dir: join(parent, 'my-infra'), home };
    let { install: lines, mainJs } = installSection();
    lines = lines.replace(/^(npm install .*)\bcdktf-master-key\b/m, `$1${tarball}`);
    if (lib === 'cdktn') {
      lines = lines.replace('cdktf@0.21', 'cdktn@0.24');
      mainJs = mainJs.replace("require('cdktf')", "require('cdktn')");
    }
    if (!opts.allowScripts) lines = lines.replace('allowScripts.better-sqlite3=true', 'allowScripts.better-sqlite3=false');
    const r = sh(app, lines, parent);
    expect(r.stderr).not.toMatch(/npm error/);
    expect(r.code).toBe(0);
    // `npx master-key --version`: the version and the prebuilt OpenSSL addon (no compiler was needed for it).
    expect(r.stdout).toMatch(/\n0\.\d+\.\d+\nAES-GCM: OpenSSL batch addon \(OpenSSL 3\.[^,]+, linux-x64\)\n$/);
    const pkg = JSON.parse(readFileSync(join(app.dir, 'package.json'), 'utf8')) as { allowScripts?: Record<string, unknown>; dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies).sort()).toEqual(['cdktf-master-key', lib, 'constructs'].sort());
    expect(pkg.allowScripts).toEqual({ 'better-sqlite3': opts.allowScripts });
    // Approved: built, and not among the scripts npm lists as unapproved. Denied: skipped.
    expect(r.stderr).not.toMatch(/install-scripts\s+better-sqlite3/);
    expect(existsSync(join(app.dir, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))).toBe(opts.allowScripts);
    expect(existsSync(join(app.dir, 'node_modules', 'cdktf-master-key', 'native', 'prebuilds', 'linux-x64', 'gcm_batch.glibc.node'))).toBe(true);
    expect(existsSync(join(app.dir, 'node_modules', 'cdktf-master-key', 'native', 'build'))).toBe(false);
    writeFileSync(join(app.dir, 'main.js'), mainJs);
    return app;
  }

  /** The README's use block in the app, with the scenario's config file, backups and database URL in its export lines. */
  function use(app: App, s: Scenario) {
    const values: Record<string, string> = { ACT_CONFIG: s.configPath, ACT_BACKUPS: join(s.dir, 'backups'), DATABASE_URL: s.url };
    const lines = installSection().use.replace(/^export (\w+)=.*$/gm, (_, name: string) => {
      expect(values[name]).toBeDefined();
      return `export ${name}='${values[name]}'`;
    });
    return sh(app, lines, app.dir);
  }

  /** What every run of the use block must show, on either store. */
  function expectRotated(r: ReturnType<typeof use>, s: Scenario, app: App) {
    expect(r.code).toBe(0);
    expect(r.out).toContain('Initialised');
    expect(r.stdout).toContain('Installed terraform-provider-masterkey');
    expect(r.stdout).toMatch(/(Installing|Using previously-installed) cdktf-master-key\/masterkey v0\.\d+\.\d+/);
    expect(r.stdout).toContain('masterkey_key.');
    expect(r.stdout).toMatch(/\+ secrets\s+= \d+/);
    expect(r.out).toMatch(/Processed (\d+) secrets, \1 updated, 0 left unchanged due to errors\./);
    expect(r.out).not.toContain(s.key.toHex());
    const synth = JSON.parse(readFileSync(join(app.dir, 'cdktf.out', 'stacks', 'act', 'cdk.tf.json'), 'utf8'));
    expect(synth.terraform.required_providers.masterkey.source).toBe('cdktf-master-key/masterkey');
    // The report's header says which AES-GCM implementation ran: the prebuilt addon.
    const reports = join(s.dir, 'master-key-reports');
    const md = readdirSync(reports).find((f) => f.endsWith('.md'))!;
    expect(readFileSync(join(reports, md), 'utf8')).toMatch(/^\| AES-GCM \| OpenSSL batch addon \(OpenSSL 3\.[^|]*, linux-x64\) \|$/m);
    expect(s.configKey().equals(s.key)).toBe(false);
  }

  it('with cdktf: installs with no compiler for the addon, synthesizes a MasterKey, and rotates PostgreSQL and SQLite through the CLI after terraform init and plan', async () => {
    const app = install('cdktf', { allowScripts: true });
    for (const store of [POSTGRES, SQLITE_WAL]) {
      const s = await actScenario({ perKind: 2, store, init: false });
      expectRotated(use(app, s), s, app);
    }
  }, 1_500_000);

  it("with cdktn, better-sqlite3's build denied in allowScripts: PostgreSQL rotates; a sqlite: URL gets one sentence naming the allowScripts line", async () => {
    const app = install('cdktn', { allowScripts: false });
    const s = await actScenario({ perKind: 2, init: false });
    expectRotated(use(app, s), s, app);
    const sqlite = await actScenario({ perKind: 1, store: SQLITE_WAL, init: false });
    const r = sh(app, `npx master-key status --config '${sqlite.configPath}'`, app.dir, { DATABASE_URL: sqlite.url });
    expect(r.code).toBe(7);
    expect(r.stderr).toContain('add `"allowScripts": { "better-sqlite3": true }` to your package.json, run `npm rebuild better-sqlite3`');
  }, 1_500_000);
});
