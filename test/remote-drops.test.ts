/**
 * Dropped connections: in 20 runs, `master-key apply` over SSH (ACT on
 * SQLite on the host, its hooks there) has its SSH connection killed at a
 * random moment: the sshd processes serving it are killed, as a network
 * that drops does. In half the runs the host then stays unreachable for
 * longer than the runner waits (its sshd stopped for a while): the runner
 * gives up and says so. The rotation job on the host goes on by itself.
 * After every run some key on the host (its act.env, or the rotation's
 * pending-key file) opens every secret; when the run did not finish,
 * `recover` or the next `apply` over SSH reconciles (the server started
 * again, no job left); 0 secrets are lost. The command lines of every
 * process on the machine (runner and host) are sampled throughout: no key
 * ever appears in one.
 */
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { scratchDir } from '../scripts/scratch';
import { RemoteAct, hooksRun, jobsLeft, notOpening, pendingKey, remoteAct, sampleCommandLines } from './support/remote-act';
import { keyLeaks } from './support/scenario';
import { SshdFleet, describeWithSshd, startFleet, stopFleet } from './support/sshd';
import { SQLITE_WAL } from './support/stores';

let fleet: SshdFleet;
let act: RemoteAct;
beforeAll(async () => {
  fleet = await startFleet(1);
  act = await remoteAct(fleet, { store: SQLITE_WAL, perKind: 4, runnerDir: scratchDir('mk-runner-'), hooks: true });
}, 120_000);
afterAll(() => stopFleet(fleet));

const RUNS = 20;

describeWithSshd('the SSH connection killed at a random moment during apply', () => {
  it(`${RUNS} runs: some key on the host opens every secret after each, recover or the next apply reconciles, 0 secrets lost, no key on a command line`, async () => {
    const ssh = [...act.sshArgs.slice(0, -2), '--ssh-timeout', '4s'];
    // How long an undisturbed apply takes here: the window the kills fall in.
    const t0 = Date.now();
    expect(act.cli(['apply'], { ssh }).code).toBe(0);
    const window = Date.now() - t0;
    const keys: MasterKey[] = [act.key, act.nodeKey()];
    const outcomes: Record<string, number> = {};
    const sampler = sampleCommandLines();
    let lost = 0;
    try {
      for (let run = 0; run < RUNS; run++) {
        const before = act.nodeKey();
        const outage = run % 2 === 1;
        const { done } = act.start(['apply', '--json'], { ssh });
        const at = Math.floor(Math.random() * window);
        const killer = new Promise<number>((res) =>
          setTimeout(() => {
            const n = fleet.hosts[0].killSessions();
            // The host stays away longer than the runner waits (4 s, reconnecting for 5 s), then comes back.
            if (outage) void fleet.hosts[0].stop().then(() => setTimeout(() => void fleet.hosts[0].start().then(() => res(n)), 7_000));
            else res(n);
          }, at),
        );
        const r = await done;
        const killed = await killer;
        // Some key on the host opens every secret: its act.env's, else the pending file's.
        const candidates = [act.nodeKey(), pendingKey(act.configPaths[0])].filter((k): k is MasterKey => k !== undefined);
        keys.push(...candidates);
        let opened = false;
        for (const k of candidates) if ((await notOpening(act.url, k.toHex(), act.plaintexts)).length === 0) opened = true;
        if (!opened) lost++;
        expect(opened).toBe(true);
        const outcome = `${outage ? 'outage' : 'drop'}: exit ${r.code}${killed ? '' : ' (the kill came after the end)'}`;
        expect(r.stderr).not.toMatch(/\[INTERNAL\]/);
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        if (r.code !== 0) {
          // Reconcile: recover in one run of two, the next apply in the other.
          const again = act.cli(run % 4 < 2 ? ['recover', '--json'] : ['apply', '--json'], { ssh });
          expect(again.stderr).not.toMatch(/\[INTERNAL\]/);
          expect(again.code).toBe(0);
        }
        if (r.code === 0 && /Could not tell the host that job \S+ is done/.test(r.stderr)) {
          // The host went away around the runner's acknowledgement of the job's end. If it never got it, the job keeps
          // its pending-key file for a runner that missed the result, and status exits INTERRUPTED (the rotation, or the
          // job still waiting on the host); either way the recover the runner asked for finishes the job.
          const left = act.cli(['status', '--json'], { ssh });
          expect([0, ExitCode.INTERRUPTED]).toContain(left.code);
          const rec = act.cli(['recover', '--json'], { ssh });
          expect(rec.stderr).not.toMatch(/\[INTERNAL\]/);
          expect(rec.code).toBe(0);
          const how = `outage: exit 0, acknowledgement unconfirmed, status ${left.code}, then recover`;
          outcomes[how] = (outcomes[how] ?? 0) + 1;
        }
        const st = act.cli(['status', '--json'], { ssh });
        expect(st.code).toBe(0);
        const key = act.nodeKey();
        keys.push(key);
        expect(await notOpening(act.url, key.toHex(), act.plaintexts)).toEqual([]);
        expect(pendingKey(act.configPaths[0])).toBeUndefined();
        expect(jobsLeft(act.configPaths[0])).toEqual([]);
        // The server runs again: its last hooks were the start and health checks.
        expect(hooksRun(fleet.hosts[0]).slice(-2)).toEqual(['start', 'health']);
        if (r.code === 0) expect(key.equals(before)).toBe(false);
      }
    } finally {
      const lines = await sampler.stop();
      expect(keyLeaks(lines.join('\n'), keys)).toEqual([]);
      // The host's side ran as `master-key remote` (and its detached worker): nothing else on its command line.
      expect(lines.filter((l) => l.includes(' remote')).every((l) => / remote$| remote --worker \/\S+\.master-key-jobs\/[\w-]+$/.test(l))).toBe(true);
    }
    process.stderr.write(`remote-drops: ${RUNS} runs, kills within ${window} ms: ${JSON.stringify(outcomes)}; secrets lost: ${lost}\n`);
    expect(lost).toBe(0);
    expect(act.plaintexts.size).toBeGreaterThan(0);
  }, 1_200_000);
});
