/**
 * Runs the `master-key` CLI in this process and, when it is done, writes
 * this process's peak RSS (bytes), the CPU time it used (user and system,
 * all its threads; microseconds) and its minor page faults (pages it
 * touched fresh), as JSON, to file descriptor 3, so the benchmark can
 * report the full apply's memory, and its work apart from how long a loaded
 * machine made it wait. Usage (by bench-apply):
 * `node bench-rss.js <cli args...>` with fd 3 a pipe; `MK_BENCH_CLI` names
 * another build's CLI entry point (the benchmark's `--baseline-cli`).
 */
import { writeSync } from 'node:fs';
import { cliPath } from './bench-apply';

process.on('exit', () => {
  try {
    const u = process.resourceUsage();
    writeSync(3, JSON.stringify({ maxRssBytes: u.maxRSS * 1024, cpuMicros: u.userCPUTime + u.systemCPUTime, minorFaults: u.minorPageFault }));
  } catch {
    // fd 3 not open: run by hand; nothing to report to.
  }
});

// eslint-disable-next-line @typescript-eslint/no-require-imports
const cli = require(process.env.MK_BENCH_CLI ?? cliPath()) as { main(argv: string[]): Promise<number> };
cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  () => {
    process.exitCode = 1;
  },
);
