/**
 * `npm run fuzz`: a fuzz campaign on every parser of outside input
 * (scripts/fuzz/targets.ts), one after the other: first the corpus of
 * inputs that once found a bug (test/fuzz-corpus/), then fresh inputs.
 *
 * Options: --runs N (inputs per parser, default 1,000,000), --minutes M
 * (instead: this long per parser), --seed S (random; printed, so a run can
 * be repeated), --list, then target names to run only those.
 *
 * Prints one line per parser (inputs, time, inputs a second, result) and a summary; an
 * input that breaks a parser is shrunk, saved to the corpus (so it becomes
 * a regression test once fixed) and named, and the exit code is 1.
 */
import { describeError, runCampaign, runOne } from './fuzz/harness';
import { readCorpus, saveFinding } from './fuzz/corpus';
import { TARGETS } from './fuzz/targets';

export interface FuzzOptions {
  readonly runs: number;
  readonly minutes?: number;
  readonly seed?: number;
  readonly targets: readonly string[];
  readonly list: boolean;
}

export function parseFuzzArgs(argv: readonly string[]): FuzzOptions {
  const o: { runs: number; minutes?: number; seed?: number; targets: string[]; list: boolean } = { runs: 1_000_000, targets: [], list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number, got "${argv[i]}"`);
      return v;
    };
    if (a === '--runs') o.runs = Math.floor(num());
    else if (a === '--minutes') o.minutes = num();
    else if (a === '--seed') o.seed = Math.floor(num());
    else if (a === '--list') o.list = true;
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}; use --runs N, --minutes M, --seed S, --list, then target names`);
    else o.targets.push(a);
  }
  const known = new Set(TARGETS.map((t) => t.name));
  const unknown = o.targets.filter((t) => !known.has(t));
  if (unknown.length) throw new Error(`unknown target ${unknown.join(', ')}; --list lists them`);
  return o;
}

async function main(): Promise<number> {
  const o = parseFuzzArgs(process.argv.slice(2));
  const chosen = TARGETS.filter((t) => o.targets.length === 0 || o.targets.includes(t.name));
  if (o.list) {
    for (const t of chosen) process.stdout.write(`${t.name.padEnd(18)} ${t.entry}\n`);
    return 0;
  }
  const budget = o.minutes !== undefined ? `${o.minutes} min each` : `${o.runs.toLocaleString('en')} inputs each`;
  process.stdout.write(`fuzzing ${chosen.length} parsers, ${budget}\n`);
  const failed = new Set<string>();
  const t0 = Date.now();
  for (const t of chosen) {
    for (const c of readCorpus(t.name)) {
      try {
        await runOne(t, t.fromJson(c.input));
      } catch (e) {
        failed.add(t.name);
        process.stdout.write(`${t.name}: the corpus input ${c.file} fails again: ${describeError(e)}\n`);
      }
    }
    const r = await runCampaign(t, o.minutes !== undefined ? { ms: o.minutes * 60_000, seed: o.seed } : { runs: o.runs, seed: o.seed });
    const line = `${t.name.padEnd(18)} ${r.runs.toLocaleString('en').padStart(11)} inputs ${(r.ms / 1000).toFixed(1).padStart(8)} s ${Math.round(r.runs / Math.max(r.ms / 1000, 0.001)).toLocaleString('en').padStart(7)} exec/s  seed ${r.seed}`;
    if (!r.failure) {
      process.stdout.write(`${line}  ok\n`);
      continue;
    }
    failed.add(t.name);
    const file = saveFinding(t.name, r.failure.input, r.failure.error);
    process.stdout.write(`${line}  FAILED: ${r.failure.error}\n    input saved to ${file} (replay: --seed ${r.seed}, path ${r.failure.path ?? '-'})\n`);
  }
  process.stdout.write(`${failed.size === 0 ? 'no defects' : `defects in ${[...failed].join(', ')}`} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  return failed.size === 0 ? 0 : 1;
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      process.stderr.write(`fuzz: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
