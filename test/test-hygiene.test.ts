/**
 * The rules every test run keeps: scratch directories go away (KEEP keeps
 * them), a run that leaves something in the temp directory fails (checked
 * by running jest itself on a leaking test file), and under CI a missing
 * terraform binary fails the terraform tests instead of skipping them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { keepScratch, removeScratch, scratchDir } from '../scripts/scratch';
import { judgeLeftovers, newEntries } from './support/tmp-guard';
import { terraformGate } from './support/terraform';

const REPO = join(__dirname, '..');

describe('scratch directories', () => {
  it('are made 0700 under TMPDIR (the run folder) and removed, unless KEEP is set', () => {
    const dir = scratchDir('mk-hygiene-');
    expect(dirname(dir)).toBe(process.env.TMPDIR);
    writeFileSync(join(dir, 'key'), 'x');
    const saved = process.env.KEEP;
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      process.env.KEEP = '1';
      removeScratch(dir);
      expect(existsSync(dir)).toBe(true);
      expect(stderr).toHaveBeenCalledWith(`KEEP is set: kept ${dir}\n`);
    } finally {
      stderr.mockRestore();
      if (saved === undefined) delete process.env.KEEP;
      else process.env.KEEP = saved;
    }
    removeScratch(dir);
    expect(existsSync(dir)).toBe(false);
  });

  it('KEEP means keep unless empty, 0, false or no', () => {
    for (const v of ['1', 'yes', 'true', 'please']) expect(keepScratch({ KEEP: v })).toBe(true);
    for (const v of [undefined, '', '0', 'false', 'No']) expect(keepScratch({ KEEP: v })).toBe(false);
  });
});

describe('the temp-directory guard (pure)', () => {
  it('counts only entries that are new, ignoring run folders', () => {
    expect(newEntries(['a', 'b'], ['a', 'b', 'c', 'mk-test-run-x1'])).toEqual(['c']);
  });

  it('fails on leftovers in the run folder, and on new temp entries only under CI; KEEP turns leftovers into a note', () => {
    const base = { runDir: '/tmp/mk-test-run-1', tmp: '/tmp' };
    expect(judgeLeftovers({ ...base, leftInRunDir: [], newInTmp: [], ci: true, keep: false })).toEqual({ failures: [], notes: [] });
    const left = judgeLeftovers({ ...base, leftInRunDir: ['mk-scn-1'], newInTmp: [], ci: false, keep: false });
    expect(left.failures).toEqual([
      'The tests left 1 entry left in /tmp/mk-test-run-1: mk-scn-1; every test must remove what it makes, also when it fails (KEEP=1 keeps them for debugging).',
    ]);
    expect(judgeLeftovers({ ...base, leftInRunDir: ['mk-scn-1'], newInTmp: [], ci: false, keep: true }).failures).toEqual([]);
    expect(judgeLeftovers({ ...base, leftInRunDir: [], newInTmp: ['x'], ci: true, keep: false }).failures).toHaveLength(1);
    const local = judgeLeftovers({ ...base, leftInRunDir: [], newInTmp: ['x'], ci: false, keep: false });
    expect(local.failures).toEqual([]);
    expect(local.notes[0]).toContain('under CI this fails the run');
  });
});

describe('a jest run with this configuration', () => {
  /** Runs jest on one test file (JavaScript, written here) with the project's setup and teardown; returns exit code and output. */
  function runJest(body: string, env: NodeJS.ProcessEnv = {}): { code: number; out: string } {
    const dir = scratchDir('mk-jest-fixture-');
    writeFileSync(join(dir, 'fixture.check.js'), body);
    const r = spawnSync(process.execPath, [join(REPO, 'node_modules', 'jest', 'bin', 'jest.js'), '--config', join(REPO, 'jest.config.js'), '--roots', dir, '--testMatch', '**/*.check.js', '--maxWorkers', '1'], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: 120_000,
      // The outer run's server: the inner run needs no PostgreSQL of its own.
      env: { ...process.env, DATABASE_URL: process.env.MK_TEST_ADMIN_URL, CI: '', KEEP: '', ...env },
    });
    removeScratch(dir);
    return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  }

  const clean = `test('clean', () => { const fs = require('fs'), os = require('os'), p = require('path'); const d = fs.mkdtempSync(p.join(os.tmpdir(), 'x-')); fs.rmSync(d, { recursive: true }); });`;
  const leaky = `test('leaks', () => { const fs = require('fs'), os = require('os'), p = require('path'); fs.mkdtempSync(p.join(os.tmpdir(), 'leaked-')); });`;
  const bypass = `test('bypasses TMPDIR', () => { const fs = require('fs'), p = require('path'); fs.writeFileSync(p.join(p.dirname(process.env.TMPDIR), 'bypass-' + process.pid), 'x'); });`;

  it('passes when the tests clean up', () => {
    const r = runJest(clean);
    expect(r.out).toContain('1 passed');
    expect(r.code).toBe(0);
  }, 150_000);

  it('fails when a test leaves something in the temp directory, naming it', () => {
    const r = runJest(leaky);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/The tests left 1 entry left in .*mk-test-run-\w+: leaked-\w+; every test must remove what it makes/);
  }, 150_000);

  it('fails under CI when something writes to the temp directory around TMPDIR', () => {
    try {
      const local = runJest(bypass);
      expect(local.code).toBe(0);
      // The folder is this run's, where other test files make theirs meanwhile: the list may name those too.
      expect(local.out).toMatch(/Note: entries new in .* since the run started: (?:[^;(]*, )?bypass-\d+(?:, | \()/);
      const ci = runJest(bypass, { CI: 'true' });
      expect(ci.code).not.toBe(0);
      expect(ci.out).toMatch(/since the run started: (?:[^;]*, )?bypass-\d+(?:, [^;]*)?; something wrote to .* instead of TMPDIR/);
    } finally {
      // The inner runs' temp directory is this run's folder: remove what the fixture put there, also when an expectation failed.
      for (const e of readdirSync(process.env.TMPDIR!)) if (e.startsWith('bypass-')) removeScratch(join(process.env.TMPDIR!, e));
    }
  }, 300_000);
});

describe('tests that need terraform', () => {
  it('run when it is there, are skipped without it, and fail without it under CI', () => {
    expect(terraformGate(true, false)).toBe('run');
    expect(terraformGate(true, true)).toBe('run');
    expect(terraformGate(false, false)).toBe('skip');
    expect(terraformGate(false, true)).toBe('fail');
  });
});
