/**
 * Jobs: an operation a runner started on this host that must outlive the
 * SSH connection (a rotation, a recovery, a restore, a server hook). Each
 * job is a directory (0700) under the host's jobs directory
 * (`.master-key-jobs` beside the host's first config file, 0700) holding:
 *
 * - `claim/`: made by the worker as it starts, or by a runner that found no
 *   worker (then the job never starts): whoever makes it first decides;
 * - `front`: the pid of the `master-key remote` that made the job and starts
 *   its worker;
 * - `job.json`: what runs (the operation, its non-secret arguments, the
 *   worker's pid, when it started);
 * - `events.jsonl` (0600): the events the runner streams (log lines,
 *   progress, the result last);
 * - `output.log` (0600): the output of the hooks the job ran;
 * - `result.json` (0600): the result event, once the job is done.
 *
 * Nothing secret is written: the key and a database URL reach the worker on
 * its standard input. The runner removes the directory when it is done with
 * the job (`finish`); until then the next plan, apply or recover sees it.
 * A job that never started leaves no directory behind for long: see
 * `listJobs`.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { JobSummary, OpName, ResultEvent } from './protocol';

export const JOBS_DIR_NAME = '.master-key-jobs';
const ID = /^[A-Za-z0-9-]{8,64}$/;
/** How long a worker may take from its front creating the job to claiming it; after that, an unclaimed job never started. */
const START_GRACE_MS = 10_000;

/** What job.json holds. */
export interface JobInfo {
  readonly id: string;
  readonly op: OpName;
  readonly args: unknown;
  readonly startedAt: string;
  readonly pid: number;
}

export interface JobFiles {
  readonly dir: string;
  readonly claim: string;
  readonly front: string;
  readonly info: string;
  readonly events: string;
  readonly output: string;
  readonly result: string;
}

/** The files of job `id` in `jobsDir` (the id is checked: it names a directory). */
export function jobFiles(jobsDir: string, id: string): JobFiles {
  if (!ID.test(id)) throw new MasterKeyError('USAGE', `"${id.slice(0, 80)}" is not a job id.`);
  const dir = join(jobsDir, id);
  return { dir, claim: join(dir, 'claim'), front: join(dir, 'front'), info: join(dir, 'job.json'), events: join(dir, 'events.jsonl'), output: join(dir, 'output.log'), result: join(dir, 'result.json') };
}

function touch0600(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
}

/** Makes the job's directory and empty logs; refuses an id that exists (a runner claimed it as never started). */
export function createJob(jobsDir: string, id: string): JobFiles {
  const f = jobFiles(jobsDir, id);
  try {
    mkdirSync(jobsDir, { recursive: true, mode: 0o700 });
    mkdirSync(f.dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new MasterKeyError('ROTATION_INTERRUPTED', `The job ${id} was already claimed on this host (the runner gave it up as never started); nothing was run.`);
    throw new MasterKeyError('FILE_ERROR', `Cannot create the job directory ${f.dir} (${(e as NodeJS.ErrnoException).code}); the user the runner logs in as must be able to write beside the config file.`);
  }
  // Not made atomic: a pid read half written is no number, and the job is then judged by its age, as one of an older front.
  writeFileSync(f.front, `${process.pid}\n`, { mode: 0o600 });
  touch0600(f.events);
  touch0600(f.output);
  return f;
}

/** Claims the job (true: this caller decides whether it runs). */
export function claim(f: JobFiles): boolean {
  try {
    mkdirSync(f.claim, { mode: 0o700 });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}

export function writeInfo(f: JobFiles, info: JobInfo): void {
  atomicWriteFile(f.info, JSON.stringify(info) + '\n', { mode: 0o600 });
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function readInfo(f: JobFiles): JobInfo | undefined {
  return readJson<JobInfo>(f.info);
}

export function readResult(f: JobFiles): ResultEvent | undefined {
  return readJson<ResultEvent>(f.result);
}

export function writeResult(f: JobFiles, r: ResultEvent): void {
  atomicWriteFile(f.result, JSON.stringify(r) + '\n', { mode: 0o600 });
}

/** Whether `pid` is alive and is this job's worker (its command line names the job's directory). */
export function workerAlive(f: JobFiles, pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(f.dir);
  } catch {
    return true;
  }
}

/** The job's state as its files tell it. */
export function jobState(f: JobFiles): JobSummary['state'] {
  if (existsSync(f.result)) return 'finished';
  const info = readInfo(f);
  if (info) return workerAlive(f, info.pid) ? 'running' : existsSync(f.result) ? 'finished' : 'died';
  // Claimed but no job.json: a runner gave it up (never started), or a worker is just starting.
  return existsSync(f.claim) && ageMs(f.claim) > START_GRACE_MS ? 'never-started' : 'running';
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Whether the front that made the job is gone (its pid is not a live `master-key remote`); unknown (an older front wrote no pid) counts as gone once the worker's grace is over. */
function frontGone(f: JobFiles): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(f.front, 'utf8').trim());
  } catch {
    return ageMs(f.dir) > START_GRACE_MS;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return ageMs(f.dir) > START_GRACE_MS;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return !readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('remote');
  } catch {
    return false;
  }
}

/**
 * Whether this is a job its front made whose worker never claimed it, its
 * front gone (killed between making the directory and starting the worker,
 * or with the worker just spawned): its logs are there, no job.json, no
 * claim. Claiming it settles that no worker ever runs it (a worker that
 * comes now finds the claim taken and stops); no one streams it any more,
 * and its front already made its directory, so no front can make it again:
 * it is removed at once.
 */
function abandonedAtStart(f: JobFiles): boolean {
  if (!existsSync(f.events) || existsSync(f.info) || existsSync(f.claim) || !frontGone(f)) return false;
  return claim(f);
}

/**
 * Every job in `jobsDir` (none when it does not exist). A job whose worker
 * never started is removed: at once when its front made it and is gone; a
 * minute after a runner claimed it as never started, when it holds only
 * its claim (a front may still be on its way to make it: the directory
 * stops it).
 */
export function listJobs(jobsDir: string): JobSummary[] {
  let ids: string[];
  try {
    ids = readdirSync(jobsDir).filter((d) => ID.test(d));
  } catch {
    return [];
  }
  const out: JobSummary[] = [];
  for (const id of ids.sort()) {
    const f = jobFiles(jobsDir, id);
    if (abandonedAtStart(f)) {
      rmSync(f.dir, { recursive: true, force: true });
      continue;
    }
    const info = readInfo(f);
    const state = jobState(f);
    if (state === 'never-started' || (!info && !existsSync(f.claim) && ageMs(f.dir) > 60_000)) {
      if (ageMs(f.dir) > 60_000) rmSync(f.dir, { recursive: true, force: true });
      continue;
    }
    if (!info) continue;
    const result = readResult(f);
    out.push({ id, op: info.op, startedAt: info.startedAt, state, args: info.args, ...(result ? { result } : {}) });
  }
  return out;
}

/** Removes a job's directory (the runner is done with it). */
export function removeJob(f: JobFiles): void {
  rmSync(f.dir, { recursive: true, force: true });
}
