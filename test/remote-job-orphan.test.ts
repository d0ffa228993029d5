/**
 * A host's `master-key remote` killed between making a rotation job's
 * directory and starting its worker (a dropped connection can do that; the
 * fault point `remote-job-created` does it at that exact instant): nothing
 * ran, so the key is unchanged, and the next `recover` over SSH finds the
 * job abandoned (its front gone, no worker ever claimed it), claims and
 * removes it: no job directory is left, the server runs, and the next
 * apply rotates. Before, such a directory was invisible to status and
 * recover and stayed for a minute (seen once in CI, in the random drops of
 * test/remote-drops.test.ts).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../scripts/scratch';
import { RemoteAct, hooksRun, jobsLeft, notOpening, pendingKey, remoteAct } from './support/remote-act';
import { SshdFleet, describeWithSshd, startFleet, stopFleet } from './support/sshd';
import { SQLITE_WAL } from './support/stores';

let fleet: SshdFleet;
let act: RemoteAct;
beforeAll(async () => {
  fleet = await startFleet(1);
  act = await remoteAct(fleet, { store: SQLITE_WAL, perKind: 2, runnerDir: scratchDir('mk-runner-'), hooks: true });
}, 120_000);
afterAll(() => stopFleet(fleet));

describeWithSshd('the host side killed after making a job, before its worker', () => {
  it('runs nothing, and recover removes the job: no job left, the key unchanged, the next apply rotates', async () => {
    const before = act.nodeKey();
    const killed = act.cli(['apply', '--json', '--remote-command', `env MASTER_KEY_TEST_KILL_AT=remote-job-created master-key`]);
    expect(killed.code).not.toBe(0);
    expect(killed.stderr).not.toMatch(/\[INTERNAL\]/);
    // The job's directory is there, with its front's logs and nothing of a worker.
    const left = jobsLeft(act.configPaths[0]);
    expect(left).toHaveLength(1);
    const dir = join(act.configPaths[0], '..', '.master-key-jobs', left[0]);
    expect(existsSync(join(dir, 'events.jsonl'))).toBe(true);
    expect(existsSync(join(dir, 'claim'))).toBe(false);
    expect(act.nodeKey().equals(before)).toBe(true);
    expect(pendingKey(act.configPaths[0])).toBeUndefined();

    const rec = act.cli(['recover', '--json']);
    expect(rec.stderr).not.toMatch(/\[INTERNAL\]/);
    expect(rec.code).toBe(0);
    expect(jobsLeft(act.configPaths[0])).toEqual([]);
    expect(act.cli(['status', '--json']).code).toBe(0);
    expect(act.nodeKey().equals(before)).toBe(true);
    expect(await notOpening(act.url, before.toHex(), act.plaintexts)).toEqual([]);

    const next = act.cli(['apply', '--json']);
    expect(next.code).toBe(0);
    expect(act.nodeKey().equals(before)).toBe(false);
    expect(await notOpening(act.url, act.nodeKey().toHex(), act.plaintexts)).toEqual([]);
    expect(jobsLeft(act.configPaths[0])).toEqual([]);
    expect(hooksRun(fleet.hosts[0]).slice(-2)).toEqual(['start', 'health']);
  }, 300_000);
});
