/**
 * `npm run soak -- --runs 500`: kills `master-key apply` at hundreds of
 * random points (random named phases and random moments across an apply's
 * measured duration), sometimes kills the `recover` that follows too, and
 * after each run checks the crash invariant and that the next apply
 * succeeds. One embedded PostgreSQL for the whole soak (or, with --store
 * sqlite, one SQLite file per worker in the --journal mode); each worker
 * rotates its own installation again and again (one with a single config
 * file, one with three node configs in dotenv, JSON and XML).
 *
 * Half the runs apply with --seal-ahead (every seal-ahead fault point is drawn
 * with it), the others in one pass. Prints a summary line (runs, runs sealed
 * ahead, recoveries, secrets lost) and the JSON
 * summary; exits 1 when any secret was lost or any invariant broke.
 *
 * Options: --runs N (500), --workers W (2), --per-kind K (3 rows per ACT
 * kind), --seed S (random), --store postgres|sqlite (postgres), --journal
 * wal|delete (SQLite's journal mode: wal), --json (only the JSON on
 * stdout), --verbose.
 */
import { join } from 'node:path';
import { removeEmbeddedData, startEmbeddedPostgres } from '../src/db/embedded';
import { FaultPoint } from '../src/rotation/faults';
import { CycleOptions, CycleResult, faultCycle } from './soak-cycle';
import { removeScratch, scratchDir } from './scratch';
import { APPLY_PHASES, Installation, KillPoint, createInstallation, runCli } from './soak-harness';
import { SqliteJournal, createSqliteDatabase } from '../test/support/stores';
import { parseOrExit } from './usage';

export interface SoakOptions {
  readonly runs: number;
  readonly workers: number;
  readonly perKind: number;
  readonly seed: number;
  readonly store: 'postgres' | 'sqlite';
  readonly journal: SqliteJournal;
  readonly json: boolean;
  readonly verbose: boolean;
}

/** Parses the command line; throws with a usage sentence on anything unknown. */
export function parseSoakArgs(argv: readonly string[]): SoakOptions {
  const o: { -readonly [K in keyof SoakOptions]: SoakOptions[K] } = { runs: 500, workers: 2, perKind: 3, seed: Date.now() % 2 ** 31, store: 'postgres', journal: 'wal', json: false, verbose: false };
  const oneOf = <T extends string>(a: string, v: string | undefined, allowed: readonly T[]): T => {
    if (!allowed.includes(v as T)) throw new Error(`${a} must be one of ${allowed.join(', ')}, got "${v}"`);
    return v as T;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a whole number, got "${argv[i]}"`);
      return v;
    };
    if (a === '--runs') o.runs = num();
    else if (a === '--workers') o.workers = Math.max(1, num());
    else if (a === '--per-kind') o.perKind = Math.max(1, num());
    else if (a === '--seed') o.seed = num();
    else if (a === '--store') o.store = oneOf(a, argv[++i], ['postgres', 'sqlite'] as const);
    else if (a === '--journal') o.journal = oneOf(a, argv[++i], ['wal', 'delete'] as const);
    else if (a === '--json') o.json = true;
    else if (a === '--verbose') o.verbose = true;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** mulberry32: a small seeded PRNG, so a failing soak can be replayed with --seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const BATCH_SIZES = [1, 2, 5, 1000];

/** How many times each phase can be reached in one apply, for `@n` draws. */
function maxReached(phase: FaultPoint, inst: Installation, secrets: number, batch: number): number {
  if (phase === 'reencrypt-batch' || phase === 'seal-ahead-batch') return Math.max(1, Math.ceil(secrets / batch));
  if (phase === 'config-written') return inst.configs.length;
  return 1;
}

/** Draws one run's kill points: half random phases, half random moments across a measured apply. */
export function drawCycle(rand: () => number, inst: Installation, applyMs: number, recoverMs: number): CycleOptions {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const batchSize = pick(BATCH_SIZES);
  // Half the runs seal ahead (the small installations would not by default): kills land in seal-ahead and its cut-over too.
  let sealAhead = rand() < 0.5;
  let kill: KillPoint;
  if (rand() < 0.5) {
    const phase = pick(APPLY_PHASES);
    if (SEAL_AHEAD_PHASES.includes(phase)) sealAhead = true;
    kill = { phase, n: 1 + Math.floor(rand() * maxReached(phase, inst, inst.plaintexts.size, batchSize)) };
  } else {
    kill = { afterMs: Math.round(rand() * applyMs * 1.1) };
  }
  let recoverKill: KillPoint | undefined;
  const r = rand();
  if (r < 0.1) recoverKill = { phase: 'recover-config-written', n: 1 };
  else if (r < 0.25) recoverKill = { afterMs: Math.round(rand() * recoverMs) };
  return { kill, recoverKill, batchSize, sealAhead };
}

/** The fault points only a seal-ahead run reaches. */
const SEAL_AHEAD_PHASES: readonly FaultPoint[] = ['seal-ahead-started', 'seal-ahead-batch', 'backup-ahead-copied', 'backup-ahead-written', 'sealed-ahead', 'staging-removed'];

/** Totals over all runs. */
export interface SoakSummary {
  runs: number;
  applyKilled: number;
  committedBeforeKill: number;
  recoveries: number;
  recoverActions: Record<string, number>;
  recoverRuns: number;
  recoverKilled: number;
  secretsLost: number;
  secretsPerRun: number[];
  violations: number;
  failedRuns: Array<{ worker: number; run: number; kill: string; violations: readonly string[] }>;
  killPoints: Record<string, number>;
  /** Runs whose apply sealed ahead (`--seal-ahead`), the others in one pass. */
  sealAheadRuns: number;
  seed: number;
  /** The store soaked: PostgreSQL, or SQLite and its journal mode. */
  store: string;
  seconds: number;
}

function tally(s: SoakSummary, worker: number, run: number, r: CycleResult): void {
  s.runs++;
  if (r.killed) s.applyKilled++;
  if (r.killed && r.committed) s.committedBeforeKill++;
  s.recoverActions[r.recover.action] = (s.recoverActions[r.recover.action] ?? 0) + 1;
  if (r.recover.action !== 'none') s.recoveries++;
  s.recoverRuns += r.recover.runs;
  s.recoverKilled += r.recover.killed;
  s.secretsLost += r.lost;
  const point = r.kill.replace(/@\d+$/, '').replace(/after \d+ ms/, 'random moment');
  s.killPoints[point] = (s.killPoints[point] ?? 0) + 1;
  if (r.violations.length) {
    s.violations += r.violations.length;
    s.failedRuns.push({ worker, run, kill: r.kill, violations: r.violations });
  }
}

/** Runs the soak against a running server (admin URL); returns the totals. */
export async function soak(opts: SoakOptions, createDb: (name: string) => Promise<string>, log: (line: string) => void): Promise<SoakSummary> {
  const started = Date.now();
  const s: SoakSummary = {
    runs: 0,
    applyKilled: 0,
    committedBeforeKill: 0,
    recoveries: 0,
    recoverActions: {},
    recoverRuns: 0,
    recoverKilled: 0,
    secretsLost: 0,
    secretsPerRun: [],
    violations: 0,
    failedRuns: [],
    killPoints: {},
    sealAheadRuns: 0,
    seed: opts.seed,
    store: opts.store === 'sqlite' ? `SQLite (journal_mode ${opts.journal})` : 'PostgreSQL',
    seconds: 0,
  };
  let next = 0;
  const worker = async (w: number): Promise<void> => {
    const rand = prng(opts.seed + w * 7919);
    const inst = await createInstallation(await createDb(`soak_${opts.seed}_${w}`), { perKind: opts.perKind, nodes: w % 2 === 0 ? 1 : 3 });
    s.secretsPerRun.push(inst.plaintexts.size);
    try {
      // Measure an unkilled apply and recover first: random kill moments are drawn across them.
      const apply = await runCli(inst, ['apply']);
      if (apply.code !== 0) throw new Error(`the measuring apply failed (${apply.code}): ${apply.stderr}`);
      const recover = await runCli(inst, ['recover']);
      log(`worker ${w}: ${inst.plaintexts.size} secrets, ${inst.configs.length} config file(s); an apply takes ${apply.ms} ms, a recover ${recover.ms} ms`);
      // Random moments are drawn across a typical recent apply (the median of the last 20 unkilled ones).
      const recent = [apply.ms];
      while (next < opts.runs) {
        const run = ++next;
        const cycle = drawCycle(rand, inst, median(recent), recover.ms);
        let r: CycleResult;
        try {
          r = await faultCycle(inst, cycle);
        } catch (e) {
          s.failedRuns.push({ worker: w, run, kill: String(cycle.kill), violations: [(e as Error).message] });
          s.violations++;
          log(`worker ${w} run ${run}: ${(e as Error).message}; this worker stops`);
          return;
        }
        tally(s, w, run, r);
        if (cycle.sealAhead) s.sealAheadRuns++;
        if (r.nextApplyMs !== undefined && recent.push(r.nextApplyMs) > 20) recent.shift();
        if (opts.verbose || r.violations.length) {
          log(`run ${run} (worker ${w}): kill ${r.kill}${r.killed ? '' : ' (finished first)'}, batch ${cycle.batchSize}, recover ${r.recover.action}${r.recover.killed ? ' after a killed recover' : ''}, ${r.lost} lost, ${r.ms} ms${r.violations.length ? `: ${r.violations.join('; ')}` : ''}`);
        } else if (run % 50 === 0) {
          log(`... ${run} runs, ${s.secretsLost} secrets lost, ${s.violations} violations`);
        }
      }
    } finally {
      removeScratch(inst.dir);
    }
  };
  await Promise.all(Array.from({ length: opts.workers }, (_, w) => worker(w)));
  s.seconds = Math.round((Date.now() - started) / 100) / 10;
  return s;
}

export function summaryLine(s: SoakSummary): string {
  const actions = Object.entries(s.recoverActions)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `soak (${s.store}): ${s.runs} runs (${s.sealAheadRuns} sealed ahead), ${s.applyKilled} applies killed (${s.committedBeforeKill} after commit), ${s.recoveries} recoveries (${actions}), ${s.recoverKilled} recovers killed, ${s.secretsLost} secrets lost, ${s.violations} invariant violations, ${s.seconds} s (seed ${s.seed})`;
}

export const SOAK_USAGE = `npm run soak -- [options]

Kills \`master-key apply\` and \`master-key recover\` (kill -9) at random
instants, over and over, and checks after each run that every secret still
opens with a key on disk and that recover brings database and config back
into agreement. Exits non-zero on any lost secret or invariant violation.

Options:
  --runs <n>               how many killed runs (default 500)
  --workers <n>            runs at once, each on its own database (default 2)
  --per-kind <n>           secrets per kind in each database (default 3)
  --seed <n>               the random seed (default: from the clock; printed, so a run can be repeated)
  --store postgres|sqlite  the store (default postgres: an embedded PostgreSQL)
  --journal wal|delete     SQLite: the journal mode (default wal)
  --json                   print only the JSON summary
  --verbose                one line per run
  --help                   this text
`;

async function main(argv: readonly string[]): Promise<number> {
  const opts = parseOrExit('soak', SOAK_USAGE, argv, parseSoakArgs);
  const log = (line: string) => process.stderr.write(line + '\n');
  const report = (s: SoakSummary): number => {
    if (!opts.json) process.stdout.write(summaryLine(s) + '\n');
    process.stdout.write(JSON.stringify(s, null, 2) + '\n');
    return s.secretsLost === 0 && s.violations === 0 && s.runs >= opts.runs ? 0 : 1;
  };
  if (opts.store === 'sqlite') {
    const root = scratchDir('mk-soak-sqlite-');
    try {
      return report(await soak(opts, async (name) => createSqliteDatabase(opts.journal, join(root, name)), log));
    } finally {
      removeScratch(root);
    }
  }
  const server = await startEmbeddedPostgres({ settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } });
  try {
    return report(await soak(opts, (name) => server.createDatabase(name), log));
  } finally {
    await server.stop();
    removeEmbeddedData(server);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      process.stderr.write(`soak: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
