/**
 * The tool's own files read back: a backup's manifest (`readBackup`, then
 * `toRestore` and `backupKey`, what restore and restore --drill do before
 * touching the database), a PostgreSQL backup's values file line by line,
 * the pending-key file (`readPending`, what recover and status read) and a
 * saved plan (`apply --plan`). All are JSON a crash, a disk or a person may
 * have damaged.
 *
 * Each runs on real files in a scratch directory: a backup directory with a
 * values file and a config copy whose checksums are right, and manifests
 * made from a valid one with fields replaced by any JSON value, then edited
 * as text. For every input: BACKUP_CORRUPT / FILE_ERROR (or, for a config
 * copy that does not hold a key, its config error) with one sentence that
 * never quotes the key; an accepted file matches its JSON schema
 * (docs/schemas/), and a backup's config copies are files it checksums.
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import manifestSchema from '../../../docs/schemas/backup-manifest.schema.json';
import pendingSchema from '../../../docs/schemas/pending.schema.json';
import { MasterKey } from '../../../src/crypto/key';
import { ErrorCode } from '../../../src/errors';
import { MANIFEST_FILE, closeBackupFiles, openBackupFiles, readBackup, toRestore } from '../../../src/rotation/backup';
import { canaryFor } from '../../../src/rotation/canary';
import { PENDING_FORMAT, readPending } from '../../../src/rotation/pending';
import { backupKey } from '../../../src/rotation/restore';
import { SEALED_SUFFIX } from '../../../src/rotation/age';
import { readSavedPlan } from '../../../src/cli/commands/apply';
import { backupLine } from '../../../src/store/postgres/restore';
import { removeScratch, scratchDir } from '../../scratch';
import { FuzzTarget, checkRejection, invariant, typed } from '../harness';
import { anyText, applyEdits, edits } from '../mutate';

const KEY = MasterKey.fromBytes(new Uint8Array(createHash('sha256').update('cdktf-master-key fuzz backup key').digest()));
const OTHER = MasterKey.fromBytes(new Uint8Array(createHash('sha256').update('cdktf-master-key fuzz other key').digest()));
const sha = (b: string) => createHash('sha256').update(b).digest('hex');

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
const validManifest = ajv.compile(manifestSchema);
const validPending = ajv.compile(pendingSchema);

/** A field's value: usually right, sometimes any JSON value. */
const field = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 14, arbitrary: good }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });
const instant = fc.constantFrom('2026-11-23T23:31:27.000Z', '2026-11-23T23:31:27Z', '2026-13-45T99:99:99Z', 'yesterday', '');
const uuid = fc.constantFrom('0b7e3c52-9d1f-4c8e-a0c3-6f1d2b9e8a47', 'not-a-uuid');
const database = fc.record({ name: field(fc.constantFrom('act', '/var/lib/act/act.db', '')), systemIdentifier: field(fc.constantFrom('7311234567890123456', 'unknown', '0b7e3c52-9d1f-4c8e-a0c3-6f1d2b9e8a47', 'x')) });
const TOKENS = ['{', '}', '[', ']', '"', ':', ',', 'null', '0', '-1', '1e400', '"__proto__":', '\\u0000', '"', KEY.toHex().slice(0, 16)];

export interface FileInput {
  readonly text: string;
}

/** A file's text: a generated value as JSON (indented or not), usually edited a little; now and then random text. */
const fileText = (value: fc.Arbitrary<unknown>): fc.Arbitrary<FileInput> =>
  fc
    .tuple(value, fc.constantFrom(2, undefined), edits(TOKENS), fc.oneof({ weight: 20, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyText(40) }))
    .map(([v, indent, es, raw]) => ({ text: raw ?? applyEdits(JSON.stringify(v, null, indent), es) }));

// ---- backup manifests ----

const VALUES_FILE = 'secrets.jsonl';
const VALUES = '{"table":"git_credentials","column":"access_token","id":"1","value":"x"}\n';
const CONFIG_FILE = 'config-1-act.env';
const CONFIG = (key: MasterKey) => `ACT_MASTER_KEY=${key.toHex()}\n`;
const STRAY_FILE = 'config-2-other.env';

const fileEntry = fc.oneof(
  fc.constant({ name: VALUES_FILE, sha256: sha(VALUES), bytes: VALUES.length }),
  fc.constant({ name: CONFIG_FILE, sha256: sha(CONFIG(KEY)), bytes: CONFIG(KEY).length }),
  fc.record({ name: field(fc.constantFrom(VALUES_FILE, 'missing.bin', '../etc/passwd', MANIFEST_FILE, '.', STRAY_FILE, '')), sha256: field(fc.constantFrom(sha(VALUES), '0'.repeat(64), 'xyz')), bytes: field(fc.nat()) }),
);
const configEntry = fc.record({
  path: field(fc.constantFrom('/etc/act/act.env', 'act.env', '')),
  file: field(fc.constantFrom(CONFIG_FILE, CONFIG_FILE, STRAY_FILE, 'missing.env', '../x', VALUES_FILE)),
  format: field(fc.constantFrom('dotenv', 'dotenv', 'json', 'xml', 'yaml')),
  entry: field(fc.constantFrom('ACT_MASTER_KEY', 'ACT_MASTER_KEY', 'OTHER', '')),
  mode: field(fc.constantFrom(384, 420, 4096, -1)),
  uid: field(fc.constantFrom(0, 1000, -5)),
  gid: field(fc.constantFrom(0, 1000, 1.5)),
});
const canary = canaryFor(KEY, 3, new Date('2026-11-01T00:00:00Z'));
const manifest = fc.record(
  {
    format: field(fc.constantFrom('cdktf-master-key/backup/v1', 'cdktf-master-key/backup/v2')),
    rotationId: field(uuid),
    createdAt: field(instant),
    database: field(database),
    fingerprint: field(fc.constantFrom(KEY.fingerprint, OTHER.fingerprint)),
    generation: field(fc.constantFrom(3, 0, 2.5)),
    canary: field(
      fc.record({
        keyEntry: field(fc.constant('ACT_MASTER_KEY')),
        fingerprint: field(fc.constantFrom(KEY.fingerprint, OTHER.fingerprint)),
        generation: field(fc.constantFrom(3, -1)),
        sealed: field(fc.constantFrom(canary.sealed, canaryFor(OTHER, 3, new Date()).sealed, 'mk1:000000000000:AAAA', 'garbage')),
        keyCreatedAt: field(instant),
      }),
    ),
    locations: field(fc.array(fc.record({ table: field(fc.constantFrom('git_credentials', 'x"; DROP TABLE y')), idColumn: field(fc.constant('id')), column: field(fc.constant('access_token')) }), { maxLength: 2 })),
    values: field(fc.constantFrom(1, 0, -1)),
    files: field(fc.array(fileEntry, { maxLength: 4 })),
    configs: field(fc.array(configEntry, { maxLength: 2 })),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  { requiredKeys: ['format', 'rotationId', 'createdAt', 'database', 'fingerprint', 'generation', 'canary', 'locations', 'values', 'files', 'configs'] },
);

let backupDir = '';

/**
 * Writes a file afresh: unlinked first, since ext4 flushes a file rewritten
 * in place (truncated) to disk when it is closed, which costs milliseconds.
 */
function rewrite(path: string, text: string): void {
  rmSync(path, { force: true });
  writeFileSync(path, text, { mode: 0o600 });
}

async function checkBackup({ text }: FileInput): Promise<void> {
  rewrite(join(backupDir, MANIFEST_FILE), text);
  const secrets = [KEY.toHex(), OTHER.toHex()];
  const r = typed('readBackup', () => readBackup(backupDir), ['BACKUP_CORRUPT'], secrets);
  if (!r.ok) return;
  const m = r.value;
  invariant(validManifest(m), `readBackup accepted a manifest its schema refuses (${JSON.stringify(validManifest.errors?.[0])})`);
  const listed = new Set(m.files.map((f) => f.name));
  invariant(m.configs.every((c) => listed.has(m.sealed ? c.file + SEALED_SUFFIX : c.file)), 'readBackup accepted a config copy its manifest does not checksum');
  const restore = typed('toRestore', () => toRestore(backupDir, m), [], secrets);
  invariant(restore.ok && !Number.isNaN(restore.value.canary.keyCreatedAt.getTime()), 'toRestore gave an invalid date for the key');
  // A manifest that says sealed, opened without an identity, is refused as restore refuses it (IDENTITY_REQUIRED).
  const CONFIG_CODES: ErrorCode[] = ['BACKUP_CORRUPT', 'CONFIG_INVALID', 'CONFIG_KEY_MISSING', 'CONFIG_KEY_DUPLICATE', 'KEY_MALFORMED', 'USAGE', 'IDENTITY_REQUIRED'];
  let files;
  try {
    files = openBackupFiles(backupDir, m, undefined);
    await backupKey(backupDir, m, files);
  } catch (e) {
    checkRejection('backupKey', e, CONFIG_CODES, secrets);
  } finally {
    if (files) closeBackupFiles(files);
  }
}

export const BACKUP_TARGET: FuzzTarget<FileInput> = {
  name: 'backup-manifest',
  entry: 'backup manifests: readBackup, toRestore (src/rotation/backup.ts) and backupKey (src/rotation/restore.ts), on a real backup directory',
  arbitrary: fileText(manifest),
  check: checkBackup,
  async: true,
  setup() {
    backupDir = scratchDir('mk-fuzz-backup-');
    writeFileSync(join(backupDir, VALUES_FILE), VALUES, { mode: 0o600 });
    writeFileSync(join(backupDir, CONFIG_FILE), CONFIG(KEY), { mode: 0o600 });
    writeFileSync(join(backupDir, STRAY_FILE), CONFIG(OTHER), { mode: 0o600 });
  },
  teardown() {
    removeScratch(backupDir);
  },
  toJson: (i) => i,
  fromJson: (j) => j as FileInput,
};

// ---- pending-key files ----

const pending = fc.record(
  {
    format: field(fc.constantFrom(PENDING_FORMAT, PENDING_FORMAT, 'cdktf-master-key/pending/v2')),
    rotationId: field(uuid),
    startedAt: field(instant),
    database: field(database),
    oldFingerprint: field(fc.constantFrom(OTHER.fingerprint, 'mk:xyz')),
    newFingerprint: field(fc.constantFrom(KEY.fingerprint, KEY.fingerprint, OTHER.fingerprint)),
    fromGeneration: field(fc.constantFrom(1, 0)),
    toGeneration: field(fc.constantFrom(2, 1.5)),
    reason: field(fc.constantFrom('generation 1 -> 2', '')),
    targets: field(fc.array(fc.record({ path: field(fc.constantFrom('/etc/act/act.env', 'relative.env')), format: field(fc.constantFrom('dotenv', 'json', 'xml', 'ini')), entry: field(fc.constantFrom('ACT_MASTER_KEY', '')) }), { maxLength: 3 })),
    backupPath: field(fc.constantFrom('/var/backups/act/x', '')),
    newKey: field(fc.constantFrom(KEY.toHex(), KEY.toHex(), KEY.toHex().toUpperCase(), KEY.toHex().slice(1), ` ${KEY.toHex()}\n`, '\ufeff' + KEY.toHex())),
    extra: fc.jsonValue({ maxDepth: 1 }),
  },
  { requiredKeys: ['format', 'rotationId', 'startedAt', 'database', 'oldFingerprint', 'newFingerprint', 'fromGeneration', 'toGeneration', 'reason', 'targets', 'newKey'] },
);

let pendingDir = '';

function checkPending({ text }: FileInput): void {
  const path = join(pendingDir, '.act.env.mk-pending');
  rewrite(path, text);
  const secrets = [KEY.toHex(), KEY.toHex().toUpperCase(), KEY.toHex().slice(1)];
  const r = typed('readPending', () => readPending(path), ['FILE_ERROR', 'KEY_MALFORMED'], secrets);
  if (!r.ok) return;
  invariant(r.value !== undefined, 'readPending found no file it was given');
  const { pending: p, newKey } = r.value!;
  const asWritten = { ...p, newKey: newKey.toHex() };
  invariant(validPending(asWritten), `readPending accepted a file its schema refuses (${JSON.stringify(validPending.errors?.[0])})`);
  invariant(p.newFingerprint === newKey.fingerprint, 'readPending accepted a file whose new fingerprint is not its new key');
}

export const PENDING_TARGET: FuzzTarget<FileInput> = {
  name: 'pending-file',
  entry: 'pending-key files: readPending (src/rotation/pending.ts), on a real file',
  arbitrary: fileText(pending),
  check: checkPending,
  setup() {
    pendingDir = scratchDir('mk-fuzz-pending-');
  },
  teardown() {
    removeScratch(pendingDir);
  },
  toJson: (i) => i,
  fromJson: (j) => j as FileInput,
};

// ---- a PostgreSQL backup's values file, line by line ----

const valueLine = fc.record(
  { t: field(fc.constantFrom('git_credentials', 'services')), c: field(fc.constantFrom('access_token', 'spec')), id: field(fc.constantFrom('1', '42')), v: field(fc.constantFrom('AAAA', '{"a":1}')), a: field(fc.dictionary(fc.constantFrom('user_id'), fc.oneof(fc.string(), fc.constant(null)))) },
  { requiredKeys: ['t', 'c', 'id', 'v'] },
);

function checkValueLine({ text }: FileInput): void {
  const r = typed('backupLine', () => backupLine(text, 1, '/backups/x/secrets.jsonl'), ['BACKUP_CORRUPT']);
  if (!r.ok) return;
  const o = r.value as unknown as Record<string, unknown>;
  invariant(o !== null && typeof o === 'object' && !Array.isArray(o), 'backupLine accepted a line that is not an object');
  invariant(['t', 'c', 'id', 'v'].every((k) => typeof o[k] === 'string'), 'backupLine accepted a line whose table, column, id or value is not a string');
  const a = o.a;
  invariant(a === undefined || (a !== null && typeof a === 'object' && !Array.isArray(a) && Object.values(a).every((x) => x === null || typeof x === 'string')), 'backupLine accepted AAD columns that are not text or null');
}

export const BACKUP_VALUES_TARGET: FuzzTarget<FileInput> = {
  name: 'backup-values',
  entry: "a PostgreSQL backup's values file (secrets.jsonl), line by line: backupLine (src/store/postgres/backup.ts), what restore and drill load",
  arbitrary: fileText(valueLine),
  check: checkValueLine,
  toJson: (i) => i,
  fromJson: (j) => j as FileInput,
};

// ---- saved plans (apply --plan) ----

const savedPlan = fc.record(
  {
    format: field(fc.constantFrom('cdktf-master-key/plan/v1', 'cdktf-master-key/plan/v1', 'cdktf-master-key/plan/v2')),
    createdAt: field(fc.oneof(instant, fc.constant('2026-11-23T23:31:27.000Z\nforged'))),
    digest: field(fc.constantFrom(`sha256:${sha('x')}`, 'sha256:abc', '')),
    action: field(fc.constantFrom('rotate', 'none')),
  },
  { requiredKeys: [] },
);

let planDir = '';

function checkSavedPlan({ text }: FileInput): void {
  const path = join(planDir, 'plan.json');
  rewrite(path, text);
  const r = typed('readSavedPlan', () => readSavedPlan(path), ['USAGE']);
  if (!r.ok) return;
  const p = r.value as unknown as Record<string, unknown>;
  invariant(p !== null && typeof p === 'object', 'readSavedPlan accepted a plan that is not an object');
  invariant(typeof p.digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(p.digest), 'readSavedPlan accepted a plan without a digest apply can compare');
  invariant(typeof p.createdAt === 'string' && !/[\r\n]/.test(p.createdAt) && !Number.isNaN(Date.parse(p.createdAt)), 'readSavedPlan accepted a creation time apply would quote broken or not as a date');
}

export const SAVED_PLAN_TARGET: FuzzTarget<FileInput> = {
  name: 'saved-plan',
  entry: 'saved plans: readSavedPlan (src/cli/commands/apply.ts, apply --plan), on a real file',
  arbitrary: fileText(savedPlan),
  check: checkSavedPlan,
  setup() {
    planDir = scratchDir('mk-fuzz-plan-');
  },
  teardown() {
    removeScratch(planDir);
  },
  toJson: (i) => i,
  fromJson: (j) => j as FileInput,
};
