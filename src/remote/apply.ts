/**
 * A rotation run from this machine over SSH, phase by phase (`REMOTE_APPLY`,
 * run by the runbook's runner), as Octopus's HA runbook runs it: stop every
 * node, rotate on one, set the others, confirm, start every node. With every
 * node on one host, the rotation's job there is the whole local runbook
 * (its preflight, seal-ahead, hooks, verification and report): one job, no
 * plan call and no hook jobs before it.
 *
 * The rotation itself is `master-key apply` on the primary node's host
 * (src/rotation/phases.ts there, with its pending-key file, backup,
 * transaction, config files and verification), started as a job: a dropped
 * connection does not stop it, and the runner reconnects and reads on from
 * where it was. Until the runner has finished (set the other nodes, started
 * the servers, written the report), the host keeps the job; a later apply or
 * recover finishes what this one could not.
 */
import { InstallationApply, NodeOutcome } from '../context/installation';
import { MasterKey } from '../crypto/key';
import { MasterKeyError, isMasterKeyError } from '../errors';
import { FaultPoints } from '../rotation/faults';
import { HookRun } from '../rotation/hooks';
import { obtainNewKey } from '../rotation/keys';
import { ApplyOptions, ApplyResult } from '../rotation/phases';
import { RotationPlan } from '../rotation/plan';
import { RotationReport, timingSummary } from '../rotation/report';
import { Phase, Runner, Runtime } from '../rotation/runner';
import { HostStatus, Hosts, Leftover, Rotated, finishAll } from './hosts';
import { HostRefusal, JobRun } from './link';
import { declaredToWire } from './operations';

const STOP = 'stop hooks';
const ROTATION = 'rotation on the primary host';
const SET = 'set on the other nodes';
const START = 'start hooks';

/** What the phases of one rotation run from this machine share. */
export interface RemoteApplyState {
  readonly hosts: Hosts;
  readonly opts: ApplyOptions;
  /** Jobs this run started (not leftovers of an earlier run). */
  readonly mine: Set<string>;
  /** The primary host's plan, and the plan with every node. */
  hostPlan?: RotationPlan;
  plan?: RotationPlan;
  statuses?: HostStatus[];
  newKey?: MasterKey;
  stops: Array<JobRun<HookRun[]>>;
  starts: Array<JobRun<HookRun[]>>;
  /** none: nothing committed; unknown: the rotation job was lost sight of; done: committed. */
  commit: 'none' | 'unknown' | 'done';
  rotation?: JobRun<ApplyResult>;
  nodes?: NodeOutcome[];
  readonly hookFailures: string[];
  result?: InstallationApply;
}

export const REMOTE_APPLY: readonly Phase<RemoteApplyState>[] = [
  {
    name: 'preflight: the plan on the primary host, every other node read on its own host (what an earlier run left finished first); or set out-of-step nodes and stop (one host: the job plans there)',
    timing: 'preflight',
    run: preflight,
  },
  { name: 'make the new key here (or read it from a file, stdin or a variable)', run: makeNewKey },
  { name: 'stop the server on every host (one host: the job does, after seal-ahead)', timing: STOP, run: stopEveryHost, undo: startAgainIfNothingChanged },
  { name: "rotate on the primary node's host (a job that survives a dropped connection), the new key on its stdin", timing: ROTATION, run: rotateOnPrimary },
  { name: 'set the new key on every other node (master-key set on its host, checked against the canary)', timing: SET, run: setOtherNodes },
  { name: 'start the server on every host (one host: the job did)', timing: START, run: startEveryHost },
  { name: 'write the report with every node, here and on the primary host; finish the jobs', run: report },
  { name: 'fail unless verified and every start hook ran', run: failUnlessDone },
];

/** Runs `REMOTE_APPLY`; the hook jobs are finished at the end unless the rotation's outcome is unknown (then a recover needs them). */
export async function runRemoteApply(hosts: Hosts, opts: ApplyOptions): Promise<InstallationApply> {
  const s: RemoteApplyState = { hosts, opts, mine: new Set(), stops: [], starts: [], hookFailures: [], commit: 'none' };
  // Connected first (its refusal is this run's error, nothing run), then the host's first process starts there while this side reads the inventory and the settings.
  await hosts.primary.link.prepare();
  try {
    await new Runner({ faults: new FaultPoints(undefined) }).run(REMOTE_APPLY, s);
  } finally {
    if (s.commit !== 'unknown') await finishAll([...s.starts, ...s.stops]);
  }
  return s.result!;
}

/**
 * What an earlier run left on the hosts (a job it did not see to its end),
 * finished first as recover would: wait for it, set the nodes, start the
 * servers, complete its report. A job that was killed is refused: that is
 * recover's to decide.
 */
async function finishEarlierRun(h: Hosts, leftovers: readonly Leftover[]): Promise<void> {
  h.log(`Finishing what an earlier run left: ${leftovers.map((l) => `${l.job.op} job ${l.job.id} on ${l.group.link.label} (${l.job.state})`).join('; ')} ...`);
  const settled = await h.settle(leftovers, { allowDied: false });
  const nodes = await h.setOthers(await h.primaryKey(), await h.otherStatuses());
  await finishAll(await h.hooks('start', [], nodes));
  await h.finishLeftovers(settled, nodes);
}

async function preflight(s: RemoteApplyState): Promise<void | 'stop'> {
  const h = s.hosts;
  if (h.oneHost) {
    // One host: its rotation job runs apply's own preflight there (the plan, a saved plan's digest, the new key against the old, a pending rotation),
    // and its front refuses, before anything runs, another version or a job an earlier run left (./front.ts).
    s.statuses = [];
    return;
  }
  const read = async () => {
    // While the host plans, the process for what follows (the rotation's job, or the stop hook's) starts there.
    const p = await h.primaryCall<{ plan: RotationPlan }>('plan', { declared: declaredToWire(s.opts), verify: false }, s.mine, (l) => finishEarlierRun(h, l), { prepareNext: true });
    const others = await h.otherStatuses();
    return { p, others, leftovers: h.leftovers([{ group: h.primary, jobs: p.jobs }, ...others], s.mine) };
  };
  let r = await read();
  if (r.leftovers.length) {
    await finishEarlierRun(h, r.leftovers);
    r = await read();
  }
  s.statuses = r.others;
  const plan = h.mergedPlan(r.p.value.plan, r.others);
  if (s.opts.savedPlan && s.opts.savedPlan.digest !== plan.digest) {
    throw new MasterKeyError('PLAN_STALE', `The saved plan (${s.opts.savedPlan.createdAt}) no longer matches the database or config files; run \`master-key plan\` again and review it.`);
  }
  s.hostPlan = r.p.value.plan;
  s.plan = plan;
  if (plan.action === 'rotate') {
    if (plan.blockers.length) throw new MasterKeyError('CONFIG_UNREADABLE', `${plan.blockers[0]} Nothing was changed.`, { blockers: plan.blockers });
    return;
  }
  h.log(`Nothing to rotate: ${plan.reason}.`);
  if (plan.action === 'sync-config') s.nodes = await h.setOthers(await h.primaryKey(), s.statuses);
  s.result = { action: 'none', plan, ...(s.nodes ? { nodes: s.nodes } : {}) };
  return 'stop';
}

function makeNewKey(s: RemoteApplyState): void {
  const key = obtainNewKey(s.opts.newKey);
  if (s.plan && key.fingerprint === s.plan.oldFingerprint) {
    throw new MasterKeyError('KEY_SAME', `The new key is the same as the old key (${key.fingerprint}); supply a different key, or omit the new-key option to generate one.`);
  }
  s.newKey = key;
}

async function stopEveryHost(s: RemoteApplyState): Promise<void> {
  // One host: its rotation job stops and starts the server itself.
  if (s.hosts.oneHost) return;
  s.stops = await s.hosts.hooks('stop');
  for (const r of s.stops) s.mine.add(r.id);
}

/** Nothing committed: the servers were stopped for nothing, so start them again. */
async function startAgainIfNothingChanged(s: RemoteApplyState, e: unknown): Promise<unknown> {
  if (s.commit !== 'none' || s.stops.length === 0) return e;
  s.hosts.log('Nothing was changed; starting the servers again.');
  const failures: string[] = [];
  s.starts = await s.hosts.hooks('start', failures);
  for (const f of failures) s.hosts.log(`Start the server yourself: ${f}`);
  return e;
}

async function rotateOnPrimary(s: RemoteApplyState): Promise<void | 'stop'> {
  const h = s.hosts;
  if (s.plan) h.log(`Rotating ${s.plan.oldFingerprint} -> ${s.newKey!.fingerprint} on ${h.primary.link.label} (${s.plan.reason}) ...`);
  else h.log(`Rotating on ${h.primary.link.label} to ${s.newKey!.fingerprint} (its preflight decides) ...`);
  // Several hosts: the host's plan of the preflight, which the job refuses once stale. One host: the saved plan, if any (the digests are the host's).
  const args = { declared: declaredToWire(s.opts), savedPlan: h.oneHost ? s.opts.savedPlan : s.hostPlan, newKeyOut: s.opts.newKeyOut, retention: s.opts.retention };
  const start = () => h.job<ApplyResult>(h.primary, 'apply', args, { input: s.newKey!.toHex(), ...(h.oneHost ? { exclusive: true } : {}) }, h.oneHost);
  s.commit = 'unknown';
  try {
    try {
      s.rotation = await start();
    } catch (e) {
      // One host: its front refused because an earlier run left a job there (nothing ran); finish that first, then start again.
      const left = h.oneHost && isMasterKeyError(e, 'ROTATION_INTERRUPTED') && !('job' in e.details) ? h.leftovers([{ group: h.primary, jobs: (e as HostRefusal).jobs ?? [] }], s.mine) : [];
      if (left.length === 0) throw e;
      await finishEarlierRun(h, left);
      s.rotation = await start();
    }
  } catch (e) {
    // The host's runbook undid what it did, unless the runner lost sight of the job (then its outcome is for recover to read).
    if (!(isMasterKeyError(e, 'ROTATION_INTERRUPTED') && 'job' in e.details)) s.commit = 'none';
    throw e;
  }
  s.mine.add(s.rotation.id);
  const v = s.rotation.value;
  s.commit = v.action === 'rotated' ? 'done' : 'none';
  if (s.commit === 'none' && h.oneHost) {
    // Nothing to rotate (the host's apply said why, and set any of its nodes that was out of step).
    await s.rotation.finish();
    s.plan = h.mergedPlan(v.plan, []);
    s.result = { action: 'none', plan: s.plan };
    return 'stop';
  }
  if (s.commit === 'none') throw new MasterKeyError('PLAN_STALE', `${h.primary.link.label} found nothing to rotate any more (the database changed since the preflight); nothing was changed: run the command again.`);
  s.plan ??= h.mergedPlan(v.plan, []);
}

async function setOtherNodes(s: RemoteApplyState): Promise<void> {
  s.nodes = await s.hosts.setOthers(s.newKey!, s.statuses!);
}

async function startEveryHost(s: RemoteApplyState): Promise<void> {
  if (s.hosts.oneHost) return;
  s.starts = await s.hosts.hooks('start', s.hookFailures, s.nodes);
}

/**
 * The report: the primary host's, with every node (how each got the key,
 * on which host) and the runner's timings (the server was down from the
 * stop hooks to the start hooks); written here (the runner's copy) and back
 * over the host's report, which finishes the rotation's job.
 */
async function report(s: RemoteApplyState, rt: Runtime): Promise<void> {
  const h = s.hosts;
  const v = s.rotation!.value as Rotated;
  const onHost = Object.fromEntries(Object.entries(v.report.phases).map(([k, ms]) => [`${h.primary.link.label}: ${k}`, ms]));
  const base = h.finalReport(v, s.nodes ?? []);
  const phases = { ...rt.timings, ...onHost };
  // One host: the server was down from its job's stop hook to its start hooks, as the host's report measured; else from the runner's stop hooks to its start hooks.
  const timing = h.oneHost
    ? { totalMs: timingSummary(rt.timings, []).totalMs, serverDownMs: v.report.timing.serverDownMs, serverDownPhases: v.report.timing.serverDownPhases.map((k) => `${h.primary.link.label}: ${k}`), serverUpSealAheadMs: v.report.timing.serverUpSealAheadMs }
    : { ...timingSummary(rt.timings, [STOP, ROTATION, SET, START]), serverUpSealAheadMs: 0 };
  const report: RotationReport = { ...base, phases, timing };
  const rewrite = h.reportRewrite(v, report);
  await s.rotation!.finish(rewrite);
  s.result = { ...v, plan: s.plan!, report, nodes: report.nodes, localReportFiles: rewrite.local, hookFailures: s.hookFailures };
}

function failUnlessDone(s: RemoteApplyState): void {
  const r = s.result as Extract<InstallationApply, { action: 'rotated' }>;
  if (!r.report.verification.ok) {
    throw new MasterKeyError(
      'VERIFY_FAILED',
      `The verification after the rotation failed: ${r.report.verification.proved} See ${r.localReportFiles?.markdown ?? r.reportFiles.markdown}, run \`master-key verify\`, and restore from ${r.report.backup.path} on ${s.hosts.primary.link.label} if needed.`,
    );
  }
  if (s.hookFailures.length) {
    throw new MasterKeyError('HOOK_FAILED', `The rotation is done (see ${r.localReportFiles?.markdown}), but starting the server failed: ${s.hookFailures.join('; ')}; fix the server and start it.`);
  }
}
