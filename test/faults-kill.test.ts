/**
 * The short fault-injection run (the long one is `npm run soak`), on each
 * store: the real CLI SIGKILLed at chosen phases and at random moments, then `recover`, then
 * the invariant (every secret opens with the key now in every config file
 * and equals its original plaintext; canary, configs and history agree) and
 * a next apply that succeeds. Three node configs (dotenv, JSON, XML), so a
 * kill between config writes leaves the nodes split.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { FaultPoint as Phase } from '../src/rotation/faults';
import { ExitCode } from '../src/errors';
import { faultCycle } from '../scripts/soak-cycle';
import { Installation, KillPoint, checkInvariant, configKeys, createInstallation, diskState, runCli } from '../scripts/soak-harness';
import { KILL_STORES } from './support/stores';

let inst: Installation;

/**
 * Kill points the issue names, what recover must find after each, and
 * whether to run a further apply right away (every cycle starts with an
 * apply anyway, so the others get theirs from the next cycle).
 */
const PHASE_KILLS: ReadonlyArray<[string, Phase, number, 'undone' | 'finished' | 'none', boolean]> = [
  ['after the pending key is written', 'pending-written', 1, 'undone', true],
  ['when the backup starts', 'backup-started', 1, 'undone', false],
  ['right after the backup', 'backup-written', 1, 'undone', false],
  ['mid-transaction, after the 3rd re-encrypted batch', 'reencrypt-batch', 3, 'undone', true],
  ['with the canary updated but not committed', 'canary-updated', 1, 'undone', false],
  ['right after the commit', 'committed', 1, 'finished', true],
  ['mid-config-write (1 of 3 node configs written)', 'config-written', 1, 'finished', false],
  ['mid-config-write (2 of 3 node configs written)', 'config-written', 2, 'finished', true],
  ['before the report', 'verified', 1, 'none', true],
];

describe.each(KILL_STORES)('on $name', (store) => {
  let url: string;
  beforeAll(async () => {
    url = await store.create();
    inst = await createInstallation(url, { perKind: 2, nodes: 3 });
  });
  afterAll(() => store.drop(url));

  describe.each(PHASE_KILLS)('apply killed %s', (_what, phase, n, action, applyAfter) => {
    it(`recover ${action === 'none' ? 'finds nothing to do' : action === 'finished' ? 'finishes the rotation' : 'undoes it'}; no secret is lost${applyAfter ? '; the next apply succeeds' : ''}`, async () => {
      const r = await faultCycle(inst, { kill: { phase, n }, batchSize: 2, applyAfter });
      expect(r.violations).toEqual([]);
      expect(r.killed).toBe(true);
      expect(r.recover.action).toBe(action);
      expect(r.committed).toBe(action !== 'undone');
      expect(r.lost).toBe(0);
    });
  });

  describe('recover itself interrupted', () => {
    it('killed after writing the first node config, then run again: finishes the rest', async () => {
      const r = await faultCycle(inst, { kill: { phase: 'committed', n: 1 }, recoverKill: { phase: 'recover-config-written', n: 1 } });
      expect(r.violations).toEqual([]);
      expect(r.recover).toEqual({ runs: 2, killed: 1, action: 'finished' });
    });

    it('killed at a random moment, then run again', async () => {
      const r = await faultCycle(inst, { kill: { phase: 'config-written', n: 1 }, recoverKill: { afterMs: 150 + Math.floor(Math.random() * 300) }, applyAfter: false });
      expect(r.violations).toEqual([]);
      expect(r.recover.action).toMatch(/^(finished|none)$/);
    });
  });

  describe('apply killed at random moments', () => {
    let applyMs = 0;
    beforeAll(async () => {
      applyMs = (await runCli(inst, ['apply'])).ms;
    });

    it.each([1, 2, 3])('random kill %i: the invariant holds', async (i) => {
      const kill: KillPoint = { afterMs: Math.round(Math.random() * applyMs) };
      const r = await faultCycle(inst, { kill, batchSize: 1 + Math.floor(Math.random() * 4), applyAfter: i % 2 === 0 });
      expect({ kill: r.kill, violations: r.violations }).toEqual({ kill: r.kill, violations: [] });
      expect(r.lost).toBe(0);
    });
  });

  describe('an interrupted rotation is detected until recover runs', () => {
    it('plan, apply and status say to run recover and change nothing; recover removes leftover temp files too', async () => {
      const killed = await runCli(inst, ['apply'], { kill: { phase: 'config-written', n: 1 } });
      expect(killed.signal).toBe('SIGKILL');
      // A crash inside an atomic write leaves a temp file next to the config.
      const tmp = join(dirname(inst.configs[1]), `.${basename(inst.configs[1])}.mk-tmp-0123456789ab`);
      writeFileSync(tmp, 'half a confi');
      const files = () => [...inst.configs, inst.pendingPath].map((p) => readFileSync(p, 'utf8'));
      const before = files();
      for (const cmd of ['plan', 'apply']) {
        const r = await runCli(inst, [cmd]);
        expect(r.code).toBe(ExitCode.INTERRUPTED);
        expect(r.stderr).toMatch(/^master-key: An interrupted rotation \(started \S+, mk:[0-9a-f]{12} -> mk:[0-9a-f]{12}\) left .*; run `master-key recover` with the same --config options before anything else\. \[ROTATION_INTERRUPTED\]\n$/);
      }
      const status = await runCli(inst, ['status']);
      expect(status.code).toBe(ExitCode.INTERRUPTED);
      expect(status.stdout).toMatch(/rotation +INTERRUPTED \(started .*\): run `master-key recover`/);
      expect(status.stdout).toMatch(/DIFFERS from the database/);
      expect(files()).toEqual(before);
      expect(existsSync(tmp)).toBe(true);

      const rec = await runCli(inst, ['recover', '--json']);
      expect(rec.code).toBe(0);
      const out = JSON.parse(rec.stdout) as { action: string; configsWritten: string[]; tempFilesRemoved: string[] };
      expect(out.action).toBe('finished');
      expect(out.configsWritten).toEqual(inst.configs.slice(1));
      expect(out.tempFilesRemoved).toEqual([tmp]);
      expect(existsSync(tmp)).toBe(false);
      expect((await checkInvariant(inst)).violations).toEqual([]);
      // Recover again: nothing to do, nothing changed.
      const again = await runCli(inst, ['recover', '--json']);
      expect(JSON.parse(again.stdout)).toMatchObject({ action: 'none', configsWritten: [], tempFilesRemoved: [] });
      const st = await runCli(inst, ['status']);
      expect(st.code).toBe(0);
    });

    it('right after a kill, the key that opens every secret is on disk (config or pending file)', async () => {
      const killed = await runCli(inst, ['apply'], { kill: { phase: 'committed', n: 1 } });
      expect(killed.signal).toBe('SIGKILL');
      const disk = await diskState(inst);
      expect(disk.opened).toBe(disk.total);
      expect(disk.best?.fingerprint).toBe(disk.pendingKey?.fingerprint);
      expect(configKeys(inst).every((k) => k instanceof Error || k.fingerprint !== disk.pendingKey?.fingerprint)).toBe(true);
      expect((await runCli(inst, ['recover'])).code).toBe(0);
      expect((await checkInvariant(inst)).violations).toEqual([]);
    });
  });
});
