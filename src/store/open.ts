/**
 * Opens the store a database URL names. The one place that knows which
 * stores exist: a new store adds a driver here (before PostgreSQL, which
 * takes every URL no other driver claims, as the pg driver always has).
 */
import { MasterKeyError } from '../errors';
import { isSqliteUrl, resolveSqliteUrl, sqliteFile } from './sqlite/url';
import { OpenOptions, Store } from './store';

// Each driver (and its database library: pg, better-sqlite3) is loaded when a URL of its kind is opened: a
// process that opens no store, or only the other kind (a host's `master-key remote`, the runner of a rotation
// over SSH), does not pay for loading it.
const pg = () => require('./postgres/store') as typeof import('./postgres/store');
const pgClient = () => require('./postgres/client') as typeof import('./postgres/client');
const sqlite = () => require('./sqlite/store') as typeof import('./sqlite/store');
const sqliteDriver = () => require('./sqlite/driver') as typeof import('./sqlite/driver');

/** What the rest of the tool needs to know of a store besides its sessions. */
interface StoreDriver {
  /** Whether this driver opens `url`. */
  handles(url: string): boolean;
  open(url: string, opts: OpenOptions): Promise<Store>;
  /** The URL with any relative part made absolute against `baseDir` (the config file's directory). @default the URL unchanged */
  resolve?(url: string, baseDir: string): string;
  /** A typed error for what the driver threw while `doing` (e.g. "rotating the master key"); a MasterKeyError passes unchanged. */
  explain(e: unknown, doing: string, url: string): MasterKeyError;
  /** Creates the ACT preset's tables where missing (`master-key init --create-act-schema`). */
  createActSchema(url: string): Promise<void>;
}

const DRIVERS: readonly StoreDriver[] = [
  {
    handles: isSqliteUrl,
    open: (url, opts) => sqlite().openSqlite(url, opts),
    resolve: resolveSqliteUrl,
    explain: (e, doing, url) => sqliteDriver().translateSqliteError(e, doing, sqliteFile(url)),
    createActSchema: (url) => sqlite().createActSchemaSqlite(url),
  },
  { handles: () => true, open: (url, opts) => pg().openPostgres(url, opts), explain: (e, doing, url) => pgClient().translatePgError(e, doing, url), createActSchema: (url) => pg().createActSchemaPostgres(url) },
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

function requireUrl(url: string): void {
  if (!url) {
    throw new MasterKeyError('DB_UNREACHABLE', 'No database URL was given; set the environment variable named by --database-url-env (default DATABASE_URL).');
  }
}

/** Opens a store on the database `url` names; the caller closes it. */
export function openStore(url: string, opts: OpenOptions = {}): Promise<Store> {
  requireUrl(url);
  return driverFor(url).open(url, opts);
}

/** Creates the ACT preset's tables where missing in the database `url` names, in a transaction of its own. */
export function createActSchema(url: string): Promise<void> {
  requireUrl(url);
  return driverFor(url).createActSchema(url);
}

export interface SessionOptions extends OpenOptions {
  /** What the command does, for error messages: "… was lost while <doing>". */
  readonly doing: string;
}

/** Opens a store, runs fn, and always closes it; a driver error fn lets through becomes a typed error saying what was being done. */
export async function withStore<T>(url: string, opts: SessionOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(url, opts);
  try {
    return await fn(store);
  } catch (e) {
    throw driverFor(url).explain(e, opts.doing, url);
  } finally {
    await store.close();
  }
}
