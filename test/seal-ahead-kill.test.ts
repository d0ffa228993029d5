/**
 * Seal-ahead's crash safety, on PostgreSQL and on SQLite in WAL mode (the
 * mode where SQLite seals ahead): the real CLI, `apply --seal-ahead`,
 * SIGKILLed at each of seal-ahead's fault points, at the cut-over's, and at
 * random moments while it seals ahead; then `recover`, and the invariant
 * (every secret opens with the configured key to its plaintext; nodes,
 * canary and history agree; no pending file, and no staging area left);
 * then a next apply that succeeds. A staging area left by the kill is
 * removed by recover, which says so. Also at the bulk of the backup made
 * in seal-ahead's snapshot (SQLite: a copy of the database; PostgreSQL:
 * secrets-ahead.jsonl; written, then durable): recover removes that
 * incomplete backup, saying so; and, sealed to an age recipient, while age
 * seals it.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import type { FaultPoint } from '../src/rotation/faults';
import { faultCycle } from '../scripts/soak-cycle';
import { Installation, checkInvariant, createInstallation, runCli, stagingLeft } from '../scripts/soak-harness';
import { withTestSql } from './support/sql';
import { POSTGRES, SQLITE_WAL } from './support/stores';

const KILLS: ReadonlyArray<[string, FaultPoint, number, 'undone' | 'finished' | 'none']> = [
  ['as seal-ahead starts', 'seal-ahead-started', 1, 'undone'],
  ['mid seal-ahead, after the 3rd staged batch', 'seal-ahead-batch', 3, 'undone'],
  ['with everything staged, before the stop hook', 'sealed-ahead', 1, 'undone'],
  ['inside the cut-over transaction', 'transaction-begun', 1, 'undone'],
  ['with the staged values swapped in, not committed', 'reencrypted', 1, 'undone'],
  ['right after the cut-over committed', 'committed', 1, 'finished'],
  ['after the start hooks, as the staging area is removed', 'staging-removed', 1, 'none'],
  // The bulk of the backup, written in seal-ahead's snapshot: whole but not yet durable, then durable (and sealed).
  ["with the backup's bulk written in seal-ahead's snapshot, not yet durable", 'backup-ahead-copied', 1, 'undone'],
  ["with the backup's bulk durable, still sealing ahead", 'backup-ahead-written', 1, 'undone'],
];

/** The files of a backup made ahead, sealed: the bulk and the changes of the window. */
const AHEAD_FILES = { sqlite: ['changes.sqlite.age', 'database.sqlite.age'], postgres: ['changes.jsonl.age', 'secrets-ahead.jsonl.age'] };

describe.each([POSTGRES, SQLITE_WAL])('seal-ahead killed, on $name', (store) => {
  let url: string;
  let inst: Installation;
  beforeAll(async () => {
    url = await store.create();
    inst = await createInstallation(url, { perKind: 3, nodes: 2 });
  });
  afterAll(() => store.drop(url));

  it.each(KILLS)('killed %s (at %s, #%i): recover %s; 0 lost; no staging left; the next apply succeeds', async (_what, phase, n, action) => {
    const r = await faultCycle(inst, { kill: { phase, n }, batchSize: 2, sealAhead: true });
    expect(r.violations).toEqual([]);
    expect(r.killed).toBe(true);
    expect(r.recover.action).toBe(action);
    expect(r.lost).toBe(0);
    expect(await withTestSql(url, (db) => stagingLeft(db, url))).toEqual([]);
  });

  it('recover says it removed the staging area a kill left', async () => {
    const killed = await runCli(inst, ['apply', '--seal-ahead'], { kill: { phase: 'sealed-ahead', n: 1 } });
    expect(killed.signal).toBe('SIGKILL');
    expect((await withTestSql(url, (db) => stagingLeft(db, url))).length).toBeGreaterThan(0);
    const rec = await runCli(inst, ['recover', '--json']);
    expect(rec.code).toBe(0);
    const out = JSON.parse(rec.stdout) as { action: string; stagingRemoved: string[] };
    expect(out.action).toBe('undone');
    expect(out.stagingRemoved.length).toBeGreaterThan(0);
    expect(rec.stderr).toMatch(/Removed the staging area an interrupted seal-ahead left behind: .*sealed under mk:[0-9a-f]{12}.*; its values were never swapped in\./);
    expect(await withTestSql(url, (db) => stagingLeft(db, url))).toEqual([]);
  });

  const backupDirs = () => readdirSync(inst.backupDir).map((n) => join(inst.backupDir, n));

  it.each(['backup-ahead-copied', 'backup-ahead-written', 'backup-sealing'])(
    "killed at %s while the backup is made ahead (sealed to a recipient): recover removes the incomplete backup, saying so; 0 lost; the next sealed apply drills",
    async (phase) => {
      const id = await generateX25519Identity();
      const recipient = await identityToRecipient(id);
      const identityFile = join(inst.dir, 'escrow-ahead.key');
      writeFileSync(identityFile, `${id}\n`, { mode: 0o600 });
      const before = backupDirs();
      const killed = await runCli(inst, ['apply', '--seal-ahead', '--backup-recipient', recipient, '--batch-size', '2'], { kill: { phase: phase as FaultPoint, n: 1 } });
      expect(killed.signal).toBe('SIGKILL');
      const left = backupDirs().filter((d) => !before.includes(d));
      expect(left).toHaveLength(1);
      const files = readdirSync(left[0]);
      expect(files).not.toContain('manifest.json');
      // Never the changes of the window: the kill came before the stop hook.
      expect(files).not.toContain(AHEAD_FILES[store.kind][0]);
      const rec = await runCli(inst, ['recover', '--json']);
      expect(rec.code).toBe(0);
      const out = JSON.parse(rec.stdout) as { action: string; tempFilesRemoved: string[] };
      expect(out.action).toBe('undone');
      expect(out.tempFilesRemoved).toContain(left[0]);
      expect(backupDirs()).toEqual(before);
      expect((await checkInvariant(inst)).violations).toEqual([]);
      expect(await withTestSql(url, (db) => stagingLeft(db, url))).toEqual([]);

      const next = await runCli(inst, ['apply', '--json', '--seal-ahead', '--backup-recipient', recipient]);
      expect(next.code).toBe(0);
      const backup = (JSON.parse(next.stdout) as { report: { backup: { path: string } } }).report.backup.path;
      expect(readdirSync(backup).filter((f) => !f.startsWith('config-')).sort()).toEqual([...AHEAD_FILES[store.kind], 'manifest.json'].sort());
      const drill = await runCli(inst, ['restore', '--drill', '--backup', backup, '--identity-file', identityFile]);
      expect(drill.stderr).toBe('');
      expect(drill.code).toBe(0);
      expect((await checkInvariant(inst)).violations).toEqual([]);
    },
  );

  describe('at random moments while it seals ahead', () => {
    let sealMs = 0;
    beforeAll(async () => {
      const started = Date.now();
      const r = await runCli(inst, ['apply', '--seal-ahead', '--batch-size', '1']);
      expect(r.code).toBe(0);
      // Seal-ahead ends before the stop hook: a kill before then lands in it or just before.
      sealMs = Math.max(50, Math.round((Date.now() - started) * 0.6));
    });

    it.each([1, 2, 3, 4])('random kill %i: 0 lost, no staging left', async () => {
      const r = await faultCycle(inst, { kill: { afterMs: Math.round(Math.random() * sealMs) }, batchSize: 1, sealAhead: true, applyAfter: false });
      expect({ kill: r.kill, violations: r.violations }).toEqual({ kill: r.kill, violations: [] });
      expect(r.lost).toBe(0);
    });
  });
});
