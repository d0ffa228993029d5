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
    };
  });
  return { ...report, results };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

const MB = 1024 * 1024;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')).join('\n');
}

const LABELS: Record<string, string> = {
  floor: "PostgreSQL floor (SET value = value || '')",
  pgcrypto: 'pgcrypto in-database rewrap (AES-CBC)',
  naive: 'naive script (row-by-row UPDATE)',
  ours: 'ours: reencryptInventory',
  apply: 'ours: master-key apply (full CLI)',
};

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
    ...(r.verification ? [`Verification after ours: ${r.verification.ok}/${r.verification.rows} rows open with the new key only and equal their plaintext.`, ''] : []),
  ];
  return `${lines.join('\n')}\n`;
}
