/**
 * An ACT-shaped installation for tests: a fresh database with the ACT preset
 * tables, secrets of every kind (text columns and jsonb documents) sealed
 * under a known key, an `act.env` config file (0600), and a runner for the
 * real CLI (`dist/src/cli/main.js`, built by `npm test`).
 */
import { spawn, spawnSync, SpawnSyncReturns } from 'node:child_process';
import { readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { actCodec } from '../../src/crypto/codec';
import { MasterKey, parseKey } from '../../src/crypto/key';
import { Keyring } from '../../src/crypto/keyring';
import { ACT_SCHEMA_SQL } from '../../src/inventory/act-preset';
import { scratchDir } from '../../scripts/scratch';
import { freshDatabase } from './db';

export const CLI = resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'main.js');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Scenario {
  readonly dir: string;
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

export interface SeedOptions {
  /** Rows per kind (servers, env vars, …). @default 5 */
  readonly perKind?: number;
}

/** Inserts secrets of every ACT kind sealed under key; returns expected plaintexts by location. */
export async function seedAct(c: Client, key: MasterKey, opts: SeedOptions = {}): Promise<Map<string, string>> {
  const n = opts.perKind ?? 5;
  const codec = actCodec();
  const expected = new Map<string, string>();
  const seal = (p: string) => codec.seal(key, Buffer.from(p, 'utf8'));
  const sealed = (loc: string, p: string) => {
    expected.set(loc, p);
    return seal(p);
  };
  await c.query(ACT_SCHEMA_SQL);
  await c.query("INSERT INTO environments (name) VALUES ('production'), ('staging')");
  for (let i = 1; i <= n; i++) {
    const pk = `-----BEGIN OPENSSH PRIVATE KEY-----\nserver-${i}-${'x'.repeat(i * 7)}\n-----END OPENSSH PRIVATE KEY-----\n`;
    const { rows } = await c.query<{ id: string }>('INSERT INTO servers (name, host) VALUES ($1, $2) RETURNING id::text AS id', [`srv-${i}`, `10.0.0.${i}`]);
    const id = rows[0].id;
    await c.query('UPDATE servers SET ssh_private_key = $2, ssh_passphrase = $3 WHERE id = $1', [
      id,
      sealed(`servers.ssh_private_key:${id}`, pk),
      i % 2 === 0 ? null : sealed(`servers.ssh_passphrase:${id}`, `pass-phrase ${i} ✓`),
    ]);
    const env = [
      { name: 'DB_PASSWORD', secret: true, value: `db-pw-${i}` },
      { name: 'LOG_LEVEL', secret: false, value: 'info' },
      { name: 'API_TOKEN', secret: true, value: `tok-${i}-ünï` },
    ];
    const svc = await c.query<{ id: string }>("INSERT INTO services (name, spec) VALUES ($1, '{}') RETURNING id::text AS id", [`svc-${i}`]);
    const sid = svc.rows[0].id;
    const spec = { image: `app:${i}`, env: env.map((e, j) => ({ ...e, value: e.secret ? sealed(`services.spec#env.${j}.value:${sid}`, e.value) : e.value })) };
    await c.query('UPDATE services SET spec = $2 WHERE id = $1', [sid, JSON.stringify(spec)]);
    const sev = await c.query<{ id: string }>("INSERT INTO service_env_vars (service_id, name, value) VALUES ($1, $2, '') RETURNING id::text AS id", [sid, `SECRET_${i}`]);
    await c.query('UPDATE service_env_vars SET value = $2 WHERE id = $1', [sev.rows[0].id, sealed(`service_env_vars.value:${sev.rows[0].id}`, `service-secret-${i}`)]);
    const ev = await c.query<{ id: string }>("INSERT INTO environment_variables (environment_id, name, value) VALUES (1, $1, '') RETURNING id::text AS id", [`ENV_${i}`]);
    await c.query('UPDATE environment_variables SET value = $2 WHERE id = $1', [ev.rows[0].id, sealed(`environment_variables.value:${ev.rows[0].id}`, `env-value-${i}`)]);
    const gc = await c.query<{ id: string }>("INSERT INTO git_credentials (provider, access_token) VALUES ('github', '') RETURNING id::text AS id");
    await c.query('UPDATE git_credentials SET access_token = $2 WHERE id = $1', [gc.rows[0].id, sealed(`git_credentials.access_token:${gc.rows[0].id}`, `ghp_${i}${'a'.repeat(30)}`)]);
    const rc = await c.query<{ id: string }>("INSERT INTO registry_credentials (registry, username, password) VALUES ('ghcr.io', 'bot', '') RETURNING id::text AS id");
    await c.query('UPDATE registry_credentials SET password = $2 WHERE id = $1', [rc.rows[0].id, sealed(`registry_credentials.password:${rc.rows[0].id}`, `registry-pw-${i}`)]);
    const sp = await c.query<{ id: string }>("INSERT INTO storage_providers (name) VALUES ($1) RETURNING id::text AS id", [`s3-${i}`]);
    const spid = sp.rows[0].id;
    const settings = {
      bucket: `bucket-${i}`,
      credentials: { accessKeyId: sealed(`storage_providers.settings#credentials.accessKeyId:${spid}`, `AKIA${i}`), sessionToken: sealed(`storage_providers.settings#credentials.sessionToken:${spid}`, `session-${i}`) },
    };
    await c.query('UPDATE storage_providers SET secret_access_key = $2, settings = $3 WHERE id = $1', [spid, sealed(`storage_providers.secret_access_key:${spid}`, `secret-access-${i}`), JSON.stringify(settings)]);
  }
  return expected;
}

/**
 * Opens every value the seed wrote, with `key` only, and returns them by
 * location; a value that does not open is returned as `!<error code>`.
 */
export async function readPlaintexts(url: string, key: MasterKey, locations: Iterable<string>): Promise<Map<string, string>> {
  const ring = new Keyring([key]);
  const codec = actCodec();
  const out = new Map<string, string>();
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    for (const loc of locations) {
      const m = /^(\w+)\.(\w+)(?:#([\w.]+))?:(\d+)$/.exec(loc)!;
      const [, table, column, path, id] = m;
      const r = await c.query(`SELECT ${column}::text AS v FROM ${table} WHERE id = $1`, [id]);
      let v: unknown = r.rows[0]?.v;
      if (path && typeof v === 'string') {
        v = path.split('.').reduce<unknown>((o, seg) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[seg] : undefined), JSON.parse(v));
      }
      try {
        out.set(loc, ring.openText(codec, String(v)));
      } catch (e) {
        out.set(loc, `!${(e as { code?: string }).code ?? 'ERROR'}`);
      }
    }
  } finally {
    await c.end();
  }
  return out;
}

/** A fresh ACT installation: database, seeded secrets, act.env (0600), `master-key init` done. */
export async function actScenario(opts: SeedOptions & { init?: boolean } = {}): Promise<Scenario> {
  // Removed after the test file (test/support/scratch-cleanup.ts), also when it fails.
  const dir = scratchDir('mk-scn-');
  const url = await freshDatabase('act');
  const key = MasterKey.generate();
  const configPath = join(dir, 'act.env');
  writeFileSync(configPath, `# ACT configuration\nACT_LISTEN=127.0.0.1:8080\n${keyLine(key)}\nACT_LOG_LEVEL=info\n`);
  chmodSync(configPath, 0o600);
  const c = new Client({ connectionString: url });
  await c.connect();
  let plaintexts: Map<string, string>;
  try {
    plaintexts = await seedAct(c, key, opts);
  } finally {
    await c.end();
  }
  const env: NodeJS.ProcessEnv = childEnv({ DATABASE_URL: url });
  const scn: Scenario = {
    dir,
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

const SNAPSHOT_TABLES = ['servers', 'services', 'service_env_vars', 'environment_variables', 'git_credentials', 'registry_credentials', 'storage_providers', 'master_key.canary', 'master_key.history'];

/** Every row of the ACT tables and the metadata tables, as text: equal snapshots mean nothing changed. */
export async function dbSnapshot(url: string): Promise<string> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const parts: string[] = [];
    for (const t of SNAPSHOT_TABLES) {
      const exists = await c.query<{ r: string | null }>('SELECT to_regclass($1)::text AS r', [t]);
      if (!exists.rows[0].r) {
        parts.push(`${t}: (absent)`);
        continue;
      }
      const r = await c.query<{ j: unknown }>(`SELECT coalesce(json_agg(x ORDER BY x::text), '[]'::json) AS j FROM ${t} x`);
      parts.push(`${t}: ${JSON.stringify(r.rows[0].j)}`);
    }
    return parts.join('\n');
  } finally {
    await c.end();
  }
}
