/**
 * Nothing a test run makes may stay behind in the temp directory.
 *
 * Global setup makes one run directory `<tmp>/mk-test-run-XXXXXX` and points
 * TMPDIR at it, so everything the tests, the CLI, terraform and PostgreSQL
 * make under os.tmpdir() lands there. Global teardown then fails the run when
 *
 * - the run directory is not empty (a test or harness did not remove what it
 *   made; every test removes its files itself, also when it fails), or
 * - the temp directory itself has an entry that was not there at the start
 *   (something bypassed TMPDIR). On a shared machine other processes write
 *   there too, so outside CI such entries are reported without failing; CI
 *   runs alone and fails on them.
 *
 * The run directory is removed at the end unless KEEP is set.
 */
import { readdirSync } from 'node:fs';

/** The prefix of a run directory (ours or a concurrent run's). */
export const RUN_DIR_PREFIX = 'mk-test-run-';

/** What global setup hands to global teardown. */
export interface TmpGuardState {
  /** The temp directory the run started with (usually /tmp). */
  readonly tmp: string;
  /** Its entries at the start. */
  readonly before: readonly string[];
  /** The run directory that TMPDIR points at during the run. */
  readonly runDir: string;
  /** TMPDIR as it was before the run (undefined when unset). */
  readonly previousTmpdir: string | undefined;
}

/** Entry names of a directory (empty when it is gone). */
export function entries(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Entries of `after` that were not in `before`, other than run directories (ours is checked on its own). */
export function newEntries(before: readonly string[], after: readonly string[]): string[] {
  const had = new Set(before);
  return after.filter((e) => !had.has(e) && !e.startsWith(RUN_DIR_PREFIX));
}

/** The verdict of the guard: problems that fail the run and notes that are only printed. */
export interface TmpVerdict {
  readonly failures: string[];
  readonly notes: string[];
}

/** Pure: what the leftovers mean, given whether this is CI and whether KEEP is set. */
export function judgeLeftovers(o: { runDir: string; leftInRunDir: readonly string[]; tmp: string; newInTmp: readonly string[]; ci: boolean; keep: boolean }): TmpVerdict {
  const failures: string[] = [];
  const notes: string[] = [];
  if (o.leftInRunDir.length > 0) {
    const what = `${o.leftInRunDir.length} entr${o.leftInRunDir.length === 1 ? 'y' : 'ies'} left in ${o.runDir}: ${o.leftInRunDir.join(', ')}`;
    if (o.keep) notes.push(`KEEP is set: kept ${what}.`);
    else failures.push(`The tests left ${what}; every test must remove what it makes, also when it fails (KEEP=1 keeps them for debugging).`);
  }
  if (o.newInTmp.length > 0) {
    const what = `new in ${o.tmp} since the run started: ${o.newInTmp.join(', ')}`;
    if (o.ci) failures.push(`Entries ${what}; something wrote to ${o.tmp} instead of TMPDIR and did not remove it.`);
    else notes.push(`Note: entries ${what} (another process on this machine may have made them; under CI this fails the run).`);
  }
  return { failures, notes };
}
