/**
 * The jobs directory on a host (src/remote/jobs.ts), with real files: what
 * `listJobs` (behind status, recover and every call's answer) shows, keeps
 * and removes. A front killed between making a job's directory and starting
 * its worker leaves the directory with its logs and nothing else; once its
 * front is gone, it is claimed (so no worker ever runs it) and removed, and
 * recover leaves no job behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { claim, createJob, jobFiles, jobState, listJobs, writeInfo } from '../src/remote/jobs';
import { removeScratch, scratchDir } from '../scripts/scratch';

let jobs: string;
beforeEach(() => {
  jobs = join(scratchDir('mk-jobs-'), '.master-key-jobs');
});
afterEach(() => removeScratch(join(jobs, '..')));

/** Makes a path look `seconds` old. */
function age(path: string, seconds: number): void {
  const t = new Date(Date.now() - seconds * 1000);
  utimesSync(path, t, t);
}

/** The pid of a process that has exited. */
function deadPid(): number {
  return spawnSync('true').pid!;
}

describe('listJobs', () => {
  it('keeps a job whose front still runs (it is starting the worker) past the grace a worker has to start, and lists nothing for it', async () => {
    const front = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'remote'], { stdio: 'ignore' });
    try {
      await new Promise((r) => front.once('spawn', r));
      const f = createJob(jobs, 'job-just-made');
      writeFileSync(f.front, `${front.pid}\n`);
      age(f.dir, 30);
      expect(listJobs(jobs)).toEqual([]);
      expect(existsSync(f.dir)).toBe(true);
      expect(existsSync(f.claim)).toBe(false);
    } finally {
      front.kill();
    }
  });

  it('removes at once a job whose front is gone and whose worker never claimed it, and claims it first so that no worker can run it', () => {
    const f = createJob(jobs, 'job-front-killed');
    writeFileSync(f.front, `${deadPid()}\n`);
    expect(listJobs(jobs)).toEqual([]);
    expect(readdirSync(jobs)).toEqual([]);
    // A worker that came now finds no job to claim: it cannot run.
    expect(() => claim(f)).toThrow();
  });

  it('keeps and lists a job its worker claimed and described, however old', () => {
    const f = createJob(jobs, 'job-running');
    expect(claim(f)).toBe(true);
    writeInfo(f, { id: 'job-running', op: 'apply', args: {}, startedAt: new Date().toISOString(), pid: process.pid });
    age(f.dir, 3600);
    // The pid is this test's, not a worker of that directory: the job died.
    expect(listJobs(jobs)).toEqual([expect.objectContaining({ id: 'job-running', op: 'apply', state: 'died' })]);
    expect(existsSync(f.dir)).toBe(true);
  });

  it('counts a job without its front\'s pid (made by an older front) as abandoned once a worker would have claimed it', () => {
    const f = createJob(jobs, 'job-older-front');
    rmSync(f.front);
    expect(listJobs(jobs)).toEqual([]);
    expect(existsSync(f.dir)).toBe(true);
    age(f.dir, 11);
    expect(listJobs(jobs)).toEqual([]);
    expect(existsSync(f.dir)).toBe(false);
  });

  it('keeps a job its worker claimed but has not described yet, its front gone', () => {
    const f = createJob(jobs, 'job-claimed');
    writeFileSync(f.front, `${deadPid()}\n`);
    expect(claim(f)).toBe(true);
    age(f.dir, 11);
    expect(listJobs(jobs)).toEqual([]);
    expect(existsSync(f.claim)).toBe(true);
  });

  it('keeps for a minute a job a runner claimed as never started (its front may still be on its way), then removes it', () => {
    const f = jobFiles(jobs, 'job-given-up');
    mkdirSync(f.dir, { recursive: true });
    expect(claim(f)).toBe(true);
    age(f.claim, 11);
    expect(jobState(f)).toBe('never-started');
    expect(listJobs(jobs)).toEqual([]);
    expect(existsSync(f.dir)).toBe(true);
    age(f.dir, 61);
    expect(listJobs(jobs)).toEqual([]);
    expect(existsSync(f.dir)).toBe(false);
  });
});
