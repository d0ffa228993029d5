/**
 * Per-test-file databases on the run's PostgreSQL server.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

export function adminUrl(): string {
  const url = process.env.MK_TEST_ADMIN_URL;
  if (!url) throw new Error('MK_TEST_ADMIN_URL is not set: run the tests through jest (global setup starts PostgreSQL).');
  return url;
}

export function databaseUrl(name: string): string {
  const u = new URL(adminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Creates a new empty database and returns its URL. With `encoding`, in
 * that server encoding (from template0, C locale: e.g. `SQL_ASCII`, which
 * stores whatever bytes it is given).
 */
export async function freshDatabase(prefix = 't', o: { encoding?: string } = {}): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const c = new Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE "${name}"${o.encoding ? ` TEMPLATE template0 ENCODING '${o.encoding}' LC_COLLATE 'C' LC_CTYPE 'C'` : ''}`);
  } finally {
    await c.end();
  }
  return databaseUrl(name);
}

/** Drops a database created by freshDatabase (terminating its sessions). */
export async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const c = new Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

/** Runs fn with a connected client, closing it afterwards. */
export async function withTestClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
