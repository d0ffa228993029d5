/**
 * The benchmark's report: medians, rates, ratios, and the text table.
 * Pure functions over the measured numbers.
 */

/** One method's measurements. */
export interface MethodResult {
  readonly method: string;
  readonly rows: number;
  /** Seconds of every run. */
  readonly runs: readonly number[];
  /** Median seconds (undefined when not measured). */
  readonly seconds?: number;
  /** Peak RSS of the process that ran it (client-side methods only). */
  readonly peakRssBytes?: number;
  readonly note?: string;
  readonly rowsPerSecond?: number;
  /** Time per row relative to the floor's (1 = as fast as PostgreSQL rewriting rows by itself). */
  readonly vsFloor?: number;
  /** Rows per second relative to the naive script's. */
  readonly speedupOverNaive?: number;
  /** apply, its median run: milliseconds per phase (from its report) and the server-down window (stop hook to start hooks). */
  readonly phases?: Readonly<Record<string, number>>;
  readonly serverDownMs?: number;
  /** apply: seal-ahead's window with the server up (median of the runs). */
  readonly serverUpSealAheadMs?: number;
  /** apply: the server-down window relative to the floor's time (PostgreSQL) or SQLite's rewrite. */
  readonly serverDownVsYardstick?: number;
  /** floor-staged: the median of its swap alone (the transaction that swaps in the staged texts, no crypto, no client). */
  readonly swapSeconds?: number;
  /** apply: the server-down window relative to floor-staged's swap, the database's own time to swap in staged texts. */
  readonly serverDownVsSwap?: number;
}

/** An apply's windows over its runs: the median run's phases, the medians of the server-down window and of seal-ahead's. */
export function applyWindows(runs: ReadonlyArray<{ readonly serverDownMs?: number; readonly serverUpSealAheadMs?: number }>, phases: Readonly<Record<string, number>>): Pick<MethodResult, 'phases' | 'serverDownMs' | 'serverUpSealAheadMs'> {
  const down = runs.map((r) => r.serverDownMs).filter((x): x is number => x !== undefined);
  const up = runs.map((r) => r.serverUpSealAheadMs).filter((x): x is number => x !== undefined);
  return { phases, ...(down.length ? { serverDownMs: median(down) } : {}), ...(up.length ? { serverUpSealAheadMs: median(up) } : {}) };
}

export interface BenchReport {
  readonly rows: number;
  readonly reps: number;
  readonly seedSeconds: number;
  readonly versions: { readonly node: string; readonly postgres: string };
  readonly machine: { readonly cpus: number; readonly cpuModel: string; readonly memoryBytes: number; readonly platform: string };
  readonly server: string;
  readonly results: readonly MethodResult[];
  /** After our last run: rows that open with the new key only and equal their plaintext. */
  readonly verification?: { readonly rows: number; readonly ok: number; readonly failures: number };
  /** The goals checked against this run (added by `summarise`). */
  readonly goals?: readonly Goal[];
}

/** The run whose time is the median (the lower middle one of an even count). */
export function medianRun<T extends { readonly seconds: number }>(runs: readonly T[]): T | undefined {
  return [...runs].sort((a, b) => a.seconds - b.seconds)[(runs.length - 1) >> 1];
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function rate(r: MethodResult): number | undefined {
  return r.seconds !== undefined && r.seconds > 0 ? r.rows / r.seconds : undefined;
}

/** Adds rates and ratios to the results. */
export function summarise(report: BenchReport): BenchReport {
  const floor = report.results.find((r) => r.method === 'floor');
  const swap = report.results.find((r) => r.method === 'floor-staged')?.swapSeconds;
  const naive = report.results.find((r) => r.method === 'naive');
  const floorRate = floor && rate(floor);
  const naiveRate = naive && rate(naive);
  const results = report.results.map((r): MethodResult => {
    const rps = rate(r);
    return {
      ...r,
      ...(rps !== undefined ? { rowsPerSecond: Math.round(rps) } : {}),
      ...(rps !== undefined && floorRate ? { vsFloor: round2(floorRate / rps) } : {}),
      ...(rps !== undefined && naiveRate ? { speedupOverNaive: round2(rps / naiveRate) } : {}),
      ...(r.serverDownMs !== undefined && floor?.seconds ? { serverDownVsYardstick: round2(r.serverDownMs / 1000 / floor.seconds) } : {}),
      ...(r.serverDownMs !== undefined && swap ? { serverDownVsSwap: round2(r.serverDownMs / 1000 / swap) } : {}),
    };
  });
  const out = { ...report, results };
  return { ...out, goals: goals(out) };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

const MB = 1024 * 1024;

export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')).join('\n');
}

const LABELS: Record<string, string> = {
  floor: "PostgreSQL floor (SET value = value || '')",
  'floor-staged': 'the database alone: stage ahead, then swap',
  pgcrypto: 'pgcrypto in-database rewrap (AES-CBC)',
  naive: 'naive script (row-by-row UPDATE)',
  crypto: 'crypto alone (open + re-seal in memory)',
  ours: 'ours: reencryptInventory',
  apply: 'ours: master-key apply (full CLI, --seal-ahead)',
  'apply-sealed': 'ours: master-key apply, backup sealed to one age recipient',
  'apply-one-pass': 'ours: master-key apply --no-seal-ahead (one pass)',
};

/** The issue's goals, each checked against this run's figures. */
export interface Goal {
  readonly what: string;
  readonly measured?: string;
  readonly met?: boolean;
}

const MB_LIMIT = 256;

export function goals(r: BenchReport): Goal[] {
  const by = (m: string) => r.results.find((x) => x.method === m);
  const ratio = (m: string, max: number): Goal => {
    const x = by(m)?.vsFloor;
    return { what: `${LABELS[m]} ≤ ${max.toFixed(1)}x the floor's time`, ...(x !== undefined ? { measured: `${x.toFixed(2)}x`, met: x <= max } : {}) };
  };
  const rss: Goal[] = ['ours', 'apply'].map((m) => {
    const b = by(m)?.peakRssBytes;
    return { what: `${LABELS[m]} peak RSS < ${MB_LIMIT} MB`, ...(b !== undefined ? { measured: `${(b / MB).toFixed(0)} MB`, met: b < MB_LIMIT * MB } : {}) };
  });
  const down = by('apply')?.serverDownVsYardstick;
  const downGoal: Goal = { what: `${LABELS.apply}: server down ≤ 1.2x the floor's time`, ...(down !== undefined ? { measured: `${down.toFixed(2)}x`, met: down <= 1.2 } : {}) };
  return [ratio('ours', 2.0), downGoal, ratio('apply', 2.5), ...rss, ...sealedGoal(by('apply')?.seconds, by('apply-sealed')?.seconds)];
}

/** Issue 19's goal, when `--sealed` measured it: the apply with one backup recipient at most 10 % slower than without (medians of the same run). */
export function sealedGoal(apply: number | undefined, sealed: number | undefined): Goal[] {
  if (sealed === undefined) return [];
  const what = 'master-key apply with one backup recipient ≤ 1.10x the apply without';
  if (!apply) return [{ what }];
  const x = sealed / apply;
  return [{ what, measured: `${x.toFixed(2)}x`, met: x <= 1.1 }];
}

/** The full apply's median run, phase by phase with its share, and the server-down window. */
export function applyPhases(a: Pick<MethodResult, 'phases' | 'serverDownMs' | 'serverUpSealAheadMs' | 'serverDownVsYardstick' | 'serverDownVsSwap'> | undefined, label?: string, yardstick: 'floor' | 'rewrite' = 'floor'): string[] {
  if (!a?.phases) return [];
  const total = Object.values(a.phases).reduce((x, y) => x + y, 0);
  const pct = (ms: number) => (total > 0 ? `${((100 * ms) / total).toFixed(1)}%` : '-');
  const rows = Object.entries(a.phases).map(([k, ms]) => [`  ${k}`, (ms / 1000).toFixed(2), pct(ms)]);
  return [
    `Full apply${label ? ` (${label})` : ''}, median run, by phase (from its report; the rest of the spawn-to-exit time is process start and the report itself):`,
    table([
      ['  phase', 'seconds', 'share'],
      ...rows,
      ['  server down (stop hook to start hooks; a writer stop hook not counted), median', ((a.serverDownMs ?? 0) / 1000).toFixed(2), pct(a.serverDownMs ?? 0)],
      ...(a.serverUpSealAheadMs ? [['  seal-ahead with the server up, median', (a.serverUpSealAheadMs / 1000).toFixed(2), pct(a.serverUpSealAheadMs)]] : []),
    ]),
    ...(a.serverDownVsYardstick !== undefined ? [`  server down = ${a.serverDownVsYardstick.toFixed(2)}x the ${yardstick}'s time`] : []),
    ...(a.serverDownVsSwap !== undefined ? [`  server down = ${a.serverDownVsSwap.toFixed(2)}x the database's own swap of staged texts (floor-staged's swap)`] : []),
    '',
  ];
}

/** The human-readable report. */
export function formatReport(r: BenchReport): string {
  const fmt = (x: number | undefined, digits = 2) => (x === undefined ? '-' : x.toFixed(digits));
  const head = ['method', 'rows', 'seconds', 'rows/s', 'x floor time', 'speed-up vs naive', 'peak RSS'];
  const body = r.results.map((m) => [
    LABELS[m.method] ?? m.method,
    String(m.rows),
    fmt(m.seconds),
    m.rowsPerSecond === undefined ? '-' : String(m.rowsPerSecond),
    fmt(m.vsFloor),
    m.speedupOverNaive === undefined ? '-' : `${fmt(m.speedupOverNaive, 1)}x`,
    m.peakRssBytes === undefined ? '-' : `${(m.peakRssBytes / MB).toFixed(0)} MB`,
  ]);
  const notes = r.results.filter((m) => m.note).map((m) => `  ${m.method}: ${m.note}`);
  const lines = [
    `Re-encryption benchmark: ${r.rows} secrets (100-300 byte plaintexts, act codec, one table), median of ${r.reps} runs, one transaction each`,
    `node ${r.versions.node}, PostgreSQL ${r.versions.postgres} (${r.server}); ${r.machine.cpus} cores (${r.machine.cpuModel}), ${(r.machine.memoryBytes / MB / 1024).toFixed(1)} GB RAM, ${r.machine.platform}; seeded in ${r.seedSeconds.toFixed(1)} s`,
    '',
    table([head, ...body]),
    '',
    ...(notes.length ? ['Notes:', ...notes, ''] : []),
    ...applyPhases(r.results.find((m) => m.method === 'apply-baseline'), 'apply-baseline'),
    ...applyPhases(r.results.find((m) => m.method === 'apply-one-pass'), 'apply-one-pass'),
    ...applyPhases(r.results.find((m) => m.method === 'apply')),
    ...applyPhases(r.results.find((m) => m.method === 'apply-sealed'), 'apply-sealed'),
    'Goals:',
    ...(r.goals ?? goals(r)).map((g) => `  ${g.met === undefined ? '-' : g.met ? 'met' : 'MISSED'}: ${g.what}${g.measured ? ` (measured ${g.measured})` : ' (not measured)'}`),
    '',
    ...(r.verification ? [`Verification after ours: ${r.verification.ok}/${r.verification.rows} rows open with the new key only and equal their plaintext.`, ''] : []),
  ];
  return `${lines.join('\n')}\n`;
}
