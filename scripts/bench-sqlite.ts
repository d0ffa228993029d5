/**
 * `npm run bench -- --store sqlite [--rows N] [--reps 3] [--journal wal|delete] [--crypto native|node|workers] [--methods ...] [--baseline-cli PATH] [--json]`
 *
 * The benchmark on a SQLite file, in one run: SQLite's own floor (every row
 * rewritten by `UPDATE t SET value = value || ''` in one transaction),
 * crypto alone (every value opened and re-sealed in memory by the crypto
 * the SQLite store uses), a naive row-by-row script, ours (the store's
 * re-encryption in one write transaction) and the full `master-key apply`.
 * SQLite rewrites in-process, so the yardstick is floor + crypto: ours
 * should need no more (reading and batching overlapped), the full apply at
 * most 1.6x that. Every method starts from a fresh copy of the same seeded
 * file; client methods (crypto alone included) run in child processes so
 * their peak RSS, and their heap, are their own (in the benchmark's process
 * crypto alone took twice as long after seeding, from garbage collection).
 * `--baseline-cli` names another build's `dist/src/cli/main.js`: the full
 * apply then runs that build and this one in turn, each on a fresh copy (an
 * A/B under the same load), reported as `apply-baseline` and `apply`.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { CryptoMode, defaultCryptoMode, valueCrypto } from '../src/engine/value-crypto';
import { actCodec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { reencryptAlone } from '../src/store/sqlite/store';
import { Db, sqliteModule } from '../src/store/sqlite/driver';
import { BENCH_INVENTORY, BENCH_TABLE, plaintext } from './bench-data';
import { applyPhases, applyWindows, median, medianRun, sealedGoal, table } from './bench-report';
import { WRITER_SHARE, applyFlags, applyTimings, benchRecipient, cliPath, recipientArgs, runCliMeasured, writerHook } from './bench-apply';
import { SshdFleet, sshdMissing, startFleet, stopFleet } from './sshd-hosts';

export const SQLITE_METHODS = ['floor', 'rewrite', 'crypto', 'naive', 'ours', 'apply', 'apply-one-pass', 'apply-ssh'] as const;
/** What runs without --methods: apply-ssh needs sshd and root, so it runs only when asked for. */
const DEFAULT_METHODS = SQLITE_METHODS.filter((m) => m !== 'apply-ssh');
type Method = (typeof SQLITE_METHODS)[number];
/** A row of the report: a method, or the baseline build's full apply. */
type Measured = Method | 'apply-baseline' | 'apply-baseline-sealed' | 'apply-sealed';

export interface SqliteBenchOptions {
  readonly rows: number;
  readonly reps: number;
  readonly journal: 'wal' | 'delete';
  readonly json: boolean;
  readonly methods: readonly Method[];
  /** Where the AES-GCM work runs (crypto alone, ours and apply). @default the production default */
  readonly crypto?: CryptoMode;
  /** Above this many rows the naive script runs once. */
  readonly naiveSingleRunAbove?: number;
  /** Another build's CLI entry point, whose full apply runs in turn with this build's (A/B in one run). */
  readonly baselineCli?: string;
  /** Also run every apply with its backup sealed to one age recipient, in turn with the plain one (`apply-sealed`). */
  readonly sealed?: boolean;
}

const SEED_CHUNK = 10_000;
const CRYPTO_BATCH = 2000;

function open(path: string): Db {
  const Database = sqliteModule();
  return new Database(path, { fileMustExist: true });
}

/** The pristine file (`bench_secrets` sealed under `oldKey`) and the plaintexts (another file, for verification). */
function seed(dir: string, rows: number, oldKey: MasterKey, journal: 'wal' | 'delete'): { pristine: string; plain: string } {
  const Database = sqliteModule();
  const pristine = join(dir, 'pristine.db');
  const plain = join(dir, 'plain.db');
  const db = new Database(pristine);
  const pdb = new Database(plain);
  db.pragma(`journal_mode = ${journal}`);
  db.exec(`CREATE TABLE ${BENCH_TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, value TEXT NOT NULL)`);
  pdb.exec('CREATE TABLE bench_plain (id INTEGER PRIMARY KEY, plaintext TEXT NOT NULL)');
  const codec = actCodec();
  const ins = db.prepare(`INSERT INTO ${BENCH_TABLE} (id, name, value) VALUES (?, ?, ?)`);
  const pins = pdb.prepare('INSERT INTO bench_plain (id, plaintext) VALUES (?, ?)');
  for (let start = 1; start <= rows; start += SEED_CHUNK) {
    db.exec('BEGIN');
    pdb.exec('BEGIN');
    for (let id = start; id < start + SEED_CHUNK && id <= rows; id++) {
      const pt = plaintext();
      ins.run(id, `secret-${id}`, codec.seal(oldKey, Buffer.from(pt, 'utf8')));
      pins.run(id, pt);
    }
    db.exec('COMMIT');
    pdb.exec('COMMIT');
  }
  // Checkpointed and closed: the file alone is the database, ready to copy.
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  pdb.close();
  return { pristine, plain };
}

/** A fresh copy of the pristine file at `dir/act.db`. */
function fresh(dir: string, pristine: string): string {
  const path = join(dir, 'act.db');
  for (const f of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) rmSync(f, { force: true });
  copyFileSync(pristine, path);
  return path;
}

interface Run {
  readonly seconds: number;
  readonly rows: number;
  readonly maxRssBytes?: number;
  /** The full apply: its report's phase timings and server-down window, and seal-ahead's window with the server up. */
  readonly phases?: Readonly<Record<string, number>>;
  readonly serverDownMs?: number;
  readonly serverUpSealAheadMs?: number;
}

/**
 * SQLite alone, in one transaction: the floor rewrites every value with
 * itself, which SQLite compares and leaves (it writes a page only when its
 * bytes change), so it costs reading the table; the rewrite changes every
 * value (`lower`), so every page is written, journaled and committed, as
 * any re-encryption must: what SQLite itself needs at the least.
 */
function sqliteAlone(path: string, set: string): Run {
  const db = open(path);
  try {
    db.pragma('synchronous = FULL');
    const t0 = process.hrtime.bigint();
    db.exec('BEGIN IMMEDIATE');
    const r = db.prepare(`UPDATE ${BENCH_TABLE} SET value = ${set}`).run();
    db.exec('COMMIT');
    db.close();
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, rows: r.changes };
  } finally {
    if (db.open) db.close();
  }
}

/** Every value opened and re-sealed in memory, in batches (the values are read first, untimed). */
async function cryptoAlone(path: string, oldKey: MasterKey, newKey: MasterKey, mode?: CryptoMode): Promise<Run> {
  const db = open(path);
  const values = db.prepare(`SELECT value FROM ${BENCH_TABLE}`).pluck().all() as string[];
  db.close();
  const crypto = valueCrypto({ from: new Keyring([oldKey]), to: newKey }, mode ? { crypto: mode } : {});
  const t0 = process.hrtime.bigint();
  try {
    // Several batches in flight when workers do the work.
    const ahead = crypto.depth;
    const starts = Array.from({ length: Math.ceil(values.length / CRYPTO_BATCH) }, (_, k) => k * CRYPTO_BATCH);
    for (let k = 0; k < starts.length; k += ahead) {
      const outs = await Promise.all(starts.slice(k, k + ahead).map((i) => crypto.process('act', values.slice(i, i + CRYPTO_BATCH))));
      if (outs.some((out) => out.some((r) => r.next === undefined))) throw new Error('crypto alone: a value did not open');
    }
  } finally {
    await crypto.close();
  }
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, rows: values.length };
}

/** A child job: the keys travel on stdin, never in argv. */
interface ChildJob {
  readonly method: 'crypto' | 'naive' | 'ours';
  readonly path: string;
  readonly oldKey: string;
  readonly newKey: string;
  readonly crypto?: CryptoMode;
}

/** What a quick script does: every row into memory, then open, seal and UPDATE one row at a time, in one transaction. */
function naive(path: string, from: MasterKey, to: MasterKey): number {
  const db = open(path);
  try {
    const codec = actCodec();
    const ring = new Keyring([from]);
    db.exec('BEGIN IMMEDIATE');
    const all = db.prepare(`SELECT id, value FROM ${BENCH_TABLE}`).all() as Array<{ id: number; value: string }>;
    const upd = db.prepare(`UPDATE ${BENCH_TABLE} SET value = ? WHERE id = ?`);
    for (const row of all) upd.run(codec.seal(to, codec.open(ring, row.value).plaintext), row.id);
    db.exec('COMMIT');
    return all.length;
  } finally {
    db.close();
  }
}

async function child(job: ChildJob): Promise<Run> {
  const from = parseKey(job.oldKey);
  const to = parseKey(job.newKey);
  // Its peak RSS holds every value at once: not a figure of a method that streams.
  if (job.method === 'crypto') return { ...(await cryptoAlone(job.path, from, to, job.crypto)), maxRssBytes: undefined };
  const t0 = process.hrtime.bigint();
  let rows: number;
  if (job.method === 'naive') rows = naive(job.path, from, to);
  else {
    rows = (await reencryptAlone(`sqlite:${job.path}`, { inventory: BENCH_INVENTORY, from: new Keyring([from]), to, ...(job.crypto ? { crypto: job.crypto } : {}) })).updated;
  }
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, rows, maxRssBytes: process.resourceUsage().maxRSS * 1024 };
}

function runChild(job: ChildJob): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [__filename, '--child'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as Run) : reject(new Error(`the ${job.method} run exited with code ${code}`))));
    c.stdin.end(JSON.stringify(job));
  });
}

/** How apply-ssh reaches the "host": a real sshd on loopback, whose master-key is this build's. */
interface SshTarget {
  readonly port: number;
  readonly options: readonly string[];
}

/**
 * The full CLI (this build's, or `cli`): `init` on the fresh copy, then
 * `apply` (spawn to exit, with backup, verification and report). With `ssh`,
 * apply runs on the runner with the node at
 * `ssh://root@127.0.0.1:<port>/…/act.env`: the same files, reached over SSH,
 * the rotation run by the host's master-key as a job, the report copied back.
 * Its stop hook is the writer (`writerHook`): the server's last writes.
 */
async function apply(dir: string, path: string, oldKey: MasterKey, rows: number, how: { cli?: string; ssh?: SshTarget; flags?: readonly string[]; recipients?: readonly string[] } = {}): Promise<Run> {
  const { cli, ssh, flags = [], recipients } = how;
  const work = mkdtempSync(join(dir, 'apply-'));
  chmodSync(work, 0o700);
  try {
    const config = join(work, 'act.env');
    writeFileSync(config, `ACT_MASTER_KEY=${oldKey.toHex()}\nACT_DATABASE_URL=sqlite:${path}\n`, { mode: 0o600 });
    const inventory = join(work, 'inventory.json');
    writeFileSync(inventory, JSON.stringify(BENCH_INVENTORY));
    const common = ['--config', config, '--inventory', inventory, '--database-url-entry', 'ACT_DATABASE_URL'];
    const env = cli ? { ...process.env, MK_BENCH_CLI: cli } : process.env;
    const init = await runCliMeasured(['init', ...common], env);
    if (init.code !== 0) throw new Error(`master-key init failed (exit ${init.code}): ${init.stderr.trim()}`);
    const node = ssh ? ['--config', `ssh://root@127.0.0.1:${ssh.port}${config}`, ...ssh.options, '--local-report-dir', join(work, 'copies')] : ['--config', config];
    const stop = ['--stop-command', writerHook(work)];
    const r = await runCliMeasured(['apply', ...node, ...common.slice(2), ...stop, ...flags, '--backup-dir', join(work, 'backups'), '--report-dir', join(work, 'reports'), ...recipientArgs(recipients)], env);
    if (r.code !== 0) throw new Error(`master-key apply failed (exit ${r.code}): ${r.stderr.trim()}`);
    const t = applyTimings(join(work, 'reports'), true);
    // The writer is the server's doing, not the tool's: its time is not counted.
    return { seconds: r.seconds - (t.writerMs ?? 0) / 1000, rows, maxRssBytes: r.maxRssBytes, ...t };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Rows of `act.db` that open with `newKey` alone and equal their plaintext. */
function verify(path: string, plain: string, newKey: MasterKey): { rows: number; ok: number; failures: number } {
  const db = open(path);
  try {
    db.prepare('ATTACH DATABASE ? AS p').run(plain);
    const ring = new Keyring([newKey]);
    const codec = actCodec();
    let rows = 0;
    let ok = 0;
    for (const r of db.prepare(`SELECT s.value AS v, p.plaintext AS pt FROM ${BENCH_TABLE} s LEFT JOIN p.bench_plain p USING (id)`).iterate() as IterableIterator<{ v: string; pt: string | null }>) {
      rows++;
      try {
        if (r.pt !== null && ring.openText(codec, r.v) === r.pt) ok++;
      } catch {
        // a failure
      }
    }
    return { rows, ok, failures: rows - ok };
  } finally {
    db.close();
  }
}

const LABELS: Record<Measured, string> = {
  floor: "SQLite floor (SET value = value || '')",
  rewrite: 'SQLite rewrite (SET value = lower(value))',
  crypto: 'crypto alone (open + re-seal in memory)',
  naive: 'naive script (row-by-row UPDATE)',
  ours: 'ours: store re-encryption (one transaction)',
  apply: 'ours: master-key apply (full CLI, --seal-ahead)',
  'apply-one-pass': 'ours: master-key apply --no-seal-ahead (one pass)',
  'apply-ssh': 'ours: master-key apply, the node over SSH',
  'apply-baseline': 'baseline build: master-key apply (full CLI)',
  'apply-baseline-sealed': 'baseline build: master-key apply, backup sealed to one age recipient',
  'apply-sealed': 'ours: master-key apply, backup sealed to one age recipient',
};

const NOTES: Partial<Record<Measured, string>> = {
  floor: 'SQLite leaves a value rewritten with itself as it is (it writes a page only when its bytes change): this reads the table, and writes nothing',
  rewrite: 'every value changed: every page written, journaled and committed (with the WAL checkpoint), as any re-encryption must',
  apply: `spawn to exit: init not counted; preflight, seal-ahead, backup of the whole file, re-encryption, config, verification, report; its stop hook is a writer changing ${WRITER_SHARE * 100} % of the rows after seal-ahead (the server's last writes), whose time is not counted`,
  'apply-one-pass': `the same with --no-seal-ahead, the same writer as its stop hook`,
  'apply-ssh': 'the same apply with the node at ssh://root@127.0.0.1 (a real sshd, this build as the host\'s master-key), run in turn with apply; peak RSS is the runner\'s',
};

export interface SqliteBenchResult {
  readonly method: Measured;
  readonly rows: number;
  readonly runs: readonly number[];
  readonly seconds?: number;
  readonly rowsPerSecond?: number;
  /** Time relative to floor + crypto alone (the yardstick). */
  readonly vsFloorPlusCrypto?: number;
  readonly vsFloor?: number;
  /** Time relative to the rewrite + crypto alone (what SQLite must write, plus the crypto). */
  readonly vsRewritePlusCrypto?: number;
  readonly peakRssBytes?: number;
  readonly note?: string;
  /** The full apply's median run: phase timings and server-down window (from its report). */
  readonly phases?: Readonly<Record<string, number>>;
  readonly serverDownMs?: number;
  readonly serverUpSealAheadMs?: number;
  /** The server-down window relative to SQLite's rewrite. */
  readonly serverDownVsYardstick?: number;
  /** Time relative to SQLite's rewrite alone. */
  readonly vsRewrite?: number;
}

export interface SqliteBenchReport {
  readonly rows: number;
  readonly reps: number;
  readonly journal: string;
  /** Where the AES-GCM work ran. */
  readonly crypto: string;
  readonly seedSeconds: number;
  readonly versions: { readonly node: string; readonly sqlite: string };
  readonly machine: { readonly cpus: number; readonly cpuModel: string; readonly memoryBytes: number; readonly load: string };
  readonly results: readonly SqliteBenchResult[];
  readonly verification?: { readonly rows: number; readonly ok: number; readonly failures: number };
  readonly goals: ReadonlyArray<{ readonly what: string; readonly measured?: string; readonly met?: boolean }>;
}

const MB = 1024 * 1024;

/** Rates, ratios and the goals (pure). */
export function summariseSqlite(r: Omit<SqliteBenchReport, 'goals'>): SqliteBenchReport {
  const secs = (m: Measured) => r.results.find((x) => x.method === m)?.seconds;
  const floorS = secs('floor');
  const cryptoS = secs('crypto');
  const rewriteS = secs('rewrite');
  const yard = floorS !== undefined && cryptoS !== undefined ? floorS + cryptoS : undefined;
  const written = rewriteS !== undefined && cryptoS !== undefined ? rewriteS + cryptoS : undefined;
  const times = (x: number, by: number) => Math.round((x / by) * 100) / 100;
  const results = r.results.map((x) => ({
    ...x,
    ...(x.seconds ? { rowsPerSecond: Math.round(x.rows / x.seconds) } : {}),
    ...(x.seconds !== undefined && yard ? { vsFloorPlusCrypto: times(x.seconds, yard) } : {}),
    ...(x.seconds !== undefined && floorS ? { vsFloor: times(x.seconds, floorS) } : {}),
    ...(x.seconds !== undefined && written ? { vsRewritePlusCrypto: times(x.seconds, written) } : {}),
    ...(x.seconds !== undefined && rewriteS ? { vsRewrite: times(x.seconds, rewriteS) } : {}),
    ...(x.serverDownMs !== undefined && rewriteS ? { serverDownVsYardstick: times(x.serverDownMs / 1000, rewriteS) } : {}),
  }));
  const ratio = (m: Method, max: number) => {
    const v = results.find((x) => x.method === m)?.vsFloorPlusCrypto;
    return { what: `${LABELS[m]} ≤ ${max.toFixed(1)}x (floor + crypto alone)`, ...(v !== undefined ? { measured: `${v.toFixed(2)}x`, met: v <= max } : {}) };
  };
  const rss = (['ours', 'apply'] as const).map((m) => {
    const b = results.find((x) => x.method === m)?.peakRssBytes;
    return { what: `${LABELS[m]} peak RSS < 256 MB`, ...(b !== undefined ? { measured: `${(b / MB).toFixed(0)} MB`, met: b < 256 * MB } : {}) };
  });
  const local = secs('apply');
  const overSsh = secs('apply-ssh');
  const ssh =
    overSsh === undefined
      ? []
      : [{ what: 'apply over SSH ≤ apply + 2 s + 10 %', ...(local !== undefined ? { measured: `+${(overSsh - local).toFixed(2)} s (${((overSsh / local - 1) * 100).toFixed(1)} %)`, met: overSsh <= local * 1.1 + 2 } : {}) }];
  const applied = results.find((x) => x.method === 'apply');
  const byRewrite = (what: string, v: number | undefined, max: number) => ({ what: `${LABELS.apply}: ${what} ≤ ${max.toFixed(1)}x SQLite's rewrite`, ...(v !== undefined ? { measured: `${v.toFixed(2)}x`, met: v <= max } : {}) });
  return { ...r, results, goals: [ratio('ours', 1.0), byRewrite('server down', applied?.serverDownVsYardstick, 1.3), byRewrite('full apply', applied?.vsRewrite, 3.0), ...rss, ...ssh, ...sealedGoal(local, secs('apply-sealed'))] };
}

export function formatSqliteReport(r: SqliteBenchReport): string {
  const fmt = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(2));
  const rewritten = r.results.some((m) => m.vsRewritePlusCrypto !== undefined);
  const body = r.results.map((m) => [
    LABELS[m.method],
    String(m.rows),
    fmt(m.seconds),
    m.rowsPerSecond === undefined ? '-' : String(m.rowsPerSecond),
    fmt(m.vsFloorPlusCrypto),
    ...(rewritten ? [fmt(m.vsRewritePlusCrypto)] : []),
    fmt(m.vsFloor),
    m.peakRssBytes === undefined ? '-' : `${(m.peakRssBytes / MB).toFixed(0)} MB`,
  ]);
  return [
    `SQLite re-encryption benchmark (AES-GCM: ${r.crypto}): ${r.rows} secrets (100-300 byte plaintexts, act codec, one table), journal_mode ${r.journal}, median of ${r.reps} runs, one transaction each`,
    `node ${r.versions.node}, SQLite ${r.versions.sqlite}; ${r.machine.cpus} cores (${r.machine.cpuModel}), ${(r.machine.memoryBytes / MB / 1024).toFixed(1)} GB RAM, load average ${r.machine.load}; seeded in ${r.seedSeconds.toFixed(1)} s`,
    '',
    table([['method', 'rows', 'seconds', 'rows/s', 'x (floor + crypto)', ...(rewritten ? ['x (rewrite + crypto)'] : []), 'x floor', 'peak RSS'], ...body]),
    '',
    ...r.results.filter((m) => m.note).map((m) => `  ${m.method}: ${m.note}`),
    '',
    ...applyPhases(r.results.find((m) => m.method === 'apply-baseline'), 'apply-baseline', 'rewrite'),
    ...applyPhases(r.results.find((m) => m.method === 'apply-baseline-sealed'), 'apply-baseline-sealed', 'rewrite'),
    ...applyPhases(r.results.find((m) => m.method === 'apply-one-pass'), 'apply-one-pass', 'rewrite'),
    ...applyPhases(r.results.find((m) => m.method === 'apply'), undefined, 'rewrite'),
    ...applyPhases(r.results.find((m) => m.method === 'apply-sealed'), 'apply-sealed', 'rewrite'),
    'Goals:',
    ...r.goals.map((g) => `  ${g.met === undefined ? '-' : g.met ? 'met' : 'MISSED'}: ${g.what}${g.measured ? ` (measured ${g.measured})` : ' (not measured)'}`),
    ...(r.verification ? ['', `Verification after ours: ${r.verification.ok}/${r.verification.rows} rows open with the new key only and equal their plaintext.`] : []),
    '',
  ].join('\n');
}

/** Runs the SQLite benchmark in a temp directory it removes; returns the report. */
export async function benchSqlite(o: SqliteBenchOptions, progress: (s: string) => void): Promise<SqliteBenchReport> {
  const dir = mkdtempSync(join(tmpdir(), 'mk-bench-sqlite-'));
  let fleet: SshdFleet | undefined;
  /** One sshd "host", started at the first apply-ssh. */
  const sshTarget = async (): Promise<SshTarget> => {
    if (!fleet) {
      const missing = sshdMissing();
      if (missing) throw new Error(`apply-ssh: ${missing}`);
      progress('starting an sshd on loopback for apply-ssh');
      fleet = await startFleet(1);
    }
    return { port: fleet.hosts[0].port, options: ['--known-hosts', fleet.knownHosts, '--private-key-file', fleet.clientKey, '--no-ssh-agent'] };
  };
  try {
    const oldKey = MasterKey.generate();
    const newKey = MasterKey.generate();
    progress(`seeding ${o.rows} secrets`);
    const t0 = process.hrtime.bigint();
    const { pristine, plain } = seed(dir, o.rows, oldKey, o.journal);
    const seedSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const results: SqliteBenchResult[] = [];
    let verification: SqliteBenchReport['verification'];
    const recipients = o.sealed ? [await benchRecipient()] : undefined;
    // apply and apply-ssh run in turn (apply, apply-ssh, apply, ...): an A/B under the same load.
    const paired = o.methods.includes('apply') && o.methods.includes('apply-ssh');
    const runsOf = new Map<Measured, Run[]>();
    // Round by round, every method once a round: the rewrite and the applies see the same machine.
    for (let i = 0; i < o.reps; i++) {
      for (const method of o.methods) {
        const reps = method === 'naive' && o.rows > (o.naiveSingleRunAbove ?? 200_000) ? 1 : o.reps;
        const turn = paired && method === 'apply' ? (['apply', 'apply-ssh'] as const) : paired && method === 'apply-ssh' ? [] : [method];
        if (i >= reps) continue;
        for (const m of turn) {
          const into = runsOf.get(m) ?? [];
          runsOf.set(m, into);
          // The baseline's turn: before this build's apply, or after it every other repetition (a run pays for the writes the run before it left the kernel to flush).
          const baselineTurn = async (): Promise<void> => {
            if (!(m === 'apply' && o.baselineCli)) return;
            progress(`${m} run ${i + 1}/${reps} of the baseline build`);
            const b = runsOf.get('apply-baseline') ?? [];
            runsOf.set('apply-baseline', b);
            b.push(await apply(dir, fresh(dir, pristine), oldKey, o.rows, { cli: o.baselineCli }));
            if (recipients) {
              // The baseline's sealed/plain ratio in the same run as this build's.
              progress(`${m} run ${i + 1}/${reps} of the baseline build with the backup sealed to one age recipient`);
              const bs = runsOf.get('apply-baseline-sealed') ?? [];
              runsOf.set('apply-baseline-sealed', bs);
              bs.push(await apply(dir, fresh(dir, pristine), oldKey, o.rows, { cli: o.baselineCli, recipients }));
            }
          };
          if (i % 2 === 0) await baselineTurn();
          const path = fresh(dir, pristine);
          progress(`${m} run ${i + 1}/${reps}`);
          if (m === 'floor') into.push(sqliteAlone(path, "value || ''"));
          else if (m === 'rewrite') into.push(sqliteAlone(path, 'lower(value)'));
          else if (m === 'apply' || m === 'apply-one-pass') into.push(await apply(dir, path, oldKey, o.rows, { flags: applyFlags(m) }));
          // Over SSH with apply's flags: the A/B measures SSH alone.
          else if (m === 'apply-ssh') into.push(await apply(dir, path, oldKey, o.rows, { ssh: await sshTarget(), flags: applyFlags('apply') }));
          else into.push(await runChild({ method: m, path, oldKey: oldKey.toHex(), newKey: newKey.toHex(), ...(o.crypto ? { crypto: o.crypto } : {}) }));
          if (m === 'ours' && i === reps - 1) verification = verify(path, plain, newKey);
          if (m === 'apply' && recipients) {
            progress(`${m} run ${i + 1}/${reps} with the backup sealed to one age recipient`);
            const s = runsOf.get('apply-sealed') ?? [];
            runsOf.set('apply-sealed', s);
            s.push(await apply(dir, fresh(dir, pristine), oldKey, o.rows, { flags: applyFlags(m), recipients }));
          }
          if (i % 2 === 1) await baselineTurn();
        }
      }
    }
    const result = (m: Measured, rs: readonly Run[], note = NOTES[m]): SqliteBenchResult => {
      const mid = medianRun(rs);
      return {
        method: m,
        rows: rs[0]?.rows ?? o.rows,
        ...(mid?.phases ? applyWindows(rs, mid.phases) : {}),
        runs: rs.map((r) => r.seconds),
        seconds: median(rs.map((r) => r.seconds)),
        ...(rs.some((r) => r.maxRssBytes !== undefined) ? { peakRssBytes: Math.max(...rs.map((r) => r.maxRssBytes ?? 0)) } : {}),
        ...(rs.length < o.reps ? { note: 'one run (it takes minutes)' } : note ? { note } : {}),
      };
    };
    for (const method of o.methods) {
      const baseline = method === 'apply' ? runsOf.get('apply-baseline') : undefined;
      if (baseline?.length) results.push(result('apply-baseline', baseline, `${NOTES.apply}; the build at ${o.baselineCli}, run in turn with this one`));
      const baselineSealed = method === 'apply' ? runsOf.get('apply-baseline-sealed') : undefined;
      if (baselineSealed?.length) results.push(result('apply-baseline-sealed', baselineSealed, `${NOTES.apply}; the build at ${o.baselineCli}, the backup sealed to one X25519 recipient (age), run in turn with the others`));
      results.push(result(method, runsOf.get(method) ?? []));
      const sealed = method === 'apply' ? runsOf.get('apply-sealed') : undefined;
      if (sealed?.length) results.push(result('apply-sealed', sealed, `${NOTES.apply}; the backup sealed to one X25519 recipient (age), run in turn with the apply above`));
    }
    const Database = sqliteModule();
    const mem = new Database(':memory:');
    const sqlite = (mem.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
    mem.close();
    return summariseSqlite({
      rows: o.rows,
      reps: o.reps,
      journal: o.journal,
      crypto: o.crypto
        ? `${o.crypto}, for crypto alone and ours`
        : `${defaultCryptoMode()}; crypto alone on one thread, ours beside the SQLite thread (${o.journal === 'wal' ? 'a reader thread reads and re-seals' : 'a crypto thread re-seals'})`,
      seedSeconds,
      versions: { node: process.version, sqlite },
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryBytes: totalmem(), load: loadavg().map((x) => x.toFixed(1)).join(' ') },
      results,
      verification,
    });
  } finally {
    await stopFleet(fleet);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Parses `--store sqlite` options (the rest of bench's command line). */
export function parseSqliteArgs(argv: readonly string[]): SqliteBenchOptions {
  let rows = 100_000;
  let reps = 3;
  let journal: 'wal' | 'delete' = 'wal';
  let json = false;
  let methods: Method[] = [...DEFAULT_METHODS];
  let crypto: CryptoMode | undefined;
  let baselineCli: string | undefined;
  let sealed = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const n = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer, got ${argv[i] ?? 'nothing'}`);
      return v;
    };
    if (a === '--store') i++;
    else if (a === '--rows') rows = n();
    else if (a === '--reps') reps = n();
    else if (a === '--json') json = true;
    else if (a === '--sealed') sealed = true;
    else if (a === '--crypto') {
      const m = argv[++i];
      if (m !== 'native' && m !== 'node' && m !== 'workers') throw new Error(`--crypto must be native, node or workers, got ${m ?? 'nothing'}`);
      crypto = m;
    } else if (a === '--journal') {
      const j = argv[++i];
      if (j !== 'wal' && j !== 'delete') throw new Error(`--journal must be wal or delete, got ${j ?? 'nothing'}`);
      journal = j;
    } else if (a === '--methods') {
      methods = (argv[++i] ?? '').split(',').map((m) => {
        if (!(SQLITE_METHODS as readonly string[]).includes(m)) throw new Error(`unknown method "${m}"; use ${SQLITE_METHODS.join(', ')}`);
        return m as Method;
      });
    } else if (a === '--baseline-cli') {
      baselineCli = argv[++i];
      if (!baselineCli) throw new Error("--baseline-cli needs the path of another build's dist/src/cli/main.js");
      if (!existsSync(baselineCli)) throw new Error(`--baseline-cli: ${baselineCli} does not exist`);
    } else throw new Error(`unknown option ${a}`);
  }
  return { rows, reps, journal, json, methods, ...(crypto ? { crypto } : {}), ...(baselineCli ? { baselineCli: resolve(baselineCli) } : {}), ...(sealed ? { sealed } : {}) };
}

/** `bench --store sqlite ...`: prints the table (or JSON); exit code 1 when verification failed. */
export async function mainSqlite(argv: readonly string[]): Promise<void> {
  const o = parseSqliteArgs(argv);
  if (!existsSync(cliPath()) && (o.methods.includes('apply') || o.methods.includes('apply-ssh'))) throw new Error('the CLI is not built: run npm run build');
  const missing = o.methods.includes('apply-ssh') ? sshdMissing() : undefined;
  if (missing) throw new Error(`apply-ssh: ${missing}`);
  const progress = o.json ? () => undefined : (s: string) => process.stderr.write(`bench: ${s}\n`);
  const report = await benchSqlite(o, progress);
  process.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatSqliteReport(report));
  if (report.verification && report.verification.failures > 0) process.exitCode = 1;
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

if (require.main === module && process.argv[2] === '--child') {
  readStdin()
    .then(async (text) => process.stdout.write(`${JSON.stringify(await child(JSON.parse(text) as ChildJob))}\n`))
    .catch((e: unknown) => {
      process.stderr.write(`bench child failed: ${(e as Error).message}\n`);
      process.exit(1);
    });
}
