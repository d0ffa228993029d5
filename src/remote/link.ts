/**
 * The runner's end of a host: runs an operation there (`call`, in the
 * foreground; `job`, detached so that it survives a dropped connection) and
 * brings back its events (log lines, progress), its hooks' output, and its
 * result or error. A lost connection is made again (within the host's
 * timeout): a call is sent again (every call is read-only or idempotent), a
 * job is attached to again from where its output was read, or started again
 * under a new id when the host proves it never started.
 *
 * `LocalLink` runs the same operations in this process, for a node on this
 * machine in an installation that also has nodes on other hosts.
 */
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Surface } from '../context/build';
import { ConfigNode } from '../config/nodes';
import { ErrorCode, MasterKeyError, isMasterKeyError, errorCodeTable } from '../errors';
import { packageVersion } from '../version';
import { SshHost } from './connection';
import { JOBS_DIR_NAME } from './jobs';
import { runOperation } from './operations';
import { CallRequest, Event, HostSettings, JobSummary, OpName, Offsets, PROTOCOL, ReportRewrite, Request, ResultEvent, WireError, parseEvent } from './protocol';
import { ConnectionLost, ExecHandlers, RunningCommand, SshSession } from './ssh';

/** What a call brought back: its value and the host's unfinished jobs. */
export interface CallResult<T> {
  readonly value: T;
  readonly jobs: readonly JobSummary[];
}

/** A job that ended with a result; `finish` tells the host the runner is done with it (rewriting its report when given). */
export interface JobRun<T> {
  readonly id: string;
  readonly value: T;
  finish(report?: ReportRewrite): Promise<void>;
}

/** A job of an earlier run, followed to its end: its outcome (a failed job's error as this side's error), and how to finish it. */
export interface FollowedJob {
  readonly id: string;
  readonly outcome: { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: MasterKeyError };
  finish(report?: ReportRewrite): Promise<void>;
}

export interface CallOptions {
  /** A key for the operation (sent on standard input). */
  readonly input?: string;
  /** A job: refuse it, before anything runs, while a job of an earlier run is on the host (the refusal lists the host's jobs). */
  readonly exclusive?: boolean;
  /** Over SSH: once this call's process is started, start the host's side of the next exchange too, so that it is ready when its request comes (the runner knows what follows, e.g. the rotation's job after the plan). */
  readonly prepareNext?: boolean;
}

export interface HostLink {
  /** `local` or `user@host:port`. */
  readonly label: string;
  readonly local: boolean;
  /** Where the host keeps jobs: beside its first node's config file. */
  readonly jobsDir: string;
  call<T>(op: OpName, settings: HostSettings, args: unknown, opts?: CallOptions): Promise<CallResult<T>>;
  job<T>(op: OpName, settings: HostSettings, args: unknown, opts?: CallOptions): Promise<JobRun<T>>;
  /** Follows a job found on the host (started by an earlier run) to its result. */
  follow(job: JobSummary): Promise<FollowedJob>;
  /** Removes a job found on the host that has no result (killed). */
  discard(id: string): Promise<void>;
  /**
   * Connects, and starts the host's side of the next exchange (a `master-key
   * remote` waiting for its request) without waiting for it: it starts there
   * while this side goes on, and is ready when the request comes. Resolves
   * once the host was asked to start it; rejects with the connection's
   * refusal (nothing run). An unused one exits at `close`, having done nothing.
   */
  prepare(): Promise<void>;
  close(): Promise<void>;
}

/** The jobs directory of a host whose first node is `node`. */
export function jobsDirOf(node: ConfigNode): string {
  return join(dirname(node.target.path), JOBS_DIR_NAME);
}

const CODES = new Set<string>(errorCodeTable().map(([c]) => c));

/** An error from the host, as this side's MasterKeyError naming the host. */
function hostError(label: string, w: WireError): MasterKeyError {
  const code = (CODES.has(w.code) ? w.code : 'INTERNAL') as ErrorCode;
  return new MasterKeyError(code, `On ${label}: ${w.message}`, { ...(w.details ?? {}), host: label });
}

/** A host's refusal, with the jobs it listed (a refusal because of a pending rotation may be a job still at work). */
export type HostRefusal = MasterKeyError & { readonly jobs?: readonly JobSummary[] };

function valueOf<T>(label: string, r: ResultEvent): T {
  if (!r.ok) throw Object.assign(hostError(label, r.error), { jobs: r.jobs ?? [] });
  return r.value as T;
}

/** Runs the operations in this process (nodes on this machine, beside nodes on other hosts). */
export class LocalLink implements HostLink {
  readonly label = 'local';
  readonly local = true;

  constructor(
    readonly jobsDir: string,
    private readonly surface: Surface,
  ) {}

  async call<T>(op: OpName, settings: HostSettings, args: unknown, opts: CallOptions = {}): Promise<CallResult<T>> {
    return { value: (await runOperation(op, settings, args, opts.input, this.surface)) as T, jobs: [] };
  }

  async job<T>(op: OpName, settings: HostSettings, args: unknown, opts: CallOptions = {}): Promise<JobRun<T>> {
    const { value } = await this.call<T>(op, settings, args, opts);
    return { id: 'local', value, finish: async () => undefined };
  }

  follow(): Promise<FollowedJob> {
    return Promise.reject(new MasterKeyError('INTERNAL', 'There are no jobs on this machine to follow; this is a bug.'));
  }

  async discard(): Promise<void> {
    // no jobs on this machine
  }

  async prepare(): Promise<void> {
    // nothing to start
  }

  async close(): Promise<void> {
    // nothing held open
  }
}

/** How one exchange with `master-key remote` ended. */
type Terminal = ResultEvent | { readonly e: 'never-started' } | { readonly e: 'died' } | { readonly e: 'finished' };

/** One `master-key remote` process on the host: its request, its events, its end. */
class Exchange {
  readonly offsets: { events: number; output: number };
  jobSeen = false;
  terminal?: Terminal;
  private stdoutBuf = Buffer.alloc(0);
  private stderrTail = '';
  private run?: RunningCommand;
  private waiters: Array<() => void> = [];
  private closed?: { code: number | null; signal?: string } | Error;

  private readonly countOffsets: boolean;

  /** `countOffsets`: count what a job writes from `from` on (an exchange that may attach to the job again). */
  constructor(
    private readonly link: SshLink,
    { countOffsets, from = { events: 0, output: 0 } }: { readonly countOffsets: boolean; readonly from?: Offsets },
  ) {
    this.countOffsets = countOffsets;
    this.offsets = { ...from };
  }

  /** Sends the request; `keepOpen`: the host's stdin stays open for the acknowledgement. */
  async start(session: SshSession, req: Request, { keepOpen }: { readonly keepOpen: boolean }): Promise<void> {
    this.run = await this.link.front(session, { onStdout: (d) => this.stdout(d), onStderr: (d) => this.stderr(d) });
    this.run.done.then(
      (r) => this.end(r),
      (e: Error) => this.end(e),
    );
    this.run.stdin.write(JSON.stringify(req) + '\n');
    if (!keepOpen) this.run.stdin.end();
  }

  private stdout(d: Buffer): void {
    this.stdoutBuf = Buffer.concat([this.stdoutBuf, d]);
    for (let nl = this.stdoutBuf.indexOf(10); nl >= 0; nl = this.stdoutBuf.indexOf(10)) {
      const lineBuf = this.stdoutBuf.subarray(0, nl);
      this.stdoutBuf = this.stdoutBuf.subarray(nl + 1);
      const ev = parseEvent(lineBuf.toString('utf8'));
      if (!ev) continue;
      if (this.countOffsets && this.jobSeen && ev.e !== 'job' && ev.e !== 'never-started' && ev.e !== 'died' && ev.e !== 'finished') this.offsets.events += lineBuf.length + 1;
      this.link.onEvent(ev);
      if (ev.e === 'job') this.jobSeen = true;
      if (ev.e === 'result' || ev.e === 'never-started' || ev.e === 'died' || ev.e === 'finished') this.settle(ev);
    }
  }

  private stderr(d: Buffer): void {
    if (this.countOffsets) this.offsets.output += d.length;
    this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-2000);
    this.link.onOutput(d);
  }

  private settle(t: Terminal): void {
    this.terminal ??= t;
    for (const w of this.waiters.splice(0)) w();
  }

  private end(r: { code: number | null; signal?: string } | Error): void {
    this.closed = r;
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits for the end of the exchange: a terminal event, or the process's end (an error: lost connection, or no answer). */
  async terminalEvent(): Promise<Terminal> {
    while (!this.terminal && !this.closed) await new Promise<void>((r) => this.waiters.push(r));
    if (this.terminal) return this.terminal;
    if (this.closed instanceof Error) throw this.closed;
    throw await this.link.noAnswer(this.closed!, this.stderrTail);
  }

  /** Waits for the process to end. */
  async ended(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Sends the acknowledgement and waits for the host to finish the job; false when the channel is gone. */
  async ack(report?: ReportRewrite): Promise<boolean> {
    if (!this.run || this.closed) return false;
    this.terminal = undefined;
    this.run.stdin.end(JSON.stringify({ ack: true, ...(report ? { report: { report: report.report, json: report.json, markdown: report.markdown } } : {}) }) + '\n');
    try {
      const t = await this.terminalEvent();
      return t.e === 'finished';
    } catch {
      return false;
    }
  }

  /** Closes our end (the host's front then exits; a job goes on). */
  release(): void {
    if (this.run && !this.closed) this.run.stdin.end();
  }
}

/**
 * A `master-key remote` started before its request is known: it waits for
 * its request line (none: it exits, having done nothing). What it writes
 * waits here until an exchange takes it.
 */
class SpareFront {
  private handlers?: ExecHandlers;
  private readonly early: Array<[boolean, Buffer]> = [];
  private session?: SshSession;
  private ended = false;
  readonly run: Promise<RunningCommand>;

  constructor(connecting: Promise<SshSession>, command: string) {
    const sink: ExecHandlers = {
      onStdout: (d) => (this.handlers ? this.handlers.onStdout?.(d) : this.early.push([true, d])),
      onStderr: (d) => (this.handlers ? this.handlers.onStderr?.(d) : this.early.push([false, d])),
    };
    this.run = connecting.then((s) => {
      this.session = s;
      return s.start(command, sink);
    });
    const over = () => {
      this.ended = true;
    };
    this.run.then((r) => r.done.then(over, over), over);
  }

  /** Ready to take on `session`: started there and still waiting. */
  usableOn(session: SshSession): boolean {
    return !this.ended && this.session === session && session.alive;
  }

  /** Hands the process to an exchange (with what it wrote so far). */
  async take(h: ExecHandlers): Promise<RunningCommand> {
    const r = await this.run;
    this.handlers = h;
    for (const [out, d] of this.early.splice(0)) (out ? h.onStdout : h.onStderr)?.(d);
    return r;
  }

  /** Not taken: its standard input ends, and it exits. */
  release(): void {
    this.run.then(
      (r) => r.stdin.end(),
      () => undefined,
    );
  }
}

/** A host reached over SSH. */
export class SshLink implements HostLink {
  readonly local = false;
  private session?: SshSession;
  private connecting?: Promise<SshSession>;
  private spare?: SpareFront;
  private connected = false;
  private readonly open = new Set<Exchange>();
  private readonly version = packageVersion() ?? 'unknown';

  constructor(
    readonly host: SshHost,
    readonly jobsDir: string,
    private readonly surface: Surface,
  ) {}

  get label(): string {
    return this.host.label;
  }

  onEvent(ev: Event): void {
    if (ev.e === 'log') this.surface.log(`[${this.label}] ${ev.line}`);
    else if (ev.e === 'progress') {
      if (ev.op === 'start') this.surface.progress.start(`${ev.label} (${this.host.target.host})`, ev.total);
      else if (ev.op === 'tick') this.surface.progress.tick(ev.n);
      else this.surface.progress.stop();
    }
  }

  onOutput(d: Buffer): void {
    process.stderr.write(d);
  }

  /** The error for a `master-key remote` that ended without answering. */
  async noAnswer(r: { code: number | null; signal?: string }, stderr: string): Promise<MasterKeyError> {
    const tail = stderr.trim().split('\n').slice(-3).join(' / ');
    if (r.code === 127 || /command not found|not found/.test(stderr)) {
      return new MasterKeyError('REMOTE_COMMAND_FAILED', `${this.host.remoteCommand} was not found on ${this.label} (${tail || 'exit code 127'}); install cdktf-master-key there (Node.js 20 or later, npm install -g cdktf-master-key@${this.version}), or set remote_command (--remote-command) to the command that runs it.`, { host: this.label });
    }
    if (/unknown command|error: unknown/i.test(stderr)) {
      const theirs = await this.remoteVersion();
      return versionMismatch(this.label, theirs, this.version);
    }
    return new MasterKeyError('REMOTE_COMMAND_FAILED', `The master-key on ${this.label} (${this.host.remoteCommand}) ended ${r.signal ? `by signal ${r.signal}` : `with exit code ${r.code}`} without answering${tail ? ` (${tail})` : ''}; run \`${this.host.remoteCommand} --version\` on that host to check the installation.`, { host: this.label });
  }

  /** `<remote_command> --version` on the host (its first line), or "unknown". */
  private async remoteVersion(): Promise<string> {
    try {
      let out = '';
      await (await this.connect()).exec(`${this.host.remoteCommand} --version`, undefined, { onStdout: (d) => (out += d.toString()) });
      return out.split('\n')[0].trim() || 'unknown';
    } catch {
      return 'unknown';
    }
  }

  /** The session, connected now if needed (one connection at a time: every exchange is a channel on it). The first connection's refusal is the caller's error; later ones are reconnections. */
  private connect(): Promise<SshSession> {
    if (this.session?.alive) return Promise.resolve(this.session);
    this.connecting ??= (async () => {
      try {
        this.session?.close();
        this.session = undefined;
        this.session = await SshSession.open(this.host);
        this.connected = true;
        return this.session;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  prepare(): Promise<void> {
    if (!this.spare) {
      this.spare = new SpareFront(this.connect(), `${this.host.remoteCommand} remote`);
      // A spare that cannot start is not used: the exchange that needs a front starts its own, and reports what goes wrong.
      this.spare.run.catch(() => undefined);
    }
    return this.spare.run.then(
      () => undefined,
      (e: unknown) => {
        // The connection was refused (host key, login, reachability): the caller's error; a channel that did not open is the next exchange's.
        if (!this.connected) throw e;
      },
    );
  }

  /** A `master-key remote` on the host for an exchange: the spare, when it waits on this session, else one started now. */
  async front(session: SshSession, h: ExecHandlers): Promise<RunningCommand> {
    const spare = this.spare;
    this.spare = undefined;
    if (spare?.usableOn(session)) {
      try {
        return await spare.take(h);
      } catch {
        // it could not start after all: start one now
      }
    }
    spare?.release();
    return session.start(`${this.host.remoteCommand} remote`, h);
  }

  /** Runs `attempt` on a live session, connecting again after a lost connection until the host's timeout has passed. */
  private async withReconnects<T>(what: string, attempt: (s: SshSession, retry: number) => Promise<T>, gaveUp: (lastError: Error) => MasterKeyError): Promise<T> {
    let deadline: number | undefined;
    for (let retry = 0; ; retry++) {
      const wasConnected = this.connected;
      try {
        return await attempt(await this.connect(), retry);
      } catch (e) {
        const lost = e instanceof ConnectionLost || (wasConnected && isMasterKeyError(e, 'HOST_UNREACHABLE'));
        if (!lost) throw e;
        deadline ??= Date.now() + Math.max(this.host.timeoutMs, 5_000);
        if (Date.now() > deadline) throw gaveUp(e as Error);
        this.surface.log(`[${this.label}] ${(e as Error).message}; connecting again to ${what} ...`);
        await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** retry, 2_000)));
      }
    }
  }

  private request(op: OpName, settings: HostSettings, args: unknown, opts: CallOptions, job?: string): CallRequest {
    return {
      protocol: PROTOCOL,
      version: this.version,
      kind: 'call',
      op,
      settings,
      args,
      env: databaseEnv(settings, this.surface.env),
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      ...(opts.exclusive ? { exclusive: true } : {}),
      jobsDir: this.jobsDir,
      ...(job ? { job } : {}),
      surface: this.surface.spelling.surface,
    };
  }

  private terminalValue<T>(t: Terminal): CallResult<T> {
    if (t.e !== 'result') throw new MasterKeyError('INTERNAL', `The master-key on ${this.label} answered a call with "${t.e}"; this is a bug.`);
    if (!t.ok && t.error.code === 'REMOTE_VERSION_MISMATCH') throw versionMismatch(this.label, String(t.error.details?.version ?? 'unknown'), this.version);
    return { value: valueOf<T>(this.label, t), jobs: t.jobs ?? [] };
  }

  async call<T>(op: OpName, settings: HostSettings, args: unknown, opts: CallOptions = {}): Promise<CallResult<T>> {
    return this.withReconnects(
      `run ${op} again`,
      async (s) => {
        const ex = new Exchange(this, { countOffsets: false });
        await ex.start(s, this.request(op, settings, args, opts), { keepOpen: false });
        if (opts.prepareNext) this.prepare().catch(() => undefined);
        return this.terminalValue<T>(await ex.terminalEvent());
      },
      (e) => new MasterKeyError('HOST_UNREACHABLE', `Lost the SSH connection to ${this.label} during ${op} and could not connect again within ${Math.round(Math.max(this.host.timeoutMs, 5_000) / 1000)} s (${e.message}); nothing was changed by it: run the command again.`, { host: this.label }),
    );
  }

  async job<T>(op: OpName, settings: HostSettings, args: unknown, opts: CallOptions = {}): Promise<JobRun<T>> {
    let id = newJobId();
    let sent = false;
    let offsets: Offsets = { events: 0, output: 0 };
    for (;;) {
      let ex: Exchange | undefined;
      const end = await this.withReconnects(
        `follow the ${op} job ${id}`,
        async (s) => {
          ex = new Exchange(this, { countOffsets: true, from: offsets });
          ex.jobSeen = sent;
          if (!sent) {
            sent = true;
            await ex.start(s, this.request(op, settings, args, opts, id), { keepOpen: true });
          } else {
            await ex.start(s, { protocol: PROTOCOL, version: this.version, kind: 'attach', jobsDir: this.jobsDir, job: id, offsets }, { keepOpen: true });
          }
          try {
            return await ex.terminalEvent();
          } catch (e) {
            offsets = ex.offsets;
            throw e;
          }
        },
        (e) => jobLost(this.label, op, id, e),
      );
      if (end.e === 'never-started') {
        // The host proves it never ran (and never will): start it again under a new id.
        id = newJobId();
        sent = false;
        offsets = { events: 0, output: 0 };
        continue;
      }
      if (end.e === 'died') throw jobDied(this.label, op, id);
      const exchange = ex!;
      // An exclusive job that failed (its runbook undid what it did there) has nothing left for a later run: it is finished now.
      if (opts.exclusive && ex!.jobSeen && end.e === 'result' && !end.ok) await this.finishJob(id, exchange);
      const value = this.terminalValue<T>(end).value;
      this.open.add(exchange);
      return { id, value, finish: (report) => this.finishJob(id, exchange, report) };
    }
  }

  async follow(job: JobSummary): Promise<FollowedJob> {
    if (job.state === 'died') throw jobDied(this.label, job.op, job.id);
    let offsets: Offsets = { events: 0, output: 0 };
    let ex: Exchange | undefined;
    const end = await this.withReconnects(
      `follow the ${job.op} job ${job.id}`,
      async (s) => {
        ex = new Exchange(this, { countOffsets: true, from: offsets });
        ex.jobSeen = true;
        await ex.start(s, { protocol: PROTOCOL, version: this.version, kind: 'attach', jobsDir: this.jobsDir, job: job.id, offsets }, { keepOpen: true });
        try {
          return await ex.terminalEvent();
        } catch (e) {
          offsets = ex.offsets;
          throw e;
        }
      },
      (e) => jobLost(this.label, job.op, job.id, e),
    );
    if (end.e === 'died') throw jobDied(this.label, job.op, job.id);
    const exchange = ex!;
    const finish = (report?: ReportRewrite) => this.finishJob(job.id, exchange, report);
    if (end.e !== 'result') return { id: job.id, outcome: { ok: true, value: undefined }, finish: () => this.discard(job.id) };
    this.open.add(exchange);
    return { id: job.id, outcome: end.ok ? { ok: true, value: end.value } : { ok: false, error: hostError(this.label, end.error) }, finish };
  }

  /** Removes a job's directory on the host (a killed job, once recover handled what it left). */
  async discard(id: string): Promise<void> {
    try {
      await this.withReconnects(
        `remove the job ${id}`,
        async (s) => {
          const fx = new Exchange(this, { countOffsets: false });
          await fx.start(s, { protocol: PROTOCOL, version: this.version, kind: 'finish', jobsDir: this.jobsDir, job: id }, { keepOpen: false });
          await fx.terminalEvent();
        },
        (e) => new MasterKeyError('HOST_UNREACHABLE', e.message),
      );
    } catch (e) {
      this.surface.log(`[${this.label}] Could not remove the job ${id} (${(e as Error).message}); the next recover removes it.`);
    }
  }

  /** Acknowledges on the job's own channel, or (it is gone) with a `finish` request; a host out of reach keeps the job for the next run. */
  private async finishJob(id: string, ex: Exchange, report?: ReportRewrite): Promise<void> {
    this.open.delete(ex);
    if (await ex.ack(report)) return;
    try {
      await this.withReconnects(
        `finish the job ${id}`,
        async (s) => {
          const fx = new Exchange(this, { countOffsets: false });
          await fx.start(s, { protocol: PROTOCOL, version: this.version, kind: 'finish', jobsDir: this.jobsDir, job: id, ...(report ? { report: { report: report.report, json: report.json, markdown: report.markdown } } : {}) }, { keepOpen: false });
          await fx.terminalEvent();
        },
        (e) => new MasterKeyError('HOST_UNREACHABLE', e.message),
      );
    } catch (e) {
      this.surface.log(`[${this.label}] Could not tell the host that job ${id} is done (${(e as Error).message}); the next plan, apply or recover finishes it.`);
    }
  }

  async close(): Promise<void> {
    this.spare?.release();
    this.spare = undefined;
    for (const ex of this.open) ex.release();
    await Promise.all([...this.open].map((ex) => Promise.race([ex.ended(), new Promise((r) => setTimeout(r, 2_000))])));
    this.open.clear();
    this.session?.close();
    this.session = undefined;
  }
}

function newJobId(): string {
  return `${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomUUID().slice(0, 8)}`;
}

/** The variables a host's operation needs from the runner's environment: the database URL, when it comes from there (it holds a password: sent on standard input, never on a command line). */
export function databaseEnv(settings: HostSettings, env: NodeJS.ProcessEnv): Record<string, string> {
  const db = settings.databaseUrl;
  if (db && 'entry' in db) return {};
  const name = db && 'env' in db ? db.env : 'DATABASE_URL';
  const v = env[name];
  return v ? { [name]: v } : {};
}

function versionMismatch(label: string, theirs: string, mine: string): MasterKeyError {
  return new MasterKeyError(
    'REMOTE_VERSION_MISMATCH',
    `The master-key on ${label} is version ${theirs} but this one is version ${mine}; nothing was run there: install version ${mine} on that host (npm install -g cdktf-master-key@${mine}) or run the version it has here.`,
    { host: label, remoteVersion: theirs, localVersion: mine },
  );
}

function jobLost(label: string, op: OpName, id: string, e: Error): MasterKeyError {
  return new MasterKeyError(
    'ROTATION_INTERRUPTED',
    `Lost the SSH connection to ${label} while it ran ${op} (job ${id}) and could not connect again (${e.message}); the job goes on there by itself and finishes or rolls back: run \`master-key recover\` with the same options once the host is reachable, to see how it ended and finish the other nodes.`,
    { host: label, job: id },
  );
}

function jobDied(label: string, op: OpName, id: string): MasterKeyError {
  return new MasterKeyError(
    'ROTATION_INTERRUPTED',
    `The ${op} job ${id} on ${label} ended without a result (its process was killed); some key on that host still opens every secret: run \`master-key recover\` with the same options.`,
    { host: label, job: id },
  );
}
