/**
 * Rotation windows: a policy period (in whole days) counted from a fixed
 * epoch. The window index only changes when a new window starts, so a
 * pipeline that synthesizes and plans every day sees a change on exactly one
 * day per period, with no drift from the time of day it runs at.
 */
import { MasterKeyError } from '../src/errors';
import { quotable } from './credentials';

/** The epoch windows are counted from unless a policy names another one. */
export const DEFAULT_EPOCH = '1970-01-01T00:00:00Z';

const DAY_MS = 86_400_000;

/** One rotation window of a policy. */
export interface RotationWindow {
  /** Length of every window in days. */
  readonly periodDays: number;
  /** Number of whole periods between the epoch and the evaluation time. */
  readonly index: number;
  /** When this window started (UTC). */
  readonly start: Date;
  /** When the next window starts (UTC). */
  readonly end: Date;
}

/**
 * Parses an instant given as an ISO-8601 UTC date or date-time. Throws a
 * USAGE error naming the value and the fix.
 */
export function parseEpoch(epoch: string, what = 'rotationPolicy.epoch'): Date {
  const d = parseUtc(epoch);
  if (!d || Number.isNaN(d.getTime())) {
    throw new MasterKeyError('USAGE', `${what} ${quotable(epoch)} is not a UTC date; write it like 1970-01-01 or 1970-01-01T00:00:00Z.`);
  }
  return d;
}

function parseUtc(text: string): Date | undefined {
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return new Date(`${text}T00:00:00Z`);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]00:?00)$/.test(text)) return new Date(text);
  return undefined;
}

/** Checks that a policy period is a whole number of days of at least one. */
export function checkPeriodDays(periodDays: unknown, what = 'rotationPolicy.periodDays'): number {
  if (typeof periodDays !== 'number' || !Number.isSafeInteger(periodDays) || periodDays < 1) {
    throw new MasterKeyError('USAGE', `${what} is ${String(periodDays)}, not a whole number of days; give a period such as 90 or 365.`);
  }
  return periodDays;
}

/**
 * The window that `at` falls in: index = floor((at - epoch) / period),
 * start = epoch + index * period. Pure: the same inputs give the same window.
 */
export function rotationWindow(periodDays: number, at: Date, epoch: Date = new Date(DEFAULT_EPOCH)): RotationWindow {
  checkPeriodDays(periodDays);
  const periodMs = periodDays * DAY_MS;
  const index = Math.floor((at.getTime() - epoch.getTime()) / periodMs);
  const start = new Date(epoch.getTime() + index * periodMs);
  return { periodDays, index, start, end: new Date(start.getTime() + periodMs) };
}

/** The ISO-8601 UTC form of a window start the CLI takes (`--window-start`). */
export function windowStartIso(w: RotationWindow): string {
  return w.start.toISOString().replace('.000Z', 'Z');
}

/**
 * How a reviewer reads a window in the plan, e.g. `90d #228 from 2026-03-08`
 * (the time is added only when the epoch is not at midnight UTC).
 */
export function describeWindow(w: RotationWindow): string {
  const iso = windowStartIso(w);
  const when = iso.endsWith('T00:00:00Z') ? iso.slice(0, 10) : iso;
  return `${w.periodDays}d #${w.index} from ${when}`;
}
