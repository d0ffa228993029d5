/**
 * `kill -9` while a sealed backup is being written (issue 19), on each
 * store of the kill suite: the CLI SIGKILLs itself at the fault point
 * `backup-sealing` (bytes being handed to age), then `recover`. Nothing is
 * lost (the transaction never committed: every secret opens with the old
 * key, still in every config), the incomplete backup (no manifest, a
 * partial sealed file or an unsealed scratch copy) is removed and never
 * taken for a backup, and the next sealed apply writes a whole backup that
 * drills with the identity.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { Installation, checkInvariant, createInstallation, runCli } from '../scripts/soak-harness';
import { KILL_STORES } from './support/stores';

describe.each(KILL_STORES)('a sealed backup killed mid-write on $name', (store) => {
  let url: string;
  let inst: Installation;
  let recipient: string;
  let identityFile: string;
  beforeAll(async () => {
    url = await store.create();
    inst = await createInstallation(url, { perKind: 3 });
    const id = await generateX25519Identity();
    recipient = await identityToRecipient(id);
    identityFile = join(inst.dir, 'escrow.key');
    writeFileSync(identityFile, `${id}\n`, { mode: 0o600 });
  });
  afterAll(() => store.drop(url));

  const backupDirs = () => readdirSync(inst.backupDir).map((n) => join(inst.backupDir, n));

  it('recover undoes the rotation and removes the incomplete backup; nothing is lost; the next sealed apply drills', async () => {
    const killed = await runCli(inst, ['apply', '--backup-recipient', recipient, '--batch-size', '2'], { kill: { phase: 'backup-sealing', n: 1 } });
    expect(killed.signal).toBe('SIGKILL');
    const left = backupDirs();
    expect(left).toHaveLength(1);
    const files = readdirSync(left[0]);
    expect(files).not.toContain('manifest.json');
    // What the kill left: sealed config copies, and a partial sealed file or an unsealed scratch copy, never a complete values file.
    expect(files.some((f) => f.endsWith('.age.partial') || f.endsWith('.unsealed'))).toBe(true);
    expect(files.filter((f) => f === 'secrets.jsonl.age' || f === 'database.sqlite.age')).toEqual([]);

    // Restore refuses it: it is no backup.
    const restore = await runCli(inst, ['restore', '--drill', '--backup', left[0], '--identity-file', identityFile]);
    expect(restore.code).toBe(8);
    expect(restore.stderr).toContain('[BACKUP_CORRUPT]');

    const rec = await runCli(inst, ['recover', '--json']);
    expect(rec.code).toBe(0);
    const out = JSON.parse(rec.stdout) as { action: string; tempFilesRemoved: string[] };
    expect(out.action).toBe('undone');
    expect(out.tempFilesRemoved).toContain(left[0]);
    expect(backupDirs()).toEqual([]);
    const inv = await checkInvariant(inst);
    expect(inv.violations).toEqual([]);

    const next = await runCli(inst, ['apply', '--json', '--backup-recipient', recipient]);
    expect(next.code).toBe(0);
    const backup = (JSON.parse(next.stdout) as { report: { backup: { path: string } } }).report.backup.path;
    expect(readdirSync(backup)).toContain('manifest.json');
    expect(readdirSync(backup).filter((f) => f.endsWith('.partial') || f.endsWith('.unsealed'))).toEqual([]);
    const drill = await runCli(inst, ['restore', '--drill', '--backup', backup, '--identity-file', identityFile]);
    expect(drill.code).toBe(0);
    expect((await checkInvariant(inst)).violations).toEqual([]);
  });
});
