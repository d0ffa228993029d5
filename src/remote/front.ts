/**
 * `master-key remote`: the host's side of a runner on another machine (the
 * protocol is in ./protocol.ts). It reads one request line on standard
 * input and:
 *
 * - `call` without a job: runs the operation in this process, its events on
 *   standard output, its hooks' output on standard error;
 * - `call` with a job (a rotation, a recovery, a restore, a hook): starts a
 *   detached worker (`remote --worker <job dir>`, its own session, its
 *   output into the job's files, its request on a pipe that is closed once
 *   written), then streams the job's files back. If the SSH connection
 *   drops, this process may die (of EPIPE on a pipe to a dead sshd) but the
 *   worker does not: it has no terminal, is not in this session, and writes
 *   only to files. It finishes or rolls back by itself;
 * - `attach`: streams a job's files from where the runner stopped reading;
 * - `finish`: the runner is done with a job: rewrite its report, remove it.
 *
 * After a job's result, the runner may acknowledge it on the same channel
 * (a second line, `{"ack": true, …}`), which finishes the job here.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Surface } from '../context/build';
import { CLI_SPELLING, TERRAFORM_SPELLING } from '../context/spelling';
import { isMasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { FaultPoints } from '../rotation/faults';
import type { Progress } from '../rotation/context';
import { RotationReport, renderMarkdown } from '../rotation/report';
import { packageVersion } from '../version';
import { JobFiles, claim, createJob, jobFiles, jobState, listJobs, readResult, removeJob, writeInfo, writeResult } from './jobs';
import { runOperation } from './operations';
import { AttachRequest, CallRequest, Event, Offsets, PROTOCOL, ReportRewrite, Request, ResultEvent, WireError, parseEvent } from './protocol';

/** Standard input as lines (the request, then maybe an acknowledgement). */
class Lines {
  private buf = '';
  private ended = false;
  private waiting?: () => void;

  constructor(stream: NodeJS.ReadableStream) {
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      this.buf += d;
      this.waiting?.();
    });
    stream.on('end', () => {
      this.ended = true;
      this.waiting?.();
    });
    stream.on('error', () => {
      this.ended = true;
      this.waiting?.();
    });
  }

  /** The next line, or undefined at the end of input. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return line;
      }
      if (this.ended) {
        const rest = this.buf;
        this.buf = '';
        return rest === '' ? undefined : rest;
      }
      await new Promise<void>((r) => (this.waiting = r));
      this.waiting = undefined;
    }
  }

  /** Everything until the end of input. */
  async all(): Promise<string> {
    const parts: string[] = [];
    for (let l = await this.next(); l !== undefined; l = await this.next()) parts.push(l);
    return parts.join('\n');
  }
}

/** Writes events as lines; once the reader is gone (EPIPE), writes nothing more. */
class EventSink {
  private broken = false;

  constructor(private readonly out: NodeJS.WritableStream) {
    out.on('error', () => (this.broken = true));
  }

  get gone(): boolean {
    return this.broken;
  }

  emit(ev: Event): void {
    if (!this.broken) this.out.write(JSON.stringify(ev) + '\n');
  }

  raw(text: string): void {
    if (!this.broken) this.out.write(text);
  }
}

export function wireError(e: unknown): WireError {
  if (isMasterKeyError(e)) return { code: e.code, message: e.message, details: { ...e.details } };
  return { code: 'INTERNAL', message: `Internal error: ${(e as Error)?.message ?? String(e)}; please report it.` };
}

/** Progress as events, at most four ticks a second. */
function eventProgress(emit: (ev: Event) => void): Progress {
  let last = 0;
  let pending: number | undefined;
  return {
    start: (label, total) => emit({ e: 'progress', op: 'start', label, ...(total !== undefined ? { total } : {}) }),
    tick: (n) => {
      pending = n;
      const now = Date.now();
      if (now - last >= 250) {
        last = now;
        emit({ e: 'progress', op: 'tick', n });
        pending = undefined;
      }
    },
    stop: () => {
      if (pending !== undefined) emit({ e: 'progress', op: 'tick', n: pending });
      pending = undefined;
      emit({ e: 'progress', op: 'stop' });
    },
  };
}

/** The surface an operation runs with on this host: the runner's variables added to this process's environment (not exported: hooks never see them). */
function hostSurface(req: CallRequest, emit: (ev: Event) => void): Surface {
  return {
    env: { ...process.env, ...(req.env ?? {}) },
    log: (line) => emit({ e: 'log', line }),
    progress: eventProgress(emit),
    spelling: req.surface === 'terraform' ? TERRAFORM_SPELLING : CLI_SPELLING,
  };
}

/** Runs the call and returns its result event (never throws): the value made JSON-safe, the host's jobs listed. */
async function execute(req: CallRequest, emit: (ev: Event) => void): Promise<ResultEvent> {
  try {
    const value = await runOperation(req.op, req.settings, req.args, req.input, hostSurface(req, emit));
    return { e: 'result', ok: true, value: JSON.parse(JSON.stringify(value ?? null)) as unknown, jobs: listJobs(req.jobsDir) };
  } catch (e) {
    return { e: 'result', ok: false, error: wireError(e), jobs: safeJobs(req.jobsDir) };
  }
}

function safeJobs(dir: string) {
  try {
    return listJobs(dir);
  } catch {
    return [];
  }
}

function refusal(code: string, message: string, details?: Record<string, unknown>): ResultEvent {
  return { e: 'result', ok: false, error: { code, message, ...(details ? { details } : {}) } };
}

/** The request, checked: this protocol, this package's version. */
function checkRequest(line: string | undefined): Request | ResultEvent {
  if (line === undefined) return refusal('USAGE', '`master-key remote` reads a request from its standard input; it is run by a master-key on another machine, not by hand.');
  let req: Request;
  try {
    req = JSON.parse(line) as Request;
  } catch {
    return refusal('USAGE', 'The request on standard input is not JSON; `master-key remote` is run by a master-key on another machine, not by hand.');
  }
  const mine = packageVersion() ?? 'unknown';
  if (req.protocol !== PROTOCOL || req.version !== mine) {
    return refusal('REMOTE_VERSION_MISMATCH', `This host's master-key is version ${mine}, the runner's is ${String(req.version)}.`, { version: mine });
  }
  return req;
}

/** `master-key remote`: answers one request; resolves to the exit code. */
export async function runFront(): Promise<number> {
  const lines = new Lines(process.stdin);
  const sink = new EventSink(process.stdout);
  const checked = checkRequest(await lines.next());
  if ('e' in checked) {
    sink.emit(checked);
    return 0;
  }
  const req = checked;
  switch (req.kind) {
    case 'call':
      if (req.job === undefined) {
        sink.emit(await execute(req, (ev) => sink.emit(ev)));
        return 0;
      }
      return startJob(req, lines, sink);
    case 'attach':
      return attach(req, lines, sink);
    case 'finish':
      finish(jobFiles(req.jobsDir, req.job), req.report);
      sink.emit({ e: 'finished' });
      return 0;
    default:
      sink.emit(refusal('USAGE', `Unknown request kind "${String((req as { kind?: unknown }).kind)}".`));
      return 0;
  }
}

/** Starts the detached worker, hands it the request, streams the job. */
async function startJob(req: CallRequest, lines: Lines, sink: EventSink): Promise<number> {
  const earlier = req.exclusive ? safeJobs(req.jobsDir) : [];
  if (earlier.length) {
    sink.emit({ ...refusal('ROTATION_INTERRUPTED', `A ${earlier[0].op} job of an earlier run (${earlier[0].id}) is on this host; it is finished first, nothing was run.`), jobs: earlier });
    return 0;
  }
  let f: JobFiles;
  try {
    f = createJob(req.jobsDir, req.job!);
  } catch (e) {
    sink.emit({ e: 'result', ok: false, error: wireError(e) });
    return 0;
  }
  new FaultPoints(process.env.MASTER_KEY_TEST_KILL_AT).reached('remote-job-created');
  const out = openSync(f.output, 'a', 0o600);
  const script = process.argv[1];
  let child;
  try {
    child = spawn(process.execPath, [...process.execArgv, script, 'remote', '--worker', f.dir], { detached: true, stdio: ['pipe', out, out], cwd: f.dir, env: process.env });
  } finally {
    closeSync(out);
  }
  child.on('error', () => undefined);
  // The request (with the key) goes down a pipe: in the kernel's buffer once written, even if this process dies next.
  await new Promise<void>((resolve) => child.stdin!.end(JSON.stringify(req) + '\n', () => resolve()));
  child.unref();
  sink.emit({ e: 'job', id: req.job! });
  return stream(f, { events: 0, output: 0 }, lines, sink);
}

/** Streams a job the runner lost sight of, from its offsets. */
async function attach(req: AttachRequest, lines: Lines, sink: EventSink): Promise<number> {
  const f = jobFiles(req.jobsDir, req.job);
  if (!existsSync(f.dir)) {
    // Never created: make it (and claim it) so that a front still on its way cannot start it any more.
    try {
      mkdirSync(req.jobsDir, { recursive: true, mode: 0o700 });
      mkdirSync(f.dir, { mode: 0o700 });
      claim(f);
      sink.emit({ e: 'never-started' });
      return 0;
    } catch {
      // a front created it just now: attach to it below
    }
  }
  for (let waited = 0; !existsSync(f.claim) && waited < 3000; waited += 100) await sleep(100);
  if (claim(f)) {
    sink.emit({ e: 'never-started' });
    return 0;
  }
  return stream(f, req.offsets, lines, sink);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads what a file holds from `offset` on. */
function readFrom(path: string, offset: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Streams the job's output (to standard error) and events (whole lines, to
 * standard output) until its result; then waits for the runner's
 * acknowledgement or the end of input.
 */
async function stream(f: JobFiles, from: Offsets, lines: Lines, sink: EventSink): Promise<number> {
  let { events, output } = from;
  const errSink = new EventSink(process.stderr);
  for (;;) {
    const o = readFrom(f.output, output);
    if (o.length) {
      output += o.length;
      errSink.raw(o.toString('utf8'));
    }
    const chunk = readFrom(f.events, events);
    const text = chunk.toString('utf8');
    const complete = text.lastIndexOf('\n') + 1;
    if (complete > 0) {
      events += Buffer.byteLength(text.slice(0, complete));
      for (const line of text.slice(0, complete).split('\n')) {
        if (!line) continue;
        sink.raw(line + '\n');
        if (parseEvent(line)?.e === 'result') return afterResult(f, lines, sink);
      }
    }
    if (sink.gone) return 0;
    const state = jobState(f);
    if (state === 'finished' && complete === 0) {
      const r = readResult(f);
      if (r) {
        sink.emit(r);
        return afterResult(f, lines, sink);
      }
    }
    if (state === 'died' && readFrom(f.events, events).length === 0) {
      sink.emit({ e: 'died' });
      return 0;
    }
    if (state === 'never-started') {
      // Claimed before its worker could (a runner gave it up): it never runs.
      sink.emit({ e: 'never-started' });
      return 0;
    }
    await sleep(50);
  }
}

/** After the result: the runner's acknowledgement finishes the job (its report rewritten with every node); the end of input leaves it for later. */
async function afterResult(f: JobFiles, lines: Lines, sink: EventSink): Promise<number> {
  const line = await lines.next();
  if (line === undefined) return 0;
  let ack: { ack?: boolean; report?: ReportRewrite };
  try {
    ack = JSON.parse(line) as typeof ack;
  } catch {
    return 0;
  }
  if (ack.ack) {
    finish(f, ack.report);
    sink.emit({ e: 'finished' });
  }
  return 0;
}

/** Rewrites the job's report (the runner completed it) and removes the job. */
function finish(f: JobFiles, report: ReportRewrite | undefined): void {
  if (report) {
    const r = report.report as RotationReport;
    atomicWriteFile(report.json, JSON.stringify(r, null, 2) + '\n', { mode: 0o640 });
    atomicWriteFile(report.markdown, renderMarkdown(r), { mode: 0o640 });
  }
  if (existsSync(f.dir)) removeJob(f);
}

/**
 * `master-key remote --worker <job dir>`: the detached job. Claims the job
 * (a runner that gave it up as never started claimed it first: then nothing
 * runs), reads its request, runs it, and records its events and result in
 * the job's files. SIGHUP is ignored; it writes to no pipe.
 */
export async function runWorker(dir: string): Promise<number> {
  process.on('SIGHUP', () => undefined);
  const f = jobFiles(dirname(dir), basename(dir));
  if (!claim(f)) return 0;
  const text = await new Lines(process.stdin).all();
  let req: CallRequest;
  try {
    req = JSON.parse(text) as CallRequest;
  } catch {
    writeInfo(f, { id: basename(dir), op: 'hook', args: {}, startedAt: new Date().toISOString(), pid: process.pid });
    const r: ResultEvent = { e: 'result', ok: false, error: { code: 'REMOTE_COMMAND_FAILED', message: 'The job received an incomplete request (the connection dropped while it was sent); nothing was run.' } };
    writeResult(f, r);
    append(f, r);
    return 0;
  }
  writeInfo(f, { id: basename(dir), op: req.op, args: req.args, startedAt: new Date().toISOString(), pid: process.pid });
  const r = await execute(req, (ev) => append(f, ev));
  const final: ResultEvent = { ...r, jobs: undefined } as ResultEvent;
  writeResult(f, final);
  append(f, final);
  return 0;
}

function append(f: JobFiles, ev: Event): void {
  const fd = openSync(f.events, 'a', 0o600);
  try {
    const b = Buffer.from(JSON.stringify(ev) + '\n');
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off);
  } finally {
    closeSync(fd);
  }
}
