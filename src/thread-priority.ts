/**
 * A worker thread's own CPU priority. On Linux every thread is scheduled on
 * its own and has its own nice value: `setpriority(PRIO_PROCESS, tid)` (what
 * `os.setPriority` calls) with a thread's id changes that thread alone, and
 * `/proc/thread-self` names the calling thread's id. Raising the nice value
 * needs no privilege. Elsewhere (no `/proc/thread-self`) nothing changes.
 */
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/** Sets the calling thread's nice value (higher: lower priority; 19 is the lowest); whether it did. Never throws. */
export function lowerThreadPriority(nice: number): boolean {
  try {
    // "<pid>/task/<tid>"
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return false;
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
