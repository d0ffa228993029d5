/**
 * The config file adapter on real files: reading keys and entries, atomic
 * replacement keeping mode, owner and every other byte, and refusals
 * (symlinks, missing files, directories, FIFOs, non-UTF-8 text).
 */
import { removeScratch, scratchDir } from '../scripts/scratch';
import { caught } from './support/errors';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { checkConfigWritable, configTarget, ConfigTarget, readConfigEntry, readConfigKey, readConfigText, writeConfigKey } from '../src/config/config-file';
import { ConfigFormat } from '../src/config/formats';
import { MasterKey } from '../src/crypto/key';
import { ErrorCode } from '../src/errors';

const OLD = MasterKey.generate();
const NEW = MasterKey.generate();

let dir: string;
beforeEach(() => {
  dir = scratchDir('mk-config-');
});
afterEach(() => {
  removeScratch(dir);
});

/** Runs fn and returns its MasterKeyError, checking that no key appears in the message. */
function errorOf(fn: () => unknown, code: ErrorCode): string {
  const e = caught(fn);
  expect(e.code).toBe(code);
    for (const k of [OLD, NEW]) expect(e.message.toLowerCase()).not.toContain(k.toHex());
  return e.message;
}

const SAMPLES: Record<ConfigFormat, { file: string; entry: string; text: (hex: string) => string }> = {
  dotenv: {
    file: 'act.env',
    entry: 'ACT_MASTER_KEY',
    text: (hex) => `# ACT server\r\nDATABASE_URL="postgres://act@db:5432/act"\r\nexport ACT_MASTER_KEY = '${hex}'  # rotated by master-key\r\n# ACT_MASTER_KEY=${'0'.repeat(64)}\r\n`,
  },
  json: {
    file: 'settings.json',
    entry: 'security.masterKey',
    text: (hex) => `{\n    "database": { "url": "postgres://db/app" },\n    "security": {\n        "masterKey":   "${hex}",\n        "algorithm": "aes-256-gcm"\n    }\n}`,
  },
  xml: {
    file: 'OctopusServer.config',
    entry: 'Octopus.Storage.MasterKey',
    text: (hex) =>
      `<?xml version="1.0" encoding="utf-8"?>\r\n<octopus-settings>\r\n  <!-- <set key="Octopus.Storage.MasterKey">${'1'.repeat(64)}</set> -->\r\n  <set key="Octopus.Home">C:\\Octopus</set>\r\n  <set key="Octopus.Storage.MasterKey">${hex}</set>\r\n</octopus-settings>\r\n`,
  },
};

function sample(format: ConfigFormat, key = OLD): ConfigTarget {
  const s = SAMPLES[format];
  const path = join(dir, s.file);
  writeFileSync(path, s.text(key.toHex()));
  return configTarget(path, s.entry);
}

describe('configTarget', () => {
  it('makes the path absolute and derives the format from the extension', () => {
    const rel = relative(process.cwd(), join(dir, 'a.config'));
    expect(configTarget(rel, 'K')).toEqual({ path: join(dir, 'a.config'), format: 'xml', entry: 'K' });
    expect(configTarget('/etc/act/act.env', 'ACT_MASTER_KEY').format).toBe('dotenv');
    expect(configTarget('/etc/app/conf.txt', 'a.b', 'json').format).toBe('json');
  });

  it('refuses an empty path or entry and an unknown format', () => {
    errorOf(() => configTarget('', 'K'), 'USAGE');
    errorOf(() => configTarget('/etc/a.env', ''), 'USAGE');
    errorOf(() => configTarget('/etc/a.env', 'K', 'yaml' as ConfigFormat), 'USAGE');
  });
});

describe.each(['dotenv', 'json', 'xml'] as const)('%s file', (format) => {
  it('reads the key and replaces it, changing nothing else and keeping mode and owner', () => {
    const t = sample(format);
    chmodSync(t.path, 0o640);
    chownSync(t.path, 65534, 65534);
    const inode = statSync(t.path).ino;
    expect(readConfigKey(t).fingerprint).toBe(OLD.fingerprint);

    writeConfigKey(t, NEW);

    expect(readFileSync(t.path, 'utf8')).toBe(SAMPLES[format].text(NEW.toHex()));
    expect(readConfigKey(t).equals(NEW)).toBe(true);
    const st = statSync(t.path);
    expect(st.ino).not.toBe(inode);
    expect(st.mode & 0o7777).toBe(0o640);
    expect([st.uid, st.gid]).toEqual([65534, 65534]);
    expect(readdirSync(dir)).toEqual([SAMPLES[format].file]);
  });

  it('passes the writability check and leaves nothing behind', () => {
    const t = sample(format);
    checkConfigWritable(t);
    expect(readdirSync(dir)).toEqual([SAMPLES[format].file]);
  });

  it('leaves the file untouched when the entry is missing', () => {
    const t = { ...sample(format), entry: 'NO_SUCH_ENTRY' };
    const before = readFileSync(t.path);
    const msg = errorOf(() => writeConfigKey(t, NEW), 'CONFIG_KEY_MISSING');
    expect(msg).toContain(t.path);
    expect(msg).toContain('NO_SUCH_ENTRY');
    expect(readFileSync(t.path).equals(before)).toBe(true);
    expect(readdirSync(dir)).toEqual([SAMPLES[format].file]);
  });
});

describe('reading', () => {
  it('returns the raw text and other entries', () => {
    const t = sample('dotenv');
    expect(readConfigText(t)).toBe(SAMPLES.dotenv.text(OLD.toHex()));
    expect(readConfigEntry(t, 'DATABASE_URL')).toBe('postgres://act@db:5432/act');
    expect(readConfigEntry(sample('json'), 'database.url')).toBe('postgres://db/app');
  });

  it('refuses a malformed key, naming entry and file without echoing the value', () => {
    const path = join(dir, 'act.env');
    const bad = 'abc123'.repeat(10);
    writeFileSync(path, `ACT_MASTER_KEY=${bad}\n`);
    const msg = errorOf(() => readConfigKey(configTarget(path, 'ACT_MASTER_KEY')), 'KEY_MALFORMED');
    expect(msg).toContain(`The ACT_MASTER_KEY entry in ${path}`);
    expect(msg).not.toContain(bad);
  });

  it('reports a missing file', () => {
    const msg = errorOf(() => readConfigKey(configTarget(join(dir, 'nope.env'), 'K')), 'CONFIG_MISSING');
    expect(msg).toContain(join(dir, 'nope.env'));
    errorOf(() => readConfigText(configTarget(join(dir, 'no-dir', 'a.env'), 'K')), 'CONFIG_MISSING');
  });

  it('reports a directory instead of a file', () => {
    mkdirSync(join(dir, 'act.env'));
    expect(errorOf(() => readConfigText(configTarget(join(dir, 'act.env'), 'K')), 'CONFIG_UNREADABLE')).toContain('directory');
    errorOf(() => writeConfigKey(configTarget(join(dir, 'act.env'), 'K'), NEW), 'CONFIG_UNREADABLE');
  });

  it('refuses a FIFO without blocking on it', () => {
    const path = join(dir, 'act.env');
    execFileSync('mkfifo', [path]);
    expect(errorOf(() => readConfigText(configTarget(path, 'K')), 'CONFIG_UNREADABLE')).toContain('not a regular file');
  });

  it('refuses text that is not UTF-8 (rewriting it could change bytes)', () => {
    const path = join(dir, 'act.env');
    writeFileSync(path, Buffer.concat([Buffer.from('NAME=caf'), Buffer.from([0xe9]), Buffer.from(`\nACT_MASTER_KEY=${OLD.toHex()}\n`)]));
    errorOf(() => writeConfigKey(configTarget(path, 'ACT_MASTER_KEY'), NEW), 'CONFIG_INVALID');
  });

  it('keeps non-ASCII text and a byte-order mark byte for byte', () => {
    const path = join(dir, 'app.config');
    const text = (hex: string) => `\ufeff<c><set key="Name">Zürich ✓</set><set key="K">${hex}</set></c>`;
    writeFileSync(path, text(OLD.toHex()));
    writeConfigKey(configTarget(path, 'K'), NEW);
    expect(readFileSync(path).equals(Buffer.from(text(NEW.toHex())))).toBe(true);
  });
});

describe('symlinks', () => {
  it('refuses to read or replace through a symlink and leaves link and target untouched', () => {
    const real = sample('dotenv');
    const link = join(dir, 'link.env');
    symlinkSync(real.path, link);
    const before = readFileSync(real.path);
    const t = configTarget(link, 'ACT_MASTER_KEY');
    const msg = errorOf(() => writeConfigKey(t, NEW), 'CONFIG_SYMLINK');
    expect(msg).toContain(link);
    expect(msg).toContain(real.path);
    errorOf(() => readConfigKey(t), 'CONFIG_SYMLINK');
    errorOf(() => checkConfigWritable(t), 'CONFIG_SYMLINK');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(real.path).equals(before)).toBe(true);
  });

  it('refuses a dangling symlink as a symlink, not as a missing file', () => {
    const link = join(dir, 'act.env');
    symlinkSync(join(dir, 'gone.env'), link);
    errorOf(() => readConfigText(configTarget(link, 'K')), 'CONFIG_SYMLINK');
  });
});
