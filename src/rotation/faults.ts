/**
 * Named fault points of a rotation, reported as they are reached. Tests of
 * crash safety set MASTER_KEY_TEST_KILL_AT=<point>[@<n>] to make the
 * process SIGKILL itself the n-th time (default 1st) that point is reached:
 * a real kill -9 at an exact place. The variable does nothing else, and is
 * ignored unless it names a point. The runner reaches most of them as its
 * phases start and end (see `phases.ts`).
 */
export const FAULT_POINTS = [
  'locked',
  'preflight-done',
  'pending-written',
  // Seal-ahead (before the stop hook): started, each batch staged, everything staged; and its staging area removed after the commit.
  'seal-ahead-started',
  'seal-ahead-batch',
  // The backup's bulk written in seal-ahead's snapshot (SQLite: a copy of the database; PostgreSQL: secrets-ahead.jsonl), not yet durable, then durable (and sealed).
  'backup-ahead-copied',
  'backup-ahead-written',
  'sealed-ahead',
  'stop-hook-done',
  'transaction-begun',
  'backup-started',
  'backup-written',
  // A sealed backup's bytes are being handed to age (each write of a streamed file; the start of sealing a file handed over by path).
  'backup-sealing',
  'reencrypt-batch',
  'reencrypted',
  'canary-updated',
  'committed',
  'config-written',
  'pending-removed',
  'start-hook-done',
  'verified',
  'staging-removed',
  'report-written',
  'recover-config-written',
  // Any process: a temp or probe file was written and fsynced, not yet renamed or removed (src/fsutil.ts).
  'temp-written',
  // A host's `master-key remote` made a job's directory and has not started its worker yet (src/remote/front.ts).
  'remote-job-created',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Where one run dies, if a test asked for it; counts the points it reaches. */
export class FaultPoints {
  private readonly target?: { readonly point: string; readonly n: number };
  private count = 0;

  /** `spec` is MASTER_KEY_TEST_KILL_AT's value: `<point>[@<n>]`. */
  constructor(spec: string | undefined) {
    if (!spec) return;
    const [point, n] = spec.split('@');
    if ((FAULT_POINTS as readonly string[]).includes(point)) this.target = { point, n: n ? Math.max(1, Number.parseInt(n, 10) || 1) : 1 };
  }

  /** Marks that a point was reached (and dies there if a test asked for it). */
  reached(point: FaultPoint): void {
    if (this.target?.point !== point) return;
    if (++this.count === this.target.n) process.kill(process.pid, 'SIGKILL');
  }
}
