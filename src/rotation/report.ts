/**
 * The auditor's report of a rotation: JSON (stable, for machines) and
 * Markdown (for people), in the words auditors know from Octopus
 * ("processed N, N updated, 0 left unchanged due to errors"), plus per-kind
 * counts, fingerprints, backup location and checksum, timings and the
 * verification. Pure rendering; never a key.
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { atomicWriteFile } from '../fsutil';
import { MasterKeyError } from '../errors';
import { count, share } from '../format';
import { recipientLabel } from './age';

export const REPORT_FORMAT = 'cdktf-master-key/report/v1';

export interface RotationReport {
  readonly format: typeof REPORT_FORMAT;
  readonly rotationId: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly database: string;
  /** The AES-GCM implementation that ran: "OpenSSL batch addon (…)" or "node:crypto (why the addon is not used; …)". */
  readonly aesGcm: string;
  readonly reason: string;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  readonly oldFingerprint: string;
  readonly newFingerprint: string;
  readonly processed: number;
  readonly updated: number;
  readonly unchangedDueToErrors: number;
  /** Database rows rewritten (a row can hold several secrets). */
  readonly rowsUpdated: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** The backup the transaction took before rewriting anything; `ms`: how long it took, alongside the re-encryption. */
  readonly backup: { readonly path: string; readonly manifestSha256: string; readonly values: number; readonly bytes: number; readonly ms: number; readonly sealedTo?: readonly string[] };
  readonly configs: ReadonlyArray<{ readonly path: string; readonly before: string; readonly after: string }>;
  readonly newKeyFile?: string;
  readonly hooks: ReadonlyArray<{ readonly which: string; readonly command: string; readonly ms: number }>;
  /** Milliseconds per phase, in order. */
  readonly phases: Readonly<Record<string, number>>;
  /** The phases' total, and the server-down window: the phases from the stop hook to the start hooks (whether or not hooks were given). */
  readonly timing: TimingSummary & { readonly serverUpSealAheadMs: number };
  /** Seal-ahead: whether it ran (and why, or why not), for how long with the server up, and what the cut-over swapped in and re-sealed. */
  readonly sealAhead?: SealAheadOutcome;
  readonly verification: RotationVerification;
  /** Where every key went: the new key, the old keys the backups still hold (sealed to whom), what was retired. */
  readonly custody: KeyCustody;
  readonly outcome: 'verified' | 'verify-failed';
  /**
   * Nodes on other hosts (a rotation run from another machine): every node
   * with its host, and how it got the new key: by the rotation on the
   * primary node's host, by `master-key set` on its own host, or not (out of
   * step, with why).
   */
  readonly nodes?: ReadonlyArray<ReportNode>;
  /** The machine that ran the rotation over SSH, when it was not the primary node's host. */
  readonly runner?: string;
}

/** A node in the report of a rotation run from another machine. */
export interface ReportNode {
  readonly address: string;
  readonly host: string;
  readonly path: string;
  readonly before?: string;
  readonly after?: string;
  readonly setBy: 'rotation' | 'set' | 'unchanged' | 'not set';
  readonly error?: string;
}

/** The report's "key custody" section. */
export interface KeyCustody {
  /** Where the new key was written (config files; the --new-key-out file). */
  readonly newKey: { readonly fingerprint: string; readonly writtenTo: readonly string[] };
  /** The backups of this database that hold an old key after this run (newest first, this rotation's first): sealed to whom; empty `sealedTo`: in cleartext. */
  readonly backups: ReadonlyArray<{ readonly path: string; readonly fingerprint: string; readonly generation: number; readonly createdAt: string; readonly sealedTo: readonly string[] }>;
  /** The retention applied after the verified rotation (provider `backup_retention`), when declared. */
  readonly retention?: string;
  /** The backups it retired, each recorded in the rotation history. */
  readonly retired: ReadonlyArray<{ readonly path: string; readonly fingerprint: string; readonly generation: number; readonly createdAt: string; readonly retiredAt: string; readonly actor: string }>;
}

/** What a verification checked and what that proves. */
export interface Verification {
  readonly ok: boolean;
  /** Stored values checked. */
  readonly checked: number;
  /** Values that do not open with the key. */
  readonly failures: number;
  /** What was proved, in a sentence or two for auditors (names only fingerprints). */
  readonly proved: string;
}

/**
 * The verification after a rotation: one scan comparing the digest of what
 * the database stores with the digest of what the re-encryption wrote, and
 * a random sample opened with the new key (`failures` counts the values
 * opened that do not open: sampled, or where stored and written differ).
 */
export interface RotationVerification extends Verification {
  /** The stored values are exactly the values the re-encryption wrote, at the places it wrote them. */
  readonly digestMatches: boolean;
  /** Values chosen at random and opened with the new key. */
  readonly sampled: number;
  /**
   * When values were added, changed or removed since the re-encryption (a
   * server its start hook started wrote): the groups of places where stored
   * and written differ, the written values proved stored as written
   * elsewhere, and the values stored in those groups, each opened.
   */
  readonly changedSince?: { readonly groups: number; readonly asWritten: number; readonly opened: number; readonly failures: number };
}

/** What seal-ahead did in a rotation (`RotationReport.sealAhead`). */
export interface SealAheadOutcome {
  /** It ran before the stop hook (false: one pass, for `reason`). */
  readonly ran: boolean;
  readonly reason: string;
  /** Milliseconds it took, with the server up. */
  readonly ms: number;
  readonly stagedValues?: number;
  readonly stagedRows?: number;
  /** Bytes the staging area took. */
  readonly stagingBytes?: number;
  /** The transaction used the staging area (false: it was no longer intact, every value was re-sealed there). */
  readonly used?: boolean;
  /** Rows swapped in from the staging area, inside the transaction. */
  readonly swappedRows?: number;
  /** Rows added or changed since seal-ahead, re-sealed inside the transaction. */
  readonly resealedRows?: number;
}

export interface TimingSummary {
  /** Sum of the phases' milliseconds. */
  readonly totalMs: number;
  /** Milliseconds from the stop hook to the start hooks, both included. */
  readonly serverDownMs: number;
  /** The phases that make up the server-down window, in order. */
  readonly serverDownPhases: readonly string[];
}

/** The total and the server-down window (the sum of the `down` phases) of a run's timings. */
export function timingSummary(phases: Readonly<Record<string, number>>, down: readonly string[]): TimingSummary {
  const sum = (names: readonly string[]) => names.reduce((a, k) => a + (phases[k] ?? 0), 0);
  return { totalMs: sum(Object.keys(phases)), serverDownMs: sum(down), serverDownPhases: down.filter((k) => k in phases) };
}


export function summaryLine(r: RotationReport): string {
  return `Processed ${count(r.processed)} secrets, ${count(r.updated)} updated, ${count(r.unchangedDueToErrors)} left unchanged due to errors.`;
}

export function renderMarkdown(r: RotationReport): string {
  const lines: string[] = [];
  lines.push(`# Master key rotation report`, '');
  lines.push(`| | |`, `|---|---|`);
  lines.push(`| Rotation | \`${r.rotationId}\` |`);
  lines.push(`| Started | ${r.startedAt} |`);
  lines.push(`| Finished | ${r.finishedAt} |`);
  lines.push(`| Database | ${r.database} |`);
  lines.push(`| AES-GCM | ${r.aesGcm} |`);
  lines.push(`| Why | ${r.reason} |`);
  lines.push(`| Generation | ${r.fromGeneration} → ${r.toGeneration} |`);
  lines.push(`| Old key | \`${r.oldFingerprint}\` |`);
  lines.push(`| New key | \`${r.newFingerprint}\` |`);
  lines.push(`| Outcome | **${r.outcome}** |`, '');
  lines.push(`## Secrets`, '', `${summaryLine(r)} (${count(r.rowsUpdated)} database rows rewritten.)`, '');
  lines.push(`| Kind | Re-encrypted |`, `|---|---:|`);
  for (const [k, v] of Object.entries(r.byKind)) lines.push(`| ${k} | ${count(v)} |`);
  lines.push(`| **total** | **${count(r.updated)}** |`, '');
  lines.push(`## Config files`, '');
  if (r.nodes) {
    if (r.runner) lines.push(`Run from ${r.runner} over SSH; the rotation ran on the primary node's host, the other nodes got the key with \`master-key set\` on their own hosts.`, '');
    lines.push(`| Node | Host | Key | How |`, `|---|---|---|---|`);
    for (const n of r.nodes) {
      const how = n.setBy === 'rotation' ? 'the rotation' : n.setBy === 'set' ? '`master-key set` (checked against the canary)' : n.setBy === 'unchanged' ? 'already held it' : `**NOT SET**: ${n.error ?? 'unknown'}`;
      lines.push(`| \`${n.path}\` | ${n.host} | \`${n.before ?? '?'}\` → \`${n.after ?? n.before ?? '?'}\` | ${how} |`);
    }
  } else {
    for (const c of r.configs) lines.push(`- \`${c.path}\`: \`${c.before}\` → \`${c.after}\``);
  }
  if (r.newKeyFile) lines.push(`- new key also written to \`${r.newKeyFile}\` (mode 0600)`);
  lines.push('', `## Backup`, '');
  lines.push(`- location: \`${r.backup.path}\``);
  lines.push(`- manifest SHA-256: \`${r.backup.manifestSha256}\``);
  lines.push(
    r.backup.sealedTo?.length
      ? `- ${count(r.backup.values)} stored values, ${count(r.backup.bytes)} bytes, every file sealed (age) to ${r.backup.sealedTo.map(recipientLabel).join(', ')}: the old key it holds opens only with one of their identities`
      : `- ${count(r.backup.values)} stored values, ${count(r.backup.bytes)} bytes. **The backup holds the old key in cleartext** (its config copies; no backup recipients were declared): keep it as safe as the key, or declare recipients`,
  );
  lines.push(`- taken inside the rotation's transaction, in its snapshot, alongside the re-encryption: ${count(r.backup.ms)} ms`, '');
  lines.push(`## Verification`, '');
  lines.push(
    r.verification.ok
      ? r.verification.proved
      : `**Verification failed.** ${r.verification.proved} Run \`master-key verify\`, and restore from the backup above if needed.`,
    '',
  );
  lines.push(...custodyLines(r.custody));
  if (r.hooks.length) {
    lines.push(`## Hooks`, '');
    for (const h of r.hooks) lines.push(`- ${h.which}: \`${h.command}\` (${count(h.ms)} ms)`);
    lines.push('');
  }
  const t = r.timing;
  lines.push(`## Timings`, '', `| Phase | ms | share |`, `|---|---:|---:|`);
  for (const [k, v] of Object.entries(r.phases)) lines.push(`| ${k} | ${count(v)} | ${share(v, t.totalMs)} |`);
  lines.push(`| **total** | **${count(t.totalMs)}** | 100% |`, '');
  lines.push(`Server down (from the stop hook to the start hooks: ${t.serverDownPhases.join(', ')}): **${count(t.serverDownMs)} ms**, ${share(t.serverDownMs, t.totalMs)} of the run.`);
  const sa = r.sealAhead;
  if (sa) {
    lines.push(
      '',
      sa.ran
        ? `Seal-ahead, with the server up: **${count(r.timing.serverUpSealAheadMs)} ms**; ${count(sa.stagedValues ?? 0)} secrets staged in ${count(sa.stagedRows ?? 0)} rows (${count(sa.stagingBytes ?? 0)} bytes of staging). In the transaction: ${count(sa.swappedRows ?? 0)} rows swapped in, ${count(sa.resealedRows ?? 0)} rows added or changed since re-sealed${sa.used === false ? ' (the staging area was no longer intact: every row re-sealed)' : ''}.`
        : `Seal-ahead: not run (${sa.reason}).`,
    );
  }
  lines.push('', 'Back up the new master key now, and test that the backup restores.', '');
  return lines.join('\n');
}

/** The "Key custody" section: where the new key went, which backups hold which old keys (sealed to whom), what was retired. */
function custodyLines(c: KeyCustody): string[] {
  const lines = ['## Key custody', ''];
  lines.push(`- new key \`${c.newKey.fingerprint}\` written to ${c.newKey.writtenTo.map((p) => `\`${p}\``).join(', ')}`);
  if (c.backups.length === 0) lines.push('- no backup holds an old key');
  for (const b of c.backups) {
    lines.push(`- \`${b.path}\` (taken ${b.createdAt}) holds \`${b.fingerprint}\` (generation ${b.generation}), ${b.sealedTo.length ? `sealed to ${b.sealedTo.map(recipientLabel).join(', ')}` : '**in cleartext**'}`);
  }
  if (c.retention) lines.push(`- retention: ${c.retention}; ${c.retired.length ? `retired ${c.retired.length} backup(s), each recorded in the rotation history:` : 'nothing to retire'}`);
  for (const x of c.retired) lines.push(`  - \`${x.path}\`: \`${x.fingerprint}\` (generation ${x.generation}, taken ${x.createdAt}) removed ${x.retiredAt} by ${x.actor}`);
  lines.push('');
  return lines;
}

/** Writes `<stem>.md` and `<stem>.json` into dir; returns their paths. */
export function writeReport(dir: string, r: RotationReport): { markdown: string; json: string } {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
  } catch (e) {
    throw new MasterKeyError('FILE_ERROR', `Cannot create the report directory ${dir} (${(e as NodeJS.ErrnoException).code}); choose a writable --report-dir.`);
  }
  const stem = `rotation-${r.startedAt.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-gen${r.toGeneration}`;
  const markdown = join(dir, `${stem}.md`);
  const json = join(dir, `${stem}.json`);
  atomicWriteFile(json, JSON.stringify(r, null, 2) + '\n', { mode: 0o640 });
  atomicWriteFile(markdown, renderMarkdown(r), { mode: 0o640 });
  return { markdown, json };
}
