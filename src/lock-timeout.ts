/**
 * The lock timeout (`--lock-timeout`, the construct's `lockTimeout`, the
 * provider's `lock_timeout`): how long a command waits for a lock another
 * session holds (PostgreSQL's `lock_timeout` in the rotation's transaction,
 * SQLite's busy timeout) before it refuses with TABLES_BUSY, having changed
 * nothing. One parser, so the three surfaces accept the same text.
 */
import { MasterKeyError } from './errors';

/** 30 s: longer than any healthy transaction of a server, short enough that a stuck one does not keep a stopped server down. */
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/** At most a day: PostgreSQL takes up to 2^31-1 ms; a wait of more than a day is a mistake. */
const MAX_MS = 86_400_000;

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, min: 60_000, h: 3_600_000 };

/**
 * `30s`, `1500ms`, `2min`, `1h`, or a plain number of seconds (`30`,
 * `0.5`), as milliseconds; undefined when the text is none of these, or not
 * more than 0 and at most a day. `m` is refused (minutes or months?), as in `--max-age`.
 */
export function lockTimeoutMs(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*$/i.exec(text);
  if (!m) return undefined;
  const ms = Math.round(Number(m[1]) * UNITS[(m[2] ?? 's').toLowerCase()]);
  return ms > 0 && ms <= MAX_MS ? ms : undefined;
}

/** The lock timeout `text` gives, or USAGE naming the setting (`--lock-timeout`, `lock_timeout`, ...) and the accepted forms. */
export function parseLockTimeout(text: string, setting: string): number {
  const ms = lockTimeoutMs(text);
  if (ms === undefined) {
    throw new MasterKeyError('USAGE', `${setting} "${text}" is not a lock timeout; give a duration of more than 0 and at most a day, such as 30s, 500ms, 2min or 1h (a plain number is seconds).`);
  }
  return ms;
}

/** A lock timeout for people: `30 s`, `500 ms`, `2 min`. */
export function describeLockTimeout(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms >= 1000) return `${Math.round(ms / 100) / 10} s`;
  return `${ms} ms`;
}
