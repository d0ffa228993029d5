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

export const REPORT_FORMAT = 'cdktf-master-key/report/v1';

export interface RotationReport {
  readonly format: typeof REPORT_FORMAT;
  readonly rotationId: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly database: string;
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
  readonly backup: { readonly path: string; readonly manifestSha256: string; readonly values: number; readonly bytes: number };
  readonly configs: ReadonlyArray<{ readonly path: string; readonly before: string; readonly after: string }>;
  readonly newKeyFile?: string;
  readonly hooks: ReadonlyArray<{ readonly which: string; readonly command: string; readonly ms: number }>;
  /** Milliseconds per phase, in order. */
  readonly phases: Readonly<Record<string, number>>;
  readonly verification: { readonly ok: boolean; readonly checked: number; readonly failures: number; readonly openWithOldKey: number };
  readonly outcome: 'verified' | 'verify-failed';
}

const n = (x: number) => x.toLocaleString('en-US');

export function summaryLine(r: RotationReport): string {
  return `Processed ${n(r.processed)} secrets, ${n(r.updated)} updated, ${n(r.unchangedDueToErrors)} left unchanged due to errors.`;
}

export function renderMarkdown(r: RotationReport): string {
  const lines: string[] = [];
  lines.push(`# Master key rotation report`, '');
  lines.push(`| | |`, `|---|---|`);
  lines.push(`| Rotation | \`${r.rotationId}\` |`);
  lines.push(`| Started | ${r.startedAt} |`);
  lines.push(`| Finished | ${r.finishedAt} |`);
  lines.push(`| Database | ${r.database} |`);
  lines.push(`| Why | ${r.reason} |`);
  lines.push(`| Generation | ${r.fromGeneration} → ${r.toGeneration} |`);
  lines.push(`| Old key | \`${r.oldFingerprint}\` |`);
  lines.push(`| New key | \`${r.newFingerprint}\` |`);
  lines.push(`| Outcome | **${r.outcome}** |`, '');
  lines.push(`## Secrets`, '', `${summaryLine(r)} (${n(r.rowsUpdated)} database rows rewritten.)`, '');
  lines.push(`| Kind | Re-encrypted |`, `|---|---:|`);
  for (const [k, v] of Object.entries(r.byKind)) lines.push(`| ${k} | ${n(v)} |`);
  lines.push(`| **total** | **${n(r.updated)}** |`, '');
  lines.push(`## Config files`, '');
  for (const c of r.configs) lines.push(`- \`${c.path}\`: \`${c.before}\` → \`${c.after}\``);
  if (r.newKeyFile) lines.push(`- new key also written to \`${r.newKeyFile}\` (mode 0600)`);
  lines.push('', `## Backup`, '');
  lines.push(`- location: \`${r.backup.path}\``);
  lines.push(`- manifest SHA-256: \`${r.backup.manifestSha256}\``);
  lines.push(`- ${n(r.backup.values)} stored values, ${n(r.backup.bytes)} bytes (the config copies hold the old key: keep the backup as safe as the key)`, '');
  lines.push(`## Verification`, '');
  lines.push(
    r.verification.ok
      ? `Every one of ${n(r.verification.checked)} secrets opens with the new key; the old key opens ${n(r.verification.openWithOldKey)} of them.`
      : `**${n(r.verification.failures)} of ${n(r.verification.checked)} secrets do not open with the new key**: run \`master-key verify\` and restore from the backup above.`,
    '',
  );
  if (r.hooks.length) {
    lines.push(`## Hooks`, '');
    for (const h of r.hooks) lines.push(`- ${h.which}: \`${h.command}\` (${n(h.ms)} ms)`);
    lines.push('');
  }
  lines.push(`## Timings`, '', `| Phase | ms |`, `|---|---:|`);
  for (const [k, v] of Object.entries(r.phases)) lines.push(`| ${k} | ${n(v)} |`);
  lines.push('', 'Back up the new master key now, and test that the backup restores.', '');
  return lines.join('\n');
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
