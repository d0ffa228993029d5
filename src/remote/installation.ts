/**
 * An installation with nodes on other hosts, run from this machine (the
 * runner) the way Octopus's HA runbook runs: stop every node, rotate on one
 * (the primary node's host, where its pending-key file, backups, reports,
 * hooks and SQLite file live), `set` the new key on the others (each checked
 * against the canary on its own host), confirm, start every node.
 *
 * Who does what where:
 * - `apply` (./apply.ts), `recover` and `restore` change the database on the
 *   primary node's host, run by the master-key installed there as jobs that
 *   survive a dropped SSH connection (./front.ts). The new key is made on
 *   the runner (or read there from a file, stdin or a variable) and sent on
 *   that host's standard input;
 * - every other node's host runs `set` for its nodes, the key on stdin;
 * - each host runs its server's stop and start hooks, as jobs too;
 * - plan, status, verify and show read the hosts and change nothing.
 *
 * A job the runner could not see to its end (it lost the host for longer
 * than the timeout, or was itself stopped) stays on its host until a later
 * apply or recover finishes it: waits for it, sets the nodes it did not
 * reach, starts the servers, and completes the report.
 */
import { ConfigNode, hostName } from '../config/nodes';
import { InstallationSettings, Surface } from '../context/build';
import { InitOptions, Installation, InstallationApply, SetResult, ShowResult, VerifyResult } from '../context/installation';
import { MasterKeyError } from '../errors';
import { NewKeySource } from '../rotation/context';
import { Declared } from '../rotation/decide';
import { KeyFacts, KeyPlan } from '../rotation/key-facts';
import { obtainNewKey } from '../rotation/keys';
import { ApplyOptions } from '../rotation/phases';
import { RecoverResult } from '../rotation/recover';
import type { RetireResult } from '../rotation/custody';
import { DrillResult, OpenBackupOptions, RestoreResult } from '../rotation/restore';
import type { Retention } from '../rotation/retention';
import { StatusResult } from '../rotation/status';
import type { InventoryCounts } from '../store/store';
import { runRemoteApply } from './apply';
import { Hosts, finishAll } from './hosts';
import { declaredToWire } from './operations';

export class RemoteInstallation implements Installation {
  private readonly hosts: Hosts;

  constructor(
    settings: InstallationSettings,
    surface: Surface,
    readonly nodes: readonly ConfigNode[],
  ) {
    this.hosts = new Hosts(settings, surface, nodes);
  }

  async init(opts: InitOptions) {
    return (await this.hosts.call<{ fingerprint: string; generation: number }>(this.hosts.primary, 'init', opts)).value;
  }

  async plan(declared: Declared, opts: { verify?: boolean } = {}): Promise<KeyPlan> {
    const h = this.hosts;
    const p = await h.primaryCall<KeyPlan>('plan', { declared: declaredToWire(declared), verify: opts.verify }, new Set());
    const others = await h.otherStatuses();
    h.refuseLeftovers(h.leftovers([{ group: h.primary, jobs: p.jobs }, ...others]));
    return { ...p.value, plan: h.mergedPlan(p.value.plan, others) };
  }

  apply(opts: ApplyOptions): Promise<InstallationApply> {
    return runRemoteApply(this.hosts, opts);
  }

  async status(opts: { maxAgeMs?: number }): Promise<StatusResult> {
    const h = this.hosts;
    const p = await h.call<StatusResult>(h.primary, 'status', opts);
    const others = await h.otherStatuses();
    return h.mergedStatus(p.value, others, h.leftovers([{ group: h.primary, jobs: p.jobs }, ...others]));
  }

  async facts(opts: { verify?: boolean; maxAgeDays?: number; refusePending?: boolean } = {}): Promise<KeyFacts> {
    const h = this.hosts;
    const p = opts.refusePending ? await h.primaryCall<KeyFacts>('facts', opts, new Set()) : await h.call<KeyFacts>(h.primary, 'facts', opts);
    const others = await h.otherStatuses();
    const leftovers = h.leftovers([{ group: h.primary, jobs: p.jobs }, ...others]);
    if (opts.refusePending) h.refuseLeftovers(leftovers);
    const status = h.mergedStatus(p.value.status, others, leftovers);
    return { ...p.value, status, nodesInSync: status.mismatchedNodes === 0, lastReport: h.reportAddress(p.value.lastReport) };
  }

  async count(): Promise<InventoryCounts> {
    return (await this.hosts.call<InventoryCounts>(this.hosts.primary, 'count', {})).value;
  }

  async verify(): Promise<VerifyResult> {
    const h = this.hosts;
    const r = (await h.call<VerifyResult>(h.primary, 'verify', {})).value;
    for (const { group, status } of await h.otherStatuses()) {
      group.nodes.forEach((n, i) => {
        const fp = status.nodes[i]?.fingerprint;
        if (fp === r.fingerprint) return;
        throw new MasterKeyError(
          'CONFIG_DISAGREE',
          `The config files disagree: ${n.address} holds ${fp ?? 'no key'} but ${this.nodes[0].address} holds ${r.fingerprint}; run \`master-key status\` to see which matches the database, then \`master-key set --config ${n.address}\` (or \`master-key recover\` after an interrupted rotation).`,
        );
      });
    }
    return r;
  }

  async show(reveal: boolean): Promise<ShowResult> {
    return (await this.hosts.call<ShowResult>(this.hosts.primary, 'show', { reveal })).value;
  }

  async set(source: NewKeySource): Promise<SetResult> {
    if (this.nodes.length !== 1) throw new MasterKeyError('USAGE', "Name exactly one node's config file to set.");
    if (source.kind === 'generate') throw new MasterKeyError('USAGE', 'Say where the key comes from: --key-file <path>, --key-stdin or --key-env <NAME>.');
    const key = obtainNewKey(source);
    const [r] = (await this.hosts.call<SetResult[]>(this.hosts.primary, 'set', {}, { input: key.toHex() })).value;
    return { ...r, address: this.nodes[0].address, host: hostName(this.nodes[0].host) };
  }

  async drill(backup: string, open: OpenBackupOptions = {}): Promise<DrillResult> {
    refuseIdentityOverSsh(open, 'drill');
    return (await this.hosts.call<DrillResult>(this.hosts.primary, 'drill', { backup })).value;
  }

  /** The restore on the primary host (a job), then the restored key on every other node. */
  async restore(backup: string, open: OpenBackupOptions = {}): Promise<RestoreResult> {
    refuseIdentityOverSsh(open, 'restore');
    const h = this.hosts;
    const p = await h.call<StatusResult>(h.primary, 'status', {});
    h.refuseLeftovers(h.leftovers([{ group: h.primary, jobs: p.jobs }, ...(await h.otherStatuses())]));
    const job = await h.job<RestoreResult>(h.primary, 'restore', { backup });
    try {
      const key = await h.primaryKey();
      const nodes = await h.setOthers(key, await h.otherStatuses());
      const missed = nodes.filter((n) => n.setBy === 'not set');
      if (missed.length) h.log(`Restored on ${h.primary.link.label}, but ${missed.map((n) => `${n.address} (${n.error})`).join('; ')} could not be set: run \`master-key set\` for it.`);
      return { ...job.value, configs: [...job.value.configs, ...nodes.filter((n) => n.setBy === 'set').map((n) => n.address)] };
    } finally {
      await job.finish();
    }
  }

  /** The retirement on the primary host, where the backups are. */
  async retire(retention: Retention): Promise<RetireResult> {
    return (await this.hosts.call<RetireResult>(this.hosts.primary, 'retire', { retention })).value;
  }

  /**
   * Recover: waits for the jobs earlier runs left, runs `recover` on the
   * primary host (finishing or undoing an interrupted rotation there), sets
   * every other node to the database's key, starts the servers when a
   * rotation was finished or undone or a job was left, and completes the
   * report of a rotation an earlier runner did not see to its end.
   */
  async recover(): Promise<RecoverResult> {
    const h = this.hosts;
    const p = await h.call<StatusResult>(h.primary, 'status', {});
    const leftovers = h.leftovers([{ group: h.primary, jobs: p.jobs }, ...(await h.otherStatuses())]);
    const settled = await h.settle(leftovers, { allowDied: true });
    const job = await h.job<RecoverResult>(h.primary, 'recover', {});
    try {
      const key = await h.primaryKey();
      const nodes = await h.setOthers(key, await h.otherStatuses());
      const set = nodes.filter((n) => n.setBy === 'set');
      const missed = nodes.filter((n) => n.setBy === 'not set');
      const hookFailures: string[] = [];
      if (job.value.action !== 'none' || leftovers.length > 0) await finishAll(await h.hooks('start', hookFailures, nodes));
      await h.finishLeftovers(settled, nodes);
      const notes = [
        ...(leftovers.length ? [`Finished ${leftovers.length} job(s) of an earlier run (${leftovers.map((l) => `${l.job.op} ${l.job.id} on ${l.group.link.label}: ${l.job.state}`).join('; ')}).`] : []),
        ...(set.length ? [`Set ${key.fingerprint} on ${set.map((n) => n.address).join(', ')}.`] : []),
        ...(missed.length ? [`NOT set (out of step): ${missed.map((n) => `${n.address} (${n.error})`).join('; ')}; run \`master-key set\` for it.`] : []),
        ...hookFailures.map((f) => `Starting the server failed on ${f}.`),
      ];
      if (notes.length) h.log(notes.join(' '));
      const result: RecoverResult = {
        ...job.value,
        message: [job.value.message, ...notes].join(' '),
        configsWritten: [...job.value.configsWritten, ...set.map((n) => n.address)],
        nodes,
        jobsFinished: leftovers.map((l) => ({ host: l.group.link.label, id: l.job.id, op: l.job.op, state: l.job.state })),
      };
      if (missed.length) throw new MasterKeyError('NODE_MISMATCH', result.message, { nodes });
      if (hookFailures.length) throw new MasterKeyError('HOOK_FAILED', result.message);
      return result;
    } finally {
      await job.finish();
    }
  }

  close(): Promise<void> {
    return this.hosts.close();
  }
}

/**
 * A sealed backup's identity is a secret key: it is never sent to another
 * host (not in arguments, and not yet on standard input), so a restore or a
 * drill of a sealed backup over SSH is run on the primary node's host.
 */
function refuseIdentityOverSsh(open: OpenBackupOptions, what: 'restore' | 'drill'): void {
  if (open.identityFile === undefined) return;
  throw new MasterKeyError(
    'USAGE',
    `--identity-file cannot be used with a node on another host: the age identity is not sent over SSH; run \`master-key restore${what === 'drill' ? ' --drill' : ''} --identity-file\` on the primary node's host, with its config file's local path.`,
  );
}
