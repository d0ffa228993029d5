/**
 * One fault cycle, as the soak and the fault tests run it: `apply` killed
 * at a chosen point; the keys on disk checked (invariant 1: some key on disk
 * opens every secret); `recover` (itself killed once when asked) until it
 * completes; the full invariant checked; then an unkilled `apply` must
 * succeed and the invariant must hold again.
 */
import { MasterKey } from '../src/crypto/key';
import { Installation, KillPoint, RecoverOutcome, checkInvariant, describeKill, diskState, recoverUntilDone, runCli } from './soak-harness';

export interface CycleOptions {
  /** Where apply dies; undefined runs it to the end. */
  readonly kill?: KillPoint;
  /** Kill the first recover too. */
  readonly recoverKill?: KillPoint;
  /** `--batch-size` for apply (small values give many reencrypt-batch phases). */
  readonly batchSize?: number;
  /** Run an unkilled apply afterwards and check it. @default true */
  readonly applyAfter?: boolean;
  /** Apply with `--seal-ahead` (true), `--no-seal-ahead` (false), or neither (undefined: where it pays off). */
  readonly sealAhead?: boolean;
}

export interface CycleResult {
  readonly kill: string;
  /** The killed apply really died by SIGKILL (a late kill may find it finished). */
  readonly killed: boolean;
  readonly applyExit: number | null;
  /** The killed rotation had committed (the database key changed). */
  readonly committed: boolean;
  /** Secrets no key on disk opened right after the kill. */
  readonly lostAfterKill: number;
  /** Secrets the configured key did not open after recovery (and after the next apply). */
  readonly lost: number;
  readonly recover: RecoverOutcome;
  readonly violations: readonly string[];
  readonly ms: number;
  /** How long the unkilled apply after recovery took (for drawing random kill moments). */
  readonly nextApplyMs?: number;
}

function fingerprint(k: MasterKey | undefined): string {
  return k ? k.fingerprint : 'none';
}

/** Runs one cycle and reports every broken invariant instead of throwing on them. */
export async function faultCycle(inst: Installation, opts: CycleOptions): Promise<CycleResult> {
  const started = Date.now();
  const violations: string[] = [];
  const before = await checkInvariant(inst);
  if (before.violations.length) throw new Error(`the installation is not consistent before the cycle: ${before.violations.join('; ')}`);
  const batch = [...(opts.batchSize ? ['--batch-size', String(opts.batchSize)] : []), ...(opts.sealAhead === undefined ? [] : [opts.sealAhead ? '--seal-ahead' : '--no-seal-ahead'])];
  const apply = await runCli(inst, ['apply', ...batch], { kill: opts.kill });
  const killed = apply.signal === 'SIGKILL';
  if (!killed && apply.code !== 0) violations.push(`apply (${describeKill(opts.kill)}) exited ${apply.code}: ${apply.stderr.trim()}`);

  const disk = await diskState(inst);
  const lostAfterKill = disk.total - disk.opened;
  if (lostAfterKill) violations.push(`after the kill no key on disk opens ${lostAfterKill} of ${disk.total} secrets (configs ${disk.configKeys.map((k) => (k instanceof MasterKey ? k.fingerprint : 'unreadable')).join(', ')}, pending ${fingerprint(disk.pendingKey)})`);
  if (!disk.canaryOpensWithBest) violations.push(`after the kill the key that opens the secrets (${fingerprint(disk.best)}) does not open the canary`);

  const recover = await recoverUntilDone(inst, opts.recoverKill);
  const after = await checkInvariant(inst);
  violations.push(...after.violations.map((v) => `after recover: ${v}`));
  const committed = !!after.key && !!before.key && !after.key.equals(before.key);
  const expectedGeneration = (before.generation ?? 0) + (committed ? 1 : 0);
  if (after.generation !== expectedGeneration) violations.push(`after recover the generation is ${after.generation}, expected ${expectedGeneration}`);
  if (!killed && apply.code === 0 && !committed) violations.push('apply exited 0 but the database key did not change');
  let lost = after.lost;
  let nextApplyMs: number | undefined;

  if (opts.applyAfter !== false) {
    const next = await runCli(inst, ['apply', ...batch]);
    nextApplyMs = next.ms;
    if (next.code !== 0) violations.push(`the next apply exited ${next.code}: ${next.stderr.trim()}`);
    const final = await checkInvariant(inst);
    violations.push(...final.violations.map((v) => `after the next apply: ${v}`));
    if (final.generation !== expectedGeneration + 1) violations.push(`after the next apply the generation is ${final.generation}, expected ${expectedGeneration + 1}`);
    lost = Math.max(lost, final.lost);
  }
  return { kill: describeKill(opts.kill), killed, applyExit: apply.code, committed, lostAfterKill, lost: Math.max(lost, lostAfterKill), recover, violations, ms: Date.now() - started, nextApplyMs };
}
