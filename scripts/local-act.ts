/**
 * Local sample ACT installations for the demo, `npm run dev-db` and the
 * harnesses: where the built CLI is, secrets of every ACT kind sealed under a
 * key (the `act` codec, as ACT stores them), and the pgpass line of a local
 * database.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { ACT_SCHEMA_SQL } from '../src/inventory/act-preset';
import { ACT_SCHEMA_SQLITE } from '../src/store/sqlite/act-schema';
import { TestSql } from '../test/support/sql';

/** The CLI in the build output (from dist/scripts, or from the sources under jest). */
export function cliEntry(): string {
  const inDist = resolve(__dirname, '..', 'src', 'cli', 'main.js');
  return existsSync(inDist) ? inDist : resolve(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
}

/** Inserts rows (objects by column; JSON documents as objects) in one statement, in either store. */
async function insertRows(db: TestSql, table: string, rows: ReadonlyArray<Record<string, unknown>>): Promise<void> {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const sql =
    db.kind === 'sqlite'
      ? // A document stays JSON text (->); any other value is taken as SQL text or number (->>).
        `INSERT INTO ${table} (${cols.join(', ')}) SELECT ${cols.map((c) => `value ${typeof rows[0][c] === 'object' ? '->' : '->>'} '${c}'`).join(', ')} FROM json_each($1)`
      : `INSERT INTO ${table} (${cols.join(', ')}) SELECT ${cols.join(', ')} FROM json_populate_recordset(NULL::${table}, $1::json)`;
  await db.query(sql, [JSON.stringify(rows)]);
}

/** Inserts exactly `total` secrets spread over every ACT kind, in batches (JSON documents included), into an empty database of either store. */
export async function seedActSecrets(db: TestSql, key: MasterKey, total: number): Promise<Record<string, number>> {
  const codec = actCodec();
  const seal = (s: string) => codec.seal(key, Buffer.from(s, 'utf8'));
  // servers and storage providers hold two sealed values per row; registry credentials take the remainder.
  const share = Math.max(1, Math.floor(total / 9));
  await db.exec(db.kind === 'sqlite' ? ACT_SCHEMA_SQLITE : ACT_SCHEMA_SQL);
  await db.query("INSERT INTO environments (name) VALUES ('production')");
  const batches = async (n: number, table: string, row: (i: number) => Record<string, unknown>) => {
    for (let a = 0; a < n; a += 1000) await insertRows(db, table, Array.from({ length: Math.min(n, a + 1000) - a }, (_, j) => row(a + j)));
  };
  await batches(share, 'servers', (i) => ({
    name: `server-${i}`,
    host: `10.0.${i >> 8}.${i & 255}`,
    ssh_private_key: seal(`-----BEGIN OPENSSH PRIVATE KEY-----\nkey-of-server-${i}\n-----END OPENSSH PRIVATE KEY-----\n`),
    ssh_passphrase: seal(`passphrase-${i}`),
  }));
  await batches(share, 'services', (i) => ({
    name: `service-${i}`,
    spec: { image: `app:${i}`, env: [{ name: 'DB_PASSWORD', secret: true, value: seal(`db-password-${i}`) }, { name: 'LOG_LEVEL', secret: false, value: 'info' }] },
  }));
  await batches(share, 'service_env_vars', (i) => ({ service_id: 1, name: `VAR_${i}`, value: seal(`service-value-${i}`) }));
  await batches(share, 'environment_variables', (i) => ({ environment_id: 1, name: `ENV_${i}`, value: seal(`env-value-${i}`) }));
  await batches(share, 'git_credentials', (i) => ({ provider: 'github', access_token: seal(`ghp_token_${i}`) }));
  await batches(total - 8 * share, 'registry_credentials', (i) => ({ registry: 'ghcr.io', username: 'bot', password: seal(`registry-password-${i}`) }));
  await batches(share, 'storage_providers', (i) => ({
    name: `bucket-${i}`,
    secret_access_key: seal(`secret-access-key-${i}`),
    settings: { region: 'eu-west-1', credentials: { sessionToken: seal(`session-${i}`) } },
  }));
  const r = await db.query<{ k: string; n: string | number }>(`
    SELECT 'servers' AS k, count(*) * 2 AS n FROM servers UNION ALL SELECT 'services (JSON)', count(*) FROM services
    UNION ALL SELECT 'service_env_vars', count(*) FROM service_env_vars UNION ALL SELECT 'environment_variables', count(*) FROM environment_variables
    UNION ALL SELECT 'git_credentials', count(*) FROM git_credentials UNION ALL SELECT 'registry_credentials', count(*) FROM registry_credentials
    UNION ALL SELECT 'storage_providers (column + JSON)', count(*) * 2 FROM storage_providers`);
  return Object.fromEntries(r.map((x) => [x.k, Number(x.n)]));
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
