/**
 * `npm run bench -- [--rows N] [--reps 3] [--json] [--naive-rows N] [--methods floor,pgcrypto,naive,crypto,ours,apply] [--crypto native|node|workers] [--baseline-cli PATH]`
 * (`--store sqlite`: the same on a SQLite file, see bench-sqlite.ts)
 *
 * Measures, in one run on one PostgreSQL server, how fast every secret of a
 * table can be re-encrypted: PostgreSQL rewriting every row by itself (the
 * floor), seal-ahead's database work alone (floor-staged: stage, then swap), an in-database pgcrypto rewrap, a naive row-by-row script, the
 * crypto alone (every value opened and re-sealed in memory by the
 * production crypto module), ours (`reencryptInventory`) and, when the CLI
 * is built, the full
 * `master-key apply`. Every measurement starts from the same pristine table,
 * runs in one transaction, and is repeated round by round (every method
 * once a round: the floor and the applies see the same machine); the median
 * counts. Client-side
 * methods run in child processes so their peak RSS is their own.
 * `--baseline-cli` names another build's `dist/src/cli/main.js`: the full
 * apply then runs that build and this one in turn (baseline, this,
 * baseline, this, ...), an A/B under the same load, reported as
 * `apply-baseline` and `apply`.
 *
 * Starts its own embedded PostgreSQL unless DATABASE_URL is set (then it
 * creates its tables in that database).
 */
import { spawn } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import type { CryptoMode } from '../src/engine/value-crypto';
import { MasterKey } from '../src/crypto/key';
import { EmbeddedServer, removeEmbeddedData, startEmbeddedPostgres } from '../src/db/embedded';
import { BENCH_TABLE, restoreBench, seedBench, verifyBench } from './bench-data';
import type { ChildJob, ChildResult } from './bench-child';
import { WRITER_SHARE, applyFlags, benchRecipient, measureApply } from './bench-apply';
import { BenchReport, MethodResult, applyWindows, formatReport, median, medianRun, summarise } from './bench-report';
import { mainShape, parseShapeArgs } from './bench-shapes';
import { mainSqlite, parseSqliteArgs } from './bench-sqlite';
import { parseOrExit } from './usage';

export const METHODS = ['floor', 'floor-staged', 'pgcrypto', 'naive', 'crypto', 'ours', 'apply', 'apply-one-pass'] as const;
const CRYPTO_MODES: readonly CryptoMode[] = ['native', 'node', 'workers'];
export type Method = (typeof METHODS)[number];

/** Command-line options. */
export interface BenchOptions {
  readonly rows: number;
  readonly reps: number;
  readonly json: boolean;
  /** Rows the naive script runs on (default: all; it is slow). */
  readonly naiveRows?: number;
  readonly methods: readonly Method[];
  readonly batchSize?: number;
  readonly useReader: boolean;
  /** Where crypto and ours run the AES-GCM work (default: what production uses). */
  readonly crypto?: CryptoMode;
  /** Another build's CLI entry point, whose full apply runs in turn with this build's (A/B in one run). */
  readonly baselineCli?: string;
  /** Also run every apply with its backup sealed to one age recipient, in turn with the plain one (`apply-sealed`). */
  readonly sealed?: boolean;
}

/** Server settings of the embedded server: large WAL so checkpoints do not land inside measurements. */
const SERVER_SETTINGS = { max_wal_size: '8GB', checkpoint_timeout: '30min' };
/** Above this many rows the naive script runs once, not `reps` times (it takes minutes). */
const NAIVE_SINGLE_RUN_ABOVE = 200_000;

function positiveInt(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} needs a positive integer, got ${v ?? 'nothing'}`);
  return n;
}

export function parseArgs(argv: readonly string[]): BenchOptions {
  let rows = 100_000;
  let reps = 3;
  let json = false;
  let naiveRows: number | undefined;
  let methods: Method[] = [...METHODS];
  let batchSize: number | undefined;
  let useReader = true;
  let crypto: CryptoMode | undefined;
  let baselineCli: string | undefined;
  let sealed = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rows') rows = positiveInt(a, argv[++i]);
    else if (a === '--sealed') sealed = true;
    else if (a === '--reps') reps = positiveInt(a, argv[++i]);
    else if (a === '--json') json = true;
    else if (a === '--naive-rows') naiveRows = positiveInt(a, argv[++i]);
    else if (a === '--batch-size') batchSize = positiveInt(a, argv[++i]);
    else if (a === '--no-reader') useReader = false;
    else if (a === '--baseline-cli') {
      baselineCli = argv[++i];
      if (!baselineCli) throw new Error('--baseline-cli needs the path of another build\'s dist/src/cli/main.js');
    }
    else if (a === '--crypto') {
      const m = argv[++i] as CryptoMode;
      if (!CRYPTO_MODES.includes(m)) throw new Error(`--crypto needs one of ${CRYPTO_MODES.join(', ')}, got ${m ?? 'nothing'}`);
      crypto = m;
    }
    else if (a === '--methods') {
      methods = (argv[++i] ?? '').split(',').map((m) => {
        if (!(METHODS as readonly string[]).includes(m)) throw new Error(`unknown method "${m}"; use ${METHODS.join(', ')}`);
        return m as Method;
      });
    } else throw new Error(`unknown option ${a}`);
  }
  return { rows, reps, json, naiveRows: naiveRows !== undefined ? Math.min(naiveRows, rows) : undefined, methods, batchSize, useReader, ...(crypto ? { crypto } : {}), ...(baselineCli ? { baselineCli: resolve(baselineCli) } : {}), ...(sealed ? { sealed } : {}) };
}

/** Runs one client-side job in a child process and returns what it printed. */
export function runChild(job: ChildJob): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, 'bench-child.js')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`the ${job.method} run exited with code ${code}`));
      else resolve(JSON.parse(out) as ChildResult);
    });
    child.stdin.end(JSON.stringify(job));
  });
}

async function timeSql(c: Client, sql: string, params: unknown[] = []): Promise<{ seconds: number; rows: number }> {
  const t0 = process.hrtime.bigint();
  await c.query('BEGIN');
  const r = await c.query(sql, params);
  await c.query('COMMIT');
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, rows: r.rowCount ?? 0 };
}

const FLOOR_SQL = `UPDATE ${BENCH_TABLE} SET value = value || ''`;
const STAGE_TABLE = 'bench_stage_floor';

/**
 * Seal-ahead's own database work with no crypto and no client (the floor of
 * that design): with the server up, every row copied into an UNLOGGED table
 * with its version (`xmin`), a flag that it held a value and a new text of
 * the same length (`value || ''`), with a unique index on the id, as
 * seal-ahead stages them; then, in one transaction, the swap from it, as
 * the cut-over makes it (a row swapped only while it is still the version
 * staged).
 */
async function timeStagedFloor(c: Client): Promise<Run & { stageSeconds: number; swapSeconds: number }> {
  await c.query(`DROP TABLE IF EXISTS ${STAGE_TABLE}`);
  try {
    const t0 = process.hrtime.bigint();
    await c.query(`CREATE UNLOGGED TABLE ${STAGE_TABLE} AS SELECT id, xmin AS ver, true AS h0, value || '' AS n0 FROM ${BENCH_TABLE}`);
    await c.query(`CREATE UNIQUE INDEX ON ${STAGE_TABLE} (id)`);
    await c.query(`ANALYZE ${STAGE_TABLE}`);
    const stageSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const swap = await timeSql(
      c,
      `UPDATE ${BENCH_TABLE} t SET value = s.n0 FROM ${STAGE_TABLE} s WHERE t.id = s.id AND t.xmin = s.ver`,
    );
    return { seconds: stageSeconds + swap.seconds, rows: swap.rows, stageSeconds, swapSeconds: swap.seconds };
  } finally {
    await c.query(`DROP TABLE IF EXISTS ${STAGE_TABLE}`);
  }
}

/** Decrypts each AES-CBC value with the old key and encrypts it with the new one (IV kept: the key changes). */
const PGCRYPTO_SQL = `UPDATE ${BENCH_TABLE} SET value = encode(
  substr(decode(value, 'base64'), 1, 16) ||
  encrypt_iv(decrypt_iv(substr(decode(value, 'base64'), 17), $1::bytea, substr(decode(value, 'base64'), 1, 16), 'aes-cbc'),
             $2::bytea, substr(decode(value, 'base64'), 1, 16), 'aes-cbc'), 'base64')`;

interface Run {
  seconds: number;
  rows: number;
  maxRssBytes?: number;
  crypto?: CryptoMode;
  phases?: Readonly<Record<string, number>>;
  serverDownMs?: number;
  serverUpSealAheadMs?: number;
}

/** One method's result from its runs (the full apply's phases: those of its median run). */
function methodResult(method: string, runs: readonly Run[], rows: number, note: string | undefined): MethodResult {
  const mid = medianRun(runs);
  return {
    method,
    rows: runs[0]?.rows ?? rows,
    runs: runs.map((r) => r.seconds),
    seconds: runs.length ? median(runs.map((r) => r.seconds)) : undefined,
    ...(mid?.phases ? applyWindows(runs, mid.phases) : {}),
    peakRssBytes: runs.some((r) => r.maxRssBytes !== undefined) ? Math.max(...runs.map((r) => r.maxRssBytes ?? 0)) : undefined,
    ...(note ? { note } : {}),
  };
}

async function measure(o: BenchOptions, url: string, c: Client, progress: (s: string) => void): Promise<BenchReport> {
  const oldKey = MasterKey.generate();
  const newKey = MasterKey.generate();
  progress(`seeding ${o.rows} secrets`);
  const tSeed = process.hrtime.bigint();
  await seedBench(c, o.rows, oldKey);
  const seedSeconds = Number(process.hrtime.bigint() - tSeed) / 1e9;
  const results: MethodResult[] = [];
  let verification: BenchReport['verification'];
  const keyBytes = [Buffer.from(oldKey.bytes()), Buffer.from(newKey.bytes())];
  const childJob = (method: ChildJob['method']): ChildJob => ({
    method,
    url,
    oldKey: oldKey.toHex(),
    newKey: newKey.toHex(),
    ...(o.batchSize ? { batchSize: o.batchSize } : {}),
    useReader: o.useReader,
    ...(o.crypto ? { crypto: o.crypto } : {}),
  });

  const recipients = o.sealed ? [await benchRecipient()] : undefined;
  /** What one method measured, run after run. */
  interface Measuring {
    readonly runs: Run[];
    readonly baseline: Run[];
    readonly sealed: Run[];
    readonly staged: Array<{ stageSeconds: number; swapSeconds: number }>;
    note?: string;
    reps: number;
    limit?: number;
    /** The CLI is not built: no more runs. */
    done?: boolean;
  }
  const measuring = new Map<Method, Measuring>();
  for (const method of o.methods) {
    const m: Measuring = { runs: [], baseline: [], sealed: [], staged: [], reps: o.reps };
    if (method === 'naive') {
      m.limit = o.naiveRows;
      if ((m.limit ?? o.rows) > NAIVE_SINGLE_RUN_ABOVE && m.reps > 1) {
        m.reps = 1;
        m.note = 'one run (it takes minutes)';
      }
      if (m.limit !== undefined && m.limit < o.rows) m.note = `measured on ${m.limit} rows, not ${o.rows}${m.note ? `; ${m.note}` : ''}`;
    }
    if (method === 'crypto') m.note = 'every value held in memory first (its RSS includes them), then opened and re-sealed, nothing written';
    measuring.set(method, m);
  }
  // Round by round, every method once a round: the floor and the applies see the same machine (a floor timed in a quiet minute
  // and an apply in a loaded one would make their ratio the machine's, not the tool's).
  for (let i = 0; i < o.reps; i++) {
    for (const method of o.methods) {
      const m = measuring.get(method)!;
      if (i >= m.reps || m.done) continue;
      const { runs, baseline, sealed, staged } = m;
      const reps = m.reps;
      if (method === 'apply' || method === 'apply-one-pass') {
        if (o.baselineCli && method === 'apply') {
          await restoreBench(c, 'gcm');
          progress(`${method} run ${i + 1}/${reps} of the baseline build`);
          const b = await measureApply({ url, client: c, oldKey, rows: o.rows, cli: o.baselineCli });
          if (!b) throw new Error(`--baseline-cli: ${o.baselineCli} does not exist`);
          baseline.push(b);
        }
        await restoreBench(c, 'gcm');
        progress(`${method} run ${i + 1}/${reps}`);
        const r = await measureApply({ url, client: c, oldKey, rows: o.rows }, applyFlags(method));
        if (!r) {
          m.note = 'not measured: the CLI is not built (dist/src/cli/main.js)';
          m.done = true;
          continue;
        }
        m.note = `spawn to exit, with backup, verification and report; its stop hook is a writer changing ${WRITER_SHARE * 100} % of the rows after seal-ahead (the server's last writes), whose time is not counted`;
        runs.push(r);
        if (recipients && method === 'apply') {
          await restoreBench(c, 'gcm');
          progress(`${method} run ${i + 1}/${reps} with the backup sealed to one age recipient`);
          sealed.push((await measureApply({ url, client: c, oldKey, rows: o.rows, recipients }, applyFlags(method)))!);
        }
        continue;
      }
      const rows = await restoreBench(c, method === 'pgcrypto' ? 'cbc' : 'gcm', m.limit);
      progress(`${method} run ${i + 1}/${reps} on ${rows} rows`);
      if (method === 'floor') runs.push(await timeSql(c, FLOOR_SQL));
      else if (method === 'floor-staged') {
        const r = await timeStagedFloor(c);
        staged.push(r);
        runs.push(r);
      }
      else if (method === 'pgcrypto') runs.push(await timeSql(c, PGCRYPTO_SQL, keyBytes));
      else runs.push(await runChild(childJob(method)));
      if (method === 'ours' && i === reps - 1) {
        progress('verifying that every row opens with the new key only and equals its plaintext');
        verification = await verifyBench(c, newKey);
      }
    }
  }
  for (const method of o.methods) {
    const { runs, baseline, sealed, staged, limit, note: measuredNote } = measuring.get(method)!;
    let note = measuredNote;
    if (staged.length) {
      const stage = median(staged.map((r) => r.stageSeconds));
      const swap = median(staged.map((r) => r.swapSeconds));
      note = `seal-ahead's database work alone, no crypto, no client: staging every row into an UNLOGGED table with the server up (median ${stage.toFixed(2)} s), then the swap from it in one transaction (median ${swap.toFixed(2)} s)`;
    }
    const engine = runs.find((r) => r.crypto)?.crypto;
    if (engine) note = `${note ? `${note}; ` : ''}AES-GCM engine: ${engine}`;
    if (baseline.length) results.push(methodResult('apply-baseline', baseline, o.rows, `${note}; the build at ${o.baselineCli}, run in turn with this one`));
    results.push({ ...methodResult(method, runs, limit ?? o.rows, note), ...(staged.length ? { swapSeconds: median(staged.map((r) => r.swapSeconds)) } : {}) });
    if (sealed.length) results.push(methodResult('apply-sealed', sealed, o.rows, `${note}; the backup sealed to one X25519 recipient (age), run in turn with the apply above`));
  }
  const ver = await c.query<{ server_version: string }>('SHOW server_version');
  return summarise({
    rows: o.rows,
    reps: o.reps,
    seedSeconds,
    versions: { node: process.version, postgres: ver.rows[0].server_version },
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), platform: `${process.platform}-${process.arch}` },
    server: process.env.DATABASE_URL ? 'DATABASE_URL' : `embedded PostgreSQL (${Object.entries(SERVER_SETTINGS).map(([k, v]) => `${k}=${v}`).join(', ')})`,
    results,
    verification,
  });
}

export const BENCH_USAGE = `npm run bench -- [options]

Measures, in one run on one database, how fast every secret of a table is
re-encrypted: the database rewriting every row by itself (the floor), the
crypto alone, ours, the full \`master-key apply\`, and baselines; prints
the medians and their ratios (see docs/benchmark.md).

Options:
  --store postgres|sqlite   the database (default postgres: an embedded PostgreSQL, or DATABASE_URL's)
  --rows <n>                secrets in the table (default 100000)
  --reps <n>                repetitions per method; the median counts (default 3)
  --methods <list>          PostgreSQL: ${METHODS.join(',')}; SQLite: floor,rewrite,crypto,naive,ours,apply
                            and apply-ssh (the node over SSH to a real sshd on loopback, in turn with apply; needs root)
  --crypto native|node|workers   the AES-GCM implementation of ours (default: the addon, in worker threads when it pays)
  --batch-size <n>          rows per batch of ours
  --naive-rows <n>          rows for the naive row-by-row script (it is slow)
  --no-reader               PostgreSQL: no separate reader connection
  --journal wal|delete      SQLite: the journal mode (default wal)
  --baseline-cli <path>     another build's dist/src/cli/main.js: its full apply runs in turn with this one's (A/B)
  --sealed                  also run each full apply with its backup sealed to one age recipient, in turn with
                            the plain one (apply-sealed; goal: at most 1.10x the apply)
  --shape large-value|documents   instead of a table of small secrets: a full apply on one large stored
                            value (--value-mib N) or on JSON documents of many values (--documents N,
                            --values-per-document N), seconds and peak RSS against their goals; large-value
                            also times the value without the tool (database alone, simplest client, one read);
                            --seal-ahead or --no-seal-ahead passed to the shape's applies (by default apply chooses)
  --json                    print the report as JSON
  --help                    this text
`;

/** The store the command line names (checked before anything starts). */
function parseStore(argv: readonly string[]): 'postgres' | 'sqlite' {
  if (!argv.includes('--store')) return 'postgres';
  const store = argv[argv.indexOf('--store') + 1];
  if (store !== 'postgres' && store !== 'sqlite') throw new Error(`--store must be postgres or sqlite, got ${store ?? 'nothing'}`);
  return store;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--shape')) {
    parseOrExit('bench', BENCH_USAGE, argv, parseShapeArgs);
    return mainShape(argv);
  }
  if (parseOrExit('bench', BENCH_USAGE, argv, parseStore) === 'sqlite') {
    parseOrExit('bench', BENCH_USAGE, argv, parseSqliteArgs);
    return mainSqlite(argv);
  }
  const o = parseOrExit('bench', BENCH_USAGE, argv.filter((a, i) => a !== '--store' && argv[i - 1] !== '--store'), parseArgs);
  const progress = o.json ? () => undefined : (s: string) => process.stderr.write(`bench: ${s}\n`);
  let server: EmbeddedServer | undefined;
  let url = process.env.DATABASE_URL;
  if (!url) {
    progress('starting an embedded PostgreSQL');
    server = await startEmbeddedPostgres({ settings: SERVER_SETTINGS });
    url = await server.createDatabase('bench');
  }
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    const report = await measure(o, url, c, progress);
    process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    if (report.verification && report.verification.failures > 0) process.exitCode = 1;
  } finally {
    await c.end();
    if (server) {
      await server.stop();
      removeEmbeddedData(server);
    }
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
