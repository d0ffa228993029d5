/**
 * The provider's one seam to the rotation: everything the provider
 * does to a database or a config file goes through the functions here, which
 * call the same code as the CLI (the installation from `openInstallation`:
 * the rotation in this process, or on the primary node's host over SSH, on
 * either store; no shell, no argv). When the rotation's entry points move,
 * this is the file to re-point. It is loaded on first use
 * (`./rotation-seam-loader.ts`), with the database drivers.
 *
 * Refresh and plan must stay fast on a large database, so they count sealed
 * values by query and prove the key with the canary instead of opening every
 * row (src/rotation/key-facts.ts); `verify` asks for the full scan.
 */
import { Installation, openInstallation } from '../context/installation';
import { Declared } from '../rotation/decide';
import { KeyFacts, KeyPlan } from '../rotation/key-facts';
import type { Retention } from '../rotation/retention';
import type { InventoryCounts } from '../store/store';
import { InstallationObject, RotationArguments, providerSurface, settingsOf } from './arguments';

/** The installation a resource's or data source's (known) arguments describe (the CLI's `openInstallation`: in this process, or over SSH), lines to the provider's log. */
export function installationOf(o: InstallationObject & RotationArguments, log: (line: string) => void): Installation {
  return openInstallation(settingsOf(o), providerSurface(log));
}

/** Runs fn on the installation and closes it (its SSH connections), also when fn fails. */
export async function withInstallationOf<T>(o: InstallationObject & RotationArguments, log: (line: string) => void, fn: (i: Installation) => Promise<T>): Promise<T> {
  const inst = installationOf(o, log);
  try {
    return await fn(inst);
  } finally {
    await inst.close();
  }
}

/** Refresh: the key's real state (`keyFacts` where the files are). */
export function keyFacts(inst: Installation, opts: { verify?: boolean; maxAgeDays?: number; refusePending?: boolean } = {}): Promise<KeyFacts> {
  return inst.facts(opts);
}

/** Plan: the data-level dry run (`rotationPlan` where the files are). */
export function rotationPlan(inst: Installation, declared: Declared, opts: { verify?: boolean } = {}): Promise<KeyPlan> {
  return inst.plan(declared, opts);
}

/** Apply: `master-key apply` (generating the new key), in this process or on the primary node's host; nodes it could not set are named. */
export async function applyDeclared(inst: Installation, declared: Declared, newKeyOut?: string, retention?: Retention): Promise<{ rotated: boolean; reportMarkdown?: string; verificationFailures?: number; outOfStep: string[] }> {
  const r = await inst.apply({ ...declared, newKey: { kind: 'generate' }, newKeyOut, retention });
  const outOfStep = (r.nodes ?? []).filter((n) => n.setBy === 'not set').map((n) => `${n.address} (${n.error})`);
  if (r.action === 'none') return { rotated: false, outOfStep };
  return { rotated: true, reportMarkdown: r.localReportFiles?.markdown ?? r.reportFiles.markdown, verificationFailures: r.report.verification.failures, outOfStep };
}

/** Counts the secrets now (apply checks them against the plan's before it rotates). */
export function countSecrets(inst: Installation): Promise<InventoryCounts> {
  return inst.count();
}

export type { KeyFacts, KeyPlan, Problem, Undecryptable } from '../rotation/key-facts';
