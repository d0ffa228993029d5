/**
 * Local sample ACT installations for the demo, `npm run dev-db` and the
 * harnesses: where the built CLI is, secrets of every ACT kind sealed under a
 * key (the `act` codec, as ACT stores them), and the pgpass line of a local
 * database.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Client } from 'pg';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { ACT_SCHEMA_SQL } from '../src/inventory/act-preset';

/** The CLI in the build output (from dist/scripts, or from the sources under jest). */
export function cliEntry(): string {
  const inDist = resolve(__dirname, '..', 'src', 'cli', 'main.js');
  return existsSync(inDist) ? inDist : resolve(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
}

/** Inserts exactly `total` secrets spread over every ACT kind, in batches (jsonb ones included). */
export async function seedActSecrets(c: Client, key: MasterKey, total: number): Promise<Record<string, number>> {
  const codec = actCodec();
  const seal = (s: string) => codec.seal(key, Buffer.from(s, 'utf8'));
  // servers and storage providers hold two sealed values per row; registry credentials take the remainder.
  const share = Math.max(1, Math.floor(total / 9));
  await c.query(ACT_SCHEMA_SQL);
  await c.query("INSERT INTO environments (name) VALUES ('production')");
  const batches = async (n: number, fn: (from: number, to: number) => Promise<void>) => {
    for (let i = 0; i < n; i += 1000) await fn(i, Math.min(n, i + 1000));
  };
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
  const servers = share;
  await batches(servers, async (a, b) => {
    const ids = range(a, b);
    await c.query('INSERT INTO servers (name, host, ssh_private_key, ssh_passphrase) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])', [
      ids.map((i) => `server-${i}`),
      ids.map((i) => `10.0.${i >> 8}.${i & 255}`),
      ids.map((i) => seal(`-----BEGIN OPENSSH PRIVATE KEY-----\nkey-of-server-${i}\n-----END OPENSSH PRIVATE KEY-----\n`)),
      ids.map((i) => seal(`passphrase-${i}`)),
    ]);
  });
  const services = share;
  await batches(services, async (a, b) => {
    const ids = range(a, b);
    await c.query('INSERT INTO services (name, spec) SELECT * FROM unnest($1::text[], $2::jsonb[])', [
      ids.map((i) => `service-${i}`),
      ids.map((i) => JSON.stringify({ image: `app:${i}`, env: [{ name: 'DB_PASSWORD', secret: true, value: seal(`db-password-${i}`) }, { name: 'LOG_LEVEL', secret: false, value: 'info' }] })),
    ]);
  });
  await batches(share, async (a, b) => {
    const ids = range(a, b);
    await c.query('INSERT INTO service_env_vars (service_id, name, value) SELECT 1, n, v FROM unnest($1::text[], $2::text[]) AS x(n, v)', [ids.map((i) => `VAR_${i}`), ids.map((i) => seal(`service-value-${i}`))]);
    await c.query('INSERT INTO environment_variables (environment_id, name, value) SELECT 1, n, v FROM unnest($1::text[], $2::text[]) AS x(n, v)', [ids.map((i) => `ENV_${i}`), ids.map((i) => seal(`env-value-${i}`))]);
    await c.query("INSERT INTO git_credentials (provider, access_token) SELECT 'github', v FROM unnest($1::text[]) AS x(v)", [ids.map((i) => seal(`ghp_token_${i}`))]);
  });
  await batches(total - 8 * share, async (a, b) => {
    const ids = range(a, b);
    await c.query("INSERT INTO registry_credentials (registry, username, password) SELECT 'ghcr.io', 'bot', v FROM unnest($1::text[]) AS x(v)", [ids.map((i) => seal(`registry-password-${i}`))]);
  });
  const storage = share;
  await batches(storage, async (a, b) => {
    const ids = range(a, b);
    await c.query('INSERT INTO storage_providers (name, secret_access_key, settings) SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])', [
      ids.map((i) => `bucket-${i}`),
      ids.map((i) => seal(`secret-access-key-${i}`)),
      ids.map((i) => JSON.stringify({ region: 'eu-west-1', credentials: { sessionToken: seal(`session-${i}`) } })),
    ]);
  });
  const r = await c.query<{ k: string; n: string }>(`
    SELECT 'servers' AS k, count(*) * 2 AS n FROM servers UNION ALL SELECT 'services (jsonb)', count(*) FROM services
    UNION ALL SELECT 'service_env_vars', count(*) FROM service_env_vars UNION ALL SELECT 'environment_variables', count(*) FROM environment_variables
    UNION ALL SELECT 'git_credentials', count(*) FROM git_credentials UNION ALL SELECT 'registry_credentials', count(*) FROM registry_credentials
    UNION ALL SELECT 'storage_providers (column + jsonb)', count(*) * 2 FROM storage_providers`);
  return Object.fromEntries(r.rows.map((x) => [x.k, Number(x.n)]));
}

/**
 * The line of a PostgreSQL password file (`~/.pgpass`, or the file PGPASSFILE
 * names) that gives the password of a database URL:
 * `hostname:port:database:username:password`, with `:` and `\` escaped.
 */
export function pgpassLine(url: string): string {
  const u = new URL(url);
  const esc = (s: string) => s.replace(/[\\:]/g, (c) => `\\${c}`);
  return [u.hostname, u.port || '5432', decodeURIComponent(u.pathname.slice(1)) || '*', decodeURIComponent(u.username), decodeURIComponent(u.password)].map(esc).join(':');
}
