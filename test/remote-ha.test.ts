/**
 * Octopus's HA runbook over SSH: three nodes on three real OpenSSH servers,
 * one PostgreSQL database. The CLI on the runner stops the server on every
 * host, rotates on the primary's host, sets the new key on the others
 * (`master-key set` there, the key on stdin, checked against the canary),
 * then starts every server; all nodes agree and `status` lists each with
 * its host. A node whose host goes away after the commit leaves the others
 * done and is reported out of step (exit 13, its server left stopped) until
 * a later `set` fixes it and `recover` starts it.
 */
import { readFileSync, statSync } from 'node:fs';
import { ExitCode } from '../src/errors';
import { scratchDir } from '../scripts/scratch';
import { RemoteAct, hookTimes, hooksRun, jobsLeft, notOpening, remoteAct, sampleCommandLines } from './support/remote-act';
import { keyLeaks } from './support/scenario';
import { sqlQuery } from './support/sql';
import { SshdFleet, describeWithSshd, startFleet, stopFleet } from './support/sshd';
import { POSTGRES } from './support/stores';

let fleet: SshdFleet;
let act: RemoteAct;
beforeAll(async () => {
  fleet = await startFleet(3);
  act = await remoteAct(fleet, { store: POSTGRES, perKind: 2, hosts: fleet.hosts, hooks: true, runnerDir: scratchDir('mk-runner-') });
}, 120_000);
afterAll(() => stopFleet(fleet));

const json = <T>(text: string): T => JSON.parse(text) as T;
const labelOf = (i: number) => `root@127.0.0.1:${fleet.hosts[i].port}`;
const mtimeNs = (path: string) => statSync(path, { bigint: true }).mtimeNs;

interface Node {
  address: string;
  host: string;
  setBy: string;
  after?: string;
  error?: string;
}

describeWithSshd('three HA nodes on three hosts, one PostgreSQL', () => {
  it('stops every node, rotates on one, sets the others, starts every node: all agree, and status lists them with their hosts', async () => {
    const old = act.key;
    // Every process's command line (the runner's and the three hosts') is sampled while it runs: the sets carry the key on stdin only.
    const sampler = sampleCommandLines();
    let lines: string[];
    let r: { code: number; stdout: string; stderr: string };
    try {
      r = await act.start(['apply', '--json']).done;
    } finally {
      lines = await sampler.stop();
    }
    expect(r.code).toBe(0);
    const out = json<{ nodes: Node[]; localReportFiles: { markdown: string } }>(r.stdout);
    const key = act.nodeKey(0);
    expect(key.equals(old)).toBe(false);
    expect(out.nodes.map((n) => [n.address, n.host, n.setBy, n.after])).toEqual([
      [act.addresses[0], labelOf(0), 'rotation', key.fingerprint],
      [act.addresses[1], labelOf(1), 'set', key.fingerprint],
      [act.addresses[2], labelOf(2), 'set', key.fingerprint],
    ]);
    for (let i = 0; i < 3; i++) expect(act.nodeKey(i).equals(key)).toBe(true);
    expect(await notOpening(act.url, key.toHex(), act.plaintexts)).toEqual([]);
    // Octopus's order: every stop, then the rotation (the primary's act.env) and the sets (the others'), then every start and health check.
    const times = fleet.hosts.map(hookTimes);
    for (const t of times) expect(t.map((x) => x.which)).toEqual(['stop', 'start', 'health']);
    const lastStop = times.map((t) => t[0].ns).reduce((a, b) => (a > b ? a : b));
    const firstStart = times.map((t) => t[1].ns).reduce((a, b) => (a < b ? a : b));
    for (const p of act.configPaths) {
      expect(mtimeNs(p)).toBeGreaterThan(lastStop);
      expect(mtimeNs(p)).toBeLessThan(firstStart);
    }
    const primaryFirst = times[0][0].ns < times[1][0].ns && times[1][0].ns < times[2][0].ns;
    expect(primaryFirst).toBe(true);
    // The report (on the primary host, and its copy here) names every node's host and how it got the key.
    const md = readFileSync(out.localReportFiles.markdown, 'utf8');
    for (let i = 0; i < 3; i++) expect(md).toContain(`| \`${act.configPaths[i]}\` | ${labelOf(i)} | \`${old.fingerprint}\` → \`${key.fingerprint}\` |`);
    expect(md).toContain('`master-key set` (checked against the canary)');
    const s = act.cli(['status', '--json']);
    expect(s.code).toBe(0);
    expect(json<{ nodes: Array<{ host: string; address: string; matchesDatabase: boolean }> }>(s.stdout).nodes.map((n) => [n.address, n.host, n.matchesDatabase])).toEqual([0, 1, 2].map((i) => [act.addresses[i], labelOf(i), true]));
    for (const p of act.configPaths) expect(jobsLeft(p)).toEqual([]);
    expect(lines.filter((l) => / remote$/.test(l)).length).toBeGreaterThan(0);
    expect(keyLeaks([...lines, r.stdout, r.stderr, md].join('\n'), [old, key])).toEqual([]);
  });

  it('a node whose host goes away midway: the others are done, it is out of step (exit 13) until a later set fixes it; recover then starts it', async () => {
    const before = act.nodeKey(0);
    const [h1, h2, h3] = fleet.hosts;
    const canary = async () => (await sqlQuery<{ fingerprint: string }>(act.url, 'SELECT fingerprint FROM master_key.canary'))[0].fingerprint;
    const run = act.start(['apply', '--json'], { ssh: [...act.sshArgs.slice(0, -2), '--ssh-timeout', '3s'] });
    // The moment the database is committed under the new key, the third host goes away (its sshd and every session).
    let stopped = false;
    const watch = (async () => {
      while (!stopped) {
        if ((await canary()) !== before.fingerprint) {
          await h3.stop();
          stopped = true;
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    })();
    const r = await run.done;
    stopped = true;
    await watch;
    expect(r.code).toBe(ExitCode.NODE_MISMATCH);
    const out = json<{ nodes: Node[]; nodesInSync: boolean }>(r.stdout);
    const key = act.nodeKey(0);
    expect(out.nodesInSync).toBe(false);
    expect(out.nodes.map((n) => [n.setBy, n.after])).toEqual([
      ['rotation', key.fingerprint],
      ['set', key.fingerprint],
      ['not set', undefined],
    ]);
    expect(out.nodes[2].error).toMatch(/root@127\.0\.0\.1:\d+/);
    expect(act.nodeKey(1).equals(key)).toBe(true);
    expect(act.nodeKey(2).equals(before)).toBe(true);
    expect(await notOpening(act.url, key.toHex(), act.plaintexts)).toEqual([]);
    // Its server stays stopped (started with the old key it could not open its secrets); the others started.
    expect(hooksRun(h3).slice(-1)).toEqual(['stop']);
    for (const h of [h1, h2]) expect(hooksRun(h).slice(-2)).toEqual(['start', 'health']);
    const down = act.cli(['status', '--json'], { ssh: [...act.sshArgs.slice(0, -2), '--ssh-timeout', '2s'] });
    expect(down.code).toBe(ExitCode.NODE_MISMATCH);
    const st = json<{ nodes: Array<{ matchesDatabase: boolean; error?: string }>; mismatchedNodes: number }>(down.stdout);
    expect(st.mismatchedNodes).toBe(1);
    expect(st.nodes[2].matchesDatabase).toBe(false);
    expect(st.nodes[2].error).toMatch(/Cannot reach root@127\.0\.0\.1:\d+ over SSH/);

    // The host is back: set fixes the node (the key on stdin); recover starts its server and finishes the job left there.
    await h3.start();
    const set = act.cli(['set', '--key-stdin', '--json'], { configs: [act.addresses[2]], input: key.toHex() });
    expect(set.code).toBe(0);
    expect(act.nodeKey(2).equals(key)).toBe(true);
    const left = act.cli(['status', '--json']);
    expect(left.code).toBe(ExitCode.INTERRUPTED);
    expect(json<{ unfinishedJobs: Array<{ host: string; op: string }>; mismatchedNodes: number }>(left.stdout)).toMatchObject({ mismatchedNodes: 0, unfinishedJobs: [{ host: labelOf(2), op: 'hook' }] });
    const rec = act.cli(['recover', '--json']);
    expect(rec.code).toBe(0);
    expect(hooksRun(h3).slice(-2)).toEqual(['start', 'health']);
    expect(act.cli(['status']).code).toBe(0);
    for (const p of act.configPaths) expect(jobsLeft(p)).toEqual([]);
  });
});
