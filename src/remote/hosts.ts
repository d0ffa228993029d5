/**
 * The hosts of an installation with nodes on other hosts, as the runner
 * (this machine) reaches them: the nodes grouped by host (the primary
 * node's host first), a link to each (SSH, or this process for a node on
 * this machine), the settings each host gets for its nodes, and what the
 * runbooks (./installation.ts, ./apply.ts) do across hosts: read every
 * node, set a key on the nodes of the other hosts, run the hooks host by
 * host, find and finish the jobs an earlier run left, merge plans, statuses
 * and reports.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { ConfigNode, hostName } from '../config/nodes';
import { InstallationSettings, Surface, backupRecipientsOf } from '../context/build';
import { NodeOutcome, ShowResult } from '../context/installation';
import { MasterKey, parseKey } from '../crypto/key';
import { ExitCode, MasterKeyError, isMasterKeyError } from '../errors';
import { loadInventory } from '../inventory/inventory';
import { HookRun } from '../rotation/hooks';
import { ApplyResult } from '../rotation/phases';
import { RotationPlan, redactedChange } from '../rotation/plan';
import { RotationReport, writeReport } from '../rotation/report';
import { NodeStatus, StatusResult } from '../rotation/status';
import { formatSshAddress } from './address';
import { CallOptions, CallResult, FollowedJob, HostLink, HostRefusal, JobRun, LocalLink, SshLink, jobsDirOf } from './link';
import { HostSettings, JobSummary, OpName, ReportRewrite } from './protocol';

/** The nodes on one host and the link that reaches it. */
export interface Group {
  readonly link: HostLink;
  readonly nodes: readonly ConfigNode[];
  readonly primary: boolean;
}

/** A job of an earlier run found on a host. */
export interface Leftover {
  readonly group: Group;
  readonly job: JobSummary;
}

/** A leftover followed to its end: the run to finish it with, and its value (a rotation's result). */
export interface Settled {
  readonly leftover: Leftover;
  readonly run?: FollowedJob;
  readonly value?: unknown;
}

/** A host's nodes as `status` reports them there, and the host's jobs. */
export interface HostStatus {
  readonly group: Group;
  /** Its nodes (each with why, when the host could not be reached) and the exit code of its status. */
  readonly status: Pick<StatusResult, 'nodes' | 'exitCode'>;
  readonly jobs: readonly JobSummary[];
  /** Why the host could not be read, when it could not. */
  readonly unreachable?: string;
}

export type Rotated = Extract<ApplyResult, { action: 'rotated' }>;

export class Hosts {
  readonly groups: readonly Group[];
  private inventory?: HostSettings['inventory'];

  constructor(
    private readonly settings: InstallationSettings,
    private readonly surface: Surface,
    readonly nodes: readonly ConfigNode[],
  ) {
    const byHost = new Map<string, ConfigNode[]>();
    for (const n of nodes) byHost.set(hostName(n.host), [...(byHost.get(hostName(n.host)) ?? []), n]);
    this.groups = [...byHost.values()].map((ns, i) => {
      const h = ns[0].host;
      const link = h.kind === 'local' ? new LocalLink(jobsDirOf(ns[0]), surface) : new SshLink(h, jobsDirOf(ns[0]), surface);
      return { link, nodes: ns, primary: i === 0 };
    });
    if (this.primary.link.local) return;
    const paths = [
      ['The pending file', settings.pendingFile],
      ['The backup directory', settings.backupDir],
      ['The report directory', settings.reportDir],
    ] as const;
    for (const [name, v] of paths) {
      if (v !== undefined && !isAbsolute(v)) {
        throw new MasterKeyError('USAGE', `${name} "${v}" is a relative path, but the primary node is on ${this.primary.link.label}, where it would not mean what it means here; give the absolute path on that host.`);
      }
    }
  }

  get primary(): Group {
    return this.groups[0];
  }

  get others(): readonly Group[] {
    return this.groups.slice(1);
  }

  log(line: string): void {
    this.surface.log(line);
  }

  /** Where the runner keeps its copies of the reports. */
  get localReportDir(): string {
    return resolve(this.settings.localReportDir ?? 'master-key-reports');
  }

  /** The inventory as the hosts get it: `act`, or the file's content read here (the file is the runner's). */
  private hostInventory(): HostSettings['inventory'] {
    const inv = this.settings.inventory ?? 'act';
    return (this.inventory ??= typeof inv === 'string' && inv !== 'act' ? loadInventory(inv) : inv);
  }

  /**
   * The settings of a group's nodes as its host sees them: its local paths;
   * the pending file, backups and reports on the primary host only; hooks
   * only for the hook operation (the runner runs them host by host).
   */
  /** The declared backup recipients, those of `backupRecipientsFile` included (read once, on this machine). */
  private recipients(): string[] {
    return (this.recipientList ??= backupRecipientsOf(this.settings, this.surface.spelling));
  }
  private recipientList?: string[];

  /**
   * One host holds every node: the rotation's job there runs the whole local
   * runbook, hooks included (stop after seal-ahead, start and health after
   * the config files), as `master-key apply` on that host would. With nodes
   * on several hosts, the runner stops and starts the servers host by host.
   */
  get oneHost(): boolean {
    return this.groups.length === 1;
  }

  settingsFor(g: Group, withHooks = false): HostSettings {
    const s = this.settings;
    return {
      configFiles: g.nodes.map((n) => n.target.path),
      configFormat: s.configFormat,
      keyName: s.keyName,
      databaseUrl: s.databaseUrl,
      inventory: this.hostInventory(),
      // The backups are taken on the primary host: it gets the recipients (public strings), those of a file on this machine read here.
      ...(g.primary ? { pendingFile: s.pendingFile, backupDir: s.backupDir, reportDir: s.reportDir, backupRecipients: this.recipients() } : {}),
      hooks: withHooks ? (s.hooks ?? {}) : {},
      batchSize: s.batchSize,
      lockTimeoutMs: s.lockTimeoutMs,
      // With several hosts the runner stops the servers before the rotation's job starts, so sealing ahead there would only lengthen the window: one pass unless asked.
      // On one host the job stops the server itself, after sealing ahead, as a local apply does.
      sealAhead: this.oneHost && withHooks ? s.sealAhead : (s.sealAhead ?? false),
    };
  }

  call<T>(g: Group, op: OpName, args: unknown, opts?: CallOptions): Promise<CallResult<T>> {
    return g.link.call<T>(op, this.settingsFor(g, op === 'hook'), args, opts);
  }

  /** Runs `op` as a job on `g`'s host; `withHooks`: its settings carry the hooks (a hook job's always do). */
  job<T>(g: Group, op: OpName, args: unknown, opts?: CallOptions, withHooks = op === 'hook'): Promise<JobRun<T>> {
    return g.link.job<T>(op, this.settingsFor(g, withHooks), args, opts);
  }

  /**
   * Every other host's nodes, each checked against the canary on its own
   * host, with its jobs. A host that cannot be reached (or whose master-key
   * cannot run) is no error here: its nodes are out of step, with why.
   */
  async otherStatuses(): Promise<HostStatus[]> {
    const out: HostStatus[] = [];
    for (const g of this.others) {
      try {
        const r = await this.call<StatusResult>(g, 'status', {});
        out.push({ group: g, status: r.value, jobs: r.jobs });
      } catch (e) {
        if (!isMasterKeyError(e) || !(e.exitCode === ExitCode.HOST || e.exitCode === ExitCode.REMOTE)) throw e;
        const nodes = g.nodes.map((n) => ({ path: n.target.path, error: e.message, matchesDatabase: false }));
        out.push({ group: g, status: { nodes, exitCode: ExitCode.NODE_MISMATCH }, jobs: [], unreachable: e.message });
      }
    }
    return out;
  }

  /** The jobs of earlier runs among those the hosts listed (`mine`: this run's). */
  leftovers(found: ReadonlyArray<{ group: Group; jobs: readonly JobSummary[] }>, mine: ReadonlySet<string> = new Set()): Leftover[] {
    return found.flatMap(({ group, jobs }) => jobs.filter((j) => !mine.has(j.id)).map((job) => ({ group, job })));
  }

  /**
   * Calls `op` on the primary host; when the host refuses and lists jobs of
   * an earlier run (a rotation still at work leaves a pending file), the
   * refusal names the job instead (`settleFirst`: or finishes it and calls again).
   */
  async primaryCall<T>(op: OpName, args: unknown, mine: ReadonlySet<string>, settleFirst?: (l: Leftover[]) => Promise<void>, opts?: CallOptions): Promise<CallResult<T>> {
    try {
      return await this.call<T>(this.primary, op, args, opts);
    } catch (e) {
      const left = this.leftovers([{ group: this.primary, jobs: (e as HostRefusal).jobs ?? [] }], mine);
      if (left.length === 0) throw e;
      if (!settleFirst) this.refuseLeftovers(left);
      await settleFirst!(left);
      return this.call<T>(this.primary, op, args);
    }
  }

  /** Refuses (as a pending file does locally) while a job of an earlier run waits on a host. */
  refuseLeftovers(leftovers: readonly Leftover[]): void {
    if (leftovers.length === 0) return;
    const l = leftovers[0];
    const what = l.job.state === 'running' ? `is still running there (started ${l.job.startedAt})` : l.job.state === 'died' ? 'was killed there before it finished' : 'ended there, but the runner that started it did not finish the other nodes and the servers';
    throw new MasterKeyError(
      'ROTATION_INTERRUPTED',
      `A ${l.job.op} job of an earlier run (${l.job.id} on ${l.group.link.label}) ${what}; run \`master-key recover\` with the same options before anything else (it waits for the job, finishes the other nodes and starts the servers).`,
      { host: l.group.link.label, job: l.job.id, state: l.job.state },
    );
  }

  /** Follows the jobs of an earlier run that still run to their end; a killed job is refused unless recovering (the primary host's recover handles what it left). */
  async settle(leftovers: readonly Leftover[], o: { allowDied: boolean }): Promise<Settled[]> {
    const out: Settled[] = [];
    for (const l of leftovers) {
      if (l.job.state === 'died') {
        if (!o.allowDied) this.refuseLeftovers([l]);
        out.push({ leftover: l });
        continue;
      }
      if (l.job.state === 'running') this.log(`Waiting for the ${l.job.op} job ${l.job.id} of an earlier run on ${l.group.link.label} ...`);
      const run = await l.group.link.follow(l.job);
      if (!run.outcome.ok) this.log(`The ${l.job.op} job ${l.job.id} on ${l.group.link.label} had failed (its own undo ran there): ${run.outcome.error.message}`);
      out.push({ leftover: l, run, value: run.outcome.ok ? run.outcome.value : undefined });
    }
    return out;
  }

  /** Finishes the jobs of an earlier run; a rotation's report gets every node's outcome, here and on its host. */
  async finishLeftovers(settled: readonly Settled[], nodes: readonly NodeOutcome[]): Promise<void> {
    for (const s of settled) {
      const v = s.value as ApplyResult | undefined;
      const rewrite = s.leftover.job.op === 'apply' && v?.action === 'rotated' ? this.reportRewrite(v, this.finalReport(v, nodes)) : undefined;
      if (s.run) await s.run.finish(rewrite);
      else await s.leftover.group.link.discard(s.leftover.job.id);
    }
  }

  /** The primary host's plan with every node of every host: addresses, hosts, the change to each. */
  mergedPlan(p: RotationPlan, others: readonly HostStatus[]): RotationPlan {
    const primaryConfigs = p.configs.map((c, i) => ({ ...c, address: this.primary.nodes[i].address, host: hostName(this.primary.nodes[i].host) }));
    const rest = others.flatMap(({ group, status }) =>
      group.nodes.map((n, i) => {
        const fp = status.nodes[i]?.fingerprint ?? 'no key';
        const change = p.action === 'rotate' || fp !== p.oldFingerprint ? redactedChange(n.target.entry, fp, p.newFingerprint) : 'no change';
        return { path: n.target.path, format: n.target.format, entry: n.target.entry, fingerprint: fp, change, address: n.address, host: hostName(n.host) };
      }),
    );
    const outOfStep = rest.some((c) => c.fingerprint !== p.oldFingerprint);
    const unreadable = others.flatMap(({ group, status }) => group.nodes.flatMap((n, i) => (status.nodes[i]?.error ? [`${n.address}: ${status.nodes[i].error}`] : [])));
    // One host: its own plan's digest (a saved plan is then checked by the host's apply); else one over every node.
    const digest = rest.length === 0 ? p.digest : `sha256:${createHash('sha256').update(JSON.stringify([p.digest, rest.map((c) => [c.address, c.format, c.entry, c.fingerprint])])).digest('hex')}`;
    return {
      ...p,
      action: p.action === 'none' && outOfStep ? 'sync-config' : p.action,
      configs: [...primaryConfigs, ...rest],
      blockers: p.action === 'rotate' ? [...p.blockers, ...unreadable] : p.blockers,
      digest,
    };
  }

  /** The primary host's status with every node of every host, and the jobs earlier runs left. */
  mergedStatus(p: StatusResult, others: readonly HostStatus[], leftovers: readonly Leftover[]): StatusResult {
    const named = (n: ConfigNode, s: NodeStatus): NodeStatus => ({ ...s, address: n.address, host: hostName(n.host) });
    const nodes = [...this.primary.nodes.map((n, i) => named(n, p.nodes[i])), ...others.flatMap(({ group, status }) => group.nodes.map((n, i) => named(n, status.nodes[i])))];
    const mismatched = nodes.filter((n) => !n.matchesDatabase).length;
    const fileProblem = [p, ...others.map((o) => o.status)].some((s) => s.exitCode === ExitCode.FILES);
    const unfinished = leftovers.map((l) => ({ host: l.group.link.label, id: l.job.id, op: l.job.op, startedAt: l.job.startedAt, state: l.job.state }));
    const exitCode = p.interruptedRotation || unfinished.length ? ExitCode.INTERRUPTED : fileProblem ? ExitCode.FILES : mismatched ? ExitCode.NODE_MISMATCH : p.overdue ? ExitCode.OVERDUE : ExitCode.OK;
    return { ...p, nodes, mismatchedNodes: mismatched, exitCode, ...(unfinished.length ? { unfinishedJobs: unfinished } : {}) };
  }

  /** A report on the primary host: the runner's copy when it has one, else the report's ssh:// address. */
  reportAddress(path: string | undefined): string | undefined {
    if (path === undefined) return undefined;
    const copy = join(this.localReportDir, basename(path));
    if (existsSync(copy)) return copy;
    const h = this.primary.nodes[0].host;
    return h.kind === 'ssh' ? formatSshAddress({ user: h.target.user, host: h.target.host, port: h.target.port, path }) : path;
  }

  /** The primary node's key, read on its host and sent back inside the SSH channel (to set the other nodes). */
  async primaryKey(): Promise<MasterKey> {
    const r = await this.call<ShowResult>(this.primary, 'show', { reveal: true });
    return parseKey(r.value.key ?? '', `the key in ${this.nodes[0].address}`);
  }

  /** Sets `key` on every other node that does not hold it, host by host; a host that fails leaves its nodes out of step, and the others are still set. */
  async setOthers(key: MasterKey, statuses: readonly HostStatus[]): Promise<NodeOutcome[]> {
    const out: NodeOutcome[] = [];
    for (const { group, status } of statuses) {
      const outcome = (i: number, setBy: NodeOutcome['setBy'], extra: Partial<NodeOutcome>): NodeOutcome => {
        const n = group.nodes[i];
        const before = status.nodes[i]?.fingerprint;
        return { address: n.address, host: hostName(n.host), path: n.target.path, ...(before ? { before } : {}), setBy, ...extra };
      };
      const names = group.nodes.map((n) => n.address).join(', ');
      if (group.nodes.every((_, i) => status.nodes[i]?.fingerprint === key.fingerprint)) {
        out.push(...group.nodes.map((_, i) => outcome(i, 'unchanged', { after: key.fingerprint })));
        continue;
      }
      try {
        this.log(`Setting ${key.fingerprint} on ${names} (master-key set on ${group.link.label}, checked against the canary) ...`);
        await this.call(group, 'set', {}, { input: key.toHex() });
        out.push(...group.nodes.map((_, i) => outcome(i, 'set', { after: key.fingerprint })));
      } catch (e) {
        const why = (e as Error).message;
        this.log(`Could not set ${names}: ${why}`);
        out.push(...group.nodes.map((_, i) => outcome(i, 'not set', { error: why })));
      }
    }
    return out;
  }

  /**
   * The stop hook, or the start and health hooks, on every host in order
   * (the primary's first), each as a job. Without `failures`, the first
   * failure stops and throws (the jobs already run are finished); with it,
   * every host is tried and the failures are collected.
   */
  async hooks(which: 'stop' | 'start', failures?: string[], outOfStep: readonly NodeOutcome[] = []): Promise<Array<JobRun<HookRun[]>>> {
    const runs: Array<JobRun<HookRun[]>> = [];
    const h = this.settings.hooks ?? {};
    if (which === 'stop' ? !h.stop : !h.start && !h.health) return runs;
    for (const g of this.groups) {
      const notSet = g.nodes.filter((n) => outOfStep.some((o) => o.address === n.address && o.setBy === 'not set'));
      if (which === 'start' && notSet.length) {
        // A server whose node did not get the key stays stopped: started, it could not open its secrets.
        this.log(`Not starting the server on ${g.link.label}: ${notSet.map((n) => n.address).join(', ')} did not get the key; set it, then start the server (\`master-key recover\` does both).`);
        continue;
      }
      try {
        this.log(`${which === 'stop' ? 'Stopping' : 'Starting'} the server on ${g.link.label} ...`);
        runs.push(await this.job<HookRun[]>(g, 'hook', { which }));
      } catch (e) {
        if (!failures) {
          await finishAll(runs);
          throw e;
        }
        failures.push(`${g.link.label}: ${(e as Error).message}`);
      }
    }
    return runs;
  }

  /** The report of a rotation with every node: how each got the key, on which host, and who ran it. */
  finalReport(v: Rotated, others: readonly NodeOutcome[]): RotationReport {
    const r = v.report;
    const primaryNodes: NodeOutcome[] = this.primary.nodes.map((n) => ({ address: n.address, host: hostName(n.host), path: n.target.path, before: r.oldFingerprint, after: r.newFingerprint, setBy: 'rotation' }));
    return { ...r, nodes: [...primaryNodes, ...others], runner: runnerName() };
  }

  /** Writes the runner's copy of the report and says how to rewrite the host's. */
  reportRewrite(v: Rotated, report: RotationReport): ReportRewrite & { local: { markdown: string; json: string } } {
    const local = writeReport(this.localReportDir, report);
    return { report, json: v.reportFiles.json, markdown: v.reportFiles.markdown, local };
  }

  async close(): Promise<void> {
    await Promise.all(this.groups.map((g) => g.link.close()));
  }
}

export async function finishAll(runs: ReadonlyArray<JobRun<unknown>>): Promise<void> {
  for (const r of runs) await r.finish();
}

/** Who ran the rotation over SSH: `user@machine`. */
function runnerName(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return hostname();
  }
}
