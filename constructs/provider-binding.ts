/**
 * Typed CDKTF bindings of terraform-provider-masterkey (source
 * `cdktf-master-key/masterkey`), written by hand in the shape `cdktf get`
 * generates: the provider, resource `masterkey_key` and data source
 * `masterkey_status`. Like the rest of this library they are built on the
 * classes of the library (cdktf or cdktn) of the stack they are added to, so
 * they are created with functions: `masterkeyProvider`, `masterkeyKey`,
 * `masterkeyStatus`. Attribute names mirror src/provider/schema.ts.
 */
import type { IResolvable, ITerraformDependable, TerraformMetaArguments } from 'cdktf';
import type { Construct, IConstruct } from 'constructs';
import { PROVIDER_SOURCE, PROVIDER_TYPE, providerVersion } from '../src/provider/install';
import { FrameworkModule, frameworkOf } from './framework';

/** Where an installation is (shared by the resource and the data source). */
export interface MasterkeyInstallationConfig extends TerraformMetaArguments {
  readonly configFiles: string[];
  readonly configFormat?: string;
  readonly keyName?: string;
  readonly databaseUrlEnv?: string;
  readonly databaseUrlEntry?: string;
  readonly inventory?: string;
}

/** The arguments of `masterkey_key`. */
export interface MasterkeyKeyConfig extends MasterkeyInstallationConfig {
  readonly name: string;
  readonly generation: number;
  readonly rotationPeriodDays?: number;
  readonly rotationEpoch?: string;
  readonly rotationEvaluatedAt?: string;
  readonly backupDir?: string;
  readonly reportDir?: string;
  readonly stopCommand?: string;
  readonly startCommand?: string;
  readonly healthCommand?: string;
  readonly newKeyFile?: string;
  readonly verifySecrets?: boolean;
}

/** The arguments of `masterkey_status`. */
export interface DataMasterkeyStatusConfig extends MasterkeyInstallationConfig {
  readonly maxAgeDays?: number;
}

/** A terraform element of either library, as far as the bindings need it. */
interface Element extends IConstruct, ITerraformDependable {
  readonly terraformResourceType: string;
  readonly friendlyUniqueId: string;
  overrideLogicalId(id: string): void;
  getStringAttribute(a: string): string;
  getNumberAttribute(a: string): number;
  getBooleanAttribute(a: string): IResolvable;
  getNumberMapAttribute(a: string): { [k: string]: number };
}

/** The `masterkey` provider block. */
export type MasterkeyProvider = IConstruct & { readonly terraformResourceType: string };

/** Resource `masterkey_key` with its computed attributes as typed references. */
export interface MasterkeyKey extends Element {
  readonly config: MasterkeyKeyConfig;
  readonly fingerprint: string;
  readonly databaseGeneration: number;
  readonly keySetAt: string;
  readonly keyAgeDays: number;
  readonly secrets: number;
  readonly secretsByKind: { [kind: string]: number };
  readonly undecryptable: number;
  readonly nodesInSync: IResolvable;
  readonly lastReport: string;
  /** Adopts an existing installation (an `import` block); ids as for `terraform import`. */
  importFrom(id: string): void;
}

/** Data source `masterkey_status` with its computed attributes as typed references. */
export interface DataMasterkeyStatus extends Element {
  readonly config: DataMasterkeyStatusConfig;
  readonly fingerprint: string;
  readonly generation: number;
  readonly keyAgeDays: number;
  readonly overdue: IResolvable;
  readonly nodesInSync: IResolvable;
  readonly interruptedRotation: IResolvable;
}

const metadata = () => {
  const version = providerVersion();
  return { providerName: PROVIDER_TYPE, providerVersion: version, providerVersionConstraint: version };
};

const meta = (c: TerraformMetaArguments) => ({ provider: c.provider, dependsOn: c.dependsOn, count: c.count, lifecycle: c.lifecycle, forEach: c.forEach });

interface Bindings {
  readonly Provider: new (scope: Construct, id: string, config: { readonly alias?: string }) => MasterkeyProvider;
  readonly Key: new (scope: Construct, id: string, config: MasterkeyKeyConfig) => MasterkeyKey;
  readonly Status: new (scope: Construct, id: string, config: DataMasterkeyStatusConfig) => DataMasterkeyStatus;
}

const cache = new WeakMap<FrameworkModule, Bindings>();

/** The binding classes on one library's base classes (made once per library). */
function bindings(lib: FrameworkModule): Bindings {
  const hit = cache.get(lib);
  if (hit) return hit;
  const { stringToTerraform: str, numberToTerraform: num, booleanToTerraform: bool, listMapper } = lib;
  const installation = (c: MasterkeyInstallationConfig) => ({
    config_files: listMapper(str, false)(c.configFiles),
    config_format: str(c.configFormat),
    key_name: str(c.keyName),
    database_url_env: str(c.databaseUrlEnv),
    database_url_entry: str(c.databaseUrlEntry),
    inventory: str(c.inventory),
  });

  class Provider extends lib.TerraformProvider {
    constructor(scope: Construct, id: string, config: { readonly alias?: string }) {
      super(scope, id, { terraformResourceType: PROVIDER_TYPE, terraformGeneratorMetadata: metadata(), terraformProviderSource: PROVIDER_SOURCE });
      this.alias = config.alias;
    }
    protected override synthesizeAttributes(): Record<string, unknown> {
      return { alias: str(this.alias) };
    }
  }

  class Key extends lib.TerraformResource {
    constructor(
      scope: Construct,
      id: string,
      readonly config: MasterkeyKeyConfig,
    ) {
      super(scope, id, { terraformResourceType: 'masterkey_key', terraformGeneratorMetadata: metadata(), ...meta(config) });
    }
    get fingerprint() {
      return this.getStringAttribute('fingerprint');
    }
    get databaseGeneration() {
      return this.getNumberAttribute('database_generation');
    }
    get keySetAt() {
      return this.getStringAttribute('key_set_at');
    }
    get keyAgeDays() {
      return this.getNumberAttribute('key_age_days');
    }
    get secrets() {
      return this.getNumberAttribute('secrets');
    }
    get secretsByKind() {
      return this.getNumberMapAttribute('secrets_by_kind');
    }
    get undecryptable() {
      return this.getNumberAttribute('undecryptable');
    }
    get nodesInSync() {
      return this.getBooleanAttribute('nodes_in_sync');
    }
    get lastReport() {
      return this.getStringAttribute('last_report');
    }
    protected override synthesizeAttributes(): Record<string, unknown> {
      const c = this.config;
      return {
        name: str(c.name),
        generation: num(c.generation),
        ...installation(c),
        rotation_period_days: num(c.rotationPeriodDays),
        rotation_epoch: str(c.rotationEpoch),
        rotation_evaluated_at: str(c.rotationEvaluatedAt),
        backup_dir: str(c.backupDir),
        report_dir: str(c.reportDir),
        stop_command: str(c.stopCommand),
        start_command: str(c.startCommand),
        health_command: str(c.healthCommand),
        new_key_file: str(c.newKeyFile),
        verify_secrets: bool(c.verifySecrets),
      };
    }
  }

  class Status extends lib.TerraformDataSource {
    constructor(
      scope: Construct,
      id: string,
      readonly config: DataMasterkeyStatusConfig,
    ) {
      super(scope, id, { terraformResourceType: 'masterkey_status', terraformGeneratorMetadata: metadata(), ...meta(config) });
    }
    get fingerprint() {
      return this.getStringAttribute('fingerprint');
    }
    get generation() {
      return this.getNumberAttribute('generation');
    }
    get keyAgeDays() {
      return this.getNumberAttribute('key_age_days');
    }
    get overdue() {
      return this.getBooleanAttribute('overdue');
    }
    get nodesInSync() {
      return this.getBooleanAttribute('nodes_in_sync');
    }
    get interruptedRotation() {
      return this.getBooleanAttribute('interrupted_rotation');
    }
    protected override synthesizeAttributes(): Record<string, unknown> {
      return { ...installation(this.config), max_age_days: num(this.config.maxAgeDays) };
    }
  }

  const made = { Provider, Key, Status } as unknown as Bindings;
  cache.set(lib, made);
  return made;
}

/** A `provider "masterkey"` block in `scope`'s stack. */
export function masterkeyProvider(scope: Construct, id: string, config: { readonly alias?: string } = {}): MasterkeyProvider {
  return new (bindings(frameworkOf(scope, `masterkey provider ${scope.node.path}/${id}`).lib).Provider)(scope, id, config);
}

/** The stack's masterkey provider (created once per stack). */
export function ensureMasterkeyProvider(stack: Construct): MasterkeyProvider {
  const existing = stack.node.findAll().find((c) => (c as Partial<MasterkeyProvider>).terraformResourceType === PROVIDER_TYPE && c.node.scope === stack) as MasterkeyProvider | undefined;
  return existing ?? masterkeyProvider(stack, PROVIDER_TYPE);
}

/** A `masterkey_key` resource. */
export function masterkeyKey(scope: Construct, id: string, config: MasterkeyKeyConfig): MasterkeyKey {
  return new (bindings(frameworkOf(scope, `masterkey_key ${scope.node.path}/${id}`).lib).Key)(scope, id, config);
}

/** A `masterkey_status` data source. */
export function masterkeyStatus(scope: Construct, id: string, config: DataMasterkeyStatusConfig): DataMasterkeyStatus {
  return new (bindings(frameworkOf(scope, `masterkey_status ${scope.node.path}/${id}`).lib).Status)(scope, id, config);
}
