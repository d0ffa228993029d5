/**
 * Safe file writes on real files in a temp directory. Read-only and full
 * file systems, and unprivileged users, are in config-filesystems.test.ts.
 */
import { removeScratch, scratchDir } from '../scripts/scratch';
import { caught } from './support/errors';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWriteFile, checkDirWritable, checkReplaceable, freeBytes, leftoverTempFiles, sha256File, TEMP_INFIX } from '../src/fsutil';

let dir: string;
beforeEach(() => {
  dir = scratchDir('mk-fsutil-');
});
afterEach(() => {
  removeScratch(dir);
});

const errorOf = caught;

const modeOf = (p: string): number => statSync(p).mode & 0o7777;

describe('atomicWriteFile', () => {
  it('creates a new file with mode 0600, whatever the umask', () => {
    const p = join(dir, 'key');
    const old = process.umask(0o277);
    try {
      atomicWriteFile(p, 'secret\n');
    } finally {
      process.umask(old);
    }
    expect(readFileSync(p, 'utf8')).toBe('secret\n');
    expect(modeOf(p)).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['key']);
  });

  it('replaces an existing file with a new inode, applying the given mode and owner', () => {
    const p = join(dir, 'act.env');
    writeFileSync(p, 'OLD=1\n', { mode: 0o644 });
    const before = statSync(p).ino;
    atomicWriteFile(p, Uint8Array.from(Buffer.from('NEW=2\n')), { mode: 0o640, uid: 65534, gid: 65534 });
    const st = statSync(p);
    expect(readFileSync(p, 'utf8')).toBe('NEW=2\n');
    expect(st.ino).not.toBe(before);
    expect(st.mode & 0o7777).toBe(0o640);
    expect([st.uid, st.gid]).toEqual([65534, 65534]);
    expect(leftoverTempFiles(p)).toEqual([]);
  });

  it('keeps set-id bits even when changing the owner', () => {
    const p = join(dir, 'tool');
    atomicWriteFile(p, 'x', { mode: 0o2750, uid: 65534, gid: 65534 });
    expect(modeOf(p)).toBe(0o2750);
  });

  it('writes large binary data completely', () => {
    const p = join(dir, 'blob');
    const data = randomBytes(3 * 1024 * 1024 + 17);
    atomicWriteFile(p, data);
    expect(readFileSync(p).equals(data)).toBe(true);
  });

  it('on failure leaves the original intact, removes its temp file and names the path', () => {
    const p = join(dir, 'occupied');
    mkdirSync(p);
    writeFileSync(join(p, 'inside'), 'keep');
    const err = errorOf(() => atomicWriteFile(p, 'data', { errorCode: 'CONFIG_UNWRITABLE' }));
    expect(err.code).toBe('CONFIG_UNWRITABLE');
    expect(err.message).toContain(p);
    expect(err.message).not.toContain('data');
    expect(readFileSync(join(p, 'inside'), 'utf8')).toBe('keep');
    expect(readdirSync(dir)).toEqual(['occupied']);
  });

  it('fails with FILE_ERROR by default, e.g. when the directory does not exist', () => {
    const err = errorOf(() => atomicWriteFile(join(dir, 'missing', 'f'), 'x'));
    expect(err.code).toBe('FILE_ERROR');
    expect(err.message).toContain(join(dir, 'missing', 'f'));
  });
});

describe('leftoverTempFiles', () => {
  it('lists only the temp files of that path, sorted and absolute', () => {
    const p = join(dir, 'act.env');
    const names = [`.act.env${TEMP_INFIX}b2`, `.act.env${TEMP_INFIX}a1`, `.other.env${TEMP_INFIX}c3`, 'act.env', '.act.env.bak'];
    for (const n of names) writeFileSync(join(dir, n), '');
    expect(leftoverTempFiles(p)).toEqual([join(dir, `.act.env${TEMP_INFIX}a1`), join(dir, `.act.env${TEMP_INFIX}b2`)]);
  });

  it('finds nothing when the directory is missing', () => {
    expect(leftoverTempFiles(join(dir, 'nope', 'act.env'))).toEqual([]);
  });
});

describe('checkReplaceable', () => {
  it('passes for a writable directory and leaves nothing behind', () => {
    const p = join(dir, 'f');
    writeFileSync(p, 'x');
    checkReplaceable(p, { mode: 0o640, uid: 65534, gid: 65534 });
    expect(readdirSync(dir)).toEqual(['f']);
  });

  it('throws the given code when the directory is missing', () => {
    expect(errorOf(() => checkReplaceable(join(dir, 'no', 'f'), { errorCode: 'CONFIG_UNWRITABLE' })).code).toBe('CONFIG_UNWRITABLE');
  });
});

describe('checkDirWritable', () => {
  it('creates missing directories with mode 0700 and leaves them empty', () => {
    const d = join(dir, 'backups', 'act');
    checkDirWritable(d, 'BACKUP_UNWRITABLE', 'the backup directory');
    expect(statSync(d).isDirectory()).toBe(true);
    expect(modeOf(d)).toBe(0o700);
    expect(modeOf(join(dir, 'backups'))).toBe(0o700);
    expect(readdirSync(d)).toEqual([]);
  });

  it('keeps the mode of an existing directory', () => {
    const d = join(dir, 'reports');
    mkdirSync(d);
    chmodSync(d, 0o750);
    checkDirWritable(d, 'FILE_ERROR', 'the report directory');
    expect(modeOf(d)).toBe(0o750);
  });

  it('throws the given code, naming the directory, when a file is in the way', () => {
    writeFileSync(join(dir, 'file'), '');
    const d = join(dir, 'file', 'sub');
    const err = errorOf(() => checkDirWritable(d, 'BACKUP_UNWRITABLE', 'the backup directory'));
    expect(err.code).toBe('BACKUP_UNWRITABLE');
    expect(err.message).toContain(`the backup directory ${d}`);
  });
});

describe('freeBytes', () => {
  it('reports the space available to unprivileged users', () => {
    const s = statfsSync(dir);
    const free = freeBytes(dir);
    expect(free).toBeGreaterThan(0);
    // Other processes write meanwhile: allow 64 MiB of drift.
    expect(Math.abs(free - s.bavail * s.bsize)).toBeLessThan(64 * 1024 * 1024);
    expect(free).toBeLessThanOrEqual(s.bfree * s.bsize + 64 * 1024 * 1024);
  });

  it('throws FILE_ERROR for a missing directory', () => {
    expect(errorOf(() => freeBytes(join(dir, 'nope'))).code).toBe('FILE_ERROR');
  });
});

describe('sha256File', () => {
  it('matches SHA-256 of the contents across chunk boundaries', () => {
    for (const size of [0, 1, 1 << 20, (1 << 20) + 1, 2.5 * (1 << 20)]) {
      const p = join(dir, `f${size}`);
      const data = randomBytes(size);
      writeFileSync(p, data);
      expect(sha256File(p)).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });

  it('knows the empty-file digest and reports missing files', () => {
    writeFileSync(join(dir, 'empty'), '');
    expect(sha256File(join(dir, 'empty'))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(errorOf(() => sha256File(join(dir, 'nope'))).code).toBe('FILE_ERROR');
  });
});
