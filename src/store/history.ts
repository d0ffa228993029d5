/**
 * The rotation history's columns, shared by every store: the order a row
 * is written in, and turning a stored row back into a `HistoryRow`. Each
 * store only says how it stores times and JSON.
 */
import type { HistoryRow } from './store';

/** The columns a new history row fills, in the order of `historyValues`. */
export const HISTORY_COLUMNS = [
  'rotation_id',
  'started_at',
  'committed_at',
  'from_generation',
  'to_generation',
  'old_fingerprint',
  'new_fingerprint',
  'reason',
  'processed',
  'updated',
  'unchanged_due_to_errors',
  'by_kind',
  'backup_path',
  'backup_sha256',
  'actor',
  'outcome',
] as const;

/** A history row's values in `HISTORY_COLUMNS` order: times through `time`, the counts by kind as JSON text. */
export function historyValues(h: HistoryRow, time: (d: Date) => unknown): unknown[] {
  return [
    h.rotationId,
    time(h.startedAt),
    time(h.committedAt),
    h.fromGeneration,
    h.toGeneration,
    h.oldFingerprint,
    h.newFingerprint,
    h.reason,
    h.processed,
    h.updated,
    h.unchangedDueToErrors,
    JSON.stringify(h.byKind),
    h.backupPath ?? null,
    h.backupSha256 ?? null,
    h.actor,
    h.outcome,
  ];
}

/** A stored history row (all columns, by name) as a `HistoryRow`: times through `time`, `by_kind` parsed when it is text. */
export function historyFromStored(x: Record<string, unknown>, time: (v: unknown) => Date): HistoryRow {
  const byKind = typeof x.by_kind === 'string' ? (JSON.parse(x.by_kind) as Record<string, number>) : (x.by_kind as Record<string, number>);
  return {
    rotationId: x.rotation_id as string,
    startedAt: time(x.started_at),
    committedAt: time(x.committed_at),
    verifiedAt: x.verified_at === null || x.verified_at === undefined ? undefined : time(x.verified_at),
    fromGeneration: x.from_generation as number,
    toGeneration: x.to_generation as number,
    oldFingerprint: x.old_fingerprint as string,
    newFingerprint: x.new_fingerprint as string,
    reason: x.reason as string,
    processed: x.processed as number,
    updated: x.updated as number,
    unchangedDueToErrors: x.unchanged_due_to_errors as number,
    byKind,
    backupPath: (x.backup_path as string | null) ?? undefined,
    backupSha256: (x.backup_sha256 as string | null) ?? undefined,
    actor: x.actor as string,
    outcome: x.outcome as string,
  };
}
