/**
 * What a host runs for a runner on another machine: each operation is one
 * method of the local installation (`LocalInstallation`, the rotation in
 * this process) on the nodes of this host, its arguments and result as JSON.
 * `hook` runs the server's stop or start (and health) command here, and
 * `set` writes a key into every node of this host, each checked against the
 * database's canary, as Octopus's `set-master-key` does.
 *
 * The rotation's modules (and the database drivers) are loaded only for an
 * operation that needs them: a hook job starts fast.
 */
import type { InstallationSettings, Surface } from '../context/build';
import type { LocalInstallation } from '../context/installation';
import { MasterKeyError } from '../errors';
import type { Declared } from '../rotation/decide';
import { HookRun, runHook, startServer } from '../rotation/hooks';
import type { RotationPlan } from '../rotation/plan';
import type { Retention } from '../rotation/retention';
import type { OpName } from './protocol';

/** `Declared` as JSON (its instant as ISO text). */
export interface DeclaredWire {
  readonly targetGeneration?: number;
  readonly windowStart?: string;
  readonly policyDays?: number;
}

export const declaredToWire = (d: Declared): DeclaredWire => ({ targetGeneration: d.targetGeneration, windowStart: d.windowStart?.toISOString(), policyDays: d.policyDays });
const declaredFromWire = (d: DeclaredWire | undefined): Declared => ({ targetGeneration: d?.targetGeneration, windowStart: d?.windowStart ? new Date(d.windowStart) : undefined, policyDays: d?.policyDays });

/** The arguments of each operation. */
export interface OpArgs {
  facts: { verify?: boolean; maxAgeDays?: number; refusePending?: boolean };
  plan: { declared: DeclaredWire; verify?: boolean };
  apply: { declared: DeclaredWire; savedPlan?: RotationPlan; newKeyOut?: string; retention?: Retention };
  status: { maxAgeMs?: number };
  count: Record<string, never>;
  verify: Record<string, never>;
  show: { reveal: boolean };
  set: Record<string, never>;
  init: { generation: number; createActSchema: boolean };
  recover: Record<string, never>;
  restore: { backup: string };
  drill: { backup: string };
  retire: { retention: Retention };
  hook: { which: 'stop' | 'start' };
}

/** The key sent on standard input, for the operations that take one. */
function inputKey(input: string | undefined, op: OpName) {
  if (input === undefined) throw new MasterKeyError('INTERNAL', `The runner sent no key for ${op}; this is a bug.`);
  return (require('../crypto/key') as typeof import('../crypto/key')).parseKey(input, 'the key the runner sent');
}

/** The nodes of this host as the installation in this process. */
function localInstallation(settings: InstallationSettings, surface: Surface): LocalInstallation {
  const { LocalInstallation: Local } = require('../context/installation') as typeof import('../context/installation');
  const { nodesOf } = require('../context/build') as typeof import('../context/build');
  return new Local(settings, surface, nodesOf(settings, surface.env));
}

/** Runs one operation on this host's nodes; the result is what the local installation returns (JSON-safe). */
export async function runOperation(op: OpName, settings: InstallationSettings, rawArgs: unknown, input: string | undefined, surface: Surface): Promise<unknown> {
  const args = (rawArgs ?? {}) as Record<string, unknown>;
  if (op === 'hook') return runHooks(settings, (args as OpArgs['hook']).which, surface.log);
  const inst = localInstallation(settings, surface);
  switch (op) {
    case 'facts':
      return inst.facts(args as OpArgs['facts']);
    case 'plan': {
      const a = args as unknown as OpArgs['plan'];
      return inst.plan(declaredFromWire(a.declared), { verify: a.verify });
    }
    case 'apply': {
      const a = args as unknown as OpArgs['apply'];
      return inst.apply({ ...declaredFromWire(a.declared), newKey: { kind: 'given', key: inputKey(input, op) }, savedPlan: a.savedPlan, newKeyOut: a.newKeyOut, retention: a.retention });
    }
    case 'status':
      return inst.status(args as OpArgs['status']);
    case 'count':
      return inst.count();
    case 'verify':
      return inst.verify();
    case 'show':
      return inst.show((args as OpArgs['show']).reveal === true);
    case 'set': {
      const key = inputKey(input, op);
      const out = [];
      const { runSet } = require('../rotation/keys') as typeof import('../rotation/keys');
      for (const t of inst.ctx.targets) out.push(await runSet(inst.ctx, t, { kind: 'given', key }));
      return out;
    }
    case 'init':
      return inst.init(args as unknown as OpArgs['init']);
    case 'recover':
      return inst.recover();
    case 'restore':
      return inst.restore((args as OpArgs['restore']).backup);
    case 'drill':
      return inst.drill((args as OpArgs['drill']).backup);
    case 'retire':
      return inst.retire((args as unknown as OpArgs['retire']).retention);
  }
  throw new MasterKeyError('USAGE', `Unknown operation "${String(op)}".`);
}

/** The stop hook, or the start and health hooks, of this host (none given: nothing runs). */
function runHooks(settings: InstallationSettings, which: 'stop' | 'start', log: (line: string) => void): HookRun[] {
  const hooks = settings.hooks ?? {};
  if (which === 'start') return startServer(hooks, log);
  return hooks.stop ? [{ which: 'stop', command: hooks.stop, ms: runHook('stop', hooks.stop, log) }] : [];
}
