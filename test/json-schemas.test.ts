/**
 * The JSON Schemas in docs/schemas/ against REAL outputs of the CLI on a real
 * ACT installation: plan --json (and --out), status --json (healthy, with
 * --max-age, interrupted, after a rotation), recover --json, the report
 * JSON, the pending-key file of a killed apply, the backup manifest, the
 * --json error shape, restore --json and restore --drill --json, and
 * inventory files; on PostgreSQL and on SQLite (whose database identity is
 * the canary's UUID, not a cluster's digits). Each output names its schema
 * file in OUTPUTS, so a change of shape is one schema file and one line here.
 */
import Ajv2020, { ValidateFunction } from 'ajv/dist/2020';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { INVENTORY_SCHEMA, loadInventory } from '../src/inventory/inventory';
import { COMPILED_SCHEMAS, schemaSha256 } from '../src/json-schema';
import { BENCH_INVENTORY } from '../scripts/bench-data';
import { actScenario, Scenario } from './support/scenario';
import { POSTGRES, SQLITE_WAL } from './support/stores';
import { caught } from './support/errors';
import { scratchDir } from '../scripts/scratch';

const SCHEMA_DIR = join(__dirname, '..', 'docs', 'schemas');

/** Every documented output and the schema file that describes it. */
const OUTPUTS = {
  plan: 'plan.schema.json',
  status: 'status.schema.json',
  recover: 'recover.schema.json',
  restore: 'restore.schema.json',
  report: 'report.schema.json',
  pending: 'pending.schema.json',
  backupManifest: 'backup-manifest.schema.json',
  inventory: 'inventory.schema.json',
  error: 'error.schema.json',
} as const;

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
const validators = new Map<string, ValidateFunction>();
function validator(file: string): ValidateFunction {
  let v = validators.get(file);
  if (!v) {
    v = ajv.compile(JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')));
    validators.set(file, v);
  }
  return v;
}

/**
 * Asserts that `value` matches the schema of `output` (printing ajv's errors
 * when it does not), and that the schema would refuse it with one more,
 * undocumented member (such as a key that should not be there).
 */
function expectValid(output: keyof typeof OUTPUTS, value: unknown): void {
  const v = validator(OUTPUTS[output]);
  const ok = v(value);
  expect(ok ? [] : v.errors).toEqual([]);
  expect(v({ ...(value as object), oldKey: '00'.repeat(32) })).toBe(false);
}

const json = (text: string): unknown => JSON.parse(text);

describe('the schema files', () => {
  it('are exactly the documented outputs, each a strict, self-contained, described JSON Schema', () => {
    expect(readdirSync(SCHEMA_DIR).sort()).toEqual([...new Set(Object.values(OUTPUTS))].sort());
    for (const file of Object.values(OUTPUTS)) {
      const schema = JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')) as Record<string, unknown>;
      expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(schema.$id).toBe(`urn:cdktf-master-key:schema:${file.replace('.schema.json', '')}`);
      expect(typeof schema.title).toBe('string');
      expect(typeof schema.description).toBe('string');
      expect(JSON.stringify(schema)).not.toMatch(/"\$ref":"(?!#)/);
      expect(() => validator(file)).not.toThrow();
    }
  });

  it('those of the files the tool reads are compiled by the build into the modules the CLI loads instead of ajv (dist/src/schemas), each made from its file as it is and judging as ajv does', () => {
    const dist = join(__dirname, '..', 'dist', 'src');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const built = require(join(dist, 'json-schema.js')) as typeof import('../src/json-schema');
    expect(readdirSync(join(dist, 'schemas')).sort()).toEqual(COMPILED_SCHEMAS.map((n) => `${n}.js`).sort());
    for (const file of [OUTPUTS.inventory, OUTPUTS.pending, OUTPUTS.backupManifest]) {
      const schema = JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')) as { $id: string };
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const compiled = require(join(dist, 'schemas', `${file.replace('.schema.json', '')}.js`)) as ValidateFunction & { schemaSha256: string };
      expect(compiled.schemaSha256).toBe(schemaSha256(schema));
      expect(built.lazyValidator(schema)()).toBe(compiled);
      // Made from another text of the schema, it is not used: ajv compiles that text.
      const changed = { ...schema, description: 'another text' };
      expect(built.lazyValidator(changed)()).not.toBe(compiled);
      for (const doc of [{}, { name: 'x', entries: [] }, ACT_PRESET, { ...ACT_PRESET, extra: 1 }, { entries: [{ table: 1 }] }, 'text', null]) {
        const ok = compiled(doc);
        expect([file, ok, compiled.errors ?? null]).toEqual([file, validator(file)(doc), validator(file).errors ?? null]);
      }
    }
  });

  it('the inventory loader uses the inventory schema file itself', () => {
    expect(INVENTORY_SCHEMA).toEqual(JSON.parse(readFileSync(join(SCHEMA_DIR, OUTPUTS.inventory), 'utf8')));
  });
});

describe.each([POSTGRES, SQLITE_WAL].map((st) => [st.name, st] as const))('real outputs match their schemas: %s', (_, store) => {
  let s: Scenario;
  const backups = () => join(s.dir, 'backups');
  const reports = () => join(s.dir, 'reports');
  const dirs = () => ['--backup-dir', backups(), '--report-dir', reports()];

  beforeAll(async () => {
    s = await actScenario({ perKind: 2, store });
  });

  it('plan --json, with hooks and a saved plan file (--out)', () => {
    const r = s.cli(['plan', '--json', '--stop-command', 'true', '--start-command', 'true', '--health-command', 'true', '--out', join(s.dir, 'plan.json'), ...dirs()]);
    expect(r.code).toBe(0);
    const plan = json(r.stdout) as { action: string; hooks: Record<string, string> };
    expect(plan.action).toBe('rotate');
    expect(Object.keys(plan.hooks).sort()).toEqual(['health', 'start', 'stop']);
    expectValid('plan', plan);
    expectValid('plan', json(readFileSync(join(s.dir, 'plan.json'), 'utf8')));
  });

  it('status --json, plain and with --max-age', () => {
    const plain = s.cli(['status', '--json']);
    expect(plain.code).toBe(0);
    expectValid('status', json(plain.stdout));
    const aged = s.cli(['status', '--json', '--max-age', '36h']);
    expect(aged.code).toBe(0);
    expect((json(aged.stdout) as { maxAgeDays: number }).maxAgeDays).toBe(1.5);
    expectValid('status', json(aged.stdout));
  });

  it('the pending-key file of a killed apply, status --json while interrupted, and recover --json', () => {
    const killed = s.cli(['apply', ...dirs()], { env: { MASTER_KEY_TEST_KILL_AT: 'backup-written' } });
    expect(killed.code).not.toBe(0);
    const pendingFile = join(s.dir, '.act.env.mk-pending');
    const pending = json(readFileSync(pendingFile, 'utf8'));
    expectValid('pending', pending);

    const interrupted = s.cli(['status', '--json']);
    expect(interrupted.code).toBe(10);
    expect(json(interrupted.stdout)).toHaveProperty('interruptedRotation');
    expectValid('status', json(interrupted.stdout));

    const recovered = s.cli(['recover', '--json']);
    expect(recovered.code).toBe(0);
    expect(json(recovered.stdout)).toMatchObject({ ok: true, action: 'undone' });
    expectValid('recover', json(recovered.stdout));
    const nothing = s.cli(['recover', '--json']);
    expectValid('recover', json(nothing.stdout));
  });

  it('the report JSON and the backup manifest of a rotation, then status --json with the last rotation', () => {
    const r = s.cli(['apply', '--json', '--new-key-out', join(s.dir, 'new.key'), ...dirs()]);
    expect(r.code).toBe(0);
    const reportFile = readdirSync(reports()).find((f) => f.endsWith('.json'))!;
    const report = json(readFileSync(join(reports(), reportFile), 'utf8')) as { backup: { path: string }; newKeyFile?: string };
    expect(report.newKeyFile).toBe(join(s.dir, 'new.key'));
    expectValid('report', report);
    for (const b of readdirSync(backups())) {
      expectValid('backupManifest', json(readFileSync(join(backups(), b, 'manifest.json'), 'utf8')));
    }
    expect(readdirSync(backups())).toContain(report.backup.path.split('/').at(-1));
    const after = s.cli(['status', '--json']);
    expect(json(after.stdout)).toHaveProperty('lastRotation');
    expectValid('status', json(after.stdout));
  });

  it('restore --drill --json and restore --json of that backup', () => {
    const reportFile = readdirSync(reports()).find((f) => f.endsWith('.json'))!;
    const backup = (json(readFileSync(join(reports(), reportFile), 'utf8')) as { backup: { path: string } }).backup.path;
    const drill = s.cli(['restore', '--drill', '--json', '--backup', backup]);
    expect(drill.code).toBe(0);
    expect(json(drill.stdout)).toMatchObject({ ok: true, action: 'drill' });
    expectValid('restore', json(drill.stdout));
    const restored = s.cli(['restore', '--json', '--backup', backup]);
    expect(restored.code).toBe(0);
    expect(json(restored.stdout)).toMatchObject({ ok: true, action: 'restored' });
    expectValid('restore', json(restored.stdout));
  });

  it('the --json error of a failed command', () => {
    const r = s.cli(['plan', '--json', '--config', join(s.dir, 'missing.env')]);
    expect(r.code).not.toBe(0);
    expectValid('error', json(r.stdout));
  });
});

describe('inventory files', () => {
  it('the ACT preset, the benchmark inventory and the example of docs/inventory.md match the schema', () => {
    expectValid('inventory', ACT_PRESET);
    expectValid('inventory', BENCH_INVENTORY);
    const readme = readFileSync(join(__dirname, '..', 'docs', 'inventory.md'), 'utf8');
    const example = /Any other schema is declared the same way in a JSON file:\n\n```json\n([\s\S]*?)```/.exec(readme);
    expect(example).not.toBeNull();
    expectValid('inventory', JSON.parse(example![1]));
  });

  it('loading refuses a file the schema refuses, with one sentence naming the problem', () => {
    const file = join(scratchDir('mk-inv-schema-'), 'inventory.json');
    const entry = { kind: 'api token', table: 'tokens', idColumn: 'id', column: 'secret', codec: 'v1' };
    const cases: Array<[unknown, string]> = [
      [{ name: 'x', entries: [{ ...entry, colum: 'secret' }] }, 'entry 0 has an unknown member "colum" (check its spelling)'],
      [{ name: 'x', entries: [{ ...entry, table: 'tokens; DROP TABLE x' }] }, 'entry 0 "table" must be a plain SQL identifier (letters, digits, underscores), got "tokens; DROP TABLE x"'],
      [{ name: 'x', entries: [{ ...entry, codec: 'aes' }] }, 'entry 0 "codec" must be one of v1, act, got "aes"'],
      [{ name: 'x', entries: [{ ...entry, where: { key: 'secret', equals: true } }] }, 'entry 0 "where" only applies with "jsonPath"'],
      [{ name: 'x', entries: [{ ...entry, jsonPath: [] }] }, 'entry 0 "jsonPath" must not be empty'],
      [{ entries: [] }, 'it needs "name"'],
      [[entry], 'it must be an object, got'],
      [{ name: 'x', entries: [entry, { ...entry, codec: 'act' }] }, 'the location "tokens.secret" is listed twice'],
      // Quoted as JSON, so a control character cannot break the sentence across lines.
      [{ name: 'x', entries: [{ ...entry, table: 'a\r\nb' }] }, 'entry 0 "table" must be a plain SQL identifier (letters, digits, underscores), got "a\\r\\nb"'],
      [{ name: 'x', entries: [entry], 'x\ny': 1 }, 'it has an unknown member "x\\ny" (check its spelling)'],
      [{ name: 'x', entries: [{ ...entry, jsonPath: ['a\nb'] }, { ...entry, jsonPath: ['a\nb'], codec: 'act' }] }, 'the location "tokens.secret#a\\nb" is listed twice'],
      [{ name: 'x', entries: [{ ...entry, table: 'x-'.repeat(300) }] }, `entry 0 "table" must be a plain SQL identifier (letters, digits, underscores), got "${'x-'.repeat(30)}…"`],
    ];
    for (const [content, problem] of cases) {
      writeFileSync(file, JSON.stringify(content));
      const e = caught(() => loadInventory(file));
      expect(e.code).toBe('INVENTORY_INVALID');
      expect(e.message.startsWith(`The inventory file ${file} is invalid: ${problem}`)).toBe(true);
      expect(e.message.endsWith('; fix it (docs/schemas/inventory.schema.json describes the format).')).toBe(true);
      expect(e.message).not.toMatch(/[\r\n]/);
    }
    writeFileSync(file, JSON.stringify({ name: 'x', entries: [entry] }));
    expect(loadInventory(file).entries).toEqual([entry]);
  });
});
