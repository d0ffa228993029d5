/**
 * Seal-ahead's choice and housekeeping (issue 20): whether a rotation
 * seals every value under the new key while the server still runs (then
 * the server is down only to swap the staged values in), what its staging
 * area costs, and removing a staging area an interrupted run left behind.
 * The store does the work (`Store.sealAhead`, `WriteTx.rotate` with
 * `staged`); this says when and tells the user.
 */
import { count, bytes } from '../format';
import { isMasterKeyError } from '../errors';
import type { InventoryCounts, StagingArea, Store } from '../store/store';
import type { Context } from './context';

/** Values from which seal-ahead pays off by default: below, one pass is over in well under a second. */
export const SEAL_AHEAD_MIN_VALUES = 10_000;

/** What the plan says about seal-ahead. */
export interface SealAheadPlan {
  /** Whether apply seals ahead. */
  readonly run: boolean;
  /** Why (or why not), in a sentence for reviewers. */
  readonly reason: string;
  /** Disk the staging area takes, about (old and new texts of every value): while the rotation runs. */
  readonly stagingBytes: number;
  /** Free bytes where it goes, when the store can tell. */
  readonly freeBytes?: number;
}

/** About what a staging area takes: the stored text twice (old and new), plus a row's keys and overhead. */
export function stagingEstimate(counts: Pick<InventoryCounts, 'storedBytes' | 'rows'>): number {
  return Math.ceil(counts.storedBytes * 2.2 + counts.rows * 64 + 65536);
}

/** Whether apply will seal ahead, and why: the user's choice, what the store supports, and whether it pays off. */
export async function planSealAhead(ctx: Pick<Context, 'sealAhead' | 'inventory'>, store: Store, counts: InventoryCounts): Promise<SealAheadPlan> {
  const need = stagingEstimate(counts);
  if (ctx.sealAhead === false) return { run: false, reason: 'turned off (--no-seal-ahead): one pass, with the server stopped for all of it', stagingBytes: 0 };
  const support = await store.sealAheadSupport(ctx.inventory, need);
  const free = support.freeBytes !== undefined ? { freeBytes: support.freeBytes } : {};
  if (!support.ok) return { run: false, reason: `one pass with the server stopped: seal-ahead cannot run here (${support.reason})`, stagingBytes: need, ...free };
  if (ctx.sealAhead === undefined && !support.byDefault) {
    return {
      run: false,
      reason: "one pass with the server stopped: on this store seal-ahead's cut-over does not shorten the server's downtime, so it runs only when asked (--seal-ahead)",
      stagingBytes: need,
      ...free,
    };
  }
  if (ctx.sealAhead === undefined && counts.values < SEAL_AHEAD_MIN_VALUES) {
    return {
      run: false,
      reason: `one pass with the server stopped: ${count(counts.values)} secrets re-encrypt in a moment, and seal-ahead pays off from ${count(SEAL_AHEAD_MIN_VALUES)} (--seal-ahead forces it)`,
      stagingBytes: need,
      ...free,
    };
  }
  return {
    run: true,
    reason: `every secret is sealed under the new key while the server runs (${support.reason}); the server is stopped only to swap them in and re-seal what changed since`,
    stagingBytes: need,
    ...free,
  };
}

/** The plan's line about seal-ahead. */
export function describeSealAhead(p: SealAheadPlan): string {
  const cost = p.run ? `; staging takes about ${bytes(p.stagingBytes)} of disk until the rotation ends${p.freeBytes !== undefined ? ` (${bytes(p.freeBytes)} free)` : ''}` : '';
  return `${p.run ? 'yes' : 'no'}: ${p.reason}${cost}`;
}

/** A sentence naming staging areas removed, or '' when there were none. */
export function removedSentence(removed: readonly StagingArea[]): string {
  if (removed.length === 0) return '';
  const what = removed.map((a) => `${a.where} (sealed under ${a.fingerprint}, ${bytes(a.bytes)})`).join(', ');
  return `Removed the staging area an interrupted seal-ahead left behind: ${what}; its values were never swapped in.`;
}

/**
 * Removes every staging area when this session can take the rotation lock
 * (or holds it); a rotation running elsewhere keeps its own. Says what it
 * removed, or '' when nothing.
 */
export async function removeLeftoverStaging(store: Store, opts: { readonly holdsLock: boolean }): Promise<string> {
  if ((await store.stagingAreas()).length === 0) return '';
  if (!opts.holdsLock) {
    try {
      await store.lockRotation();
    } catch (e) {
      if (isMasterKeyError(e, 'LOCKED')) return 'A staging area of seal-ahead exists, and another rotation holds the lock: it is left to that rotation.';
      throw e;
    }
  }
  return removedSentence(await store.dropStaging());
}

/**
 * Removes the staging area of this run beside what the session does next
 * (`Store.dropStagingBeside`); never throws. Resolves to false when that
 * could not be done: then `dropStagingQuietly` once the session is done.
 */
export async function dropStagingBesideQuietly(store: Store, log: (line: string) => void): Promise<boolean> {
  try {
    return (await store.dropStagingBeside()) !== undefined;
  } catch (e) {
    log(`Could not remove the staging area (${(e as Error).message}); the next plan, apply or recover removes it.`);
    return true;
  }
}

/** Removes the staging area of this run; never throws (a leftover is removed by the next plan, apply or recover, which say so). */
export async function dropStagingQuietly(store: Store, log: (line: string) => void): Promise<void> {
  try {
    await store.dropStaging();
  } catch (e) {
    log(`Could not remove the staging area (${(e as Error).message}); the next plan, apply or recover removes it.`);
  }
}
