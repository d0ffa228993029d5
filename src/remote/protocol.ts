/**
 * What the runner and a host's `master-key remote` say to each other over
 * an SSH channel. The runner runs `<remote_command> remote` (nothing else on
 * the command line: no key, no URL, no path) and writes one request as a
 * JSON line on its standard input; the host answers with event lines (JSON)
 * on standard output, the output of hooks on standard error, and ends with
 * one `result` event. Both ends are the same version of this package (the
 * host refuses another version), so the format is internal; it carries the
 * secrets a rotation needs (the new key, a database URL from the runner's
 * environment) only on standard input, inside the SSH channel.
 */
import type { InstallationSettings } from '../context/build';

export const PROTOCOL = 1;

/** The operations a host runs for the runner (src/remote/operations.ts). */
export const OPERATIONS = ['facts', 'plan', 'apply', 'status', 'count', 'verify', 'show', 'set', 'init', 'recover', 'restore', 'drill', 'retire', 'hook'] as const;
export type OpName = (typeof OPERATIONS)[number];

/** The settings of the nodes on one host, as that host sees them: local paths, the inventory itself when it came from a file on the runner. */
export type HostSettings = InstallationSettings;

/** Runs an operation on the host. */
export interface CallRequest {
  readonly protocol: typeof PROTOCOL;
  /** The runner's package version: the host refuses any other. */
  readonly version: string;
  readonly kind: 'call';
  readonly op: OpName;
  readonly settings: HostSettings;
  readonly args: unknown;
  /** Variables for the operation's environment (a database URL from the runner's); never exported to hooks. */
  readonly env?: Readonly<Record<string, string>>;
  /** Secret input: a key, as 64 hex characters. */
  readonly input?: string;
  /** Where this host keeps jobs (beside the host's first config file); the answer lists the jobs there. */
  readonly jobsDir: string;
  /** Run detached as this job (the runner picks the id), surviving a dropped connection. */
  readonly job?: string;
  /** With a job: refuse it (ROTATION_INTERRUPTED, listing the host's jobs) while a job of an earlier run is on the host. */
  readonly exclusive?: boolean;
  /** Which surface runs the command, so the host's sentences name its settings. @default cli */
  readonly surface?: 'cli' | 'terraform';
}

/** Streams a job's events from the given offsets, until its result. */
export interface AttachRequest {
  readonly protocol: typeof PROTOCOL;
  readonly version: string;
  readonly kind: 'attach';
  readonly jobsDir: string;
  readonly job: string;
  readonly offsets: Offsets;
}

/** The runner is done with a job: rewrite its report (when given) and remove it. */
export interface FinishRequest {
  readonly protocol: typeof PROTOCOL;
  readonly version: string;
  readonly kind: 'finish';
  readonly jobsDir: string;
  readonly job: string;
  readonly report?: ReportRewrite;
}

export type Request = CallRequest | AttachRequest | FinishRequest;

/** The final report of a rotation and the files on the host to write it to. */
export interface ReportRewrite {
  readonly report: unknown;
  readonly json: string;
  readonly markdown: string;
}

/** How far the runner has read a job's two logs (bytes). */
export interface Offsets {
  readonly events: number;
  readonly output: number;
}

/** A job as a host lists it. */
export interface JobSummary {
  readonly id: string;
  readonly op: OpName;
  readonly startedAt: string;
  /** running: its process is alive; finished: it wrote its result; died: neither (killed); never-started: claimed by a runner that found no worker. */
  readonly state: 'running' | 'finished' | 'died' | 'never-started';
  /** The op's arguments as the job recorded them (no secrets). */
  readonly args?: unknown;
  readonly result?: ResultEvent;
}

/** A MasterKeyError as it crosses the channel. */
export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

export type ResultEvent = { readonly e: 'result'; readonly ok: true; readonly value: unknown; readonly jobs?: readonly JobSummary[] } | { readonly e: 'result'; readonly ok: false; readonly error: WireError; readonly jobs?: readonly JobSummary[] };

/** One line on the front's standard output. */
export type Event =
  | { readonly e: 'log'; readonly line: string }
  | { readonly e: 'progress'; readonly op: 'start'; readonly label: string; readonly total?: number }
  | { readonly e: 'progress'; readonly op: 'tick'; readonly n: number }
  | { readonly e: 'progress'; readonly op: 'stop' }
  | { readonly e: 'job'; readonly id: string }
  /** attach: the job never started (a runner may start it again under a new id). */
  | { readonly e: 'never-started' }
  /** attach: the job's process is gone without a result (killed). */
  | { readonly e: 'died' }
  | { readonly e: 'finished' }
  | ResultEvent;

/** Parses one line of the front's standard output; undefined for anything that is not an event (a shell's noise). */
export function parseEvent(line: string): Event | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const o = JSON.parse(line) as { e?: unknown };
    return typeof o.e === 'string' ? (o as Event) : undefined;
  } catch {
    return undefined;
  }
}
