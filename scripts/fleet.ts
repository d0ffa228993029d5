/**
 * A fleet of ACT installations on one PostgreSQL server, for the provider's
 * fleet test and `npm run bench:fleet`: one database, one config file (0600)
 * and one database-URL environment variable per installation, secrets of
 * several kinds sealed under each installation's own key, `master-key init`
 * done; and the CDKTF stack that declares all their keys, through the
 * provider or through terraform_data + local-exec.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { TerraformStack } from 'cdktf';
import { MasterKey as MasterKeyConstruct, RotationResourceType } from '../constructs';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { runInit } from '../src/rotation/init';
import { ACT_SCHEMA_SQL } from '../src/inventory/act-preset';
import { buildContext } from '../src/context/build';
import { providerSurface } from '../src/provider/arguments';

export interface Installation {
  readonly name: string;
  readonly database: string;
  readonly url: string;
  /** The environment variable terraform must carry the URL in. */
  readonly envName: string;
  readonly configPath: string;
  /** The key the installation was created with. */
  readonly key: MasterKey;
  readonly secrets: number;
}

/** Seeds `n` secrets (servers with key and passphrase, services with a secret env var in jsonb, git tokens). */
export async function seedInstallation(c: Client, key: MasterKey, n: number): Promise<void> {
  const seal = (s: string) => actCodec().seal(key, Buffer.from(s, 'utf8'));
  await c.query(ACT_SCHEMA_SQL);
  const per = Math.max(1, Math.floor(n / 4));
  const ids = (k: number) => Array.from({ length: k }, (_, i) => i + 1);
  await c.query('INSERT INTO servers (name, host, ssh_private_key, ssh_passphrase) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])', [
    ids(per).map((i) => `server-${i}`),
    ids(per).map((i) => `10.0.0.${i % 250}`),
    ids(per).map((i) => seal(`-----BEGIN OPENSSH PRIVATE KEY-----\nserver-${i}\n-----END OPENSSH PRIVATE KEY-----\n`)),
    ids(per).map((i) => seal(`passphrase-${i}`)),
  ]);
  await c.query('INSERT INTO services (name, spec) SELECT * FROM unnest($1::text[], $2::jsonb[])', [
    ids(per).map((i) => `service-${i}`),
    ids(per).map((i) => JSON.stringify({ env: [{ name: 'DB_PASSWORD', secret: true, value: seal(`db-${i}`) }, { name: 'MODE', secret: false, value: 'prod' }] })),
  ]);
  const rest = n - 3 * per;
  if (rest > 0) await c.query("INSERT INTO git_credentials (provider, access_token) SELECT 'github', v FROM unnest($1::text[]) AS x(v)", [ids(rest).map((i) => seal(`ghp_${i}`))]);
}

/** Creates `count` installations named `<prefix>01`... under `root`, each with about `secrets` secrets. */
export async function createFleet(adminUrl: string, root: string, count: number, opts: { prefix?: string; secrets?: number } = {}): Promise<Installation[]> {
  const prefix = opts.prefix ?? 'k';
  const secrets = opts.secrets ?? 20;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  const fleet: Installation[] = [];
  try {
    for (let i = 1; i <= count; i++) {
      const name = `${prefix}${String(i).padStart(2, '0')}`;
      const database = `fleet_${process.pid}_${Date.now().toString(36)}_${name}`;
      await admin.query(`CREATE DATABASE "${database}"`);
      const u = new URL(adminUrl);
      u.pathname = `/${database}`;
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const key = MasterKey.generate();
      const configPath = join(dir, 'act.env');
      writeFileSync(configPath, `# ACT server ${name}\nACT_LISTEN=127.0.0.1:8080\nACT_MASTER_KEY=${key.toHex()}\n`, { mode: 0o600 });
      chmodSync(configPath, 0o600);
      const inst: Installation = { name, database, url: u.toString(), envName: `MK_FLEET_URL_${name.toUpperCase()}`, configPath, key, secrets };
      const c = new Client({ connectionString: inst.url });
      await c.connect();
      try {
        await seedInstallation(c, key, secrets);
      } finally {
        await c.end();
      }
      await runInit(buildContext({ configFiles: [configPath], databaseUrl: { env: inst.envName } }, providerSurface(() => undefined, fleetEnv([inst]))), { generation: 1, createActSchema: false });
      fleet.push(inst);
    }
  } finally {
    await admin.end();
  }
  return fleet;
}

/** The environment variables that carry the fleet's database URLs. */
export function fleetEnv(fleet: readonly Installation[]): Record<string, string> {
  return Object.fromEntries(fleet.map((i) => [i.envName, i.url]));
}

/** Drops the fleet's databases. */
export async function dropFleet(adminUrl: string, fleet: readonly Installation[]): Promise<void> {
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const i of fleet) await admin.query(`DROP DATABASE IF EXISTS "${i.database}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** Declares every installation's key in `stack` at `generation`, carried by `resourceType`. */
export function declareFleet(stack: TerraformStack, fleet: readonly Installation[], generation: number, resourceType: RotationResourceType, root: string): MasterKeyConstruct[] {
  return fleet.map(
    (i) =>
      new MasterKeyConstruct(stack, i.name, {
        name: i.name,
        generation,
        configFiles: [i.configPath],
        databaseUrlEnv: i.envName,
        backupDir: join(root, i.name, 'backups'),
        reportDir: join(root, i.name, 'reports'),
        resourceType,
        checks: { suppressions: [{ id: 'MasterKey-RotationPolicy', reason: 'the fleet rotates when its generation is raised' }] },
      }),
  );
}
