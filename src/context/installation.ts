/**
 * An installation: what every command and the provider do to a server's key,
 * wherever its nodes are. `openInstallation` decides once, from the nodes'
 * addresses, how:
 *
 * - every node on this machine: `LocalInstallation`, the rotation in this
 *   process (the functions of src/rotation/, on a `Context` from
 *   `buildContext`), as it always was;
 * - any node on another host: `RemoteInstallation` (src/remote/), which runs
 *   the same functions on the primary node's host over SSH and sets the key
 *   on the other nodes' hosts, the way Octopus's HA runbook does.
 *
 * The CLI's commands and the provider call only this interface.
 */
import { ConfigNode, hostName } from '../config/nodes';
import { MasterKeyError } from '../errors';
import { Context, NewKeySource } from '../rotation/context';
import { Declared } from '../rotation/decide';
import { runInit } from '../rotation/init';
import { KeyFacts, KeyPlan, counted, keyFacts, rotationPlan } from '../rotation/key-facts';
import { runSet, runShow } from '../rotation/keys';
import { ApplyOptions, ApplyResult, runApply } from '../rotation/phases';
import { RecoverResult, runRecover } from '../rotation/recover';
import { DrillResult, OpenBackupOptions, RestoreResult, runDrill, runRestore } from '../rotation/restore';
import { RetireResult, runRetire } from '../rotation/custody';
import type { Retention } from '../rotation/retention';
import type { ReportNode } from '../rotation/report';
import { StatusResult, runStatus } from '../rotation/status';
import { runVerify } from '../rotation/verify';
import type { InventoryCounts, ScanResult } from '../store/store';
import { InstallationSettings, Surface, buildContext, nodesOf } from './build';

export interface InitOptions {
  readonly generation: number;
  readonly createActSchema: boolean;
}

/** How a node ended up after a rotation run from another machine (the report's `nodes`). */
export type NodeOutcome = ReportNode;

/** What apply did; from another machine, also how each node ended up (`nodes`), and where the runner keeps the report's copy. */
export type InstallationApply = ApplyResult & {
  readonly nodes?: readonly NodeOutcome[];
  /** The report copied back into the runner's report directory. */
  readonly localReportFiles?: { readonly markdown: string; readonly json: string };
  /** Hooks that failed after the commit (the rotation itself stands). */
  readonly hookFailures?: readonly string[];
};

export interface VerifyResult {
  readonly fingerprint: string;
  readonly scan: ScanResult;
}

export interface ShowResult {
  readonly fingerprint: string;
  readonly key?: string;
}

export interface SetResult {
  readonly fingerprint: string;
  readonly path: string;
  readonly address?: string;
  readonly host?: string;
}

/** What can be done to an installation; see the functions of src/rotation/ each method names. */
export interface Installation {
  readonly nodes: readonly ConfigNode[];
  /** `runInit`. */
  init(opts: InitOptions): Promise<{ fingerprint: string; generation: number }>;
  /** The dry run (`rotationPlan`): the secrets counted, or opened with `verify` (as `master-key plan` does). */
  plan(declared: Declared, opts?: { verify?: boolean }): Promise<KeyPlan>;
  /** `runApply`. */
  apply(opts: ApplyOptions): Promise<InstallationApply>;
  /** `runStatus`. */
  status(opts: { maxAgeMs?: number }): Promise<StatusResult>;
  /** The key's real state for terraform's refresh (`keyFacts`). */
  facts(opts?: { verify?: boolean; maxAgeDays?: number; refusePending?: boolean }): Promise<KeyFacts>;
  /** The secrets counted by query. */
  count(): Promise<InventoryCounts>;
  /** `runVerify`. */
  verify(): Promise<VerifyResult>;
  /** `runShow` on the primary node (no database needed). */
  show(reveal: boolean): Promise<ShowResult>;
  /** `runSet` on the installation's one node. */
  set(source: NewKeySource): Promise<SetResult>;
  /** `runRecover`. */
  recover(): Promise<RecoverResult>;
  /** `runRestore` (`open.identityFile`: a sealed backup's age identity, on this machine only). */
  restore(backup: string, open?: OpenBackupOptions): Promise<RestoreResult>;
  /** `runDrill`. */
  drill(backup: string, open?: OpenBackupOptions): Promise<DrillResult>;
  /** `runRetire`: the backups beyond the retention removed, each recorded in the rotation history. */
  retire(retention: Retention): Promise<RetireResult>;
  /** Releases what the installation holds open (SSH connections). */
  close(): Promise<void>;
}

/** Every node on this machine: the rotation runs in this process. */
export class LocalInstallation implements Installation {
  private built?: Context;

  constructor(
    private readonly settings: InstallationSettings,
    private readonly surface: Surface,
    readonly nodes: readonly ConfigNode[],
  ) {}

  /** The context, built on first use (`show` needs no database URL). */
  get ctx(): Context {
    return (this.built ??= buildContext(this.settings, this.surface));
  }

  init(opts: InitOptions) {
    return runInit(this.ctx, opts);
  }
  plan(declared: Declared, opts: { verify?: boolean } = {}) {
    return rotationPlan(this.ctx, declared, opts);
  }
  apply(opts: ApplyOptions): Promise<InstallationApply> {
    return runApply(this.ctx, opts);
  }
  async status(opts: { maxAgeMs?: number }) {
    return withHosts(this.nodes, await runStatus(this.ctx, opts));
  }
  facts(opts: { verify?: boolean; maxAgeDays?: number; refusePending?: boolean } = {}) {
    return keyFacts(this.ctx, opts);
  }
  count() {
    return counted(this.ctx);
  }
  verify() {
    return runVerify(this.ctx);
  }
  async show(reveal: boolean) {
    return runShow({ targets: this.nodes.map((n) => n.target) }, reveal);
  }
  async set(source: NewKeySource) {
    if (this.nodes.length !== 1) throw new MasterKeyError('USAGE', "Name exactly one node's config file to set.");
    return runSet(this.ctx, this.ctx.targets[0], source);
  }
  recover() {
    return runRecover(this.ctx);
  }
  restore(backup: string, open?: OpenBackupOptions) {
    return runRestore(this.ctx, backup, open);
  }
  drill(backup: string, open?: OpenBackupOptions) {
    return runDrill(this.ctx, backup, open);
  }
  retire(retention: Retention) {
    return runRetire(this.ctx, retention);
  }
  async close() {
    // nothing held open between calls
  }
}

/** A status whose nodes also name their address and host (`local` here). */
export function withHosts(nodes: readonly ConfigNode[], s: StatusResult): StatusResult {
  return { ...s, nodes: s.nodes.map((n, i) => ({ ...n, address: nodes[i]?.address ?? n.path, host: nodes[i] ? hostName(nodes[i].host) : 'local' })) };
}

/** The installation the settings declare: in this process when every node is on this machine, else over SSH. */
export function openInstallation(settings: InstallationSettings, surface: Surface): Installation {
  const nodes = nodesOf(settings, surface.env);
  if (nodes.every((n) => n.host.kind === 'local')) return new LocalInstallation(settings, surface, nodes);
  // Loaded only when a node is on another host (ssh2 and the orchestration).
  const remote = require('../remote/installation') as typeof import('../remote/installation');
  return new remote.RemoteInstallation(settings, surface, nodes);
}

/** Runs fn on the installation and closes it, also when fn fails. */
export async function withInstallation<T>(settings: InstallationSettings, surface: Surface, fn: (i: Installation) => Promise<T>): Promise<T> {
  const inst = openInstallation(settings, surface);
  try {
    return await fn(inst);
  } finally {
    await inst.close();
  }
}
