/**
 * Hostile input, each case through the real CLI and on each store: a clear
 * one-sentence error with its documented exit code, no key material
 * echoed, and everything left as it was: the database row for row and
 * every file under the installation's folder byte for byte (with its
 * mode), no pending file. (A SQLite database's own folder is compared row
 * for row only: SQLite and the rotation lock keep their files beside it.)
 * The SQLite file's own hazards are in sqlite-hostile.test.ts.
 */
import { scratchDir } from '../scripts/scratch';
import { runtimeCopy } from './support/runtime-copy';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { CliResult, Scenario, actScenario, dbSnapshot, keyLeaks, keyLine } from './support/scenario';
import { sqlQuery, withTestSql } from './support/sql';
import { CLI_STORES } from './support/stores';

/** Every path under dir with its type, mode and bytes (or link target), except under `skip`. */
function treeSnapshot(dir: string, skip = join(dir, 'data')): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (p === skip) continue;
      const st = lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[p] = `link -> ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[p] = `dir ${mode}`;
        walk(p);
      } else out[p] = `file ${mode} ${readFileSync(p).toString('base64')}`;
    }
  };
  walk(dir);
  return out;
}

let s: Scenario;
let hostDir: string;

/**
 * Runs the CLI and checks the error and that nothing changed: the database,
 * every file under the scenario folder, no key echoed.
 */
async function expectRefused(run: () => CliResult | Promise<CliResult>, code: number, errorCode: string, message: RegExp, keys: MasterKey[] = [s.key]): Promise<CliResult> {
  const db = await dbSnapshot(s.url);
  const files = treeSnapshot(s.dir);
  const r = await run();
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr: expect.stringMatching(message) });
  expect(r.stderr).toMatch(new RegExp(`^master-key: [^\\n]+ \\[${errorCode}\\]\\n$`));
  expect(keyLeaks(r.stdout + r.stderr, keys)).toEqual([]);
  expect(await dbSnapshot(s.url)).toBe(db);
  expect(treeSnapshot(s.dir)).toEqual(files);
  return r;
}

/** A config file in hostDir with the given text (0600). */
function configWith(name: string, text: string): string {
  const p = join(hostDir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o600);
  return p;
}

const MALFORMED: ReadonlyArray<[string, (k: MasterKey) => string, RegExp]> = [
  ['short (63 hex characters)', (k) => k.toHex().slice(0, 63), /is 63 characters long, not 64/],
  ['long (65 hex characters)', (k) => k.toHex() + 'a', /is 65 characters long, not 64/],
  ['non-hex', (k) => k.toHex().slice(0, 62) + 'zz', /contains characters that are not hex digits/],
  ['empty', () => '', /is empty; it must be 64 hex characters/],
  ['with a byte-order mark', (k) => '\uFEFF' + k.toHex(), /contains a byte-order mark/],
];

describe.each(CLI_STORES)('on $name', (store) => {
  beforeAll(async () => {
    s = await actScenario({ perKind: 2, store });
    hostDir = join(s.dir, 'host');
    mkdirSync(hostDir);
  });

  describe('malformed keys', () => {
    it.each(MALFORMED)('in the config file: %s', async (_what, make, msg) => {
      const bad = make(s.key);
      for (const path of [configWith('bad.env', `ACT_MASTER_KEY=${bad}\n`), configWith('bad.json', `{ "ACT_MASTER_KEY": "${bad}" }\n`)]) {
        const r = await expectRefused(() => s.cli(['apply', '--config', path]), ExitCode.BAD_KEY, 'KEY_MALFORMED', msg);
        if (bad.length > 8) expect(r.stderr).not.toContain(bad.replace('\uFEFF', '').slice(0, 16));
      }
    });

    it.each(MALFORMED)('as the new key: %s', async (_what, make, msg) => {
      const other = MasterKey.generate();
      const bad = make(other);
      const file = join(s.dir, '..', `${s.dir.split('/').pop()}-newkey`);
      writeFileSync(file, bad + '\n', { mode: 0o600 });
      try {
        const r = await expectRefused(() => s.cli(['apply', '--new-key-file', file]), ExitCode.BAD_KEY, 'KEY_MALFORMED', msg, [s.key, other]);
        if (bad.length > 8) expect(r.stderr).not.toContain(bad.replace('\uFEFF', '').slice(0, 16));
        // Through the environment too.
        await expectRefused(() => s.cli(['apply', '--new-key-env', 'NEW_KEY'], { env: { NEW_KEY: bad } }), ExitCode.BAD_KEY, 'KEY_MALFORMED', msg, [s.key, other]);
      } finally {
        rmSync(file);
      }
    });

    it('the same key for old and new', async () => {
      await expectRefused(() => s.cli(['apply', '--new-key-stdin'], { input: s.key.toHex() + '\n' }), ExitCode.BAD_KEY, 'KEY_SAME', /The new key is the same as the old key \(mk:[0-9a-f]{12}\)/);
    });
  });

  describe('config files', () => {
    it('missing', async () => {
      await expectRefused(() => s.cli(['apply', '--config', join(hostDir, 'nope.env')]), ExitCode.FILES, 'CONFIG_MISSING', /The config file .*nope\.env does not exist/);
    });

    it('unreadable (for an unprivileged user)', async () => {
      const dir = join(s.dir, 'ro');
      mkdirSync(dir);
      chmodSync(s.dir, 0o755);
      chmodSync(dir, 0o755);
      const path = join(dir, 'act.env');
      writeFileSync(path, keyLine(s.key) + '\n', { mode: 0o600 });
      chmodSync(path, 0o600);
      await expectRefused(
        () => {
          // The package as installed, in a folder nobody can read (the checkout may be private).
            const { cli } = runtimeCopy(scratchDir('mk-runtime-', 0o755));
            const r = spawnSync(process.execPath, [cli, 'apply', '--config', path], { env: s.env, encoding: 'utf8', uid: 65534, gid: 65534 });
          return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
        },
        ExitCode.FILES,
        'CONFIG_UNREADABLE',
        /Cannot read the config file .*act\.env: permission denied/,
      );
    });

    it('has the key twice', async () => {
      const path = configWith('twice.env', `${keyLine(s.key)}\nOTHER=1\n${keyLine(s.key)}\n`);
      await expectRefused(() => s.cli(['apply', '--config', path]), ExitCode.FILES, 'CONFIG_KEY_DUPLICATE', /ACT_MASTER_KEY/);
    });

    it('is a symlink to elsewhere', async () => {
      const link = join(hostDir, 'link.env');
      symlinkSync(s.configPath, link);
      await expectRefused(() => s.cli(['apply', '--config', link]), ExitCode.FILES, 'CONFIG_SYMLINK', /link\.env is a symbolic link; configure the real file \(.*act\.env\) instead/);
    });
  });

  describe('stored values', () => {
    async function withRow<T>(sql: string, restore: string, fn: () => Promise<T>): Promise<T> {
      await sqlQuery(s.url, sql);
      try {
        return await fn();
      } finally {
        await sqlQuery(s.url, restore);
      }
    }
    /** The first row of a table, its id as text. */
    async function firstRow<T extends { id: unknown }>(sql: string): Promise<T & { id: string }> {
      const [row] = await sqlQuery<T>(s.url, sql);
      return { ...row, id: String(row.id) };
    }

    it('a tampered sealed value in one row blocks the rotation and is named (table, id, kind), never shown', async () => {
      const { id, password } = await firstRow<{ id: unknown; password: string }>('SELECT id, password FROM registry_credentials ORDER BY id LIMIT 1');
      const raw = Buffer.from(password, 'base64');
      raw[raw.length - 20] ^= 0x01;
      const tampered = raw.toString('base64');
      await withRow(`UPDATE registry_credentials SET password = '${tampered}' WHERE id = ${id}`, `UPDATE registry_credentials SET password = '${password}' WHERE id = ${id}`, async () => {
        const r = await expectRefused(() => s.cli(['apply']), ExitCode.UNDECRYPTABLE, 'UNDECRYPTABLE_ROWS', new RegExp(`1 stored value\\(s\\) do not open with the old key .*registry_credentials\\.password id=${id} \\(registry credential, SEALED_(TAMPERED|WRONG_KEY)\\).*nothing was changed`));
        expect(r.stderr).not.toContain(tampered.slice(0, 20));
      });
    });

    it('a row in an unknown format blocks the rotation and is named', async () => {
      const { id, token } = await firstRow<{ id: unknown; token: string }>('SELECT id, access_token AS token FROM git_credentials ORDER BY id LIMIT 1');
      await withRow(`UPDATE git_credentials SET access_token = 'plain:ghp_not_sealed' WHERE id = ${id}`, `UPDATE git_credentials SET access_token = '${token}' WHERE id = ${id}`, async () => {
        const r = await expectRefused(() => s.cli(['apply']), ExitCode.UNDECRYPTABLE, 'UNDECRYPTABLE_ROWS', new RegExp(`git_credentials\\.access_token id=${id} \\(git access token, SEALED_MALFORMED\\)`));
        expect(r.stderr).not.toContain('ghp_not_sealed');
      });
    });
  });

  describe('a stale plan', () => {
    it('plan --out, then a new secret is added, then apply --plan is refused', async () => {
      const planFile = join(hostDir, 'plan.json');
      const p = s.cli(['plan', '--out', planFile]);
      expect(p.code).toBe(0);
      const sealed = actCodec().seal(s.key, Buffer.from('added after the plan', 'utf8'));
      await sqlQuery(s.url, "INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1)", [sealed]);
      try {
        await expectRefused(() => s.cli(['apply', '--plan', planFile]), ExitCode.STALE_PLAN, 'PLAN_STALE', /The saved plan \(\S+\) no longer matches the database or config files; run `master-key plan` again/);
      } finally {
        await sqlQuery(s.url, "DELETE FROM git_credentials WHERE provider = 'gitlab'");
      }
    });
  });

  describe('the backup location', () => {
    const mounts: string[] = [];
    /** A small tmpfs (we run as root), outside the scenario folder so that folder's snapshot is exact. */
    function tmpfs(name: string, size: string): string {
      const mnt = join(s.dir, '..', `${s.dir.split('/').pop()}-${name}`);
      mkdirSync(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', mnt]);
      mounts.push(mnt);
      return mnt;
    }
    afterAll(() => {
      for (const m of mounts) {
        execFileSync('umount', ['-l', m]);
        rmSync(m, { recursive: true, force: true });
      }
    });

    it('on a full file system: DISK_FULL, before anything is written', async () => {
      const mnt = tmpfs('full', '64k');
      // Fill it up: dd stops (and fails) when no space is left.
      spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=4k', 'count=100'], { stdio: 'ignore' });
      const before = readdirSync(mnt);
      await expectRefused(() => s.cli(['apply', '--backup-dir', join(mnt, 'backups')]), ExitCode.FILES, 'DISK_FULL', /full|free/);
      expect(readdirSync(mnt)).toEqual(before);
    });

    it('on a read-only file system: BACKUP_UNWRITABLE', async () => {
      const mnt = tmpfs('ro', '1m');
      execFileSync('mount', ['-o', 'remount,ro', mnt]);
      await expectRefused(() => s.cli(['apply', '--backup-dir', join(mnt, 'backups')]), ExitCode.FILES, 'BACKUP_UNWRITABLE', /read-only/);
      expect(readdirSync(mnt)).toEqual([]);
    });
  });

  describe('the wrong database', () => {
    it('a database URL without the canary: CANARY_NOT_FOUND, nothing created there', async () => {
      const other = await store.create(join(hostDir, 'wrongdb'));
      await sqlQuery(other, 'CREATE TABLE servers (id integer PRIMARY KEY, ssh_private_key text)');
      const tables = () => withTestSql(other, (db) => db.tables());
      const before = await tables();
      for (const cmd of ['plan', 'apply', 'recover', 'status']) {
        await expectRefused(() => s.cli([cmd], { env: { DATABASE_URL: other } }), ExitCode.KEY_MISMATCH, 'CANARY_NOT_FOUND', /Integrity canary not found: .*check the database URL/);
      }
      expect(await tables()).toEqual(before);
    });
  });
});
