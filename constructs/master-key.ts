/**
 * The `MasterKey` construct: declares a server's master key as managed
 * infrastructure. It synthesizes one rotation resource per key whose
 * replacement triggers are non-secret and readable (key, generation, policy
 * window, inventory digest, config targets) and whose `local-exec`
 * provisioner runs `master-key apply`. The new key is generated inside the
 * rotation script; the database URL reaches it through the environment of
 * the terraform process. Nothing secret is ever part of the configuration.
 */
import { Construct, IConstruct } from 'constructs';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { MasterKeyError } from '../src/errors';
import { Framework, FrameworkName, frameworkOf } from './framework';
import { DEFAULT_MAX_ROTATION_DAYS, MasterKeyPolicy, formatFinding, markCheckable, noCredentialsRule } from './policy';
import { MasterkeyKey, ensureMasterkeyProvider, masterkeyKey } from './provider-binding';
import { escapeTerraformTemplate, localExecCommand } from './shell';
import { MasterKeyProps, MasterKeySettings, resolveSettings, rotationArgv, rotationTriggers } from './settings';

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
export interface RotationResource extends IConstruct {
  /** `terraform_data`, `null_resource` or `masterkey_key`. */
  readonly terraformResourceType: string;
  /** The resource's terraform address part, e.g. `master_key_act`. */
  readonly friendlyUniqueId: string;
  /** A terraform reference to an attribute, e.g. `getStringAttribute('id')`. */
  getStringAttribute(attribute: string): string;
}

/**
 * A master key declared as infrastructure; see `MasterKeyProps`. Works in a
 * cdktf app and in a CDK Terrain (cdktn) app: it uses the library of the
 * stack it is added to.
 */
export class MasterKey extends Construct {
  /** The props as given (kept for the policy checks). */
  readonly props: MasterKeyProps;
  /** The validated settings with defaults filled in. */
  readonly settings: MasterKeySettings;
  /** The replacement triggers of the rotation resource. */
  readonly triggers: Readonly<Record<string, string>>;
  /** The rotation's argument vector (non-secret). */
  readonly argv: readonly string[];
  /** The `terraform_data` or `null_resource` that runs the rotation, or the provider's `masterkey_key`. */
  readonly resource: RotationResource;
  /** With `resourceType: 'provider'`: the `masterkey_key` with its typed attributes. */
  readonly key?: MasterkeyKey;
  /**
   * With `resourceType: 'provider'`: an output of the key's fingerprint,
   * generation and node agreement, so that a key rotated or a node edited
   * outside terraform shows in `terraform plan` as changed outside of Terraform.
   */
  readonly output?: IConstruct;
  /** The library the stack was built with: `cdktf` or `cdktn`. */
  readonly framework: FrameworkName;

  constructor(scope: Construct, id: string, props: MasterKeyProps) {
    super(scope, id);
    const fw = frameworkOf(this);
    this.framework = fw.name;
    this.props = props;
    this.settings = resolveSettings(props, { id, path: this.node.path, now: new Date(), defaultCliCommand: defaultCliCommand() });
    refuseCredentials(this.settings, props, this.node.path);
    const { TerraformStack, DataResource, TerraformResource, TerraformOutput, Aspects } = fw.lib;
    const stack = TerraformStack.of(this);
    const twin = stack
      .node.findAll()
      .find((c) => c instanceof MasterKey && c !== this && rotationLogicalId(c.settings.name) === rotationLogicalId(this.settings.name));
    if (twin) {
      throw new MasterKeyError('USAGE', `MasterKey ${this.node.path}: name "${this.settings.name}" is already used by ${twin.node.path} in the same stack; give each key its own name.`);
    }
    this.triggers = rotationTriggers(this.settings);
    this.argv = rotationArgv(this.settings);
    const provisioner = {
      type: 'local-exec' as const,
      command: localExecCommand(this.argv),
      ...(Object.keys(this.settings.environment).length > 0
        ? { environment: escapeValues(this.settings.environment) }
        : {}),
    };
    let resource: RotationResource & { overrideLogicalId(id: string): void };
    if (this.settings.resourceType === 'provider') {
      const key = providerKey(this, stack, this.settings, props);
      key.overrideLogicalId(rotationLogicalId(this.settings.name));
      this.key = key;
      const output = new TerraformOutput(this, 'key', { value: { fingerprint: key.fingerprint, generation: key.databaseGeneration, nodes_in_sync: key.nodesInSync } });
      output.overrideLogicalId(rotationLogicalId(this.settings.name));
      this.output = output;
      resource = key;
    } else if (this.settings.resourceType === 'null_resource') {
      // hashicorp/null's null_resource, as @cdktf/provider-null synthesizes it (no cdktn build of that package exists).
      const nullResource = new TerraformResource(this, ROTATION_RESOURCE_ID, {
        terraformResourceType: 'null_resource',
        terraformGeneratorMetadata: NULL_PROVIDER_METADATA,
        provider: ensureNullProvider(fw, stack),
        provisioners: [provisioner],
      });
      nullResource.addOverride('triggers', escapeValues(this.triggers));
      resource = nullResource;
    } else {
      resource = new DataResource(this, ROTATION_RESOURCE_ID, { triggersReplace: escapeValues(this.triggers), provisioners: [provisioner] });
    }
    if (resource !== this.key) resource.overrideLogicalId(rotationLogicalId(this.settings.name));
    this.resource = resource;
    markCheckable(this);
    Aspects.of(this).add(new MasterKeyPolicy(props.checks));
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

/** The provider's `masterkey_key` for the settings (the policy window is evaluated by the provider at plan time). */
function providerKey(scope: MasterKey, stack: Construct, s: MasterKeySettings, props: MasterKeyProps): MasterkeyKey {
  const evaluatedAt = props.rotationPolicy?.evaluatedAt;
  return masterkeyKey(scope, ROTATION_RESOURCE_ID, {
    provider: ensureMasterkeyProvider(stack) as never,
    name: s.name,
    generation: s.generation,
    configFiles: [...s.configFiles],
    configFormat: s.configFormat,
    keyName: s.keyName,
    ...('env' in s.databaseUrl ? { databaseUrlEnv: s.databaseUrl.env } : { databaseUrlEntry: s.databaseUrl.entry }),
    inventory: s.inventory.spec,
    ...(s.window
      ? {
          rotationPeriodDays: s.window.periodDays,
          ...(props.rotationPolicy?.epoch !== undefined ? { rotationEpoch: props.rotationPolicy.epoch } : {}),
          ...(evaluatedAt !== undefined ? { rotationEvaluatedAt: typeof evaluatedAt === 'string' ? evaluatedAt : evaluatedAt.toISOString() } : {}),
        }
      : {}),
    backupDir: s.backupDir,
    reportDir: s.reportDir,
    stopCommand: s.stopCommand,
    startCommand: s.startCommand,
    healthCommand: s.healthCommand,
    newKeyFile: s.newKeyFile,
    ...(s.verifySecrets ? { verifySecrets: true } : {}),
  });
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
