/**
 * `npm run bench:fleet -- [--size 20] [--secrets 1000] [--parallelism 5] [--rows N [--store postgres|sqlite] [--inventory bench|act]] [--json]`
 *
 * Terraform wall times, measured in one run on one PostgreSQL server:
 *
 * - the fleet: `--size` installations of `--secrets` secrets each, declared
 *   in one stack, once through terraform-provider-masterkey and once through
 *   terraform_data + local-exec (the CLI), on identical twin fleets. Timed:
 *   `terraform plan` of the rotation (generation 1 -> 2), `terraform apply`
 *   of it with `-parallelism`, and the plan after it (nothing left to do).
 * - with `--rows N`: one installation of N secrets through the provider;
 *   timed: the refresh-and-plan (`terraform plan`) with nothing to do and the
 *   plan of a rotation, with the provider's own ReadResource and
 *   PlanResourceChange times from its log; the full CLI `master-key plan`
 *   (which opens every secret) is timed beside them. `--store sqlite` puts
 *   that installation in a SQLite file (WAL, as ACT runs act.db) instead;
 *   `--inventory act` seeds the ACT preset's tables (secrets spread over
 *   every kind, JSON documents included) instead of the bench's one column.
 *
 * Starts its own embedded PostgreSQL unless DATABASE_URL is set (not needed
 * with `--store sqlite`). Needs terraform on PATH.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { Client } from 'pg';
import { MasterKey as MasterKeyConstruct, MasterKeyInventory, RotationResourceType } from '../constructs';
import { MasterKey } from '../src/crypto/key';
import { removeEmbeddedData, startEmbeddedPostgres, EmbeddedServer } from '../src/db/embedded';
import { runInit } from '../src/rotation/init';
import { buildContext } from '../src/context/build';
import { providerSurface } from '../src/provider/arguments';
import { installProvider } from '../src/provider/install';
import { actCodec } from '../src/crypto/codec';
import { sqliteModule } from '../src/store/sqlite/driver';
import { isSqliteUrl, sqliteFile } from '../src/store/sqlite/url';
import { withTestSql } from '../test/support/sql';
import { seedActSecrets } from './local-act';
import { BENCH_INVENTORY, BENCH_TABLE, plaintext, restoreBench, seedBench } from './bench-data';
import { Installation, createFleet, declareFleet, dropFleet, fleetEnv } from './fleet';
import { parseOrExit } from './usage';

interface Options {
  readonly size: number;
  readonly secrets: number;
  readonly parallelism: number;
  readonly rows?: number;
  /** The store of the `--rows` installation. */
  readonly store: 'postgres' | 'sqlite';
  /** Its secrets: the bench's one text column, or the ACT preset's tables (JSON documents included). */
  readonly inventory: 'bench' | 'act';
  readonly json: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const o = { size: 20, secrets: 1000, parallelism: 5, rows: undefined as number | undefined, store: 'postgres' as Options['store'], inventory: 'bench' as Options['inventory'], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${a} needs a positive integer`);
      return n;
    };
    if (a === '--size') o.size = num();
    else if (a === '--secrets') o.secrets = num();
    else if (a === '--parallelism') o.parallelism = num();
    else if (a === '--rows') o.rows = num();
    else if (a === '--json') o.json = true;
    else if (a === '--store' && (argv[i + 1] === 'postgres' || argv[i + 1] === 'sqlite')) o.store = argv[++i] as Options['store'];
    else if (a === '--inventory' && (argv[i + 1] === 'bench' || argv[i + 1] === 'act')) o.inventory = argv[++i] as Options['inventory'];
    else throw new Error(`unknown option ${a}${a === '--store' ? ' (give postgres or sqlite)' : a === '--inventory' ? ' (give bench or act)' : ''}`);
  }
  if ((o.store === 'sqlite' || o.inventory === 'act') && o.rows === undefined) throw new Error('--store and --inventory time one installation: give --rows N too (the fleet runs on one PostgreSQL server)');
  return o;
}

const CLI = resolve(__dirname, '..', 'src', 'cli', 'main.js');

/** A stack directory with its own state, empty CLI config and (for the provider) local mirror. */
class Stack {
  readonly outdir: string;
  constructor(
    readonly dir: string,
    readonly name: string,
  ) {
    this.outdir = join(dir, 'cdktf.out');
  }
  get stackDir(): string {
    return join(this.outdir, 'stacks', this.name);
  }
  synth(build: (s: TerraformStack) => void): void {
    const app = new App({ outdir: this.outdir, stackTraces: false });
    const stack = new TerraformStack(app, this.name);
    new LocalBackend(stack, { path: join(this.dir, `${this.name}.tfstate`) });
    build(stack);
    app.synth();
    installProvider({ pluginsDir: join(this.stackDir, 'terraform.d', 'plugins') });
  }
  /** Runs terraform; returns wall seconds (throws unless it exits with one of `codes`). */
  tf(args: string[], env: Record<string, string>, codes: number[] = [0]): { seconds: number; out: string } {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('terraform', [args[0], '-input=false', '-no-color', ...args.slice(1)], {
      cwd: this.stackDir,
      encoding: 'utf8',
      env: { ...process.env, TF_CLI_CONFIG_FILE: join(this.dir, 'empty.tfrc'), TF_IN_AUTOMATION: '1', CHECKPOINT_DISABLE: '1', ...env },
      maxBuffer: 256 * 1024 * 1024,
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const out = `${r.stdout}${r.stderr}`;
    if (!codes.includes(r.status ?? -1)) throw new Error(`terraform ${args.join(' ')} exited ${r.status}:\n${out.slice(-4000)}`);
    return { seconds, out };
  }
}

interface FleetTimes {
  readonly resource: string;
  readonly planSeconds: number;
  readonly applySeconds: number;
  readonly noChangePlanSeconds: number;
}

async function benchFleet(mode: RotationResourceType, fleet: Installation[], dir: string, root: string, o: Options): Promise<FleetTimes> {
  const st = new Stack(dir, `fleet-${mode.replace('_', '-')}`);
  writeFileSync(join(dir, 'empty.tfrc'), '');
  const env = fleetEnv(fleet);
  const p = `-parallelism=${o.parallelism}`;
  st.synth((s) => declareFleet(s, fleet, 1, mode, root));
  st.tf(['init'], env);
  st.tf(['apply', '-auto-approve', p], env);
  st.synth((s) => declareFleet(s, fleet, 2, mode, root));
  const plan = st.tf(['plan', p, '-detailed-exitcode'], env, [2]);
  const apply = st.tf(['apply', '-auto-approve', p], env);
  const after = st.tf(['plan', p, '-detailed-exitcode'], env, [0, 2]);
  return { resource: mode === 'provider' ? 'masterkey_key (provider)' : 'terraform_data + local-exec', planSeconds: plan.seconds, applySeconds: apply.seconds, noChangePlanSeconds: after.seconds };
}

interface LargeTimes {
  readonly rows: number;
  readonly store: Options['store'];
  readonly inventory: Options['inventory'];
  readonly refreshPlanSeconds: number;
  readonly readResourceMs: number;
  readonly planResourceChangeMs: number;
  readonly rotationPlanSeconds: number;
  readonly rotationPlanResourceChangeMs: number;
  readonly cliFullPlanSeconds: number;
}

/** The provider's own time for an RPC, from its log line `<RPC> done ... ms=<n>`. */
function rpcMs(log: string, rpc: string): number {
  const all = [...log.matchAll(new RegExp(`${rpc} done[^\\n]*?ms=(\\d+)`, 'g'))].map((m) => Number(m[1]));
  if (all.length === 0) throw new Error(`no ${rpc} timing in the provider log`);
  return Math.max(...all);
}

/** A new, empty database for the large installation: on the server `adminUrl` names, or a SQLite file in `dir` (WAL, as ACT runs act.db); its URL. */
async function emptyDatabase(store: Options['store'], adminUrl: string, dir: string): Promise<string> {
  if (store === 'sqlite') {
    const path = join(dir, 'large.db');
    const db = new (sqliteModule())(path);
    db.pragma('journal_mode = wal');
    db.close();
    return `sqlite:${path}`;
  }
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "bench_large_${process.pid}"`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/bench_large_${process.pid}`;
  return u.toString();
}

/** The bench's table of `rows` secrets under `key` (one plain column) in the database `url` names. */
async function seedBenchTable(url: string, rows: number, key: MasterKey): Promise<void> {
  if (isSqliteUrl(url)) {
    const db = new (sqliteModule())(sqliteFile(url));
    try {
      db.exec(`CREATE TABLE ${BENCH_TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value TEXT NOT NULL)`);
      const insert = db.prepare(`INSERT INTO ${BENCH_TABLE} (id, name, value) VALUES (?, ?, ?)`);
      const codec = actCodec();
      const chunk = db.transaction((from: number, to: number) => {
        for (let id = from; id <= to; id++) insert.run(id, `secret-${id}`, codec.seal(key, Buffer.from(plaintext(), 'utf8')));
      });
      for (let from = 1; from <= rows; from += 10_000) chunk(from, Math.min(rows, from + 9_999));
      db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      db.close();
    }
    return;
  }
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    await seedBench(c, rows, key);
    await restoreBench(c, 'gcm');
    await c.query('DROP TABLE bench_seed, bench_seed_cbc, bench_plain');
  } finally {
    await c.end();
  }
}

async function benchLarge(adminUrl: string, dir: string, o: Options & { rows: number }): Promise<LargeTimes> {
  const { rows, store } = o;
  const key = MasterKey.generate();
  const configPath = join(dir, 'large.env');
  writeFileSync(configPath, `ACT_MASTER_KEY=${key.toHex()}\n`, { mode: 0o600 });
  const inventoryPath = join(dir, 'bench-inventory.json');
  if (o.inventory === 'bench') writeFileSync(inventoryPath, JSON.stringify(BENCH_INVENTORY));
  const inventory = o.inventory === 'act' ? 'act' : inventoryPath;
  process.stderr.write(`seeding ${rows} secrets (${store}, ${o.inventory} inventory) ...\n`);
  const url = await emptyDatabase(store, adminUrl, dir);
  if (o.inventory === 'act') await withTestSql(url, (db) => seedActSecrets(db, key, rows));
  else await seedBenchTable(url, rows, key);
  const env = { MK_LARGE_URL: url };
  await runInit(buildContext({ configFiles: [configPath], databaseUrl: { env: 'MK_LARGE_URL' }, inventory }, providerSurface(() => undefined, env)), { generation: 1, createActSchema: false });
  const st = new Stack(dir, 'large');
  const keyAt = (generation: number) => (s: TerraformStack) =>
    new MasterKeyConstruct(s, 'large', { name: 'large', generation, configFiles: [configPath], databaseUrlEnv: 'MK_LARGE_URL', inventory: o.inventory === 'act' ? MasterKeyInventory.act() : MasterKeyInventory.fromFile(inventoryPath), backupDir: join(dir, 'large-backups'), resourceType: RotationResourceType.PROVIDER });
  st.synth(keyAt(1));
  st.tf(['init'], env);
  st.tf(['apply', '-auto-approve'], env);
  const logPath = join(dir, 'large.log');
  const refresh = st.tf(['plan', '-detailed-exitcode'], { ...env, TF_LOG: 'debug', TF_LOG_PATH: logPath }, [0]);
  const log1 = readFileSync(logPath, 'utf8');
  rmSync(logPath);
  st.synth(keyAt(2));
  const rotation = st.tf(['plan', '-detailed-exitcode'], { ...env, TF_LOG: 'debug', TF_LOG_PATH: logPath }, [2]);
  const log2 = readFileSync(logPath, 'utf8');
  const t0 = process.hrtime.bigint();
  const cli = spawnSync(process.execPath, [CLI, 'plan', '--generation', '2', '--config', configPath, '--database-url-env', 'MK_LARGE_URL', '--inventory', inventory, '--json'], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const cliSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (cli.status !== 0) throw new Error(`master-key plan failed: ${cli.stderr}`);
  return {
    rows,
    store,
    inventory: o.inventory,
    refreshPlanSeconds: refresh.seconds,
    readResourceMs: rpcMs(log1, 'ReadResource'),
    planResourceChangeMs: rpcMs(log1, 'PlanResourceChange'),
    rotationPlanSeconds: rotation.seconds,
    rotationPlanResourceChangeMs: rpcMs(log2, 'PlanResourceChange'),
    cliFullPlanSeconds: cliSeconds,
  };
}

export const BENCH_FLEET_USAGE = `npm run bench:fleet -- [options]

Times terraform plan and apply over a fleet of installations (one stack of
MasterKey resources per installation, through the provider and through
terraform_data + local-exec), or, with --rows, the provider's refresh and
plan on one large installation.

Options:
  --size <n>               installations in the fleet (default 20)
  --secrets <n>            secrets per installation (default 1000)
  --parallelism <n>        terraform's -parallelism (default 5)
  --rows <n>               instead: one installation of n secrets
  --store postgres|sqlite  with --rows: the store of that installation (default postgres)
  --inventory bench|act    with --rows: its secrets (the bench's one column, or the ACT preset's tables)
  --json                   print the report as JSON
  --help                   this text
`;

async function main(): Promise<number> {
  const o = parseOrExit('bench:fleet', BENCH_FLEET_USAGE, process.argv.slice(2), parseArgs);
  const dir = mkdtempSync(join(tmpdir(), 'mk-bench-fleet-'));
  let server: EmbeddedServer | undefined;
  const fleets: Installation[][] = [];
  let adminUrl = process.env.DATABASE_URL ?? '';
  try {
    if (!adminUrl && o.store === 'postgres') {
      server = await startEmbeddedPostgres({ settings: { max_wal_size: '8GB', checkpoint_timeout: '30min' } });
      adminUrl = server.adminUrl;
    }
    const report: { fleet?: FleetTimes[]; large?: LargeTimes; size: number; secrets: number; parallelism: number } = { size: o.size, secrets: o.secrets, parallelism: o.parallelism };
    if (o.rows !== undefined) {
      report.large = await benchLarge(adminUrl, dir, { ...o, rows: o.rows });
    } else {
      report.fleet = [];
      for (const mode of [RotationResourceType.PROVIDER, RotationResourceType.TERRAFORM_DATA]) {
        const root = join(dir, mode);
        process.stderr.write(`creating ${o.size} installations of ${o.secrets} secrets for ${mode} ...\n`);
        const fleet = await createFleet(adminUrl, root, o.size, { secrets: o.secrets, prefix: mode === 'provider' ? 'p' : 't' });
        fleets.push(fleet);
        report.fleet.push(await benchFleet(mode, fleet, dir, root, o));
      }
    }
    if (o.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    } else if (report.fleet) {
      process.stdout.write(`Fleet of ${o.size} installations x ${o.secrets} secrets, -parallelism=${o.parallelism} (wall seconds, one run):\n\n`);
      process.stdout.write('| resource | plan (rotation due) | apply (rotate all) | plan after (no changes) |\n|---|---:|---:|---:|\n');
      for (const f of report.fleet) process.stdout.write(`| ${f.resource} | ${f.planSeconds.toFixed(1)} | ${f.applySeconds.toFixed(1)} | ${f.noChangePlanSeconds.toFixed(1)} |\n`);
    } else if (report.large) {
      const l = report.large;
      process.stdout.write(`One installation of ${l.rows.toLocaleString('en-US')} secrets (${l.store === 'sqlite' ? 'SQLite, WAL' : 'PostgreSQL'}; ${l.inventory === 'act' ? 'the ACT preset, JSON documents included' : 'one text column'}) through the provider (one run):\n\n`);
      process.stdout.write(`  terraform plan, nothing to do (refresh + plan):  ${l.refreshPlanSeconds.toFixed(1)} s wall; provider ReadResource ${l.readResourceMs} ms, PlanResourceChange ${l.planResourceChangeMs} ms\n`);
      process.stdout.write(`  terraform plan of a rotation:                    ${l.rotationPlanSeconds.toFixed(1)} s wall; provider PlanResourceChange ${l.rotationPlanResourceChangeMs} ms\n`);
      process.stdout.write(`  master-key plan (opens every secret):            ${l.cliFullPlanSeconds.toFixed(1)} s wall\n`);
    }
    return 0;
  } finally {
    if (fleets.length) await dropFleet(adminUrl, fleets.flat()).catch(() => undefined);
    if (server) {
      await server.stop();
      removeEmbeddedData(server);
    } else if (o.rows !== undefined && o.store === 'postgres') {
      const admin = new Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "bench_large_${process.pid}" WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`bench:fleet failed: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
