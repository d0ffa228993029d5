/**
 * Whether a rotation is due: pure, from the database's canary and what the
 * caller declared (a target generation and, for a rotation policy, the start
 * of the current policy window). This is what makes `apply` idempotent, so
 * terraform can run it again safely.
 */
export interface Declared {
  /** Rotate when the database's generation is below this. */
  readonly targetGeneration?: number;
  /** With a policy: rotate when the current key was set before this instant. */
  readonly windowStart?: Date;
  /** Policy period, for wording only. */
  readonly policyDays?: number;
}

export interface Decision {
  readonly rotate: boolean;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  /** Why, in words a reviewer reads in plans, reports and history. */
  readonly reason: string;
}

export function decideRotation(db: { generation: number; keyCreatedAt: Date }, declared: Declared): Decision {
  const from = db.generation;
  const target = declared.targetGeneration;
  if (target === undefined) {
    return { rotate: true, fromGeneration: from, toGeneration: from + 1, reason: `manual rotation (generation ${from} -> ${from + 1})` };
  }
  if (from < target) {
    return { rotate: true, fromGeneration: from, toGeneration: target, reason: `declared generation ${target} is above the database's generation ${from}` };
  }
  if (declared.windowStart && db.keyCreatedAt.getTime() < declared.windowStart.getTime()) {
    const period = declared.policyDays ? `${declared.policyDays}-day ` : '';
    return {
      rotate: true,
      fromGeneration: from,
      toGeneration: Math.max(from, target),
      reason: `rotation policy: the key set ${db.keyCreatedAt.toISOString()} predates the ${period}policy window that started ${declared.windowStart.toISOString()}`,
    };
  }
  const ahead = from > target ? ` (the database is at generation ${from}, ahead of the declared ${target})` : '';
  const fresh = declared.windowStart ? ` and the key was set within the current policy window` : '';
  return { rotate: false, fromGeneration: from, toGeneration: from, reason: `the database is already at generation ${from}${ahead}${fresh}` };
}

/**
 * Parses `365d`, `12w`, `48h`, `1y` (365 days) or a plain number of days into
 * milliseconds; undefined when malformed. There is no `m`: readers take it
 * for minutes as often as for months, so `3m` is refused rather than guessed.
 */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([dhwy]?)\s*$/i.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] || 'd').toLowerCase();
  const day = 86_400_000;
  const mult: Record<string, number> = { h: 3_600_000, d: day, w: 7 * day, y: 365 * day };
  return n * mult[unit];
}
