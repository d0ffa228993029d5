/**
 * Runs the `master-key` CLI in this process and, when it is done, writes
 * this process's peak RSS (bytes), the CPU time it used (user and system,
 * all its threads; microseconds) and its minor page faults (pages it
 * touched fresh), as JSON, to file descriptor 3, so the benchmark can
 * report the full apply's memory, and its work apart from how long a loaded
 * machine made it wait (also its main thread's alone: the critical path). Usage (by bench-apply):
 * `node bench-rss.js <cli args...>` with fd 3 a pipe; `MK_BENCH_CLI` names
 * another build's CLI entry point (the benchmark's `--baseline-cli`).
 */
import { readFileSync, writeSync } from 'node:fs';
import { cliPath } from './bench-apply';

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU time of this process's main thread alone (user + system, µs), from
 * /proc (Linux; undefined elsewhere): the thread that drives the rotation,
 * whose work is the apply's critical path whatever the worker threads do
 * beside it, and so its wall time on an idle machine, less its waits.
 */
function mainThreadCpuMicros(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / USER_HZ;
  } catch {
    return undefined;
  }
}

process.on('exit', () => {
  try {
    const u = process.resourceUsage();
    writeSync(3, JSON.stringify({ maxRssBytes: u.maxRSS * 1024, cpuMicros: u.userCPUTime + u.systemCPUTime, mainThreadCpuMicros: mainThreadCpuMicros(), minorFaults: u.minorPageFault }));
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
