/**
 * ACT on SQLite on another host, rotated with the CLI on this machine (the
 * runner) over SSH against a real OpenSSH server (test/support/sshd.ts):
 * the plan reads the host and shows the counts by kind; apply rotates there
 * (the stop, start and health hooks run on the host), an independent
 * reader (node:crypto) opens every value with the key read back from the
 * host's act.env, and the report names the node's host and is copied back
 * into the runner's report directory; status, verify, show, set, recover
 * and restore reach the host too, and so does a rotation through a bastion.
 * Every refusal (unknown or changed host key, wrong user or key,
 * unreachable host, no master-key there, another version there) exits with
 * its code and leaves the host as it was.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { scratchDir } from '../scripts/scratch';
import { RemoteAct, hooksRun, jobsLeft, notOpening, remoteAct } from './support/remote-act';
import { dbSnapshot } from './support/scenario';
import { SshdFleet, describeWithSshd, startFleet, stopFleet } from './support/sshd';
import { SQLITE_WAL } from './support/stores';

let fleet: SshdFleet;
let act: RemoteAct;
beforeAll(async () => {
  fleet = await startFleet(2);
  act = await remoteAct(fleet, { store: SQLITE_WAL, perKind: 3, runnerDir: scratchDir('mk-runner-'), hooks: true });
}, 120_000);
afterAll(() => stopFleet(fleet));

const json = <T>(text: string): T => JSON.parse(text) as T;
const host = () => fleet.hosts[0];
const label = () => `root@127.0.0.1:${host().port}`;

/** What a refused command must leave as it was: the host's config, its database, its hooks, its jobs. */
async function hostState(): Promise<string> {
  return JSON.stringify([readFileSync(act.configPaths[0], 'utf8'), await dbSnapshot(act.url), hooksRun(host()), jobsLeft(act.configPaths[0]), readdirSync(dirname(act.configPaths[0])).sort()]);
}

describeWithSshd('ACT on SQLite on a host, through the CLI over SSH', () => {
  it('plan reads the host: counts by kind, the node named by its address and host; nothing is written there', async () => {
    const before = await hostState();
    const r = act.cli(['plan', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const p = json<{ action: string; secrets: { total: number; byKind: Record<string, number> }; configs: Array<{ address: string; host: string; path: string }>; database: string }>(r.stdout);
    expect(p.action).toBe('rotate');
    expect(p.secrets.total).toBe(act.plaintexts.size);
    expect(Object.values(p.secrets.byKind).reduce((a, b) => a + b, 0)).toBe(act.plaintexts.size);
    expect(p.configs).toEqual([expect.objectContaining({ address: act.addresses[0], host: label(), path: act.configPaths[0] })]);
    expect(p.database).toBe(act.url.slice('sqlite:'.length));
    const human = act.cli(['plan']);
    expect(human.stdout).toContain(`${act.addresses[0]} (dotenv): ACT_MASTER_KEY=<${act.key.fingerprint}…> -> <new key…>`);
    expect(human.stdout).toMatch(/Plan: 1 key to rotate, \d+ secrets to re-encrypt, 1 config file to update\./);
    expect(await hostState()).toBe(before);
  });

  it('apply rotates on the host: its hooks run there, every value opens (node:crypto) with the key in its act.env, the report names the host and is copied back', async () => {
    const r = act.cli(['apply', '--json']);
    expect(r.code).toBe(0);
    const out = json<{ action: string; report: { newFingerprint: string; nodes: unknown[]; configs: unknown[] }; reportFiles: { markdown: string; json: string }; localReportFiles: { markdown: string; json: string }; nodes: unknown[]; nodesInSync: boolean }>(r.stdout);
    const fresh = act.nodeKey();
    expect(fresh.equals(act.key)).toBe(false);
    expect(out.report.newFingerprint).toBe(fresh.fingerprint);
    expect(await notOpening(act.url, fresh.toHex(), act.plaintexts)).toEqual([]);
    expect(hooksRun(host())).toEqual(['stop', 'start', 'health']);
    const node = { address: act.addresses[0], host: label(), path: act.configPaths[0], before: act.key.fingerprint, after: fresh.fingerprint, setBy: 'rotation' };
    expect(out.nodes).toEqual([node]);
    expect(out.nodesInSync).toBe(true);
    // The host's report and the runner's copy: the same, naming the node's host.
    expect(out.reportFiles.markdown.startsWith(join(dirname(act.configPaths[0]), 'master-key-reports'))).toBe(true);
    expect(out.localReportFiles.markdown).toBe(join(act.runnerDir, 'master-key-reports', out.reportFiles.markdown.split('/').pop()!));
    expect(readFileSync(out.localReportFiles.json, 'utf8')).toBe(readFileSync(out.reportFiles.json, 'utf8'));
    expect(readFileSync(out.localReportFiles.markdown, 'utf8')).toBe(readFileSync(out.reportFiles.markdown, 'utf8'));
    const md = readFileSync(out.localReportFiles.markdown, 'utf8');
    expect(md).toContain(`| \`${act.configPaths[0]}\` | ${label()} | \`${act.key.fingerprint}\` → \`${fresh.fingerprint}\` | the rotation |`);
    expect(json<{ nodes: unknown[]; runner: string }>(readFileSync(out.localReportFiles.json, 'utf8')).nodes).toEqual([node]);
    // The host keeps nothing of the run: no job, no pending file.
    expect(jobsLeft(act.configPaths[0])).toEqual([]);
    expect(readdirSync(dirname(act.configPaths[0])).filter((f) => f.includes('mk-pending'))).toEqual([]);
    // The human output streams the host's lines, labelled with the host.
    act.cli(['apply', '--generation', '3']);
    expect(act.cli(['status']).stdout).toContain(`on ${label()}: ${act.nodeKey().fingerprint} (matches the database)`);
  });

  it('status, verify and show read the host; a second apply at the same generation does nothing', () => {
    const key = act.nodeKey();
    const s = act.cli(['status', '--json']);
    expect(s.code).toBe(0);
    const st = json<{ generation: number; nodes: Array<{ address: string; host: string; matchesDatabase: boolean }> }>(s.stdout);
    expect(st.nodes).toEqual([{ path: act.configPaths[0], fingerprint: key.fingerprint, matchesDatabase: true, address: act.addresses[0], host: label() }]);
    const v = act.cli(['verify', '--json']);
    expect(v.code).toBe(0);
    expect(json<{ ok: boolean; checked: number }>(v.stdout)).toMatchObject({ ok: true, checked: act.plaintexts.size });
    expect(act.cli(['show']).stdout).toBe(`${key.fingerprint}\n`);
    const again = act.cli(['apply', '--generation', String(st.generation), '--json']);
    expect(again.code).toBe(0);
    expect(json<{ action: string }>(again.stdout).action).toBe('none');
    expect(act.nodeKey().equals(key)).toBe(true);
  });

  it('set writes a key on the host only when it opens the canary (the key on stdin); recover finds nothing to do', async () => {
    const key = act.nodeKey();
    const stranger = MasterKey.generate();
    const before = await hostState();
    const refused = act.cli(['set', '--key-stdin'], { input: stranger.toHex() });
    expect(refused.code).toBe(ExitCode.KEY_MISMATCH);
    expect(refused.stderr).toContain(`On ${label()}: The key ${stranger.fingerprint} does not open this database's integrity canary`);
    expect(await hostState()).toBe(before);
    const ok = act.cli(['set', '--key-stdin', '--json'], { input: key.toHex() });
    expect(ok.code).toBe(0);
    expect(json(ok.stdout)).toEqual({ ok: true, fingerprint: key.fingerprint, path: act.configPaths[0], address: act.addresses[0], host: label() });
    const rec = act.cli(['recover', '--json']);
    expect(rec.code).toBe(0);
    expect(json<{ action: string; nodes: unknown[] }>(rec.stdout)).toMatchObject({ action: 'none', nodes: [] });
  });

  it('restore puts a backup on the host back: the canary, the config, every value under the backup key', async () => {
    const reports = readdirSync(join(act.runnerDir, 'master-key-reports')).filter((f) => f.endsWith('.json')).sort();
    const last = json<{ backup: { path: string }; oldFingerprint: string }>(readFileSync(join(act.runnerDir, 'master-key-reports', reports[reports.length - 1]), 'utf8'));
    const r = act.cli(['restore', '--backup', last.backup.path, '--json']);
    expect(r.stderr).toContain(`[${label()}] Restored ${last.backup.path}`);
    expect(r.code).toBe(0);
    const key = act.nodeKey();
    expect(key.fingerprint).toBe(last.oldFingerprint);
    expect(await notOpening(act.url, key.toHex(), act.plaintexts)).toEqual([]);
    expect(jobsLeft(act.configPaths[0])).toEqual([]);
  });

  it('rotates through a bastion (the jump host logs the login; the target sees the jump host)', async () => {
    const jump = fleet.hosts[1];
    const logins = () => (jump.log().match(/Accepted publickey for root/g) ?? []).length;
    const before = logins();
    const r = act.cli(['apply', '--json'], { ssh: [...act.sshArgs, '--bastion', `root@127.0.0.1:${jump.port}`] });
    expect(r.code).toBe(0);
    expect(logins()).toBe(before + 1);
    expect(json<{ nodes: Array<{ host: string }> }>(r.stdout).nodes[0].host).toBe(`${label()} via root@127.0.0.1:${jump.port}`);
    expect(await notOpening(act.url, act.nodeKey().toHex(), act.plaintexts)).toEqual([]);
  });
});

describeWithSshd('refusals over SSH: one sentence with its code, and the host as it was', () => {
  /** Runs apply with these changes and checks that nothing on the host changed. */
  async function refused(o: Parameters<RemoteAct['cli']>[1], code: number, pattern: RegExp): Promise<string> {
    const before = await hostState();
    const r = act.cli(['apply', '--json'], o);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(pattern);
    expect(json<{ ok: boolean; error: { exitCode: number } }>(r.stdout)).toMatchObject({ ok: false, error: { exitCode: code } });
    expect(await hostState()).toBe(before);
    return r.stderr;
  }
  const withSsh = (...extra: string[]) => ({ ssh: [...act.sshArgs, ...extra] });
  const ssh = (replace: Record<string, string>) => ({ ssh: act.sshArgs.map((a, i) => (i > 0 && replace[act.sshArgs[i - 1]] !== undefined ? replace[act.sshArgs[i - 1]] : a)) });

  it('an unknown host key (HOST_KEY_UNKNOWN, exit 15) and a changed one (HOST_KEY_MISMATCH, exit 15)', async () => {
    const empty = join(fleet.dir, 'known_hosts.none');
    writeFileSync(empty, '');
    const unknown = await refused(ssh({ '--known-hosts': empty }), ExitCode.HOST, /presented the ssh-ed25519 host key SHA256:[A-Za-z0-9+/]{43}, which is not in .*; nothing was run there: .*host_key = "SHA256:.*\[HOST_KEY_UNKNOWN\]/);
    expect(unknown).toContain(host().fingerprint);
    await refused(withSsh('--host-key', `127.0.0.1:${host().port}=${fleet.hosts[1].fingerprint}`), ExitCode.HOST, new RegExp(`presented the ssh-ed25519 host key ${host().fingerprint.replace(/[+/]/g, '\\$&')}, but the pinned host_key expects .*\\[HOST_KEY_MISMATCH\\]`));
  });

  it('a wrong user or a key the host does not know (SSH_AUTH_FAILED), an unreachable host (HOST_UNREACHABLE)', async () => {
    await refused({ configs: [act.addresses[0].replace('root@', 'nobody@')] }, ExitCode.HOST, /127\.0\.0\.1 did not let nobody log in .*\[SSH_AUTH_FAILED\]/);
    await refused(ssh({ '--private-key-file': fleet.strangerKey }), ExitCode.HOST, /did not let root log in with the key .*id_stranger.*\[SSH_AUTH_FAILED\]/);
    const closed = await new Promise<number>((res) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    await refused({ configs: [act.addresses[0].replace(`:${host().port}/`, `:${closed}/`)] }, ExitCode.HOST, /Cannot reach root@127\.0\.0\.1:\d+ over SSH \(ECONNREFUSED\); nothing was run there.*\[HOST_UNREACHABLE\]/);
  });

  it('no master-key on the host (REMOTE_COMMAND_FAILED, exit 16), and another version there (REMOTE_VERSION_MISMATCH, exit 16)', async () => {
    await refused(withSsh('--remote-command', '/nonexistent/bin/master-key'), ExitCode.REMOTE, /\/nonexistent\/bin\/master-key was not found on root@127\.0\.0\.1:\d+ .*install cdktf-master-key there.*\[REMOTE_COMMAND_FAILED\]/);
    // The same build, installed on the host as another version: its package.json says 0.0.1-other.
    const other = join(host().root, 'opt', 'master-key-other');
    if (!existsSync(other)) {
      mkdirSync(other, { recursive: true });
      const repo = resolve(__dirname, '..');
      writeFileSync(join(other, 'package.json'), JSON.stringify({ ...json<object>(readFileSync(join(repo, 'package.json'), 'utf8')), version: '0.0.1-other' }));
      cpSync(join(repo, 'dist'), join(other, 'dist'), { recursive: true });
      symlinkSync(join(repo, 'node_modules'), join(other, 'node_modules'));
      cpSync(join(repo, 'native'), join(other, 'native'), { recursive: true });
    }
    const version = json<{ version: string }>(readFileSync(resolve(__dirname, '..', 'package.json'), 'utf8')).version;
    const stderr = await refused(withSsh('--remote-command', `${process.execPath} ${join(other, 'dist', 'src', 'cli', 'main.js')}`), ExitCode.REMOTE, /\[REMOTE_VERSION_MISMATCH\]/);
    expect(stderr).toContain(`The master-key on ${label()} is version 0.0.1-other but this one is version ${version}; nothing was run there: install version ${version} on that host`);
  });
});
