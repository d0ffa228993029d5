/**
 * The `MasterKey` construct: declares a server's master key as managed
 * infrastructure. It synthesizes one rotation resource per key whose
 * replacement triggers are non-secret and readable (key, generation, policy
 * window, inventory digest, config targets) and whose `local-exec`
 * provisioner runs `master-key apply`, or the provider's `masterkey_key`. The new key is generated inside the
 * rotation script; the database URL reaches it through the environment of
 * the terraform process. Nothing secret is ever part of the configuration.
 */
import { Construct, IConstruct } from 'constructs';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { MasterKeyError } from '../src/errors';
import { Framework, frameworkOf } from './framework';
import { MasterKeyPolicy, formatFinding, markCheckable } from './policy';
import { DEFAULT_MAX_ROTATION_DAYS, noCredentialsRule } from './policy-rules';
import { MasterKeyProps, MasterKeySettings, RotationResourceType } from './types';
import { MasterkeyKey, ensureMasterkeyProvider, masterkeyKey } from './provider-binding';
import { escapeTerraformTemplate, localExecCommand } from './shell';
import { resolveSettings, rotationArgv, rotationTriggers } from './settings';

/** The construct id of the rotation resource inside a `MasterKey`. */
export const ROTATION_RESOURCE_ID = 'rotation';

/**
 * The CLI this package ships, run by the node binary running synth. Works
 * from the compiled library (`dist/constructs`, next to `dist/src/cli`) and
 * from the TypeScript sources (then the built `dist/` beside them is used).
 */
export function defaultCliCommand(here: string = __dirname, exists: (p: string) => boolean = existsSync): string[] {
  const fromSources = exists(resolve(here, 'index.ts'));
  return [process.execPath, resolve(here, fromSources ? '../dist/src/cli/main.js' : '../src/cli/main.js')];
}

/** The rotation resource as the construct exposes it (a cdktf or cdktn `TerraformResource`). */
export interface IRotationResource extends IConstruct {
  /** `terraform_data`, `null_resource` or `masterkey_key`. */
  readonly terraformResourceType: string;
  /** The resource's terraform address part, e.g. `master_key_act`. */
  readonly friendlyUniqueId: string;
  /** A terraform reference to an attribute, e.g. `getStringAttribute('id')`. */
  getStringAttribute(attribute: string): string;
}

/** What carries one key's rotation in the stack. */
interface Rotation {
  readonly resource: IRotationResource;
  readonly key?: MasterkeyKey;
  readonly output?: IConstruct;
}

const IS_MASTER_KEY = Symbol.for('cdktf-master-key.MasterKey');

/**
 * A master key declared as infrastructure; see `MasterKeyProps`. Works in a
 * cdktf app and in a CDK Terrain (cdktn) app: it uses the library of the
 * stack it is added to.
 */
export class MasterKey extends Construct {
  /**
   * True for a `MasterKey` of any copy of this library. Use it instead of
   * `instanceof`, which says no for a key built by another copy (two versions
   * installed side by side, e.g. one nested under a construct library).
   */
  static isMasterKey(x: unknown): x is MasterKey {
    return x !== null && typeof x === 'object' && IS_MASTER_KEY in x;
  }

  /** The validated settings with defaults filled in. */
  readonly settings: MasterKeySettings;
  /** The replacement triggers of the rotation resource. */
  readonly triggers: { readonly [name: string]: string };
  /** The rotation's argument vector (non-secret). */
  readonly argv: readonly string[];
  /** The `terraform_data` or `null_resource` that runs the rotation, or the provider's `masterkey_key`. */
  readonly resource: IRotationResource;
  /** With `RotationResourceType.PROVIDER`: the `masterkey_key` with its typed attributes. */
  readonly key?: MasterkeyKey;
  /**
   * With `RotationResourceType.PROVIDER`: an output of the key's fingerprint,
   * generation and node agreement, so that a key rotated or a node edited
   * outside terraform shows in `terraform plan` as changed outside of Terraform.
   */
  readonly output?: IConstruct;
  /** The package name of the library the stack was built with: `cdktf` or `cdktn`. */
  readonly framework: string;

  constructor(scope: Construct, id: string, props: MasterKeyProps) {
    super(scope, id);
    const fw = frameworkOf(this);
    this.framework = fw.name;
    this.settings = resolveSettings(props, { id, path: this.node.path, now: new Date(), defaultCliCommand: defaultCliCommand() });
    refuseCredentials(this.settings, props, this.node.path);
    const stack = fw.lib.TerraformStack.of(this);
    refuseTwin(this, stack);
    this.triggers = rotationTriggers(this.settings);
    this.argv = rotationArgv(this.settings);
    const rotation = buildRotation(this, fw, stack);
    this.resource = rotation.resource;
    this.key = rotation.key;
    this.output = rotation.output;
    markCheckable(this, { settings: this.settings, props: { ...props } });
    fw.lib.Aspects.of(this).add(new MasterKeyPolicy(props.checks));
    Object.defineProperty(this, IS_MASTER_KEY, { value: true });
  }
}

/**
 * Refuses props holding something that looks like a credential before
 * anything is built, so nothing can synthesize it: `cdktf synth` (which sets
 * CDKTF_CONTINUE_SYNTH_ON_ERROR_ANNOTATIONS) would otherwise still write
 * cdk.tf.json after the `MasterKey-NoCredentials` error annotation. This rule
 * cannot be suppressed.
 */
function refuseCredentials(settings: MasterKeySettings, props: MasterKeyProps, path: string): void {
  const findings = noCredentialsRule.check({ settings, props, maxRotationDays: DEFAULT_MAX_ROTATION_DAYS });
  if (findings.length > 0) throw new MasterKeyError('USAGE', `MasterKey ${path}: ${findings.map(formatFinding).join(' ')}`);
}

/** Refuses a second key whose rotation resource would get the same terraform name in the stack (keys of any copy of this library count). */
function refuseTwin(key: MasterKey, stack: IConstruct): void {
  const logicalId = rotationLogicalId(key.settings.name);
  const twin = stack.node.findAll().find((c) => MasterKey.isMasterKey(c) && c !== key && rotationLogicalId(c.settings.name) === logicalId);
  if (twin) {
    throw new MasterKeyError('USAGE', `MasterKey ${key.node.path}: name "${key.settings.name}" is already used by ${twin.node.path} in the same stack; give each key its own name.`);
  }
}

/** The resource that carries the rotation, named after the key (`terraform_data.master_key_act`). */
function buildRotation(key: MasterKey, fw: Framework, stack: IConstruct): Rotation {
  const logicalId = rotationLogicalId(key.settings.name);
  switch (key.settings.resourceType) {
    case RotationResourceType.PROVIDER:
      return providerRotation(key, fw, stack, logicalId);
    case RotationResourceType.NULL_RESOURCE:
      return { resource: named(nullResourceRotation(key, fw, stack), logicalId) };
    default:
      return { resource: named(new fw.lib.DataResource(key, ROTATION_RESOURCE_ID, { triggersReplace: escapeValues(key.triggers), provisioners: [localExec(key)] }), logicalId) };
  }
}

function named<T extends { overrideLogicalId(id: string): void }>(element: T, logicalId: string): T {
  element.overrideLogicalId(logicalId);
  return element;
}

/** The `local-exec` provisioner that runs `master-key apply` (with the extra environment, if any). */
function localExec(key: MasterKey) {
  const env = key.settings.environment;
  return { type: 'local-exec' as const, command: localExecCommand(key.argv), ...(Object.keys(env).length > 0 ? { environment: escapeValues(env) } : {}) };
}

/** hashicorp/null's null_resource, as @cdktf/provider-null synthesizes it (no cdktn build of that package exists). */
function nullResourceRotation(key: MasterKey, fw: Framework, stack: IConstruct) {
  const resource = new fw.lib.TerraformResource(key, ROTATION_RESOURCE_ID, {
    terraformResourceType: 'null_resource',
    terraformGeneratorMetadata: NULL_PROVIDER_METADATA,
    provider: ensureNullProvider(fw, stack),
    provisioners: [localExec(key)],
  });
  resource.addOverride('triggers', escapeValues(key.triggers));
  return resource;
}

/** The provider's `masterkey_key` and an output of what it reads (the policy window is evaluated by the provider at plan time unless `evaluatedAt` is given). */
function providerRotation(key: MasterKey, fw: Framework, stack: IConstruct, logicalId: string): Rotation {
  const s = key.settings;
  const policy = s.rotationPolicy;
  // Named before the output refers to it: once referenced, an element's logical id is fixed.
  const resource = named(masterkeyKey(key, ROTATION_RESOURCE_ID, {
    provider: ensureMasterkeyProvider(stack as Construct) as never,
    name: s.name,
    generation: s.generation,
    configFiles: [...s.configFiles],
    configFormat: s.configFormat,
    keyName: s.keyName,
    databaseUrlEnv: s.databaseUrlEnv,
    databaseUrlEntry: s.databaseUrlEntry,
    inventory: s.inventory.spec,
    ...(Object.keys(s.ssh).length ? { ssh: { ...s.ssh } } : {}),
    ...(Object.keys(s.sshNodes).length ? { sshNodes: Object.fromEntries(Object.entries(s.sshNodes).map(([a, m]) => [a, { ...m }])) } : {}),
    rotationPeriodDays: policy?.periodDays,
    rotationEpoch: policy?.epoch,
    rotationEvaluatedAt: policy?.evaluatedAt,
    backupDir: s.backupDir,
    reportDir: s.reportDir,
    localReportDir: s.localReportDir,
    stopCommand: s.stopCommand,
    startCommand: s.startCommand,
    healthCommand: s.healthCommand,
    newKeyFile: s.newKeyFile,
    ...(s.backupRecipients.length ? { backupRecipients: [...s.backupRecipients] } : {}),
    backupRetention: s.backupRetention,
    lockTimeout: s.lockTimeout,
    ...(s.verifySecrets ? { verifySecrets: true } : {}),
    ...(s.sealAhead !== undefined ? { sealAhead: s.sealAhead } : {}),
  }), logicalId);
  const output = new fw.lib.TerraformOutput(key, 'key', { value: { fingerprint: resource.fingerprint, generation: resource.databaseGeneration, nodes_in_sync: resource.nodesInSync } });
  return { resource, key: resource, output: named(output, logicalId) };
}

/**
 * The rotation resource's terraform name, from the key's name, so that the
 * plan says which key it is about: `terraform_data.master_key_act`.
 */
export function rotationLogicalId(name: string): string {
  return `master_key_${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

/** A string map as terraform must be given it: every value is a template, so `${` and `%{` are escaped. */
function escapeValues(map: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, escapeTerraformTemplate(v)]));
}

/** hashicorp/null as @cdktf/provider-null 11 declares it. */
const NULL_PROVIDER_METADATA = { providerName: 'null', providerVersion: '3.2.4', providerVersionConstraint: '~> 3.0' };

type Provider = InstanceType<Framework['lib']['TerraformProvider']>;
const nullProviders = new WeakMap<Framework['lib'], new (scope: Construct, id: string) => Provider>();

/** A `provider "null" {}` block of the given library (TerraformProvider is abstract). */
function nullProviderClass(lib: Framework['lib']): new (scope: Construct, id: string) => Provider {
  let cls = nullProviders.get(lib);
  if (!cls) {
    cls = class NullProvider extends lib.TerraformProvider {
      constructor(scope: Construct, id: string) {
        super(scope, id, { terraformResourceType: 'null', terraformGeneratorMetadata: NULL_PROVIDER_METADATA, terraformProviderSource: 'null' });
      }
    };
    nullProviders.set(lib, cls);
  }
  return cls;
}

/** The stack's hashicorp/null provider (one a stack already has, e.g. from @cdktf/provider-null), created once per stack if missing. */
function ensureNullProvider({ lib }: Framework, stack: IConstruct): Provider {
  const existing = stack.node.findAll().find((c): c is Provider => lib.TerraformProvider.isTerraformProvider(c) && c.terraformResourceType === 'null');
  return existing ?? new (nullProviderClass(lib))(stack, 'master-key-null-provider');
}
