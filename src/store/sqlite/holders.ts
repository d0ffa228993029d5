/**
 * Which processes hold the write lock of a SQLite database, as far as the
 * kernel tells: SQLite's locks are POSIX record locks on the database file
 * (rollback journal: the RESERVED and PENDING bytes) or on its `-shm` file
 * (WAL: the writer's byte), and Linux lists every such lock with its
 * owner's pid in /proc/locks. A write lock (not a reader's shared lock) held
 * by another process on one of those files names a holder; its name is its
 * `/proc/<pid>/comm` (the program, never its arguments). Elsewhere, or
 * where /proc is not readable, nobody is named.
 */
import { readFileSync, statSync } from 'node:fs';

/** A process holding a write lock on the database. */
export interface LockingProcess {
  readonly pid: number;
  /** The program's name (`/proc/<pid>/comm`), when readable. */
  readonly command?: string;
}

/** `id: POSIX  ADVISORY  WRITE 12345 08:01:1234567 0 EOF` (a blocked waiter's line starts with `->`). */
const LINE = /^\d+:\s+(POSIX|OFDLCK|FLOCK)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/i;

/** Processes other than this one holding a write lock on the database file at `path` or its WAL index. */
export function processesLocking(path: string): LockingProcess[] {
  let locks: string;
  try {
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return [];
  }
  const inodes = new Set<string>();
  for (const f of [path, `${path}-shm`]) {
    try {
      inodes.add(String(statSync(f).ino));
    } catch {
      // no WAL index: a rollback journal
    }
  }
  const pids = new Set<number>();
  for (const line of locks.split('\n')) {
    const m = LINE.exec(line);
    if (!m || m[2].toUpperCase() !== 'WRITE' || !inodes.has(m[4])) continue;
    const pid = Number(m[3]);
    if (pid > 0 && pid !== process.pid) pids.add(pid);
  }
  return [...pids].map((pid) => ({ pid, command: commandOf(pid) }));
}

function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
