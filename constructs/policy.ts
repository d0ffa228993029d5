/**
 * Synth-time policy checks for master keys, after cdk-nag: the
 * `MasterKeyPolicy` Aspect runs the pure rules of policy-rules.ts (and any
 * rules of your own) on every `MasterKey` in its scope and turns their
 * findings into annotations. Errors fail `cdktf synth` (cdktf prints the
 * construct path with each message); warnings are shown and the synth goes
 * on. A rule that throws does not crash the synth: it becomes a warning
 * naming the rule (`MasterKey-RuleFailed`).
 *
 * Keys are recognised through `Symbol.for` markers, not `instanceof`, so a
 * policy from one copy of this library checks the keys of another copy (two
 * versions installed side by side), and each key once.
 */
import { IConstruct } from 'constructs';
import { quotable } from './credentials';
import { frameworkOf } from './framework';
import { DEFAULT_MAX_ROTATION_DAYS, POLICY_RULES, noCredentialsRule } from './policy-rules';
import { FindingLevel, IPolicyRule, KeyDeclaration, MasterKeyPolicyProps, PolicyFinding, PolicyInput, PolicySuppression } from './types';
import { Fail, failFor } from './validation';

/** The id of the warning that stands for a rule that threw or returned something other than findings. */
export const RULE_FAILED_ID = 'MasterKey-RuleFailed';

/**
 * Runs the rules (minus suppressed ones) on one key. Pure. A rule that throws
 * or returns something other than a list of findings yields one
 * `MasterKey-RuleFailed` warning in its place: the other rules still run.
 */
export function evaluatePolicy(input: PolicyInput, rules: readonly IPolicyRule[] = POLICY_RULES, suppressed: ReadonlySet<string> = new Set()): PolicyFinding[] {
  return rules.filter((r) => !suppressed.has(r.id)).flatMap((r) => runRule(r, input));
}

/** One rule's findings, or the warning that it failed. */
function runRule(rule: IPolicyRule, input: PolicyInput): PolicyFinding[] {
  let found: unknown;
  try {
    found = rule.check(input);
  } catch (e) {
    return [ruleFailed(rule, `threw ${quotable(e instanceof Error ? `${e.name}: ${e.message}` : String(e))}`)];
  }
  if (isPromise(found)) {
    found.then(undefined, () => undefined); // its outcome is not waited for: a rejection must not crash the process either
    return [ruleFailed(rule, 'returned a promise instead of a list of findings (rules run synchronously at synth)')];
  }
  if (!Array.isArray(found)) return [ruleFailed(rule, `returned ${quotable(found)} instead of a list of findings`)];
  const malformed = found.findIndex((f) => !isFinding(f));
  if (malformed >= 0) return [ruleFailed(rule, `returned a malformed finding (item ${malformed}: it needs a ruleId, a level of "error" or "warning", a problem and a fix, all text)`)];
  return found as PolicyFinding[];
}

function isPromise(x: unknown): x is PromiseLike<unknown> {
  return typeof (x as PromiseLike<unknown> | null)?.then === 'function';
}

function isFinding(f: unknown): f is PolicyFinding {
  const o = f as Partial<Record<keyof PolicyFinding, unknown>> | null;
  return typeof o === 'object' && o !== null && typeof o.ruleId === 'string' && Object.values(FindingLevel).includes(o.level as FindingLevel) && typeof o.problem === 'string' && typeof o.fix === 'string';
}

/** The warning for a rule that failed: which rule, how, and what to do. Never the rule's message when it looks like a credential. */
function ruleFailed(rule: IPolicyRule, how: string): PolicyFinding {
  const id = String(rule.id);
  const fix = POLICY_RULES.includes(rule)
    ? `this is a bug in cdktf-master-key, please report it; suppress ${id} with a reason to silence this warning`
    : `correct the rule, or suppress ${id} with a reason`;
  return { ruleId: RULE_FAILED_ID, level: FindingLevel.WARNING, problem: `the rule ${id} ${how}, so this key was not checked against it`, fix };
}

/** The one-line message of a finding as shown by synth. */
export function formatFinding(f: PolicyFinding): string {
  return `[${f.ruleId}] ${f.problem}. Fix: ${f.fix}.`;
}

/** Validates suppressions: known rule ids and a real reason. */
export function checkSuppressions(suppressions: readonly PolicySuppression[], rules: readonly IPolicyRule[] = POLICY_RULES): string[] {
  const ids = new Set(rules.map((r) => r.id));
  return suppressions.flatMap((s) => {
    if (!s || typeof s !== 'object') return [`[MasterKey-Suppression] ${quotable(s)} is not a suppression. Fix: give { id, reason }.`];
    if (!ids.has(s.id)) return [`[MasterKey-Suppression] "${s.id}" is not a rule id. Fix: use one of ${[...ids].join(', ')}.`];
    if (s.id === noCredentialsRule.id) return [`[MasterKey-Suppression] ${s.id} cannot be suppressed: a credential in props would be written to cdk.tf.json and the terraform state. Fix: remove the suppression and the credential.`];
    if (typeof s.reason !== 'string' || s.reason.trim().length < 10) return [`[MasterKey-Suppression] the suppression of ${s.id} has no reason. Fix: say why the rule does not apply (at least 10 characters).`];
    return [];
  });
}

/**
 * Validates policy props (of a `MasterKeyPolicy`, or a `MasterKey`'s `checks`
 * when `name` is `checks`), throwing through `fail`. What suppressions say is
 * checked at synth, where it is reported next to the findings.
 */
export function checkPolicyProps(props: MasterKeyPolicyProps | undefined, name: string | undefined, fail: Fail): void {
  const prop = (p: string) => (name ? `${name}.${p}` : p);
  if (props === undefined) return;
  if (!props || typeof props !== 'object') fail(name ?? 'props', `are ${quotable(props)}`, 'give an object such as { maxRotationDays: 180 }');
  const max = props.maxRotationDays;
  if (max !== undefined && (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 1)) {
    fail(prop('maxRotationDays'), `is ${quotable(max)}, not a whole number of days of at least 1`, 'give a period such as 180 or 365');
  }
  if (props.suppressions !== undefined && !Array.isArray(props.suppressions)) fail(prop('suppressions'), `is ${quotable(props.suppressions)}, not a list`, 'give a list of { id, reason }');
  const rules: unknown = props.additionalRules ?? [];
  if (!Array.isArray(rules)) fail(prop('additionalRules'), `is ${quotable(rules)}, not a list`, 'give a list of rules, each { id, description, check(input) }');
  const seen = new Set(POLICY_RULES.map((r) => r.id));
  (rules as unknown[]).forEach((r, i) => {
    const at = prop(`additionalRules[${i}]`);
    const rule = r as Partial<IPolicyRule> | null;
    if (!rule || typeof rule !== 'object' || typeof rule.check !== 'function' || typeof rule.description !== 'string') {
      fail(at, `is ${quotable(r)} without a description and a check function`, 'give { id, description, check(input) { return [] } }');
    }
    if (typeof rule.id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(rule.id)) fail(`${at}.id`, `${quotable(rule.id)} is not a rule id`, 'use letters, digits, dots, dashes or underscores, e.g. Acme-BackupOnNfs');
    if (rule.id.startsWith('MasterKey-')) fail(`${at}.id`, `"${rule.id}" uses the prefix MasterKey-, which is reserved for the built-in rules`, 'name it after your organisation, e.g. Acme-BackupOnNfs');
    if (seen.has(rule.id)) fail(`${at}.id`, `"${rule.id}" is used by another rule`, 'give every rule its own id');
    seen.add(rule.id);
  });
}

/** Marks a construct as a key declaration that `MasterKeyPolicy` checks, in any copy of this library. */
const DECLARATION = Symbol.for('cdktf-master-key.declaration');
/** Marks a key as checked, so that each key is checked once, whichever copy's policy gets there first. */
const CHECKED = Symbol.for('cdktf-master-key.policy-checked');

/** Attaches a key's declaration to its construct for the policy (used by `MasterKey`). */
export function markCheckable(c: IConstruct, declaration: KeyDeclaration): void {
  Object.defineProperty(c, DECLARATION, { value: declaration });
}

/** The declaration a `MasterKey` (of any copy of this library) carries; undefined for other constructs. */
function declarationOf(c: IConstruct): KeyDeclaration | undefined {
  return (c as unknown as Record<symbol, KeyDeclaration | undefined>)[DECLARATION];
}

/** True the first time it is asked about a key, false after. */
function firstCheck(c: IConstruct): boolean {
  if (Object.prototype.hasOwnProperty.call(c, CHECKED)) return false;
  Object.defineProperty(c, CHECKED, { value: true });
  return true;
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
  private readonly rules: readonly IPolicyRule[];

  constructor(props: MasterKeyPolicyProps = {}) {
    checkPolicyProps(props, undefined, failFor('MasterKeyPolicy'));
    this.maxRotationDays = props.maxRotationDays ?? DEFAULT_MAX_ROTATION_DAYS;
    this.suppressions = props.suppressions ?? [];
    this.rules = [...POLICY_RULES, ...(props.additionalRules ?? [])];
  }

  /** Checks a `MasterKey` (other constructs are ignored). */
  visit(node: IConstruct): void {
    const declaration = declarationOf(node);
    if (!declaration || !firstCheck(node)) return;
    const annotations = frameworkOf(node, `MasterKeyPolicy on ${node.node.path}`).lib.Annotations.of(node);
    for (const m of checkSuppressions(this.suppressions, this.rules)) annotations.addError(m);
    for (const s of this.suppressions) annotations.addInfo(`[${s.id}] suppressed: ${s.reason}`);
    const input = { ...declaration, maxRotationDays: this.maxRotationDays };
    for (const f of evaluatePolicy(input, this.rules, new Set(this.suppressions.map((s) => s.id)))) {
      if (f.level === FindingLevel.ERROR) annotations.addError(formatFinding(f));
      else annotations.addWarning(formatFinding(f));
    }
  }
}

