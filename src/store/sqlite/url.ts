/**
 * SQLite database URLs, as ACT writes them: `sqlite:/var/lib/act/act.db`
 * (absolute) or `sqlite:data/act.db` (relative to the directory of the
 * config file the URL was read from, as ACT resolves it). The part after
 * `sqlite:` is a file path, taken as written (no percent-decoding, no
 * query string).
 */
import { isAbsolute, resolve } from 'node:path';
import { MasterKeyError } from '../../errors';

const SCHEME = 'sqlite:';

/** Whether `url` names a SQLite database (`sqlite:` followed by a path). */
export function isSqliteUrl(url: string): boolean {
  return url.slice(0, SCHEME.length).toLowerCase() === SCHEME;
}

/** The file path of a `sqlite:` URL as written (absolute or relative); a URL that is not a plain path is refused. */
export function sqlitePathOf(url: string): string {
  const path = url.slice(SCHEME.length);
  // The URL is not quoted: sqlite://user:password@host/... is a likely mistake, and it would show the password.
  const why = !path ? 'no path' : path.startsWith('//') ? 'a host part (sqlite://...)' : path === ':memory:' ? 'an in-memory database' : path.includes('\0') ? 'a NUL character' : undefined;
  if (why) {
    throw new MasterKeyError('USAGE', `The sqlite: database URL names ${why}, not a SQLite file; write sqlite:/absolute/path/act.db, or sqlite:path/act.db relative to the config file's directory.`);
  }
  return path;
}

/** `sqlite:<absolute path>`: a relative path resolved against `baseDir` (the config file's directory). */
export function resolveSqliteUrl(url: string, baseDir: string): string {
  const path = sqlitePathOf(url);
  return isAbsolute(path) ? `${SCHEME}${path}` : `${SCHEME}${resolve(baseDir, path)}`;
}

/** The absolute file path a `sqlite:` URL names (a relative path against the working directory). */
export function sqliteFile(url: string): string {
  return resolve(sqlitePathOf(url));
}
