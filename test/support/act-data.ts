/**
 * ACT data in a test database of either store: the preset's tables seeded
 * with secrets of every kind (text columns and JSON documents) sealed under
 * a known key, the plaintexts read back by location, and a snapshot of
 * every row (equal snapshots mean nothing changed).
 */
import { actCodec } from '../../src/crypto/codec';
import { MasterKey } from '../../src/crypto/key';
import { Keyring } from '../../src/crypto/keyring';
import { ACT_SCHEMA_SQL } from '../../src/inventory/act-preset';
import { ACT_SCHEMA_SQLITE } from '../../src/store/sqlite/act-schema';
import { TestSql, withTestSql } from './sql';

export interface SeedOptions {
  /** Rows per kind (servers, env vars, …). @default 5 */
  readonly perKind?: number;
}

/** Inserts a row and returns its id as text. */
async function insert(db: TestSql, sql: string, params: readonly unknown[] = []): Promise<string> {
  const rows = await db.query<{ id: unknown }>(`${sql} RETURNING id`, params);
  return String(rows[0].id);
}

/** Creates the ACT tables and inserts secrets of every ACT kind sealed under key; returns expected plaintexts by location `table.column[#path]:id`. */
export async function seedAct(db: TestSql, key: MasterKey, opts: SeedOptions = {}): Promise<Map<string, string>> {
  const n = opts.perKind ?? 5;
  const codec = actCodec();
  const expected = new Map<string, string>();
  const sealed = (loc: string, p: string) => {
    expected.set(loc, p);
    return codec.seal(key, Buffer.from(p, 'utf8'));
  };
  await db.exec(db.kind === 'sqlite' ? ACT_SCHEMA_SQLITE : ACT_SCHEMA_SQL);
  await db.query("INSERT INTO environments (name) VALUES ('production'), ('staging')");
  for (let i = 1; i <= n; i++) {
    const pk = `-----BEGIN OPENSSH PRIVATE KEY-----\nserver-${i}-${'x'.repeat(i * 7)}\n-----END OPENSSH PRIVATE KEY-----\n`;
    const id = await insert(db, 'INSERT INTO servers (name, host) VALUES ($1, $2)', [`srv-${i}`, `10.0.0.${i}`]);
    await db.query('UPDATE servers SET ssh_private_key = $2, ssh_passphrase = $3 WHERE id = $1', [
      id,
      sealed(`servers.ssh_private_key:${id}`, pk),
      i % 2 === 0 ? null : sealed(`servers.ssh_passphrase:${id}`, `pass-phrase ${i} ✓`),
    ]);
    const env = [
      { name: 'DB_PASSWORD', secret: true, value: `db-pw-${i}` },
      { name: 'LOG_LEVEL', secret: false, value: 'info' },
      { name: 'API_TOKEN', secret: true, value: `tok-${i}-ünï` },
    ];
    const sid = await insert(db, "INSERT INTO services (name, spec) VALUES ($1, '{}')", [`svc-${i}`]);
    const spec = { image: `app:${i}`, env: env.map((e, j) => ({ ...e, value: e.secret ? sealed(`services.spec#env.${j}.value:${sid}`, e.value) : e.value })) };
    await db.query('UPDATE services SET spec = $2 WHERE id = $1', [sid, JSON.stringify(spec)]);
    const sev = await insert(db, "INSERT INTO service_env_vars (service_id, name, value) VALUES ($1, $2, '')", [sid, `SECRET_${i}`]);
    await db.query('UPDATE service_env_vars SET value = $2 WHERE id = $1', [sev, sealed(`service_env_vars.value:${sev}`, `service-secret-${i}`)]);
    const ev = await insert(db, "INSERT INTO environment_variables (environment_id, name, value) VALUES (1, $1, '')", [`ENV_${i}`]);
    await db.query('UPDATE environment_variables SET value = $2 WHERE id = $1', [ev, sealed(`environment_variables.value:${ev}`, `env-value-${i}`)]);
    const gc = await insert(db, "INSERT INTO git_credentials (provider, access_token) VALUES ('github', '')");
    await db.query('UPDATE git_credentials SET access_token = $2 WHERE id = $1', [gc, sealed(`git_credentials.access_token:${gc}`, `ghp_${i}${'a'.repeat(30)}`)]);
    const rc = await insert(db, "INSERT INTO registry_credentials (registry, username, password) VALUES ('ghcr.io', 'bot', '')");
    await db.query('UPDATE registry_credentials SET password = $2 WHERE id = $1', [rc, sealed(`registry_credentials.password:${rc}`, `registry-pw-${i}`)]);
    const spid = await insert(db, 'INSERT INTO storage_providers (name) VALUES ($1)', [`s3-${i}`]);
    const settings = {
      bucket: `bucket-${i}`,
      credentials: { accessKeyId: sealed(`storage_providers.settings#credentials.accessKeyId:${spid}`, `AKIA${i}`), sessionToken: sealed(`storage_providers.settings#credentials.sessionToken:${spid}`, `session-${i}`) },
    };
    await db.query('UPDATE storage_providers SET secret_access_key = $2, settings = $3 WHERE id = $1', [spid, sealed(`storage_providers.secret_access_key:${spid}`, `secret-access-${i}`), JSON.stringify(settings)]);
  }
  return expected;
}

/** The stored text at a seeded location `table.column[#path]:id` (a JSON member for a path), read with plain SQL. */
export async function storedValue(db: TestSql, loc: string): Promise<unknown> {
  const [, table, column, path, id] = /^(\w+)\.(\w+)(?:#([\w.]+))?:(\d+)$/.exec(loc)!;
  const [row] = await db.query<{ v: unknown }>(`SELECT ${column} AS v FROM ${table} WHERE id = $1`, [id]);
  const v: unknown = row?.v;
  if (!path || v === undefined || v === null) return v;
  // PostgreSQL hands jsonb over parsed; SQLite keeps JSON as text.
  const doc: unknown = typeof v === 'string' ? JSON.parse(v) : v;
  return path.split('.').reduce<unknown>((o, seg) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[seg] : undefined), doc);
}

/**
 * Opens every value the seed wrote, with `key` only, and returns them by
 * location; a value that does not open is returned as `!<error code>`.
 */
export async function readPlaintexts(url: string, key: MasterKey, locations: Iterable<string>): Promise<Map<string, string>> {
  const ring = new Keyring([key]);
  const codec = actCodec();
  const out = new Map<string, string>();
  await withTestSql(url, async (db) => {
    for (const loc of locations) {
      try {
        out.set(loc, ring.openText(codec, String(await storedValue(db, loc))));
      } catch (e) {
        out.set(loc, `!${(e as { code?: string }).code ?? 'ERROR'}`);
      }
    }
  });
  return out;
}

const ACT_TABLES = ['servers', 'services', 'service_env_vars', 'environment_variables', 'git_credentials', 'registry_credentials', 'storage_providers'];

/** Every row of the ACT tables and the metadata tables, as text: equal snapshots mean nothing changed. */
export async function dbSnapshot(url: string): Promise<string> {
  return withTestSql(url, async (db) => {
    const parts: string[] = [];
    for (const t of [...ACT_TABLES, db.meta.canary, db.meta.history]) {
      let rows: Array<Record<string, unknown>>;
      try {
        rows = await db.query(`SELECT * FROM ${t}`);
      } catch (e) {
        if (!/does not exist|no such table/.test((e as Error).message)) throw e;
        parts.push(`${t}: (absent)`);
        continue;
      }
      parts.push(`${t}: ${JSON.stringify(rows.map((r) => JSON.stringify(r)).sort())}`);
    }
    return parts.join('\n');
  });
}
