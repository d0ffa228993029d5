/**
 * The `MasterKey` construct: declares a server's master key as managed
 * infrastructure. It synthesizes one rotation resource per key whose
 * replacement triggers are non-secret and readable (key, generation, policy
 * window, inventory digest, config targets) and whose `local-exec`
 * provisioner runs `master-key apply`. The new key is generated inside the
 * rotation script; the database URL reaches it through the environment of
 * the terraform process. Nothing secret is ever part of the configuration.
 */
import { provider as nullProvider, resource as nullResource } from '@cdktf/provider-null';
import { Aspects, DataResource, LocalExecProvisioner, TerraformProvider, TerraformResource, TerraformStack } from 'cdktf';
import { Construct } from 'constructs';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { MasterKeyError } from '../src/errors';
import { MasterKeyPolicy, markCheckable } from './policy';
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

/** A master key declared as infrastructure; see `MasterKeyProps`. */
export class MasterKey extends Construct {
  /** The props as given (kept for the policy checks). */
  readonly props: MasterKeyProps;
  /** The validated settings with defaults filled in. */
  readonly settings: MasterKeySettings;
  /** The replacement triggers of the rotation resource. */
  readonly triggers: Readonly<Record<string, string>>;
  /** The rotation's argument vector (non-secret). */
  readonly argv: readonly string[];
  /** The `terraform_data` or `null_resource` that runs the rotation. */
  readonly resource: TerraformResource;

  constructor(scope: Construct, id: string, props: MasterKeyProps) {
    super(scope, id);
    this.props = props;
    this.settings = resolveSettings(props, { id, path: this.node.path, now: new Date(), defaultCliCommand: defaultCliCommand() });
    const twin = TerraformStack.of(this)
      .node.findAll()
      .find((c) => c instanceof MasterKey && c !== this && rotationLogicalId(c.settings.name) === rotationLogicalId(this.settings.name));
    if (twin) {
      throw new MasterKeyError('USAGE', `MasterKey ${this.node.path}: name "${this.settings.name}" is already used by ${twin.node.path} in the same stack; give each key its own name.`);
    }
    this.triggers = rotationTriggers(this.settings);
    this.argv = rotationArgv(this.settings);
    const provisioner: LocalExecProvisioner = {
      type: 'local-exec',
      command: localExecCommand(this.argv),
      ...(Object.keys(this.settings.environment).length > 0
        ? { environment: escapeValues(this.settings.environment) }
        : {}),
    };
    if (this.settings.resourceType === 'null_resource') {
      this.resource = new nullResource.Resource(this, ROTATION_RESOURCE_ID, {
        provider: ensureNullProvider(TerraformStack.of(this)),
        triggers: escapeValues(this.triggers),
        provisioners: [provisioner],
      });
    } else {
      this.resource = new DataResource(this, ROTATION_RESOURCE_ID, { triggersReplace: escapeValues(this.triggers), provisioners: [provisioner] });
    }
    this.resource.overrideLogicalId(rotationLogicalId(this.settings.name));
    markCheckable(this);
    Aspects.of(this).add(new MasterKeyPolicy(props.checks));
  }
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

/** The stack's hashicorp/null provider, created (once per stack) if missing. */
function ensureNullProvider(stack: TerraformStack): TerraformProvider {
  const existing = stack.node.findAll().find((c): c is TerraformProvider => c instanceof TerraformProvider && c.terraformResourceType === 'null');
  return existing ?? new nullProvider.NullProvider(stack, 'master-key-null-provider', {});
}
