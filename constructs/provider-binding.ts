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

/**
 * Where an installation is (shared by the resource and the data source).
 * Each argument is the provider's snake_case one (docs/provider.md), in camelCase.
 */
export interface MasterkeyInstallationConfig extends TerraformMetaArguments {
  readonly configFiles: string[];
  readonly configFormat?: string;
  readonly keyName?: string;
  readonly databaseUrlEnv?: string;
  readonly databaseUrlEntry?: string;
  readonly inventory?: string;
  readonly ssh?: { [name: string]: string };
  readonly sshNodes?: { [address: string]: { [name: string]: string } };
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
  readonly localReportDir?: string;
  readonly stopCommand?: string;
  readonly startCommand?: string;
  readonly healthCommand?: string;
  readonly newKeyFile?: string;
  readonly backupRecipients?: string[];
  readonly backupRetention?: string;
  readonly lockTimeout?: string;
  readonly verifySecrets?: boolean;
  readonly sealAhead?: boolean;
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

/** The arguments of the `masterkey` provider block. */
export interface MasterkeyProviderConfig {
  /** The provider alias, for a second provider block. */
  readonly alias?: string;
}

/** A binding class's constructor: (scope, id, config) like every `cdktf get` class. */
type BindingClass<Config, Instance> = new (scope: Construct, id: string, config: Config) => Instance;

interface Bindings {
  readonly Provider: BindingClass<MasterkeyProviderConfig, MasterkeyProvider>;
  readonly Key: BindingClass<MasterkeyKeyConfig, MasterkeyKey>;
  readonly Status: BindingClass<DataMasterkeyStatusConfig, DataMasterkeyStatus>;
}

const cache = new WeakMap<FrameworkModule, Bindings>();

/** The binding classes on one library's base classes (made once per library). */
function bindings(lib: FrameworkModule): Bindings {
  let made = cache.get(lib);
  if (!made) {
    const args = terraformArguments(lib);
    made = { Provider: providerClass(lib), Key: keyClass(lib, args), Status: statusClass(lib, args) };
    cache.set(lib, made);
  }
  return made;
}

/** The generator metadata cdktf stamps on each element: provider name and version. */
function metadata() {
  const version = providerVersion();
  return { providerName: PROVIDER_TYPE, providerVersion: version, providerVersionConstraint: version };
}

/** The meta-arguments every resource and data source takes (provider, depends_on, count, lifecycle, for_each). */
function metaArguments(c: TerraformMetaArguments) {
  return { provider: c.provider, dependsOn: c.dependsOn, count: c.count, lifecycle: c.lifecycle, forEach: c.forEach };
}

/** Config (camelCase) to terraform arguments (snake_case), with the library's converters; names mirror src/provider/schema.ts. */
function terraformArguments(lib: FrameworkModule) {
  const { stringToTerraform: str, numberToTerraform: num, booleanToTerraform: bool, listMapper, hashMapper } = lib;
  const installation = (c: MasterkeyInstallationConfig) => ({
    config_files: listMapper(str, false)(c.configFiles),
    config_format: str(c.configFormat),
    key_name: str(c.keyName),
    database_url_env: str(c.databaseUrlEnv),
    database_url_entry: str(c.databaseUrlEntry),
    inventory: str(c.inventory),
    ssh: hashMapper(str)(c.ssh),
    ssh_nodes: hashMapper(hashMapper(str))(c.sshNodes),
  });
  return {
    provider: (c: MasterkeyProviderConfig) => ({ alias: str(c.alias) }),
    key: (c: MasterkeyKeyConfig) => ({
      name: str(c.name),
      generation: num(c.generation),
      ...installation(c),
      rotation_period_days: num(c.rotationPeriodDays),
      rotation_epoch: str(c.rotationEpoch),
      rotation_evaluated_at: str(c.rotationEvaluatedAt),
      backup_dir: str(c.backupDir),
      report_dir: str(c.reportDir),
      local_report_dir: str(c.localReportDir),
      stop_command: str(c.stopCommand),
      start_command: str(c.startCommand),
      health_command: str(c.healthCommand),
      new_key_file: str(c.newKeyFile),
      backup_recipients: c.backupRecipients?.length ? listMapper(str, false)(c.backupRecipients) : undefined,
      backup_retention: str(c.backupRetention),
      lock_timeout: str(c.lockTimeout),
      verify_secrets: bool(c.verifySecrets),
      seal_ahead: bool(c.sealAhead),
    }),
    status: (c: DataMasterkeyStatusConfig) => ({ ...installation(c), max_age_days: num(c.maxAgeDays) }),
  };
}
type TerraformArguments = ReturnType<typeof terraformArguments>;

/** Computed attributes: the typed getter's name, the terraform attribute and its type. */
type AttributeTable = Readonly<Record<string, readonly [attribute: string, type: 'string' | 'number' | 'boolean' | 'numberMap']>>;

const KEY_ATTRIBUTES: AttributeTable = {
  fingerprint: ['fingerprint', 'string'],
  databaseGeneration: ['database_generation', 'number'],
  keySetAt: ['key_set_at', 'string'],
  keyAgeDays: ['key_age_days', 'number'],
  secrets: ['secrets', 'number'],
  secretsByKind: ['secrets_by_kind', 'numberMap'],
  undecryptable: ['undecryptable', 'number'],
  nodesInSync: ['nodes_in_sync', 'boolean'],
  lastReport: ['last_report', 'string'],
};

const STATUS_ATTRIBUTES: AttributeTable = {
  fingerprint: ['fingerprint', 'string'],
  generation: ['generation', 'number'],
  keyAgeDays: ['key_age_days', 'number'],
  overdue: ['overdue', 'boolean'],
  nodesInSync: ['nodes_in_sync', 'boolean'],
  interruptedRotation: ['interrupted_rotation', 'boolean'],
};

/** Adds a getter per computed attribute, each a terraform reference (`${masterkey_key.x.fingerprint}`). */
function defineAttributes(cls: { prototype: object }, table: AttributeTable): void {
  const getter = { string: 'getStringAttribute', number: 'getNumberAttribute', boolean: 'getBooleanAttribute', numberMap: 'getNumberMapAttribute' } as const;
  for (const [property, [attribute, type]] of Object.entries(table)) {
    Object.defineProperty(cls.prototype, property, {
      get(this: Element) {
        return this[getter[type]](attribute);
      },
    });
  }
}

/** The `masterkey` provider block on the library's `TerraformProvider`. */
function providerClass(lib: FrameworkModule): Bindings['Provider'] {
  const toTerraform = terraformArguments(lib).provider;
  return class Provider extends lib.TerraformProvider {
    constructor(scope: Construct, id: string, config: MasterkeyProviderConfig) {
      super(scope, id, { terraformResourceType: PROVIDER_TYPE, terraformGeneratorMetadata: metadata(), terraformProviderSource: PROVIDER_SOURCE });
      this.alias = config.alias;
    }
    protected override synthesizeAttributes(): Record<string, unknown> {
      return toTerraform({ alias: this.alias });
    }
  };
}

/** Resource `masterkey_key` on the library's `TerraformResource`. */
function keyClass(lib: FrameworkModule, args: TerraformArguments): Bindings['Key'] {
  class Key extends lib.TerraformResource {
    constructor(
      scope: Construct,
      id: string,
      readonly config: MasterkeyKeyConfig,
    ) {
      super(scope, id, { terraformResourceType: 'masterkey_key', terraformGeneratorMetadata: metadata(), ...metaArguments(config) });
    }
    protected override synthesizeAttributes(): Record<string, unknown> {
      return args.key(this.config);
    }
  }
  defineAttributes(Key, KEY_ATTRIBUTES);
  return Key as unknown as Bindings['Key'];
}

/** Data source `masterkey_status` on the library's `TerraformDataSource`. */
function statusClass(lib: FrameworkModule, args: TerraformArguments): Bindings['Status'] {
  class Status extends lib.TerraformDataSource {
    constructor(
      scope: Construct,
      id: string,
      readonly config: DataMasterkeyStatusConfig,
    ) {
      super(scope, id, { terraformResourceType: 'masterkey_status', terraformGeneratorMetadata: metadata(), ...metaArguments(config) });
    }
    protected override synthesizeAttributes(): Record<string, unknown> {
      return args.status(this.config);
    }
  }
  defineAttributes(Status, STATUS_ATTRIBUTES);
  return Status as unknown as Bindings['Status'];
}

/** A `provider "masterkey"` block in `scope`'s stack. */
export function masterkeyProvider(scope: Construct, id: string, config: MasterkeyProviderConfig = {}): MasterkeyProvider {
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
