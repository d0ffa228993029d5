/**
 * Synth-time policy checks for master keys, after cdk-nag: small pure rules
 * that look at a key's settings and raw props and return findings, and an
 * Aspect that runs them on every `MasterKey` in its scope and turns findings
 * into annotations. Errors fail `cdktf synth` (cdktf prints the construct
 * path with each message); warnings are shown and the synth goes on.
 */
import { IConstruct } from 'constructs';
import { isAbsolute } from 'node:path';
import { findCredentials, quotable } from './credentials';
import { frameworkOf } from './framework';
import type { MasterKeyChecksOptions, MasterKeyProps, MasterKeySettings, PolicySuppression } from './settings';

/** The longest rotation period allowed unless the checks say otherwise. */
export const DEFAULT_MAX_ROTATION_DAYS = 365;

/** How bad a finding is: errors fail synth, warnings are shown. */
export type FindingLevel = 'error' | 'warning';

/** One thing a rule found wrong with a key's declaration. */
export interface PolicyFinding {
  readonly ruleId: string;
  readonly level: FindingLevel;
  /** What is wrong (names the prop; never a secret value). */
  readonly problem: string;
  /** What to do about it. */
  readonly fix: string;
}

/** What a rule looks at. */
export interface PolicyInput {
  readonly settings: MasterKeySettings;
  /** The props as given (for the credential scan of every prop). */
  readonly props: MasterKeyProps;
  readonly maxRotationDays: number;
}

/** A policy rule: an id, a one-line description and a pure check. */
export interface PolicyRule {
  readonly id: string;
  readonly description: string;
  check(input: PolicyInput): PolicyFinding[];
}

function rule(id: string, level: FindingLevel, description: string, check: (input: PolicyInput) => Array<{ problem: string; fix: string }>): PolicyRule {
  return { id, description, check: (input) => check(input).map((f) => ({ ruleId: id, level, ...f })) };
}

/** The rotation period must not exceed the allowed maximum. */
export const maxRotationPeriodRule = rule('MasterKey-MaxRotationPeriod', 'error', 'The rotation period is at most the allowed maximum (365 days unless configured).', ({ settings, maxRotationDays }) =>
  settings.window && settings.window.periodDays > maxRotationDays
    ? [{ problem: `rotationPolicy.periodDays is ${settings.window.periodDays} days, longer than the ${maxRotationDays} days the policy allows`, fix: `set rotationPolicy.periodDays to ${maxRotationDays} or less` }]
    : [],
);

/** A key without a rotation schedule only rotates when someone remembers to. */
export const rotationPolicyRule = rule('MasterKey-RotationPolicy', 'warning', 'The key has a rotation schedule.', ({ settings, maxRotationDays }) =>
  settings.window ? [] : [{ problem: 'no rotationPolicy is set, so the key rotates only when generation is raised by hand', fix: `set rotationPolicy: { periodDays: 90 } (at most ${maxRotationDays})` }],
);

/** Every path the rotation script is given must be absolute. */
export const absolutePathsRule = rule('MasterKey-AbsolutePaths', 'error', 'Config files, inventory, backup, report and new-key paths are absolute.', ({ settings: s }) => {
  const paths: Array<[string, string | undefined]> = [
    ...s.configFiles.map((f, i): [string, string] => [`configFiles[${i}]`, f]),
    ['backupDir', s.backupDir],
    ['reportDir', s.reportDir],
    ['newKeyFile', s.newKeyFile],
  ];
  const found = paths
    .filter((p): p is [string, string] => p[1] !== undefined && !isAbsolute(p[1]))
    .map(([prop, p]) => ({ problem: `${prop} ${quotable(p)} is a relative path, which the rotation would resolve against terraform's working directory`, fix: `give an absolute path (starting with /)` }));
  if (s.inventory.isRelativeFile) {
    found.push({ problem: `the inventory file ${quotable(s.inventory.spec)} is a relative path`, fix: 'load it with MasterKeyInventory.fromFile(<absolute path>)' });
  }
  return found;
});

/** An inventory without entries would rotate the canary and nothing else. */
export const nonEmptyInventoryRule = rule('MasterKey-NonEmptyInventory', 'error', 'The secret inventory lists at least one location.', ({ settings }) =>
  settings.inventory.inventory.entries.length === 0
    ? [{ problem: `the inventory "${settings.inventory.inventory.name}" lists no secret locations, so a rotation would leave every secret sealed under the old key`, fix: 'list the tables and columns holding sealed secrets, or use MasterKeyInventory.act()' }]
    : [],
);

/** No prop may hold something that looks like a credential. */
export const noCredentialsRule = rule('MasterKey-NoCredentials', 'error', 'No prop holds a credential (URL with a password, 64-hex key, private key, password setting, token).', ({ props }) =>
  findCredentials(props).map((f) => ({
    problem: `${f.path} looks like it contains ${f.kinds.join(' and ')} (value not shown), which would be written to cdk.tf.json and the terraform state`,
    fix: 'remove it: the database URL comes from the environment variable named by databaseUrlEnv, keys live only in the config files',
  })),
);

/** A rotation without a backup directory cannot take its safety backup. */
export const backupDirRule = rule('MasterKey-BackupDir', 'error', 'A backup directory is set.', ({ settings }) =>
  settings.backupDir === undefined ? [{ problem: 'backupDir is not set, so the rotation would have nowhere to back up secrets and config first', fix: 'set backupDir to an absolute directory, e.g. "/var/backups/act-master-key"' }] : [],
);

/** Starting the server again without a health check hides a failed start. */
export const healthCheckRule = rule('MasterKey-HealthCheck', 'warning', 'A server that is restarted is health-checked.', ({ settings }) =>
  settings.startCommand !== undefined && settings.healthCommand === undefined
    ? [{ problem: 'startCommand is set without healthCommand, so a server that fails to come back after the rotation goes unnoticed', fix: 'set healthCommand, e.g. "curl -fsS http://127.0.0.1:8080/health"' }]
    : [],
);

/** Every rule, in the order findings are reported. */
export const POLICY_RULES: readonly PolicyRule[] = [
  maxRotationPeriodRule,
  rotationPolicyRule,
  absolutePathsRule,
  nonEmptyInventoryRule,
  noCredentialsRule,
  backupDirRule,
  healthCheckRule,
];

/** Runs the rules (minus suppressed ones) on one key. Pure. */
export function evaluatePolicy(input: PolicyInput, rules: readonly PolicyRule[] = POLICY_RULES, suppressed: ReadonlySet<string> = new Set()): PolicyFinding[] {
  return rules.filter((r) => !suppressed.has(r.id)).flatMap((r) => r.check(input));
}

/** The one-line message of a finding as shown by synth. */
export function formatFinding(f: PolicyFinding): string {
  return `[${f.ruleId}] ${f.problem}. Fix: ${f.fix}.`;
}

/** Validates suppressions: known rule ids and a real reason. */
export function checkSuppressions(suppressions: readonly PolicySuppression[], rules: readonly PolicyRule[] = POLICY_RULES): string[] {
  const ids = new Set(rules.map((r) => r.id));
  return suppressions.flatMap((s) => {
    if (!ids.has(s.id)) return [`[MasterKey-Suppression] "${s.id}" is not a rule id. Fix: use one of ${[...ids].join(', ')}.`];
    if (s.id === noCredentialsRule.id) return [`[MasterKey-Suppression] ${s.id} cannot be suppressed: a credential in props would be written to cdk.tf.json and the terraform state. Fix: remove the suppression and the credential.`];
    if (typeof s.reason !== 'string' || s.reason.trim().length < 10) return [`[MasterKey-Suppression] the suppression of ${s.id} has no reason. Fix: say why the rule does not apply (at least 10 characters).`];
    return [];
  });
}

/** What a construct must offer to be checked by `MasterKeyPolicy`. */
export interface CheckableMasterKey extends IConstruct {
  readonly settings: MasterKeySettings;
  readonly props: MasterKeyProps;
}

const CHECKABLE = Symbol.for('cdktf-master-key.checkable');
const checkedBy = new WeakMap<IConstruct, MasterKeyPolicy>();

/** Marks a construct as something `MasterKeyPolicy` checks (used by `MasterKey`). */
export function markCheckable(c: CheckableMasterKey): void {
  Object.defineProperty(c, CHECKABLE, { value: true });
}

function isCheckable(c: IConstruct): c is CheckableMasterKey {
  return (c as unknown as Record<symbol, unknown>)[CHECKABLE] === true;
}

/** What cdktf and cdktn call an `IAspect` (the same shape in both). */
export interface MasterKeyAspect {
  visit(node: IConstruct): void;
}

/**
 * The policy Aspect. Add it to an app or stack to enforce an organisation's
 * rules (`Aspects.of(app).add(new MasterKeyPolicy({ maxRotationDays: 90 }))`);
 * every `MasterKey` also checks itself with its own `checks` options. Each key
 * is checked once, by the outermost policy.
 */
export class MasterKeyPolicy implements MasterKeyAspect {
  private readonly maxRotationDays: number;
  private readonly suppressions: readonly PolicySuppression[];

  constructor(options: MasterKeyChecksOptions = {}) {
    const max = options.maxRotationDays ?? DEFAULT_MAX_ROTATION_DAYS;
    if (!Number.isSafeInteger(max) || max < 1) throw new TypeError(`maxRotationDays must be a whole number of days of at least 1, got ${String(max)}.`);
    this.maxRotationDays = max;
    this.suppressions = options.suppressions ?? [];
  }

  /** Checks a `MasterKey` (other constructs are ignored). */
  visit(node: IConstruct): void {
    if (!isCheckable(node) || checkedBy.has(node)) return;
    checkedBy.set(node, this);
    const annotations = frameworkOf(node, `MasterKeyPolicy on ${node.node.path}`).lib.Annotations.of(node);
    for (const m of checkSuppressions(this.suppressions)) annotations.addError(m);
    for (const s of this.suppressions) annotations.addInfo(`[${s.id}] suppressed: ${s.reason}`);
    const findings = evaluatePolicy({ settings: node.settings, props: node.props, maxRotationDays: this.maxRotationDays }, POLICY_RULES, new Set(this.suppressions.map((s) => s.id)));
    for (const f of findings) {
      if (f.level === 'error') annotations.addError(formatFinding(f));
      else annotations.addWarning(formatFinding(f));
    }
  }
}
