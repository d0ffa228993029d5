/**
 * An ACT-shaped installation for tests: a fresh database with the ACT preset
 * tables, secrets of every kind (text columns and jsonb documents) sealed
 * under a known key, an `act.env` config file (0600), and a runner for the
 * real CLI (`dist/src/cli/main.js`, built by `npm test`).
 */
import { spawn, spawnSync, SpawnSyncReturns } from 'node:child_process';
import { readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MasterKey, parseKey } from '../../src/crypto/key';
import { scratchDir } from '../../scripts/scratch';
import { SeedOptions, seedAct } from './act-data';
import { withTestSql } from './sql';
import { POSTGRES, StoreFixture } from './stores';

export { dbSnapshot, readPlaintexts, seedAct } from './act-data';
export type { SeedOptions } from './act-data';

export const CLI = resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'main.js');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Scenario {
  readonly dir: string;
  /** The store the database is of. */
  readonly store: StoreFixture;
  readonly url: string;
  readonly configPath: string;
  /** The key the secrets were sealed under (the one in act.env at creation). */
  readonly key: MasterKey;
  /** Expected plaintext of every sealed value, by location `table.column[#path]:id`. */
  readonly plaintexts: ReadonlyMap<string, string>;
  readonly env: NodeJS.ProcessEnv;
  /** Runs `master-key <args>` with DATABASE_URL set; `--config <act.env>` is added unless args contain --config. */
  cli(args: readonly string[], opts?: { env?: NodeJS.ProcessEnv; input?: string; noConfig?: boolean }): CliResult;
  /** The key currently in act.env. */
  configKey(path?: string): MasterKey;
}

/** A minimal environment for a child process: PATH, HOME and TMPDIR (the run's temp folder) plus `extra`. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return { ...env, ...extra };
}

export function runCli(args: readonly string[], env: NodeJS.ProcessEnv, input?: string): CliResult {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does).`);
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [CLI, ...args], { env, input, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Starts the CLI without waiting (for concurrency and kill tests). */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv) {
  return spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function keyLine(key: MasterKey): string {
  return `ACT_MASTER_KEY=${key.toHex()}`;
}

export interface ScenarioOptions extends SeedOptions {
  /** Run `master-key init`. @default true */
  readonly init?: boolean;
  /** The store of the database. @default PostgreSQL */
  readonly store?: StoreFixture;
}

/** A fresh ACT installation: database (a SQLite file in `dir/data`), seeded secrets, act.env (0600), `master-key init` done. */
export async function actScenario(opts: ScenarioOptions = {}): Promise<Scenario> {
  const store = opts.store ?? POSTGRES;
  // Removed after the test file (test/support/scratch-cleanup.ts), also when it fails.
  const dir = scratchDir('mk-scn-');
  const url = await store.create(join(dir, 'data'));
  const key = MasterKey.generate();
  const configPath = join(dir, 'act.env');
  writeFileSync(configPath, `# ACT configuration\nACT_LISTEN=127.0.0.1:8080\n${keyLine(key)}\nACT_LOG_LEVEL=info\n`);
  chmodSync(configPath, 0o600);
  const plaintexts = await withTestSql(url, (db) => seedAct(db, key, opts));
  const env: NodeJS.ProcessEnv = childEnv({ DATABASE_URL: url });
  const scn: Scenario = {
    dir,
    store,
    url,
    configPath,
    key,
    plaintexts,
    env,
    cli(args, o = {}) {
      const withConfig = o.noConfig || args.includes('--config') ? args : [...args, '--config', configPath];
      return runCli(withConfig, { ...env, ...(o.env ?? {}) }, o.input);
    },
    configKey(path = configPath) {
      const m = /^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(path, 'utf8'));
      if (!m) throw new Error(`no ACT_MASTER_KEY line in ${path}`);
      return parseKey(m[1]);
    },
  };
  if (opts.init !== false) {
    const r = scn.cli(['init']);
    if (r.code !== 0) throw new Error(`master-key init failed (${r.code}): ${r.stderr}`);
  }
  return scn;
}

/** Every occurrence of either key (hex, upper hex, base64, base64url) in text. */
export function keyLeaks(text: string, keys: readonly MasterKey[]): string[] {
  const hits: string[] = [];
  for (const k of keys) {
    const b = Buffer.from(k.bytes());
    for (const form of [k.toHex(), k.toHex().toUpperCase(), b.toString('base64'), b.toString('base64url'), b.toString('base64').replace(/=+$/, '')]) {
      if (text.includes(form)) hits.push(`${k.fingerprint} as ${form === k.toHex() ? 'hex' : 'encoded'}`);
    }
  }
  return hits;
}

