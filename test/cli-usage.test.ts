/**
 * The command line's documented behaviour: parse errors like every other
 * error (one `master-key: … [USAGE]` line, `{"ok": false, …}` with --json),
 * `plan --detailed-exitcode` exiting 1 on any error as terraform does,
 * `status` without its config file, and what --help lists.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode } from '../src/errors';
import { scratchDir } from '../scripts/scratch';
import { runCli } from './support/scenario';
import { scenarioForBlock } from './support/block';

const env = { PATH: process.env.PATH, HOME: process.env.HOME };

describe('parse errors', () => {
  it.each([
    [['plan', '--bogus'], "Unknown option '--bogus'; run `master-key plan --help` for usage."],
    [['restore'], "Required option '--backup <dir>' not specified; run `master-key restore --help` for usage."],
    [['status', '--config'], "Option '--config <path>' argument missing; run `master-key status --help` for usage."],
    [['frobnicate'], "Unknown command 'frobnicate'; run `master-key --help` for usage."],
  ])('%j: one line with the USAGE code, exit 3', (args, message) => {
    const r = runCli(args, env);
    expect(r).toEqual({ code: ExitCode.USAGE, stdout: '', stderr: `master-key: ${message} [USAGE]\n` });
  });

  it('with --json, stdout gets {"ok": false, ...} too', () => {
    const r = runCli(['apply', '--json', '--no-such-option'], env);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(JSON.parse(r.stdout)).toEqual({ ok: false, error: { code: 'USAGE', exitCode: ExitCode.USAGE, message: "Unknown option '--no-such-option'; run `master-key apply --help` for usage." } });
    expect(r.stderr).toMatch(/^master-key: Unknown option '--no-such-option'.*\[USAGE\]\n$/);
  });
});

describe('restore --identity-file with a node on another host', () => {
  it.each([[[]], [['--drill']]])('%j: refused before any connection (the identity is never sent over SSH), exit 3', (extra) => {
    // Port 1 on loopback: nothing listens there, so a connection attempt would be a different error (HOST).
    const r = runCli(['restore', ...extra, '--config', 'ssh://root@127.0.0.1:1/etc/act/act.env', '--backup', '/var/backups/act/b1', '--identity-file', '/root/escrow.key'], env);
    const what = extra.length ? 'restore --drill' : 'restore';
    expect(r).toEqual({
      code: ExitCode.USAGE,
      stdout: '',
      stderr: `master-key: --identity-file cannot be used with a node on another host: the age identity is not sent over SSH; run \`master-key ${what} --identity-file\` on the primary node's host, with its config file's local path. [USAGE]\n`,
    });
  });
});

describe('database URLs that cannot be read', () => {
  it.each([
    ['a port out of range', 'postgres://act:s3cret-Passw0rd@db:99999/act', ExitCode.USAGE, /^master-key: The database URL cannot be read \(it is not a valid URL\); .* \[USAGE\]\n$/],
    ['a malformed percent-encoding', 'postgres://act:s3cret-Passw0rd@db/%E0%A4%A', ExitCode.USAGE, /^master-key: The database URL cannot be read \(it holds a % that does not start .*\[USAGE\]\n$/],
    ['a certificate file that does not exist', 'postgres://act:s3cret-Passw0rd@db/act?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem', ExitCode.DATABASE, /^master-key: A certificate or key file the database URL names .* cannot be read: the file or its directory does not exist; .*\[DB_UNREACHABLE\]\n$/],
  ])('%s: one sentence with its code, never the URL (pg threw a TypeError, a URIError or ENOENT: INTERNAL)', (_what, url, code, stderr) => {
    const dir = scratchDir('mk-url-');
    const config = join(dir, 'act.env');
    writeFileSync(config, `ACT_MASTER_KEY=${'ab'.repeat(32)}\n`, { mode: 0o600 });
    const r = runCli(['status', '--config', config], { ...env, DATABASE_URL: url });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr: expect.stringMatching(stderr) });
    expect(r.stdout + r.stderr).not.toContain('s3cret');
  });
});

describe('--help', () => {
  it.each(['init', 'plan', 'apply', 'status', 'verify', 'show', 'set', 'recover', 'restore'])('%s: --config defaults to ./act.env', (cmd) => {
    const r = runCli([cmd, '--help'], env);
    expect(r.code).toBe(0);
    const config = r.stdout.split(/\n {2}(?=-)/).find((b) => b.startsWith('--config <path>'))!;
    expect(config.replace(/\s+/g, ' ')).toMatch(/\(default: \.\/act\.env\)$/);
    expect(r.stdout).not.toContain('(default: [])');
  });

  it('recover lists only the options it uses', () => {
    const r = runCli(['recover', '--help'], env);
    // --backup-dir: where recover removes a backup that never completed (issue 19).
    for (const used of ['--config', '--pending-file', '--inventory', '--start-command', '--health-command', '--batch-size', '--backup-dir', '--json']) expect(r.stdout).toContain(used);
    for (const unused of ['--report-dir', '--backup-recipient', '--stop-command', '--generation', '--new-key']) expect(r.stdout).not.toContain(unused);
  });
});

describe('with a database', () => {
  const scenario = scenarioForBlock({ perKind: 1 });

  it('plan --detailed-exitcode: 0 nothing to do, 2 changes, 1 on any error (the code stays in the message and --json)', async () => {
    const s = scenario();
    expect(s.cli(['plan', '--detailed-exitcode']).code).toBe(ExitCode.CHANGES);
    expect(s.cli(['plan', '--detailed-exitcode', '--generation', '1']).code).toBe(ExitCode.OK);
    const missing = s.cli(['plan', '--detailed-exitcode', '--json', '--config', join(s.dir, 'nope.env')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/\[CONFIG_MISSING\]\n$/);
    expect(JSON.parse(missing.stdout).error).toMatchObject({ code: 'CONFIG_MISSING', exitCode: ExitCode.FILES });
    const noDb = s.cli(['plan', '--detailed-exitcode'], { env: { DATABASE_URL: 'postgresql://nobody@127.0.0.1:9/none' } });
    expect(noDb.code).toBe(1);
    expect(noDb.stderr).toMatch(/\[DB_UNREACHABLE\]\n$/);
    expect(s.cli(['plan', '--detailed-exitcode', '--bogus']).code).toBe(1);
    // A blocked plan is an error too (apply would refuse it); without the flag it keeps its own code.
    const blocked = s.cli(['plan', '--detailed-exitcode', '--backup-dir', '/proc/no-backups-here']);
    expect(blocked.stdout).toContain('Blocked: apply would refuse to run');
    expect(blocked.code).toBe(1);
    expect(s.cli(['plan', '--backup-dir', '/proc/no-backups-here']).code).toBe(ExitCode.FILES);
  });

  it('status without its config file exits 8 (CONFIG_MISSING), not 13', async () => {
    const s = scenario();
    const gone = join(s.dir, 'gone.env');
    const r = s.cli(['status', '--config', gone]);
    expect(r.code).toBe(ExitCode.FILES);
    expect(r.stderr).toMatch(/^master-key: The config file .*gone\.env does not exist.*\[CONFIG_MISSING\]\n$/);
    // A node's file missing: status still shows everything, and exits 8.
    const node = s.cli(['status', '--config', s.configPath, '--config', gone]);
    expect(node.code).toBe(ExitCode.FILES);
    expect(node.stdout).toMatch(/gone\.env: unreadable: The config file .*gone\.env does not exist/);
    // A node whose file holds no usable key is still a node out of step.
    writeFileSync(join(s.dir, 'placeholder.env'), 'ACT_MASTER_KEY=CHANGE_ME\n', { mode: 0o600 });
    expect(s.cli(['status', '--config', s.configPath, '--config', join(s.dir, 'placeholder.env')]).code).toBe(ExitCode.NODE_MISMATCH);
    rmSync(join(s.dir, 'placeholder.env'));
  });
});

describe('--version', () => {
  it('prints the version and which AES-GCM implementation runs here (the prebuilt OpenSSL batch addon on linux-x64)', () => {
    const r = runCli(['--version'], env);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const version = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
    expect(r.stdout).toMatch(new RegExp(`^${version.replace(/\./g, '\\.')}\\nAES-GCM: OpenSSL batch addon \\(OpenSSL 3\\.[^,]+, linux-x64\\)\\n$`));
  });
});
