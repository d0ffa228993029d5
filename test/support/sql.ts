/**
 * A test's direct line to a database of either store, from its URL: SQL
 * with `$1`, `$2`, … parameters (SQLite gets them as `?` in the order they appear), rows
 * as plain objects, and the names of the metadata tables (PostgreSQL keeps
 * them in schema `master_key`, SQLite has no schemas). Test support only:
 * the product reaches databases through `src/store`.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { Client } from 'pg';
import { sqliteModule } from '../../src/store/sqlite/driver';
import { isSqliteUrl, sqliteFile } from '../../src/store/sqlite/url';

export interface TestSql {
  readonly kind: 'postgres' | 'sqlite';
  /** The canary and history tables, as SQL names. */
  readonly meta: { readonly canary: string; readonly history: string };
  /** Runs one statement; its rows (none for a statement that returns none). */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
  /** Runs a script of statements without parameters. */
  exec(sql: string): Promise<void>;
  /** The user tables, sorted (PostgreSQL: schema-qualified). */
  tables(): Promise<string[]>;
}

const PG_META = { canary: 'master_key.canary', history: 'master_key.history' } as const;
const SQLITE_META = { canary: 'master_key_canary', history: 'master_key_history' } as const;

/** The canary and history tables of the database `url` names, as SQL names. */
export function metaTables(url: string): TestSql['meta'] {
  return isSqliteUrl(url) ? SQLITE_META : PG_META;
}

class PgSql implements TestSql {
  readonly kind = 'postgres';
  readonly meta = PG_META;
  constructor(private readonly c: Client) {}
  async query<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return (await this.c.query(sql, [...params])).rows as T[];
  }
  async exec(sql: string): Promise<void> {
    await this.c.query(sql);
  }
  async tables(): Promise<string[]> {
    const rows = await this.query<{ t: string }>("SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1");
    return rows.map((r) => r.t);
  }
}

class SqliteSql implements TestSql {
  readonly kind = 'sqlite';
  readonly meta = SQLITE_META;
  constructor(private readonly db: BetterSqlite3.Database) {}
  async query<T>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    // $n becomes ?, with the parameters in the order they appear.
    const order: number[] = [];
    const stmt = this.db.prepare(sql.replace(/\$(\d+)/g, (_m, n: string) => (order.push(Number(n) - 1), '?')));
    const args = order.map((i) => params[i]).map((p) => (p instanceof Date ? p.toISOString() : typeof p === 'boolean' ? Number(p) : p));
    if (stmt.reader) return stmt.all(...args) as T[];
    stmt.run(...args);
    return [];
  }
  async exec(sql: string): Promise<void> {
    this.db.exec(sql);
  }
  async tables(): Promise<string[]> {
    const rows = await this.query<{ t: string }>("SELECT name AS t FROM sqlite_schema WHERE type = 'table' ORDER BY 1");
    return rows.map((r) => r.t);
  }
}

/** Runs fn with a connection to the database `url` names, closing it afterwards. */
export async function withTestSql<T>(url: string, fn: (db: TestSql) => Promise<T>): Promise<T> {
  if (isSqliteUrl(url)) {
    const Database = sqliteModule();
    const db = new Database(sqliteFile(url), { fileMustExist: true, timeout: 10_000 });
    try {
      return await fn(new SqliteSql(db));
    } finally {
      db.close();
    }
  }
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(new PgSql(c));
  } finally {
    await c.end();
  }
}

/** One statement on a fresh connection. */
export function sqlQuery<T = Record<string, unknown>>(url: string, sql: string, params: readonly unknown[] = []): Promise<T[]> {
  return withTestSql(url, (db) => db.query<T>(sql, params));
}
