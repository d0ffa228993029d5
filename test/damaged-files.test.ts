/**
 * The tool's own files, damaged, through the CLI: a backup manifest
 * (`restore --drill` reads it before connecting), a pending-key file
 * (`status` reads it first) and a saved plan (`apply --plan`). Each is one sentence with BACKUP_CORRUPT or
 * FILE_ERROR (exit 8), never the key; fuzzing found that most of these
 * threw a TypeError (an INTERNAL error) before the files were validated
 * against their schemas. The database URL points nowhere: nothing gets that far.
 * And a line of a PostgreSQL backup's values file, which restore reads
 * inside the database session (checked here on its own).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../scripts/scratch';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { canaryFor } from '../src/rotation/canary';
import { PENDING_FORMAT } from '../src/rotation/pending';
import { backupLine } from '../src/store/postgres/restore';
import { caught } from './support/errors';
import { keyLeaks, runCli } from './support/scenario';

const KEY = MasterKey.generate();
const NEW = MasterKey.generate();
const sha = (b: string) => createHash('sha256').update(b).digest('hex');
const env = { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: 'postgres://nobody@127.0.0.1:9/none' };

let dir: string;
let config: string;
beforeAll(() => {
  dir = scratchDir('mk-damaged-');
  config = join(dir, 'act.env');
  writeFileSync(config, `ACT_MASTER_KEY=${KEY.toHex()}\n`, { mode: 0o600 });
});

function expectOneSentence(r: { code: number; stdout: string; stderr: string }, code: string, message: RegExp): void {
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: ExitCode.FILES, stderr: expect.stringMatching(new RegExp(`^master-key: [^\\n]+ \\[${code}\\]\\n$`)) });
  expect(r.stderr).toMatch(message);
  expect(keyLeaks(r.stdout + r.stderr, [KEY, NEW])).toEqual([]);
}

describe('a damaged backup manifest', () => {
  const copy = `ACT_MASTER_KEY=${KEY.toHex()}\n`;
  const c = canaryFor(KEY, 2, new Date('2026-11-01T00:00:00Z'));
  const good = {
    format: 'cdktf-master-key/backup/v1',
    rotationId: '0b7e3c52-9d1f-4c8e-a0c3-6f1d2b9e8a47',
    createdAt: '2026-11-23T23:31:27.000Z',
    database: { name: 'act', systemIdentifier: '7311234567890123456' },
    fingerprint: KEY.fingerprint,
    generation: 2,
    canary: { keyEntry: 'ACT_MASTER_KEY', fingerprint: KEY.fingerprint, generation: 2, sealed: c.sealed, keyCreatedAt: c.keyCreatedAt.toISOString() },
    locations: [{ table: 'git_credentials', idColumn: 'id', column: 'access_token' }],
    values: 0,
    files: [{ name: 'config-1-act.env', sha256: sha(copy), bytes: copy.length }],
    configs: [{ path: '/etc/act/act.env', file: 'config-1-act.env', format: 'dotenv', entry: 'ACT_MASTER_KEY', mode: 384, uid: 0, gid: 0 }],
  };
  it.each([
    ['null', null, /has an unknown format|is not a backup of this tool/],
    ['files not a list', { ...good, files: 3 }, /has a damaged manifest\.json \(at \/files: must be array\)/],
    ['a config copy it does not checksum', { ...good, files: [] }, /its config copy "config-1-act\.env" has no checksum/],
    ['a config copy in an unknown format', { ...good, configs: [{ ...good.configs[0], format: 'yaml' }] }, /at \/configs\/0\/format: must be equal to one of the allowed values/],
    ['a key creation time that is no date', { ...good, canary: { ...good.canary, keyCreatedAt: '2026-13-45T99:99:99Z' } }, /the key creation time is not a date/],
  ])('%s: BACKUP_CORRUPT, one sentence', (_what, manifest, message) => {
    const b = join(dir, `backup-${_what.replace(/\W+/g, '-')}`);
    mkdirSync(b, { mode: 0o700 });
    writeFileSync(join(b, 'config-1-act.env'), copy, { mode: 0o600 });
    writeFileSync(join(b, 'manifest.json'), JSON.stringify(manifest));
    expectOneSentence(runCli(['restore', '--drill', '--backup', b, '--config', config], env), 'BACKUP_CORRUPT', message);
  });
});

describe('a damaged pending-key file', () => {
  const good = {
    format: PENDING_FORMAT,
    rotationId: '0b7e3c52-9d1f-4c8e-a0c3-6f1d2b9e8a47',
    startedAt: '2026-11-23T23:31:27.000Z',
    database: { name: 'act', systemIdentifier: 'unknown' },
    oldFingerprint: KEY.fingerprint,
    newFingerprint: NEW.fingerprint,
    fromGeneration: 1,
    toGeneration: 2,
    reason: 'generation 1 -> 2',
    targets: [{ path: '/etc/act/act.env', format: 'dotenv', entry: 'ACT_MASTER_KEY' }],
    newKey: NEW.toHex(),
  };
  it.each([
    ['null', null, /has an unknown format/],
    ['no targets', { ...good, targets: undefined }, /is damaged \(at the top level: must have required property 'targets'\)/],
    ['a target in an unknown format', { ...good, targets: [{ ...good.targets[0], format: 'ini' }] }, /at \/targets\/0\/format: must be equal to one of the allowed values/],
    ['a new key that is not the one it names', { ...good, newFingerprint: KEY.fingerprint }, /its new key is not mk:[0-9a-f]{12}, the key it names/],
  ])('%s: FILE_ERROR, one sentence', (_what, pending, message) => {
    writeFileSync(join(dir, '.act.env.mk-pending'), JSON.stringify(pending), { mode: 0o600 });
    expectOneSentence(runCli(['status', '--config', config], env), 'FILE_ERROR', message);
  });
});

describe('a saved plan that is not one (apply --plan)', () => {
  it.each(['null', '{}', '{"format":"cdktf-master-key/plan/v1","digest":"sha256:x","createdAt":"2026-11-23T23:31:27.000Z"}', `{"format":"cdktf-master-key/plan/v1","digest":"sha256:${'0'.repeat(64)}","createdAt":0}`, `{"format":"cdktf-master-key/plan/v1","digest":"sha256:${'0'.repeat(64)}","createdAt":"2026-11-23T23:31:27Z\\nforged"}`])(
    '%s: USAGE, one sentence, before the database (null threw a TypeError: INTERNAL)',
    (text) => {
      const plan = join(dir, 'saved-plan.json');
      writeFileSync(plan, text);
      const r = runCli(['apply', '--plan', plan, '--config', config], env);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: ExitCode.USAGE, stderr: `master-key: The saved plan ${plan} is not a plan of this version of cdktf-master-key (no format, digest or creation time as \`master-key plan --out\` writes them); run \`master-key plan --out\` again. [USAGE]\n` });
    },
  );
});

describe("a damaged line of a PostgreSQL backup's values file", () => {
  it.each(['null', '[]', '{"t":"x","c":"y","id":1,"v":"z"}', '{"t":"x","c":"y","id":"1","v":null}', '{"t":"x","c":"y","id":"1","v":"z","a":{"user_id":7}}', '{"t":"x"'])('%s: BACKUP_CORRUPT naming the line', (line) => {
    const e = caught(() => backupLine(line, 12, '/backups/b/secrets.jsonl'));
    expect(e.code).toBe('BACKUP_CORRUPT');
    expect(e.message).toMatch(/^Line 12 of \/backups\/b\/secrets\.jsonl is not (valid JSON|a stored value \(table, column, id and value as text\)); the backup cannot be restored\.$/);
  });

  it('a line as the backup writes it is read back', () => {
    expect(backupLine('{"t":"api_tokens","c":"token","id":"7","v":"AAAA","a":{"user_id":"42","org":null}}', 1, 'f')).toEqual({ t: 'api_tokens', c: 'token', id: '7', v: 'AAAA', a: { user_id: '42', org: null } });
  });
});
