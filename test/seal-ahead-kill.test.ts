/**
 * Seal-ahead's crash safety, on PostgreSQL and on SQLite in WAL mode (the
 * mode where SQLite seals ahead): the real CLI, `apply --seal-ahead`,
 * SIGKILLed at each of seal-ahead's fault points, at the cut-over's, and at
 * random moments while it seals ahead; then `recover`, and the invariant
 * (every secret opens with the configured key to its plaintext; nodes,
 * canary and history agree; no pending file, and no staging area left);
 * then a next apply that succeeds. A staging area left by the kill is
 * removed by recover, which says so.
 */
import type { FaultPoint } from '../src/rotation/faults';
import { faultCycle } from '../scripts/soak-cycle';
import { Installation, createInstallation, runCli, stagingLeft } from '../scripts/soak-harness';
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
];

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
