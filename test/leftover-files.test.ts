/**
 * What a killed process leaves is cleaned up: temp and probe files
 * (`.<name>.mk-tmp-<pid>-<random>`, e.g. `.mk-probe.mk-tmp-…` in a report
 * directory) whose writer is gone are removed by the next run (every write
 * of a temp file cleans its directory first) and by `recover`; files of a
 * running process are never touched. The process is really killed (kill -9
 * at the fault point `temp-written`) while such a file exists.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeDeadTempFiles, TEMP_INFIX } from '../src/fsutil';
import { scratchDir } from '../scripts/scratch';
import { actScenario, Scenario } from './support/scenario';
import { CLI_STORES } from './support/stores';

/** Every temp or probe file under dir, recursively (relative paths, sorted). */
function temps(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...temps(dir, r));
    else if (e.name.includes(TEMP_INFIX)) out.push(r);
  }
  return out.sort();
}

describe('removeDeadTempFiles', () => {
  it("removes the temp files of a process that is gone, keeps those of running processes and files that are not ours", () => {
    const dir = scratchDir('mk-leftovers-');
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const dead = Number(gone.stdout);
    const names = [`.mk-probe${TEMP_INFIX}${dead}-0a1b2c`, `.act.env${TEMP_INFIX}${dead}-ffee00`, `.mk-probe${TEMP_INFIX}${process.pid}-0a1b2c`, `.act.env${TEMP_INFIX}${process.ppid}-123456`, `.act.env${TEMP_INFIX}0123456789ab`, 'act.env'];
    for (const n of names) writeFileSync(join(dir, n), '');
    expect(removeDeadTempFiles(dir)).toEqual([join(dir, `.act.env${TEMP_INFIX}${dead}-ffee00`), join(dir, `.mk-probe${TEMP_INFIX}${dead}-0a1b2c`)]);
    expect(readdirSync(dir).sort()).toEqual(names.slice(2).sort());
    expect(removeDeadTempFiles(join(dir, 'missing'))).toEqual([]);
  });
});

describe.each(CLI_STORES.map((st) => [st.name, st] as const))('a process killed while a temp file exists: %s', (_, store) => {
  let s: Scenario;
  let dirs: string[];
  beforeAll(async () => {
    s = await actScenario({ perKind: 1, store });
    dirs = ['--backup-dir', join(s.dir, 'backups'), '--report-dir', join(s.dir, 'reports')];
    mkdirSync(join(s.dir, 'reports'), { recursive: true });
  });

  const killAt = (n: number) => {
    const r = s.cli(['apply', ...dirs], { env: { MASTER_KEY_TEST_KILL_AT: `temp-written@${n}` } });
    expect(r.code).toBe(-1);
    const left = temps(s.dir);
    expect(left.length).toBeGreaterThan(0);
    return left;
  };

  it('recover removes what it left (and says so in --json)', () => {
    const left = killAt(1);
    const r = s.cli(['recover', '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { tempFilesRemoved: string[] }).tempFilesRemoved).toEqual(left.map((l) => join(s.dir, l)));
    expect(temps(s.dir)).toEqual([]);
  });

  it('the next run removes what it left, wherever it wrote (config, database, report directories)', () => {
    const left = [...killAt(1), ...killAt(2), ...killAt(3)];
    // Three kills, three files: beside the config file and in the report or database directory.
    expect(left).toHaveLength(3);
    expect(new Set(left.map((l) => l.split('/').slice(0, -1).join('/'))).size).toBe(2);
    // The last kill may have left an interrupted rotation: recover first if so, as the runbook says.
    if (s.cli(['status']).code === 10) expect(s.cli(['recover']).code).toBe(0);
    const r = s.cli(['apply', ...dirs]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(temps(s.dir)).toEqual([]);
    for (const f of readdirSync(join(s.dir, 'reports'))) expect(statSync(join(s.dir, 'reports', f)).isFile()).toBe(true);
  });
});
