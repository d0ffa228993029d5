/**
 * Named phases of a rotation, reported as they are reached. Tests of crash
 * safety set MASTER_KEY_TEST_KILL_AT=<phase>[@<n>] to make the process
 * SIGKILL itself the n-th time (default 1st) that phase is reached: a real
 * kill -9 at an exact point. The variable does nothing else, and is ignored
 * unless it names a phase.
 */
export const PHASES = [
  'locked',
  'preflight-done',
  'pending-written',
  'backup-started',
  'backup-written',
  'stop-hook-done',
  'transaction-begun',
  'reencrypt-batch',
  'reencrypted',
  'canary-updated',
  'committed',
  'config-written',
  'pending-removed',
  'start-hook-done',
  'verified',
  'report-written',
  'recover-config-written',
] as const;

export type Phase = (typeof PHASES)[number];

const counts = new Map<string, number>();

function killTarget(): { phase: string; n: number } | undefined {
  const spec = process.env.MASTER_KEY_TEST_KILL_AT;
  if (!spec) return undefined;
  const [phase, n] = spec.split('@');
  if (!(PHASES as readonly string[]).includes(phase)) return undefined;
  return { phase, n: n ? Math.max(1, Number.parseInt(n, 10) || 1) : 1 };
}

/** Marks that a phase was reached (and dies there if a test asked for it). */
export function reached(phase: Phase): void {
  const t = killTarget();
  if (!t || t.phase !== phase) return;
  const c = (counts.get(phase) ?? 0) + 1;
  counts.set(phase, c);
  if (c === t.n) process.kill(process.pid, 'SIGKILL');
}
