/**
 * The embedded PostgreSQL of the tests, the demo and `npm run dev-db` when
 * the checkout sits in a private directory (mode 0700, as /root usually is,
 * or a `mktemp -d` folder) and we run as root: PostgreSQL then runs as the
 * unprivileged `postgres` user, which cannot reach binaries in there. They
 * are copied next to the data directory and the server starts; when that
 * user cannot reach the data directory's folder either, starting fails with
 * one sentence saying what to do, and leaves nothing behind.
 */
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { blockedAncestor, installedNativeDir, removeEmbeddedData, startEmbeddedPostgres, StatFn } from '../src/db/embedded';
import { scratchDir } from '../scripts/scratch';

const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

describe('blockedAncestor (pure)', () => {
  const tree: Record<string, { mode: number; uid: number; gid: number }> = {
    '/': { mode: 0o755, uid: 0, gid: 0 },
    '/root': { mode: 0o700, uid: 0, gid: 0 },
    '/root/app': { mode: 0o755, uid: 0, gid: 0 },
    '/srv': { mode: 0o751, uid: 0, gid: 0 },
    '/srv/grp': { mode: 0o710, uid: 0, gid: 104 },
    '/srv/own': { mode: 0o700, uid: 101, gid: 104 },
  };
  const stat: StatFn = (p) => tree[p];
  const pg = { uid: 101, gid: 104 };

  it('names the first directory the user cannot enter', () => {
    expect(blockedAncestor('/root/app', pg, stat)).toBe('/root');
    expect(blockedAncestor('/srv', pg, stat)).toBeUndefined();
  });

  it('uses the owner, group or other bits that apply to the user; root enters everything', () => {
    expect(blockedAncestor('/srv/grp', pg, stat)).toBeUndefined();
    expect(blockedAncestor('/srv/grp', { uid: 102, gid: 105 }, stat)).toBe('/srv/grp');
    expect(blockedAncestor('/srv/own', pg, stat)).toBeUndefined();
    expect(blockedAncestor('/root/app', { uid: 0, gid: 0 }, stat)).toBeUndefined();
  });
});

describe('a checkout in a private directory', () => {
  async function query(url: string): Promise<string> {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ v: string }>('SELECT current_setting(\'server_version_num\') AS v')).rows[0].v;
    } finally {
      await c.end();
    }
  }

  it('starts PostgreSQL from binaries its user cannot reach (copying them) and answers queries', async () => {
    const priv = scratchDir('mk-private-');
    expect(statSync(priv).mode & 0o777).toBe(0o700);
    const native = join(priv, 'native');
    cpSync(await installedNativeDir(), native, { recursive: true, verbatimSymlinks: true });
    const logs: string[] = [];
    const server = await startEmbeddedPostgres({ nativeDir: native, onLog: (l) => logs.push(l) });
    try {
      expect(Number(await query(server.adminUrl))).toBeGreaterThanOrEqual(180000);
      const copied = logs.some((l) => l.includes(`cannot reach ${native}: using a copy of the PostgreSQL binaries`));
      // As root the server runs as `postgres`, which cannot enter the 0700 folder; otherwise it runs as us and needs no copy.
      expect(copied).toBe(IS_ROOT);
    } finally {
      await server.stop();
      removeEmbeddedData(server);
    }
  });

  it('as root, fails with one sentence saying what to do when the data folder is out of reach, leaving nothing', async () => {
    const priv = scratchDir('mk-private-');
    const attempt = startEmbeddedPostgres({ parentDir: priv });
    if (!IS_ROOT) {
      // Not root: PostgreSQL runs as this user, who owns the folder, so it works there.
      const server = await attempt;
      await server.stop();
      removeEmbeddedData(server);
      return;
    }
    await expect(attempt).rejects.toThrow(
      new Error(
        `PostgreSQL runs as the unprivileged user "postgres" (never as root), which cannot enter ${priv}; run from a directory other users can traverse (or chmod o+x ${priv}), or set DATABASE_URL to an existing PostgreSQL server.`,
      ),
    );
    expect(readdirSync(priv)).toEqual([]);
  });
});
