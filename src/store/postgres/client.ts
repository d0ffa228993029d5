/**
 * The PostgreSQL connection: connecting, scoped transactions, and
 * translation of driver errors into typed errors that never show the URL's
 * password.
 */
import { Client, ClientBase, DatabaseError } from 'pg';
import { MasterKeyError, isMasterKeyError } from '../../errors';
import { fsReason } from '../../fsutil';

/**
 * `user@host:port/db` (no password), for messages and reports. Only for a
 * URL that starts with postgres:// or postgresql://: in anything else (the
 * scheme or its // left out: `act:secret@db/act`) the user, password and
 * host are no authority but the path, which is shown.
 */
export function describeUrl(url: string): string {
  try {
    if (!/^postgres(ql)?:\/\//i.test(url)) return 'the database (its URL does not start with postgres://)';
    const u = new URL(url);
    const user = u.username ? `${decodeURIComponent(u.username)}@` : '';
    return `${user}${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'the database (its URL does not parse)';
  }
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'EAI_AGAIN', 'EPIPE']);

/** Maps a driver error to a MasterKeyError. `what` says what we were doing ("reading the canary"). */
export function translatePgError(e: unknown, what: string, url?: string): MasterKeyError {
  if (isMasterKeyError(e)) return e;
  const where = url ? ` on ${describeUrl(url)}` : '';
  const err = e as Partial<DatabaseError> & NodeJS.ErrnoException;
  if (err && err.code && CONNECT_CODES.has(err.code)) {
    return new MasterKeyError('DB_UNREACHABLE', `Cannot reach the database${where} while ${what} (${err.code}); check that PostgreSQL is running and the database URL is right, then run the command again.`, {}, { cause: e });
  }
  if (err && typeof err.code === 'string') {
    if (err.code === LOCK_NOT_AVAILABLE) {
      return new MasterKeyError(
        'TABLES_BUSY',
        `A table${where} stayed locked by another session for longer than the lock timeout while ${what} (SQLSTATE ${err.code}); nothing was changed: end that session's transaction, or raise the lock timeout, and run the command again.`,
        {},
        { cause: e },
      );
    }
    if (err.code === '25006') {
      return new MasterKeyError('DB_READ_ONLY', `The database${where} is read-only (${what}); run against the primary, writable server.`, {}, { cause: e });
    }
    if (err.code === '3D000' || err.code === '28P01' || err.code === '28000') {
      return new MasterKeyError('DB_UNREACHABLE', `Cannot log in to the database${where} (${err.message}); check the database URL.`, {}, { cause: e });
    }
    if (err.code === '57P01' || err.code === '57P02' || err.code === '57P03' || err.code.startsWith('08')) {
      return new MasterKeyError('DB_UNREACHABLE', `The database connection${where} was lost while ${what} (${err.code}); nothing was committed: check the server and run the command again.`, {}, { cause: e });
    }
    return new MasterKeyError('DB_ERROR', `The database${where} reported an error while ${what}: ${err.message} (SQLSTATE ${err.code}).`, {}, { cause: e });
  }
  const msg = e instanceof Error ? e.message : String(e);
  if (/Connection terminated|connection.*closed|not queryable/i.test(msg)) {
    return new MasterKeyError('DB_UNREACHABLE', `The database connection${where} was lost while ${what}; nothing was committed: check the server and run the command again.`, {}, { cause: e });
  }
  return new MasterKeyError('DB_ERROR', `Unexpected database failure${where} while ${what}: ${msg}.`, {}, { cause: e });
}

/** SQLSTATE of a lock wait cut short by `lock_timeout`. */
export const LOCK_NOT_AVAILABLE = '55P03';

/** Whether `e` (a driver error, or a typed error caused by one) is a lock wait cut short by `lock_timeout`. */
export function isLockTimeout(e: unknown): boolean {
  for (let x = e as { code?: unknown; cause?: unknown } | undefined, depth = 0; x && depth < 4; x = x.cause as typeof x, depth++) {
    if (x.code === LOCK_NOT_AVAILABLE || x.code === 'TABLES_BUSY') return true;
  }
  return false;
}

export interface ClientOptions {
  /** Shown in pg_stat_activity; used to name a lock holder. */
  readonly applicationName?: string;
  /** The session's `lock_timeout` in ms (unset: the database's). */
  readonly lockTimeoutMs?: number;
}

/**
 * The tool's sessions run under no timeout of the database's but the
 * tool's own lock timeout, as pg_dump's do: a database (or role) whose
 * `statement_timeout`, `idle_in_transaction_session_timeout` or
 * `transaction_timeout` (PostgreSQL 17) is set for its applications must
 * not cut a rotation, a backup or a verification short. Each setting the
 * server knows is set to 0 for this session, in one round trip.
 */
export async function sessionSettings(client: ClientBase, lockTimeoutMs?: number): Promise<void> {
  await client.query(
    `SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN ('statement_timeout', 'idle_in_transaction_session_timeout', 'transaction_timeout')${
      lockTimeoutMs !== undefined ? `; SET lock_timeout = ${Math.round(lockTimeoutMs)}` : ''
    }`,
  );
}

/**
 * A client for `url`, not connected yet: pg reads the URL here, and with it
 * any certificate file it names (sslcert, sslkey, sslrootcert). A URL pg
 * cannot read is USAGE, a file it cannot read DB_UNREACHABLE; neither
 * message quotes the URL (it may hold a password).
 */
export function clientFor(url: string, opts: ClientOptions = {}): Client {
  try {
    return new Client({ connectionString: url, application_name: opts.applicationName ?? 'master-key', connectionTimeoutMillis: 15000 });
  } catch (e) {
    // A file pg could not read is a system error (it has a syscall); a URL it could not parse a TypeError (ERR_INVALID_URL) or a URIError.
    if (typeof (e as NodeJS.ErrnoException).syscall === 'string') {
      throw new MasterKeyError('DB_UNREACHABLE', `A certificate or key file the database URL names (sslcert, sslkey or sslrootcert) cannot be read: ${fsReason(e)}; check its path in the URL and that this user can read it.`);
    }
    const why = e instanceof URIError ? 'it holds a % that does not start a percent-encoded UTF-8 character' : 'it is not a valid URL';
    throw new MasterKeyError('USAGE', `The database URL cannot be read (${why}); write it as postgres://user:password@host:port/database, with special characters in the user and password percent-encoded.`);
  }
}

/** A connected client; the caller ends it. */
export async function connect(url: string, opts: ClientOptions = {}): Promise<Client> {
  const client = clientFor(url, opts);
  // A dropped connection emits 'error' on the client; the pending query rejects too, so only keep the process alive here.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await sessionSettings(client, opts.lockTimeoutMs);
  } catch (e) {
    await client.end().catch(() => undefined);
    throw translatePgError(e, 'connecting', url);
  }
  return client;
}

/** BEGIN … COMMIT around fn; ROLLBACK on any error (rethrown). */
export async function withTransaction<T>(client: ClientBase, fn: () => Promise<T>, mode: 'read write' | 'read only' = 'read write'): Promise<T> {
  await client.query(mode === 'read only' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN');
  try {
    const r = await fn();
    await client.query('COMMIT');
    return r;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}

/** Fails with DB_READ_ONLY when connected to a standby or a read-only session. */
export async function assertWritable(client: ClientBase, url: string): Promise<void> {
  const r = await client.query<{ ro: string; rec: boolean }>("SELECT current_setting('transaction_read_only') AS ro, pg_is_in_recovery() AS rec");
  if (r.rows[0].rec) {
    throw new MasterKeyError('DB_READ_ONLY', `The database ${describeUrl(url)} is a standby server in recovery, so it is read-only; run against the primary, writable server.`);
  }
  if (r.rows[0].ro === 'on') {
    throw new MasterKeyError(
      'DB_READ_ONLY',
      `The database ${describeUrl(url)} is read-only for this session (default_transaction_read_only is on for the database, the role or the connection); run against the primary, writable server, or turn that setting off where it was set.`,
    );
  }
}

/** Whether an error comes from the database driver (not from our code or a caller's callback). */
function fromDriver(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const x = e as Error & { severity?: string; code?: unknown };
  return x.severity !== undefined || typeof x.code === 'string' || /Connection terminated|not queryable|connection.*closed/i.test(x.message);
}

/** Runs one table's work, naming the table in a database error (other errors pass unchanged). */
export async function naming<T>(plan: { readonly table: string }, doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromDriver(e) ? translatePgError(e, `${doing} ${plan.table}`) : e;
  }
}

/** The server process of a connected client (its backend pid, as pg_stat_activity shows it). */
export function processId(c: ClientBase): number {
  const pid = (c as ClientBase & { processID?: number | null }).processID;
  if (typeof pid !== 'number') throw new MasterKeyError('INTERNAL', 'The PostgreSQL connection has no backend pid; this is a bug.');
  return pid;
}
