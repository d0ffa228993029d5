/**
 * Config writes and writability checks where they really fail: a read-only
 * file system and a full one (small tmpfs mounts; the tests run as root),
 * and an unprivileged user (a child process running as uid/gid 65534, for
 * whom permission bits are real). Every failure must leave the original
 * file byte for byte and no temp file behind.
 */
import { removeScratch, scratchDir } from '../scripts/scratch';
import { caught } from './support/errors';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { transformSync } from '@swc/core';
import { checkConfigWritable, configTarget, readConfigKey, writeConfigKey } from '../src/config/config-file';
import { MasterKey } from '../src/crypto/key';
import { checkDirWritable, freeBytes, leftoverTempFiles } from '../src/fsutil';

const OLD = MasterKey.generate();
const NEW = MasterKey.generate();
const NOBODY = 65534;
const ENTRY = 'ACT_MASTER_KEY';
const configText = (key: MasterKey): string => `DATABASE_URL=postgres://act@db/act\n${ENTRY}=${key.toHex()}\n`;

let base: string;
beforeAll(() => {
  base = scratchDir('mk-fs-');
  chmodSync(base, 0o755);
});
afterAll(() => {
  removeScratch(base);
});

const errorOf = caught;

/** Asserts the config still holds exactly its original bytes, with no temp files next to it. */
function expectUntouched(path: string, original: string): void {
  expect(readFileSync(path, 'utf8')).toBe(original);
  expect(leftoverTempFiles(path)).toEqual([]);
}

function writeConfig(dir: string, mode = 0o600, uid = 0): string {
  const path = join(dir, 'act.env');
  writeFileSync(path, configText(OLD), { mode });
  chmodSync(path, mode);
  chownSync(path, uid, uid);
  return path;
}

/**
 * Mounts a fresh tmpfs at base/name for the enclosing describe, writes the
 * config into it, then lets `spoil` make it read-only or full. Returns the
 * mount point and the config path.
 */
function useTmpfs(name: string, size: string, spoil: (mnt: string) => void): { mnt: () => string; path: () => string } {
  const mnt = (): string => join(base, name);
  const path = (): string => join(mnt(), 'act.env');
  beforeAll(() => {
    mkdirSync(mnt());
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', mnt()]);
    writeConfig(mnt());
    spoil(mnt());
  });
  afterAll(() => {
    execFileSync('umount', ['-l', mnt()]);
  });
  return { mnt, path };
}

describe('a read-only file system', () => {
  const { mnt, path } = useTmpfs('ro', '1m', (m) => execFileSync('mount', ['-o', 'remount,ro', m]));

  it('fails the preflight with CONFIG_UNWRITABLE, saying why', () => {
    const err = errorOf(() => checkConfigWritable(configTarget(path(), ENTRY)));
    expect(err.code).toBe('CONFIG_UNWRITABLE');
    expect(err.message).toContain(path());
    expect(err.message).toContain('read-only');
    expectUntouched(path(), configText(OLD));
  });

  it('refuses the write and keeps the original', () => {
    expect(errorOf(() => writeConfigKey(configTarget(path(), ENTRY), NEW)).code).toBe('CONFIG_UNWRITABLE');
    expectUntouched(path(), configText(OLD));
    expect(readConfigKey(configTarget(path(), ENTRY)).equals(OLD)).toBe(true);
  });

  it('fails the directory check with the caller’s code', () => {
    const err = errorOf(() => checkDirWritable(join(mnt(), 'backups'), 'BACKUP_UNWRITABLE', 'the backup directory'));
    expect(err.code).toBe('BACKUP_UNWRITABLE');
    expect(err.message).toContain('read-only');
  });
});

describe('a full file system', () => {
  const { mnt, path } = useTmpfs('full', '128k', (m) => {
    try {
      writeFileSync(join(m, 'filler'), Buffer.alloc(1 << 20));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
    }
  });

  it('reports no free bytes', () => {
    expect(freeBytes(mnt())).toBe(0);
  });

  it('fails the preflight with CONFIG_UNWRITABLE, saying the disk is full', () => {
    const err = errorOf(() => checkConfigWritable(configTarget(path(), ENTRY)));
    expect(err.code).toBe('CONFIG_UNWRITABLE');
    expect(err.message).toContain('disk is full');
    expectUntouched(path(), configText(OLD));
  });

  it('fails the write with DISK_FULL, removing its partial temp file', () => {
    const err = errorOf(() => writeConfigKey(configTarget(path(), ENTRY), NEW));
    expect(err.code).toBe('DISK_FULL');
    expect(err.message).toContain('free some space');
    expectUntouched(path(), configText(OLD));
  });

  it('fails the directory check with the caller’s code', () => {
    expect(errorOf(() => checkDirWritable(mnt(), 'BACKUP_UNWRITABLE', 'the backup directory')).code).toBe('BACKUP_UNWRITABLE');
    expect(readdirSync(mnt()).sort()).toEqual(['act.env', 'filler']);
  });
});

// ---------------------------------------------------------------------------
// As an unprivileged user. Our TypeScript sources are compiled here with
// @swc/core (as jest does), so this tests the current code, not a stale
// build, into a folder nobody can read: the checkout itself may sit in a
// private directory (as root's home is). The key travels on stdin, never in
// argv.

const SRC = resolve(__dirname, '..', 'src');
const ENTRIES = ['config/config-file', 'fsutil', 'crypto/key'];

/** Compiles the entry modules and every module they import (relative imports) into dir; returns dir. */
function compileForNobody(dir: string): string {
  const done = new Set<string>();
  const visit = (rel: string): void => {
    if (done.has(rel)) return;
    done.add(rel);
    const file = join(SRC, `${rel}.ts`);
    const { code } = transformSync(readFileSync(file, 'utf8'), { filename: file, jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } });
    mkdirSync(dirname(join(dir, rel)), { recursive: true, mode: 0o755 });
    writeFileSync(join(dir, `${rel}.js`), code, { mode: 0o644 });
    for (const m of code.matchAll(/require\("(\.[^"]+)"\)/g)) visit(join(dirname(rel), m[1]));
  };
  ENTRIES.forEach(visit);
  return dir;
}

let compiled: string;
const CHILD = `
const fs = require('fs');
const job = JSON.parse(fs.readFileSync(0, 'utf8'));
const config = require(job.src + '/config/config-file.js');
const fsutil = require(job.src + '/fsutil.js');
const { parseKey } = require(job.src + '/crypto/key.js');
const t = config.configTarget(job.path, job.entry);
const calls = {
  checkConfigWritable: () => config.checkConfigWritable(t),
  writeConfigKey: () => config.writeConfigKey(t, parseKey(job.keyHex)),
  checkDirWritable: () => fsutil.checkDirWritable(job.path, 'BACKUP_UNWRITABLE', 'the backup directory'),
  atomicWriteFile: () => fsutil.atomicWriteFile(job.path, 'data'),
};
try {
  calls[job.call]();
  process.stdout.write(JSON.stringify({ ok: true }));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }));
}
`;

type Call = 'checkConfigWritable' | 'writeConfigKey' | 'checkDirWritable' | 'atomicWriteFile';

/** Runs one call as nobody and returns its outcome. */
function asNobody(call: Call, path: string): { ok: boolean; code?: string; message?: string } {
  const input = JSON.stringify({ src: compiled, call, path, entry: ENTRY, keyHex: NEW.toHex() });
  const r = spawnSync(process.execPath, ['-e', CHILD], { uid: NOBODY, gid: NOBODY, cwd: '/', input, encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { ok: boolean; code?: string; message?: string };
}

describe('as an unprivileged user', () => {
  let rootDir: string;
  let ownDir: string;
  beforeAll(() => {
    compiled = compileForNobody(join(base, 'compiled'));
    rootDir = join(base, 'root-owned');
    mkdirSync(rootDir, { mode: 0o755 });
    ownDir = join(base, 'nobody-owned');
    mkdirSync(ownDir, { mode: 0o700 });
    chownSync(ownDir, NOBODY, NOBODY);
  });

  it('replaces its own config in its own directory, keeping mode and owner', () => {
    const path = writeConfig(ownDir, 0o640, NOBODY);
    expect(asNobody('checkConfigWritable', path)).toEqual({ ok: true });
    expect(asNobody('writeConfigKey', path)).toEqual({ ok: true });
    expect(readFileSync(path, 'utf8')).toBe(configText(NEW));
    const st = statSync(path);
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o640, NOBODY, NOBODY]);
    expect(leftoverTempFiles(path)).toEqual([]);
  });

  it('cannot replace a config whose directory it may not write, and leaves it as it was', () => {
    const path = writeConfig(rootDir, 0o600, NOBODY);
    const check = asNobody('checkConfigWritable', path);
    expect(check).toMatchObject({ ok: false, code: 'CONFIG_UNWRITABLE' });
    expect(check.message).toContain('permission denied');
    expect(check.message).toContain(path);
    expect(asNobody('writeConfigKey', path)).toMatchObject({ ok: false, code: 'CONFIG_UNWRITABLE' });
    expectUntouched(path, configText(OLD));
  });

  it('refuses to replace a root-owned config it could not give back to root', () => {
    const path = writeConfig(ownDir, 0o644, 0);
    expect(asNobody('checkConfigWritable', path)).toMatchObject({ ok: false, code: 'CONFIG_UNWRITABLE' });
    const write = asNobody('writeConfigKey', path);
    expect(write).toMatchObject({ ok: false, code: 'CONFIG_UNWRITABLE' });
    expect(write.message).not.toContain(NEW.toHex());
    expectUntouched(path, configText(OLD));
    expect(statSync(path).uid).toBe(0);
  });

  it('fails the directory check and plain writes where it may not create files', () => {
    expect(asNobody('checkDirWritable', rootDir)).toMatchObject({ ok: false, code: 'BACKUP_UNWRITABLE' });
    expect(asNobody('checkDirWritable', join(rootDir, 'backups'))).toMatchObject({ ok: false, code: 'BACKUP_UNWRITABLE' });
    expect(asNobody('atomicWriteFile', join(rootDir, 'report.json'))).toMatchObject({ ok: false, code: 'FILE_ERROR' });
    expect(asNobody('checkDirWritable', join(ownDir, 'backups'))).toEqual({ ok: true });
    expect(statSync(join(ownDir, 'backups')).uid).toBe(NOBODY);
    expect(readdirSync(rootDir)).toEqual(['act.env']);
  });
});
