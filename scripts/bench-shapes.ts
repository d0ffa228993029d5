/**
 * `npm run bench -- --shape large-value|documents [--store postgres|sqlite] [--journal wal|delete] [--value-mib 48] [--documents 4] [--values-per-document 50000] [--reps 1] [--baseline-cli PATH] [--json]`
 *
 * The full `master-key apply` (spawn to exit) on rows of an awkward shape,
 * where a walk bounded by rows alone would not stay small:
 *
 * - `large-value`: one stored value of `--value-mib` MiB (the sealed text
 *   as the database holds it) and one small one. Goals: within 2x what the
 *   value costs without the tool (`LARGE_VALUE_GOAL`), peak RSS < 256 MB (a
 *   value's cost must grow with its size, not its square).
 *   Beside it, in turn with the applies, what the value costs without the
 *   tool (`Floors`): the database rewriting it alone, the simplest client
 *   reading it and writing it back, one read as verification reads it.
 * - `documents`: `--documents` JSON documents of `--values-per-document`
 *   sealed values each (ACT's service specs, grown large). Goal: peak RSS
 *   < 256 MB (batches and what is in flight bounded by bytes, not rows).
 *
 * Each run starts from the same pristine data; `--baseline-cli` runs another
 * build's apply in turn with this one's (an A/B under the same load). Starts
 * its own embedded PostgreSQL unless DATABASE_URL is set (not with
 * `--store sqlite`, which uses a file).
 */
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { EmbeddedServer, removeEmbeddedData, startEmbeddedPostgres } from '../src/db/embedded';
import type { Inventory } from '../src/inventory/inventory';
import { sqliteModule } from '../src/store/sqlite/driver';
import { copyRawRows } from '../src/store/postgres/copy';
import { lockPathFor } from '../src/store/sqlite/lock';
import { applyTimings, cliPath, runCliMeasured } from './bench-apply';
import { plaintext } from './bench-data';
import { applyPhases, median, medianRun, table } from './bench-report';
import { removeScratch, scratchDir } from './scratch';

export const SHAPES = ['large-value', 'documents'] as const;
export type Shape = (typeof SHAPES)[number];

export interface ShapeBenchOptions {
  readonly shape: Shape;
  readonly store: 'postgres' | 'sqlite';
  readonly journal: 'wal' | 'delete';
  /** large-value: the stored (sealed) text's size in MiB. */
  readonly valueMib: number;
  /** documents: how many, and sealed values in each. */
  readonly documents: number;
  readonly valuesPerDocument: number;
  readonly reps: number;
  readonly json: boolean;
  readonly baselineCli?: string;
  /** Apply with `--seal-ahead` (true) or `--no-seal-ahead` (false); by default, as apply chooses (it seals ahead from 10,000 values). */
  readonly sealAhead?: boolean;
}

const MIB = 1024 * 1024;
const MB = 1024 * 1024;
const TABLE = 'bench_shape';
const SEED = 'bench_shape_seed';

/** The inventory of each shape: a plain column, or every `value` of a document's `env` array. */
function inventoryOf(shape: Shape): Inventory {
  return shape === 'large-value'
    ? { name: 'bench large value', entries: [{ kind: 'large value', table: TABLE, idColumn: 'id', column: 'value', codec: 'act' }] }
    : { name: 'bench documents', entries: [{ kind: 'document value', table: TABLE, idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['env', '*', 'value'] }] };
}

/** The rows of a shape: [id, text] (a document as JSON text). */
function* rowsOf(o: ShapeBenchOptions, key: MasterKey): Generator<[number, string]> {
  const codec = actCodec();
  if (o.shape === 'large-value') {
    // The act codec stores base64(nonce(12) || ciphertext || tag(16)): 4 characters per 3 bytes.
    const plain = (Math.floor((o.valueMib * MIB) / 4) * 3) - 28;
    yield [1, codec.seal(key, randomBytes(plain))];
    yield [2, codec.seal(key, Buffer.from(plaintext(), 'utf8'))];
    return;
  }
  for (let d = 1; d <= o.documents; d++) {
    const env = Array.from({ length: o.valuesPerDocument }, (_, i) => ({ name: `VAR_${i}`, secret: true, value: codec.seal(key, Buffer.from(plaintext(), 'utf8')) }));
    yield [d, JSON.stringify({ image: `app:${d}`, env })];
  }
}

/** A database holding the shape's pristine rows, and how to put them back before each run. */
interface Fixture {
  readonly url: string;
  /** Puts the rows back as seeded and removes the tool's metadata. */
  reset(): Promise<void>;
  /** large-value: how to measure each of its `Floors` once (after a `reset`). */
  floors(): Promise<Record<keyof Floors, () => Promise<number>>>;
  close(): Promise<void>;
}

async function postgresFixture(o: ShapeBenchOptions, key: MasterKey, progress: (s: string) => void): Promise<Fixture> {
  let server: EmbeddedServer | undefined;
  let url = process.env.DATABASE_URL;
  if (!url) {
    progress('starting an embedded PostgreSQL');
    server = await startEmbeddedPostgres({ settings: { max_wal_size: '8GB', checkpoint_timeout: '30min' } });
    url = await server.createDatabase('bench_shape');
  }
  const c = new Client({ connectionString: url });
  await c.connect();
  const column = o.shape === 'large-value' ? 'value text' : 'doc jsonb';
  await c.query(`DROP TABLE IF EXISTS ${SEED}; CREATE TABLE ${SEED} (id bigint PRIMARY KEY, ${column})`);
  for (const [id, text] of rowsOf(o, key)) await c.query(`INSERT INTO ${SEED} VALUES ($1, $2)`, [id, text]);
  return {
    url,
    async reset() {
      await c.query(`DROP SCHEMA IF EXISTS master_key CASCADE; DROP TABLE IF EXISTS ${TABLE}`);
      await c.query(`CREATE TABLE ${TABLE} (LIKE ${SEED} INCLUDING ALL); INSERT INTO ${TABLE} SELECT * FROM ${SEED}`);
      await c.query(`VACUUM ANALYZE ${TABLE}`);
      await c.query('CHECKPOINT');
    },
    floors: async () => postgresFloors(c),
    async close() {
      await c.query(`DROP TABLE IF EXISTS ${TABLE}, ${SEED}; DROP SCHEMA IF EXISTS master_key CASCADE`).catch(() => undefined);
      await c.end();
      if (server) {
        await server.stop();
        removeEmbeddedData(server);
      }
    },
  };
}

function sqliteFixture(o: ShapeBenchOptions, key: MasterKey, dir: string): Fixture {
  const Database = sqliteModule();
  const pristine = join(dir, 'pristine.db');
  const db = new Database(pristine);
  db.pragma(`journal_mode = ${o.journal}`);
  db.exec(`CREATE TABLE ${TABLE} (id INTEGER PRIMARY KEY, ${o.shape === 'large-value' ? 'value TEXT' : 'doc TEXT'})`);
  const ins = db.prepare(`INSERT INTO ${TABLE} VALUES (?, ?)`);
  for (const [id, text] of rowsOf(o, key)) ins.run(id, text);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  const live = join(dir, 'act.db');
  return {
    url: `sqlite:${live}`,
    async reset() {
      for (const f of [live, `${live}-wal`, `${live}-shm`, `${live}-journal`, lockPathFor(live)]) rmSync(f, { force: true });
      copyFileSync(pristine, live);
    },
    floors: async () => sqliteFloors(live),
    async close() {},
  };
}

interface Run {
  readonly seconds: number;
  readonly maxRssBytes: number;
  /** CPU time of the apply process (user + system, all threads): its work, less dependent on the machine's load than wall time. */
  readonly cpuSeconds: number;
  /** CPU time of its main thread alone (Linux): the critical path, what its wall time would be on an idle machine less its waits. */
  readonly mainThreadCpuSeconds?: number;
  /** Minor page faults of the apply process: memory it touched fresh (each costs, the more so in a VM). */
  readonly minorFaults: number;
  readonly phases?: Readonly<Record<string, number>>;
  readonly serverDownMs?: number;
}

/** `init` (not timed) then `apply` of one build's CLI, spawn to exit. */
async function applyOnce(work: string, url: string, inventory: Inventory, oldKey: MasterKey, sealAhead: boolean | undefined, cli?: string): Promise<Run> {
  const dir = join(work, `run-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  mkdirSync(dir, { mode: 0o700 });
  try {
    const config = join(dir, 'act.env');
    writeFileSync(config, `ACT_MASTER_KEY=${oldKey.toHex()}\n`, { mode: 0o600 });
    const inv = join(dir, 'inventory.json');
    writeFileSync(inv, JSON.stringify(inventory));
    const env = { ...process.env, MK_BENCH_SHAPE_URL: url, ...(cli ? { MK_BENCH_CLI: cli } : {}) };
    const common = ['--config', config, '--inventory', inv, '--database-url-env', 'MK_BENCH_SHAPE_URL'];
    const init = await runCliMeasured(['init', ...common], env);
    if (init.code !== 0) throw new Error(`master-key init failed (exit ${init.code}): ${init.stderr.trim()}`);
    const r = await runCliMeasured(['apply', ...common, ...(sealAhead === undefined ? [] : [sealAhead ? '--seal-ahead' : '--no-seal-ahead']), '--backup-dir', join(dir, 'backups'), '--report-dir', join(dir, 'reports')], env);
    if (r.code !== 0) throw new Error(`master-key apply failed (exit ${r.code}): ${r.stderr.trim()}`);
    const main = r.mainThreadCpuSeconds;
    return { seconds: r.seconds, maxRssBytes: r.maxRssBytes, cpuSeconds: r.cpuSeconds, ...(main !== undefined ? { mainThreadCpuSeconds: main } : {}), minorFaults: r.minorFaults, ...applyTimings(join(dir, 'reports')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What the large value costs without the tool, on the same data in the same
 * run (each from the pristine rows, timed from the first statement to the
 * commit, in this process: no process start): the database rewriting it by
 * itself, the simplest client reading it and writing a new text of the same
 * length (made beforehand: no crypto), and one read of it as verification
 * reads it. A full apply does the read and the write, and on top of them
 * its backup, the crypto and the verification read.
 */
export interface Floors {
  /** `UPDATE ... SET value = value || ''`, committed. */
  readonly server: number;
  /** SELECT value, then UPDATE ... SET value = $1 with a new text of the same length, committed. */
  readonly client: number;
  /** One read of the value (PostgreSQL: binary COPY, as verification reads it). */
  readonly read: number;
}

const seconds = async (fn: () => Promise<unknown> | unknown): Promise<number> => {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

/** The floors on PostgreSQL, on the fixture's connection. */
function postgresFloors(c: Client): Record<keyof Floors, () => Promise<number>> {
  const lengthOf = async () => Number((await c.query(`SELECT octet_length(value) AS n FROM ${SEED} WHERE id = 1`)).rows[0].n);
  return {
    server: () =>
      seconds(async () => {
        await c.query('BEGIN');
        await c.query(`UPDATE ${TABLE} SET value = value || '' WHERE id = 1`);
        await c.query('COMMIT');
      }),
    client: async () => {
      const length = await lengthOf();
      const next = Buffer.from(randomBytes(Math.ceil((length * 3) / 4)).toString('base64').slice(0, length), 'latin1');
      return seconds(async () => {
        await c.query('BEGIN');
        const old = (await c.query<{ value: string }>(`SELECT value FROM ${TABLE} WHERE id = 1`)).rows[0].value;
        if (old.length !== next.length) throw new Error('the large value is not where the bench put it');
        await c.query(`UPDATE ${TABLE} SET value = $1 WHERE id = 1`, [next]);
        await c.query('COMMIT');
      });
    },
    read: async () => {
      const length = await lengthOf();
      return seconds(async () => {
        let bytes = 0;
        for await (const rows of copyRawRows(c, `SELECT value FROM ${TABLE} WHERE id = 1`, 1)) bytes += rows.buf.length;
        if (bytes < length) throw new Error('the large value is not where the bench put it');
      });
    },
  };
}

function sqliteFloors(file: string): Record<keyof Floors, () => Promise<number>> {
  const Database = sqliteModule();
  const opened = async (fn: (db: InstanceType<typeof Database>) => unknown): Promise<number> => {
    const db = new Database(file);
    try {
      return await seconds(() => fn(db));
    } finally {
      db.close();
    }
  };
  return {
    server: () => opened((db) => db.transaction(() => db.prepare(`UPDATE ${TABLE} SET value = value || '' WHERE id = 1`).run())()),
    client: () => {
      const n = new Database(file, { readonly: true });
      const length = n.prepare(`SELECT octet_length(value) FROM ${TABLE} WHERE id = 1`).pluck().get() as number;
      n.close();
      const next = Buffer.from(randomBytes(Math.ceil((length * 3) / 4)).toString('base64').slice(0, length), 'latin1');
      return opened((db) =>
        db.transaction(() => {
          const old = db.prepare(`SELECT value FROM ${TABLE} WHERE id = 1`).pluck().get() as string;
          if (old.length !== next.length) throw new Error('the large value is not where the bench put it');
          db.prepare(`UPDATE ${TABLE} SET value = CAST(? AS TEXT) WHERE id = 1`).run(next);
        })(),
      );
    },
    read: () => opened((db) => db.prepare(`SELECT value FROM ${TABLE} WHERE id = 1`).pluck().get()),
  };
}

export interface ShapeResult {
  readonly build: 'this' | 'baseline';
  readonly runs: readonly number[];
  readonly seconds: number;
  readonly peakRssBytes: number;
  /** Median CPU seconds of the apply process (user + system). */
  readonly cpuSeconds: number;
  /** Median CPU seconds of its main thread alone (absent where /proc does not tell). */
  readonly mainThreadCpuSeconds?: number;
  /** Median minor page faults of the apply process. */
  readonly minorFaults: number;
  readonly phases?: Readonly<Record<string, number>>;
  readonly serverDownMs?: number;
}

export interface ShapeBenchReport {
  readonly shape: Shape;
  readonly store: string;
  readonly what: string;
  readonly reps: number;
  readonly machine: { readonly cpus: number; readonly load: string };
  readonly results: readonly ShapeResult[];
  /** large-value: the medians of what the value costs without the tool (`Floors`), measured in turn with the applies. */
  readonly floors?: Floors;
  readonly goals: ReadonlyArray<{ readonly what: string; readonly measured: string; readonly met: boolean }>;
}

function describe(o: ShapeBenchOptions): string {
  const what = o.shape === 'large-value' ? `one stored value of ${o.valueMib} MiB and one small one` : `${o.documents} JSON documents of ${o.valuesPerDocument} sealed values each`;
  return o.sealAhead === undefined ? what : `${what}, ${o.sealAhead ? 'sealed ahead (--seal-ahead)' : 'in one pass (--no-seal-ahead)'}`;
}

/**
 * How many times the value's own reads and writes without the tool (the
 * simplest client's read, write and commit, plus one read as verification
 * reads it) a large value's full apply may take. The apply does that work
 * and, on top of it, writes the value once more into its backup (made
 * durable), opens and re-seals it, digests it, and starts a process: at most
 * as much again. Both sides grow with the size, so an apply whose cost grew
 * faster than the size (a buffer joined again for every chunk) fails it at
 * any large size. An absolute figure does not carry over between machines:
 * on this one, 2 s for 48 MiB is less than node-pg's own read, write and
 * verification read of the value on PostgreSQL (docs/benchmark.md).
 */
export const LARGE_VALUE_GOAL = 2;

/** The goals of a shape, checked against this build's figures (a large value's also against `floors`, measured in the same run). */
export function shapeGoals(shape: Shape, r: Pick<ShapeResult, 'seconds' | 'peakRssBytes'>, floors?: Floors): ShapeBenchReport['goals'] {
  const rss = { what: 'full apply peak RSS < 256 MB', measured: `${(r.peakRssBytes / MB).toFixed(0)} MB`, met: r.peakRssBytes < 256 * MB };
  if (shape === 'documents') return [rss];
  if (!floors) throw new Error('a large value is measured against its floors: none were measured');
  const own = floors.client + floors.read;
  return [
    {
      what: `full apply within ${LARGE_VALUE_GOAL}x the value's own reads and writes without the tool (simplest client + one read)`,
      measured: `${r.seconds.toFixed(2)} s = ${(r.seconds / own).toFixed(2)}x ${own.toFixed(2)} s`,
      met: r.seconds <= LARGE_VALUE_GOAL * own,
    },
    rss,
  ];
}

export async function benchShape(o: ShapeBenchOptions, progress: (s: string) => void): Promise<ShapeBenchReport> {
  const work = scratchDir('mk-bench-shape-');
  const oldKey = MasterKey.generate();
  let fixture: Fixture | undefined;
  try {
    progress(`seeding ${describe(o)} (${o.store})`);
    fixture = o.store === 'postgres' ? await postgresFixture(o, oldKey, progress) : sqliteFixture(o, oldKey, work);
    const inventory = inventoryOf(o.shape);
    const runs: Record<ShapeResult['build'], Run[]> = { this: [], baseline: [] };
    const floorRuns: Record<keyof Floors, number[]> = { server: [], client: [], read: [] };
    const floors = o.shape === 'large-value' ? await fixture.floors() : undefined;
    for (let i = 0; i < o.reps; i++) {
      // In turn, the order swapped every repetition: a run pays for the writes the run before it left the kernel to flush.
      const order = i % 2 === 0 ? (['baseline', 'this'] as const) : (['this', 'baseline'] as const);
      for (const build of o.baselineCli ? order : (['this'] as const)) {
        await fixture.reset();
        progress(`apply run ${i + 1}/${o.reps}${o.baselineCli ? ` (${build} build)` : ''}`);
        runs[build].push(await applyOnce(work, fixture.url, inventory, oldKey, o.sealAhead, build === 'baseline' ? o.baselineCli : undefined));
      }
      for (const [what, measure] of Object.entries(floors ?? {}) as Array<[keyof Floors, () => Promise<number>]>) {
        await fixture.reset();
        progress(`${what} floor run ${i + 1}/${o.reps}`);
        floorRuns[what].push(await measure());
      }
    }
    const results = (['baseline', 'this'] as const)
      .filter((b) => runs[b].length > 0)
      .map((build): ShapeResult => {
        const mid = medianRun(runs[build])!;
        return {
          build,
          runs: runs[build].map((r) => r.seconds),
          seconds: median(runs[build].map((r) => r.seconds)),
          peakRssBytes: Math.max(...runs[build].map((r) => r.maxRssBytes)),
          cpuSeconds: median(runs[build].map((r) => r.cpuSeconds)),
          ...(runs[build].every((r) => r.mainThreadCpuSeconds !== undefined) ? { mainThreadCpuSeconds: median(runs[build].map((r) => r.mainThreadCpuSeconds!)) } : {}),
          minorFaults: median(runs[build].map((r) => r.minorFaults)),
          ...(mid.phases ? { phases: mid.phases, serverDownMs: mid.serverDownMs } : {}),
        };
      });
    const measured: Floors | undefined = floors ? { server: median(floorRuns.server), client: median(floorRuns.client), read: median(floorRuns.read) } : undefined;
    return {
      shape: o.shape,
      store: o.store === 'sqlite' ? `SQLite (${o.journal})` : 'PostgreSQL',
      what: describe(o),
      reps: o.reps,
      machine: { cpus: cpus().length, load: loadavg().map((x) => x.toFixed(1)).join(' ') },
      results,
      ...(measured ? { floors: measured } : {}),
      goals: shapeGoals(o.shape, results.find((r) => r.build === 'this')!, measured),
    };
  } finally {
    await fixture?.close();
    removeScratch(work);
  }
}

export function formatShapeReport(r: ShapeBenchReport): string {
  const label = (b: ShapeResult['build']) => (b === 'this' ? 'master-key apply (this build)' : 'master-key apply (baseline build)');
  return [
    `Shape benchmark, ${r.store}: ${r.what}; full apply, spawn to exit, median of ${r.reps}; ${r.machine.cpus} cores, load average ${r.machine.load}`,
    '',
    table([
      ['build', 'seconds', 'runs', 'CPU s (user+sys)', 'main thread CPU s', 'page faults', 'peak RSS'],
      ...r.results.map((x) => [
        label(x.build),
        x.seconds.toFixed(2),
        x.runs.map((s) => s.toFixed(2)).join(' '),
        x.cpuSeconds.toFixed(2),
        x.mainThreadCpuSeconds?.toFixed(2) ?? '-',
        String(x.minorFaults),
        `${(x.peakRssBytes / MB).toFixed(0)} MB`,
      ]),
    ]),
    '',
    ...r.results.flatMap((x) => applyPhases(x, label(x.build))),
    ...(r.floors
      ? [
          `The value without the tool, same data, in turn with the applies (medians; timed from the first statement to the commit, no process start):`,
          `  the database rewriting it by itself (value || ''):                      ${r.floors.server.toFixed(2)} s`,
          `  the simplest client: read it, write a new text of its length, commit:   ${r.floors.client.toFixed(2)} s`,
          `  one read of it as verification reads it:                                ${r.floors.read.toFixed(2)} s`,
          '',
        ]
      : []),
    'Goals:',
    ...r.goals.map((g) => `  ${g.met ? 'met' : 'MISSED'}: ${g.what} (measured ${g.measured})`),
    '',
  ].join('\n');
}

export function parseShapeArgs(argv: readonly string[]): ShapeBenchOptions {
  let shape: Shape | undefined;
  let store: ShapeBenchOptions['store'] = 'postgres';
  let journal: ShapeBenchOptions['journal'] = 'wal';
  let valueMib = 48;
  let documents = 4;
  let valuesPerDocument = 50_000;
  let reps = 1;
  let json = false;
  let baselineCli: string | undefined;
  let sealAhead: boolean | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const n = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer, got ${argv[i] ?? 'nothing'}`);
      return v;
    };
    if (a === '--shape') {
      const s = argv[++i];
      if (!(SHAPES as readonly string[]).includes(s)) throw new Error(`--shape must be one of ${SHAPES.join(', ')}, got ${s ?? 'nothing'}`);
      shape = s as Shape;
    } else if (a === '--store') {
      const s = argv[++i];
      if (s !== 'postgres' && s !== 'sqlite') throw new Error(`--store must be postgres or sqlite, got ${s ?? 'nothing'}`);
      store = s;
    } else if (a === '--journal') {
      const j = argv[++i];
      if (j !== 'wal' && j !== 'delete') throw new Error(`--journal must be wal or delete, got ${j ?? 'nothing'}`);
      journal = j;
    } else if (a === '--value-mib') valueMib = n();
    else if (a === '--documents') documents = n();
    else if (a === '--values-per-document') valuesPerDocument = n();
    else if (a === '--reps') reps = n();
    else if (a === '--json') json = true;
    else if (a === '--seal-ahead') sealAhead = true;
    else if (a === '--no-seal-ahead') sealAhead = false;
    else if (a === '--baseline-cli') {
      baselineCli = argv[++i];
      if (!baselineCli) throw new Error("--baseline-cli needs the path of another build's dist/src/cli/main.js");
    } else {
      throw new Error(`unknown option ${a}`);
    }
  }
  if (!shape) throw new Error(`--shape needs one of ${SHAPES.join(', ')}`);
  return { shape, store, journal, valueMib, documents, valuesPerDocument, reps, json, ...(sealAhead === undefined ? {} : { sealAhead }), ...(baselineCli ? { baselineCli: resolve(baselineCli) } : {}) };
}

/** `bench --shape ...`: prints the table (or JSON); exit code 1 when a goal is missed. */
export async function mainShape(argv: readonly string[]): Promise<void> {
  const o = parseShapeArgs(argv);
  if (!existsSync(cliPath())) throw new Error('the CLI is not built: run npm run build');
  const progress = o.json ? () => undefined : (s: string) => process.stderr.write(`bench: ${s}\n`);
  const report = await benchShape(o, progress);
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatShapeReport(report));
  if (report.goals.some((g) => !g.met)) process.exitCode = 1;
}
