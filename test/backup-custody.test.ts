/**
 * Custody of old keys (issue 19), through the real CLI on both stores:
 * plan and the report say when a backup will hold the old key in
 * cleartext; status lists the backups still holding old keys, with their
 * ages and recipients; `retire` removes the backups beyond a retention and
 * records each retirement in the rotation history (shown by status);
 * `apply --backup-retention` retires only after a verified rotation, and
 * the report's key custody says what went where.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { ExitCode } from '../src/errors';
import { scenarioForBlock } from './support/block';
import { keyLeaks } from './support/scenario';
import { sqlQuery } from './support/sql';
import { CLI_STORES } from './support/stores';

interface StatusJson {
  fingerprint: string;
  backupsHoldingOldKeys: Array<{ path: string; fingerprint: string; generation: number; ageDays: number; sealedTo: string[] }>;
  retirements: Array<{ fingerprint: string; backup?: string; at: string; actor: string }>;
  lastRotation?: { outcome: string };
}

interface ReportJson {
  backup: { path: string; sealedTo?: string[] };
  custody: {
    newKey: { fingerprint: string; writtenTo: string[] };
    backups: Array<{ path: string; fingerprint: string; sealedTo: string[] }>;
    retention?: string;
    retired: Array<{ path: string; fingerprint: string; actor: string }>;
  };
}

describe.each(CLI_STORES)('custody of old keys on $name', (store) => {
  let recipient: string;
  const scenario = scenarioForBlock({ perKind: 2, store }, async () => {
    recipient = await identityToRecipient(await generateX25519Identity());
  });
  const backups: string[] = [];
  const fingerprints: string[] = [];

  it('plan and the report say that a backup without recipients holds the old key in cleartext', () => {
    const s = scenario();
    const plan = s.cli(['plan', '--generation', '2']);
    expect(plan.stdout).toContain('WARNING: the backup will hold the old key in cleartext (no backup recipients)');
    const planJson = JSON.parse(s.cli(['plan', '--json', '--generation', '2']).stdout) as { backup: { oldKeyInCleartext: boolean; sealedTo: string[] } };
    expect(planJson.backup).toMatchObject({ oldKeyInCleartext: true, sealedTo: [] });
    const sealedPlan = JSON.parse(s.cli(['plan', '--json', '--generation', '2', '--backup-recipient', recipient]).stdout) as { backup: { oldKeyInCleartext: boolean; sealedTo: string[] } };
    expect(sealedPlan.backup).toMatchObject({ oldKeyInCleartext: false, sealedTo: [recipient] });

    fingerprints.push(s.configKey().fingerprint);
    const r = s.cli(['apply', '--json', '--generation', '2']);
    expect(r.code).toBe(0);
    const rep = (JSON.parse(r.stdout) as { report: ReportJson; reportFiles: { markdown: string } });
    backups.push(rep.report.backup.path);
    expect(rep.report.backup.sealedTo).toBeUndefined();
    expect(rep.report.custody.backups).toEqual([expect.objectContaining({ path: rep.report.backup.path, fingerprint: fingerprints[0], sealedTo: [] })]);
    expect(rep.report.custody.newKey).toEqual({ fingerprint: s.configKey().fingerprint, writtenTo: [s.configPath] });
    const md = readFileSync(rep.reportFiles.markdown, 'utf8');
    expect(md).toContain('**The backup holds the old key in cleartext**');
    expect(md).toMatch(/## Key custody\n\n- new key `mk:[0-9a-f]{12}` written to /);
  });

  it('status lists every backup still holding an old key, with its age and whom it is sealed to', () => {
    const s = scenario();
    fingerprints.push(s.configKey().fingerprint);
    const r = s.cli(['apply', '--json', '--generation', '3', '--backup-recipient', recipient]);
    expect(r.code).toBe(0);
    const rep = (JSON.parse(r.stdout) as { report: ReportJson }).report;
    backups.push(rep.backup.path);
    expect(rep.backup.sealedTo).toEqual([recipient]);
    expect(rep.custody.backups.map((b) => [b.path, b.fingerprint, b.sealedTo])).toEqual([
      [backups[1], fingerprints[1], [recipient]],
      [backups[0], fingerprints[0], []],
    ]);
    const st = s.cli(['status', '--json']);
    expect(st.code).toBe(0);
    const status = JSON.parse(st.stdout) as StatusJson;
    expect(status.backupsHoldingOldKeys.map((b) => [b.path, b.fingerprint, b.ageDays, b.sealedTo])).toEqual([
      [backups[1], fingerprints[1], 0, [recipient]],
      [backups[0], fingerprints[0], 0, []],
    ]);
    expect(status.retirements).toEqual([]);
    const text = s.cli(['status']).stdout;
    expect(text).toContain(`backup        ${backups[0]}: holds ${fingerprints[0]} (generation 1), 0 days old, the old key in CLEARTEXT (no backup recipients)`);
    expect(text).toContain(`backup        ${backups[1]}: holds ${fingerprints[1]} (generation 2), 0 days old, sealed to ${recipient}`);
  });

  it('retire refuses an unclear retention, changing nothing', () => {
    const s = scenario();
    for (const args of [['retire'], ['retire', '--keep', '1', '--older-than', '30d'], ['retire', '--keep', '0'], ['retire', '--older-than', '3m']]) {
      const r = s.cli(args);
      expect(r.code).toBe(ExitCode.USAGE);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(backups.every((b) => existsSync(b))).toBe(true);
  });

  it('retire --older-than keeps backups younger than the age; --keep 1 removes the older one and records it in the history, shown by status', async () => {
    const s = scenario();
    const young = JSON.parse(s.cli(['retire', '--json', '--older-than', '30d']).stdout) as { retired: unknown[]; kept: unknown[] };
    expect(young.retired).toEqual([]);
    expect(young.kept).toHaveLength(2);

    const r = s.cli(['retire', '--json', '--keep', '1']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { retired: Array<{ path: string; fingerprint: string; actor: string; retiredAt: string }> };
    expect(out.retired).toEqual([expect.objectContaining({ path: backups[0], fingerprint: fingerprints[0], actor: expect.stringMatching(/^.+@.+$/) })]);
    expect(existsSync(backups[0])).toBe(false);
    expect(existsSync(backups[1])).toBe(true);
    expect(r.stderr).toContain(`Retired ${backups[0]}: the backup of ${fingerprints[0]} (generation 1`);
    expect(keyLeaks(r.stdout + r.stderr, [s.key])).toEqual([]);

    // The history row: the fingerprint it ends, the backup, when, who; the last rotation is still the rotation.
    const rows = await sqlQuery<{ outcome: string; old_fingerprint: string; backup_path: string; actor: string }>(s.url, `SELECT outcome, old_fingerprint, backup_path, actor FROM ${store.kind === 'sqlite' ? 'master_key_history' : 'master_key.history'} WHERE outcome = 'retired'`);
    expect(rows).toEqual([{ outcome: 'retired', old_fingerprint: fingerprints[0], backup_path: backups[0], actor: out.retired[0].actor }]);
    const status = JSON.parse(s.cli(['status', '--json']).stdout) as StatusJson;
    expect(status.retirements).toEqual([{ fingerprint: fingerprints[0], backup: backups[0], at: expect.any(String), actor: out.retired[0].actor }]);
    expect(status.backupsHoldingOldKeys.map((b) => b.path)).toEqual([backups[1]]);
    expect(status.lastRotation?.outcome).toBe('verified');
    expect(s.cli(['status']).stdout).toContain(`retired       ${fingerprints[0]} at `);
  });

  it('apply --backup-retention retires after the verified rotation, and the report says what was retired', () => {
    const s = scenario();
    const before = s.configKey().fingerprint;
    const r = s.cli(['apply', '--json', '--generation', '4', '--backup-recipient', recipient, '--backup-retention', 'keep 1']);
    expect(r.code).toBe(0);
    const rep = (JSON.parse(r.stdout) as { report: ReportJson }).report;
    expect(rep.custody.retention).toBe('keep the newest 1');
    expect(rep.custody.retired.map((x) => [x.path, x.fingerprint])).toEqual([[backups[1], fingerprints[1]]]);
    expect(rep.custody.backups.map((b) => [b.path, b.fingerprint])).toEqual([[rep.backup.path, before]]);
    expect(existsSync(backups[1])).toBe(false);
    expect(readdirSync(join(s.dir, 'master-key-backups'))).toEqual([rep.backup.path.split('/').pop()]);
  });
});
