/**
 * Opens the store a database URL names. The one place that knows which
 * stores exist: a new store adds a driver here (before PostgreSQL, which
 * takes every URL no other driver claims, as the pg driver always has).
 */
import { MasterKeyError } from '../errors';
import { openPostgres } from './postgres/store';
import { openSqlite } from './sqlite/store';
import { isSqliteUrl, resolveSqliteUrl } from './sqlite/url';
import { OpenOptions, Store } from './store';

interface StoreDriver {
  /** Whether this driver opens `url`. */
  handles(url: string): boolean;
  open(url: string, opts: OpenOptions): Promise<Store>;
  /** The URL with any relative part made absolute against `baseDir` (the config file's directory). @default the URL unchanged */
  resolve?(url: string, baseDir: string): string;
}

const DRIVERS: readonly StoreDriver[] = [
  { handles: isSqliteUrl, open: openSqlite, resolve: resolveSqliteUrl },
  { handles: () => true, open: openPostgres },
];

function driverFor(url: string): StoreDriver {
  return DRIVERS.find((d) => d.handles(url))!;
}

/**
 * A database URL as read from a config file or the environment, made
 * independent of the working directory: a SQLite path relative to the
 * config file's directory `baseDir` (as ACT resolves it) becomes absolute.
 */
export function resolveStoreUrl(url: string, baseDir: string): string {
  const d = driverFor(url);
  return url && d.resolve ? d.resolve(url, baseDir) : url;
}

/** Opens a store on the database `url` names; the caller closes it. */
export function openStore(url: string, opts: OpenOptions = {}): Promise<Store> {
  if (!url) {
    throw new MasterKeyError('DB_UNREACHABLE', 'No database URL was given; set the environment variable named by --database-url-env (default DATABASE_URL).');
  }
  return driverFor(url).open(url, opts);
}

export interface SessionOptions extends OpenOptions {
  /** What the command does, for error messages: "… was lost while <doing>". */
  readonly doing: string;
}

/** Opens a store, runs fn, and always closes it; the store explains any driver error fn lets through. */
export async function withStore<T>(url: string, opts: SessionOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(url, opts);
  try {
    return await fn(store);
  } catch (e) {
    throw store.explain(e, opts.doing);
  } finally {
    await store.close();
  }
}
