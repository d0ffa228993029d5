/**
 * Database URLs through everything that reads one before the network:
 * `resolveStoreUrl` (src/store/open.ts: which store, and a relative SQLite
 * path made absolute against the config file's directory), then for
 * `sqlite:` URLs `sqliteFile` (src/store/sqlite/url.ts), for any other the
 * PostgreSQL client as the store builds it (`clientFor`, which runs pg's
 * own URL parser) and `describeUrl`, what plans and messages show.
 *
 * For every input: typed rejections only (USAGE for a URL that cannot be
 * read, DB_UNREACHABLE for a certificate file it names that cannot be
 * read); no message and no description shows the password pg would send;
 * a resolved SQLite URL is absolute, names the same file, and resolving it
 * again changes nothing.
 */
import fc from 'fast-check';
import { isAbsolute, resolve } from 'node:path';
import { ErrorCode } from '../../../src/errors';
import { resolveStoreUrl } from '../../../src/store/open';
import { clientFor, describeUrl } from '../../../src/store/postgres/client';
import { isSqliteUrl, sqliteFile, sqlitePathOf } from '../../../src/store/sqlite/url';
import { FuzzTarget, invariant, typed } from '../harness';
import { anyText, applyEdits, edits } from '../mutate';

export interface UrlInput {
  readonly url: string;
  /** The config file's directory a relative SQLite path is resolved against. */
  readonly baseDir: string;
}

const CODES: readonly ErrorCode[] = ['USAGE', 'DB_UNREACHABLE'];
const PASSWORDS = ['s3cret-Passw0rd', 'p@ss:w/rd?#%', 'pa%20ss%zz', 'änd-ünïcode-pw', 'pw with spaces', ''];

const postgresUrl = fc
  .record({
    scheme: fc.constantFrom('postgres://', 'postgresql://', 'POSTGRES://', 'pg://', ''),
    user: fc.constantFrom('act', 'a%40b', '', 'us er', '%zz'),
    password: fc.constantFrom(...PASSWORDS),
    encode: fc.boolean(),
    host: fc.constantFrom('db', 'localhost', '127.0.0.1', '[::1]', '[::1', '', '%2Fvar%2Frun%2Fpostgresql', 'db.example.com', 'h,o'),
    port: fc.constantFrom('', ':5432', ':0', ':99999', ':-1', ':abc', ':'),
    db: fc.constantFrom('/act', '', '/', '/a%2Fb', '/%E0%A4%A', '/é'),
    query: fc.array(
      fc.constantFrom('sslmode=require', 'sslmode=verify-full', 'sslmode=no-verify', 'sslmode=bogus', 'ssl=true', 'ssl=1', 'host=%2Ftmp', 'port=x', 'options=-c%20search_path%3Dx', 'application_name=x', 'password=q-s3cret-Passw0rd', 'sslcert=/nonexistent/cert.pem', 'sslrootcert=/nonexistent/ca.pem', 'sslkey=/', 'replication=database', 'uselibpqcompat=true', '%'),
      { maxLength: 3 },
    ),
  })
  .map((u) => {
    const pw = u.encode ? encodeURIComponent(u.password) : u.password;
    const auth = u.user || u.password ? `${u.user}${u.password ? `:${pw}` : ''}@` : '';
    return `${u.scheme}${auth}${u.host}${u.port}${u.db}${u.query.length ? `?${u.query.join('&')}` : ''}`;
  });
const sqliteUrl = fc
  .record({
    scheme: fc.constantFrom('sqlite:', 'SQLite:', 'sqlite://', 'sqlite:///'),
    path: fc.constantFrom('/var/lib/act/act.db', 'data/act.db', './act.db', '../act.db', 'act.db', '', ':memory:', 'a\u0000b', '~/act.db', '/', '.', 'file:act.db?mode=ro', 'act.db?x=1', '%2Fetc'),
  })
  .map((u) => `${u.scheme}${u.path}`);
const TOKENS = [':', '/', '//', '@', '%', '%2F', '?', '&', '=', '#', '[', ']', 'sqlite:', 'postgres://', '\u0000', ' ', '\n', '..'];

/** The password pg would send, if the client could be built. */
function passwordOf(url: string): string | undefined {
  try {
    const c = clientFor(url);
    return typeof c.password === 'string' ? c.password : undefined;
  } catch {
    return undefined;
  }
}

function whatwgPassword(url: string): string | undefined {
  try {
    const p = new URL(url).password;
    return p ? decodeURIComponent(p) : undefined;
  } catch {
    return undefined;
  }
}

/** The wording describeUrl and clientFor's refusal use whatever the URL: a password within it cannot be told apart from it. */
const FIXED_WORDING = [describeUrl('not a URL'), describeUrl('postgres://['), refusalOf('postgres://[')].join(' ');

function refusalOf(url: string): string {
  try {
    clientFor(url);
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Whether a description may show text for a part other than the password:
 * the description of the same URL with another password holds it too (the
 * user, host, port and path, with their separators: password ":1]:" in
 * "[::1]:0"). A URL that does not parse: whether it holds the text at all
 * (raw, decoded or encoded).
 */
function inShownParts(url: string, text: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    let decoded = url;
    try {
      decoded = decodeURIComponent(url);
    } catch {
      // raw only
    }
    return url.includes(text) || decoded.includes(text) || url.includes(encodeURIComponent(text));
  }
  u.password = u.password === 'x' ? 'y' : 'x';
  const other = describeUrl(u.href);
  return other.includes(text) || other.includes(encodeURIComponent(text));
}

/** pg reads the certificate files a URL names while parsing it: never let an input name a device or a kernel file. */
function safeToParse(raw: string): boolean {
  const url = raw.replace(/[\t\n\r]/g, ''); // as a URL parser reads it
  let decoded = url;
  try {
    decoded = decodeURIComponent(url);
  } catch {
    // keep the raw text
  }
  return !/\/(dev|proc|sys)\b|ssl(cert|key|rootcert)=[^&]*\.\./i.test(decoded + url);
}

function checkUrl({ url, baseDir }: UrlInput): void {
  if (!safeToParse(url)) return;
  const secrets = [...PASSWORDS.filter((p) => p.length >= 8), ...PASSWORDS.map(encodeURIComponent).filter((p) => p.length >= 8)];
  const resolved = typed('resolveStoreUrl', () => resolveStoreUrl(url, baseDir), CODES, secrets);
  if (!resolved.ok) {
    invariant(isSqliteUrl(url), 'resolveStoreUrl refused a URL that is not a sqlite: URL');
    return;
  }
  if (isSqliteUrl(url)) {
    const r = resolved.value;
    const path = sqlitePathOf(r);
    invariant(isAbsolute(path), `the resolved SQLite URL ${JSON.stringify(r)} is not absolute`);
    invariant(resolve(path) === resolve(baseDir, sqlitePathOf(url)), 'the resolved SQLite URL names another file than the URL did, read against the config directory');
    invariant(resolveStoreUrl(r, '/elsewhere') === r, 'resolving a resolved SQLite URL again changed it');
    const file = typed('sqliteFile', () => sqliteFile(r), CODES, secrets);
    invariant(file.ok && file.value === resolve(path), 'sqliteFile of a resolved URL is not its path');
    return;
  }
  invariant(resolved.value === url, 'resolveStoreUrl changed a PostgreSQL URL');
  // The password as pg would send it, and as a URL parser reads it; not one that is part of the messages' own wording ("stgr" of postgres://).
  const passwords = [passwordOf(url), whatwgPassword(url)].filter((p): p is string => p !== undefined && p.length >= 4 && !FIXED_WORDING.includes(p));
  const client = typed('clientFor', () => clientFor(url), CODES, [...secrets, ...passwords]);
  // (A URL parser drops tabs and line breaks anywhere in a URL.)
  invariant(client.ok || client.rejection.code === 'USAGE' || /ssl(cert|key|rootcert)=/i.test(url.replace(/[\t\n\r]/g, '')), 'clientFor blamed a certificate file on a URL that names none');
  // Unless the user, host or database name holds the same text (a URL made so): then showing it is showing the name.
  const shown = passwords.filter((p) => !inShownParts(url, p));
  const description = typed('describeUrl', () => describeUrl(url), [], shown);
  invariant(description.ok && !shown.some((p) => description.value.includes(p) || description.value.includes(encodeURIComponent(p))), 'describeUrl shows the password');
}

export const URL_TARGET: FuzzTarget<UrlInput> = {
  name: 'database-urls',
  entry: 'database URLs: resolveStoreUrl (src/store/open.ts), sqliteFile (src/store/sqlite/url.ts), clientFor and describeUrl (src/store/postgres/client.ts: pg parses the URL)',
  arbitrary: fc.record({
    url: fc.tuple(fc.oneof({ weight: 10, arbitrary: postgresUrl }, { weight: 10, arbitrary: sqliteUrl }, { weight: 1, arbitrary: anyText(40) }), edits(TOKENS)).map(([u, es]) => applyEdits(u, es)),
    baseDir: fc.constantFrom('/etc/act', '/', '/a b/c', '/tmp/../etc'),
  }),
  check: checkUrl,
  toJson: (i) => i,
  fromJson: (j) => j as UrlInput,
};
