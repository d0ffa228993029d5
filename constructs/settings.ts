/**
 * The `MasterKey` construct's props, their validation into settings, and the
 * two things derived from settings: the rotation resource's replacement
 * triggers (what a reviewer reads in `terraform plan`) and the argument
 * vector of `master-key apply`. Everything here is pure.
 */
import { MasterKeyError } from '../src/errors';
import { quotable } from './credentials';
import { MasterKeyInventory } from './inventory-source';
import { RotationWindow, checkPeriodDays, describeWindow, parseEpoch, rotationWindow, windowStartIso, DEFAULT_EPOCH } from './window';

/** Config file formats the rotation script can update. */
export type ConfigFormat = 'dotenv' | 'json' | 'xml';
/** Every config format, for validation and docs. */
export const CONFIG_FORMATS: readonly ConfigFormat[] = ['dotenv', 'json', 'xml'];

/**
 * The terraform resource that carries the rotation: `terraform_data` or
 * `null_resource` running the CLI through `local-exec`, or `provider`: the
 * `masterkey_key` resource of terraform-provider-masterkey.
 */
export type RotationResourceType = 'terraform_data' | 'null_resource' | 'provider';
/** Every rotation resource type, for validation and docs. */
export const ROTATION_RESOURCE_TYPES: readonly RotationResourceType[] = ['terraform_data', 'null_resource', 'provider'];

/** The config entry that holds the key unless `keyName` says otherwise. */
export const DEFAULT_KEY_NAME = 'ACT_MASTER_KEY';
/** The environment variable that holds the database URL unless `databaseUrlEnv` says otherwise. */
export const DEFAULT_DATABASE_URL_ENV = 'DATABASE_URL';

/** A scheduled rotation: one rotation per window of `periodDays` days. */
export interface RotationPolicyProps {
  /**
   * Length of a rotation window in whole days, e.g. 90 or 365. When a new
   * window starts, the plan replaces the rotation resource and the apply
   * rotates the key if it was set before the window started.
   */
  readonly periodDays: number;
  /**
   * The fixed instant windows are counted from (ISO-8601 UTC, a date or a
   * date-time ending in `Z`).
   * @default '1970-01-01T00:00:00Z'
   */
  readonly epoch?: string;
  /**
   * The instant the window is evaluated at (a `Date` or ISO-8601 UTC text).
   * Set it only to preview a future window or in tests.
   * @default the time of synth
   */
  readonly evaluatedAt?: Date | string;
}

/** Options of the synth-time policy checks (see `MasterKeyPolicy`). */
export interface MasterKeyChecksOptions {
  /**
   * The longest rotation period allowed, in days.
   * @default 365
   */
  readonly maxRotationDays?: number;
  /**
   * Rules not to apply, each with the reason (kept in the synth output as an
   * info annotation so that a reviewer sees what was waived and why).
   * @default none
   */
  readonly suppressions?: readonly PolicySuppression[];
}

/** A waived policy rule and the reason for waiving it. */
export interface PolicySuppression {
  /** The rule id, e.g. `MasterKey-RotationPolicy`. */
  readonly id: string;
  /** Why the rule does not apply here (at least 10 characters). */
  readonly reason: string;
}

/** The props of a `MasterKey` construct. No prop may hold a secret. */
export interface MasterKeyProps {
  /**
   * The key's name as shown in the plan (a label, not the config entry).
   * @default the construct id
   */
  readonly name?: string;
  /**
   * The key generation the database must be at. Raising it makes the plan
   * replace the rotation resource and the apply rotate the key once.
   */
  readonly generation: number;
  /**
   * A scheduled rotation every `periodDays` days.
   * @default no schedule: the key rotates only when `generation` is raised
   */
  readonly rotationPolicy?: RotationPolicyProps;
  /**
   * Absolute paths of the server config file(s) that hold the key; the first
   * is the primary, one more per node of a highly available server.
   */
  readonly configFiles: readonly string[];
  /**
   * Format of the config files.
   * @default 'dotenv'
   */
  readonly configFormat?: ConfigFormat;
  /**
   * The entry in the config files that holds the key.
   * @default 'ACT_MASTER_KEY'
   */
  readonly keyName?: string;
  /**
   * The *name* of the environment variable of the terraform process that
   * holds the database URL (never the URL itself).
   * @default 'DATABASE_URL' (unless `databaseUrlEntry` is given)
   */
  readonly databaseUrlEnv?: string;
  /**
   * Instead of `databaseUrlEnv`: the entry of the primary config file that
   * holds the database URL.
   * @default none (the URL comes from `databaseUrlEnv`)
   */
  readonly databaseUrlEntry?: string;
  /**
   * Which secrets the key protects.
   * @default MasterKeyInventory.act()
   */
  readonly inventory?: MasterKeyInventory;
  /**
   * Absolute path of the directory for backups taken before each rotation.
   * @default none: the policy check reports its absence as an error
   */
  readonly backupDir?: string;
  /**
   * Absolute path of the directory for the auditor's rotation reports.
   * @default the backup directory
   */
  readonly reportDir?: string;
  /**
   * Shell command that stops the server before the rotation.
   * @default none (the server keeps running)
   */
  readonly stopCommand?: string;
  /**
   * Shell command that starts the server after the rotation.
   * @default none
   */
  readonly startCommand?: string;
  /**
   * Shell command that checks the server is healthy after it started.
   * @default none
   */
  readonly healthCommand?: string;
  /**
   * Absolute path of a file (created 0600) that receives a copy of the new key,
   * e.g. on a mounted backup medium.
   * @default none
   */
  readonly newKeyFile?: string;
  /**
   * The terraform resource that carries the rotation: the built-in
   * `terraform_data` (no provider download, works air-gapped),
   * `null_resource` from the hashicorp/null provider, or `provider`: the
   * `masterkey_key` resource of this package's own terraform provider
   * (`cdktf-master-key/masterkey`; install it offline with
   * `npx master-key provider install`), which reads the key's real state,
   * plans the data-level change, sees drift and can import an installation.
   * @default 'terraform_data'
   */
  readonly resourceType?: RotationResourceType;
  /**
   * With `resourceType: 'provider'`: open every secret at refresh and plan
   * (slow on large databases) instead of counting them, so rows that do not
   * open fail the plan rather than the apply.
   * @default false
   */
  readonly verifySecrets?: boolean;
  /**
   * The command that runs the rotation CLI, as an argument vector; the
   * construct appends `apply --generation N ...`.
   * @default [the node binary running synth, this package's dist/src/cli/main.js]
   */
  readonly cliCommand?: readonly string[];
  /**
   * Extra non-secret environment variables for the rotation script (e.g.
   * `PGSSLMODE`). The database URL must not be set here: it reaches the
   * script from the environment of the terraform process.
   * @default none
   */
  readonly environment?: Readonly<Record<string, string>>;
  /**
   * Options of the policy checks this construct applies to itself at synth
   * (a `MasterKeyPolicy` Aspect added higher up, e.g. on the stack, wins).
   * @default the default checks (maximum period 365 days, nothing suppressed)
   */
  readonly checks?: MasterKeyChecksOptions;
}

/** The optional text props, passed on as they are (reportDir defaults to backupDir). */
type PassedThrough = Pick<MasterKeyProps, 'backupDir' | 'reportDir' | 'stopCommand' | 'startCommand' | 'healthCommand' | 'newKeyFile'>;

/** Validated, defaulted props: what the construct synthesizes from. */
export interface MasterKeySettings extends PassedThrough {
  readonly name: string;
  readonly generation: number;
  /** The policy's current window; undefined without a policy. */
  readonly window?: RotationWindow;
  readonly configFiles: readonly string[];
  readonly configFormat: ConfigFormat;
  readonly keyName: string;
  readonly databaseUrl: { readonly env: string } | { readonly entry: string };
  readonly inventory: MasterKeyInventory;
  readonly resourceType: RotationResourceType;
  readonly verifySecrets: boolean;
  readonly cliCommand: readonly string[];
  readonly environment: Readonly<Record<string, string>>;
}

/** What settings are resolved against besides the props. */
export interface ResolveContext {
  /** The construct id (the default name). */
  readonly id: string;
  /** The construct path, for error messages. */
  readonly path: string;
  /** The time of synth (the default `evaluatedAt`). */
  readonly now: Date;
  /** The default `cliCommand`. */
  readonly defaultCliCommand: readonly string[];
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENTRY_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

/**
 * Validates props and fills in defaults. Throws a USAGE error that names the
 * construct, the bad prop and value (unless it looks like a credential), and
 * the fix. Policy questions (relative paths, long periods...) are left to the
 * `MasterKeyPolicy` checks, which report them all at once.
 */
export function resolveSettings(props: MasterKeyProps, ctx: ResolveContext): MasterKeySettings {
  const fail = (prop: string, problem: string, fix: string): never => {
    throw new MasterKeyError('USAGE', `MasterKey ${ctx.path}: ${prop} ${problem}; ${fix}.`);
  };
  const optionalText = (prop: keyof MasterKeyProps): string | undefined => {
    const v = props[prop];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim().length === 0) fail(prop, `is ${v === '' ? 'empty' : quotable(v)}`, 'give a non-empty string or leave it out');
    return v as string;
  };
  if (!props || typeof props !== 'object') fail('props', 'are missing', 'pass at least { generation, configFiles }');

  const name = props.name ?? ctx.id;
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9 ._/-]*$/.test(name)) {
    fail('name', `${quotable(name)} is not a plain label`, 'use letters, digits, spaces, dots, dashes, slashes or underscores');
  }
  const generation = props.generation;
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
    fail('generation', `${quotable(generation)} is not a whole number of at least 0`, 'give the key generation as an integer such as 1, and raise it by one to rotate');
  }
  if (!Array.isArray(props.configFiles) || props.configFiles.length === 0) {
    fail('configFiles', 'is empty', 'list the absolute path of the config file holding the key (one per server node)');
  }
  props.configFiles.forEach((f, i) => {
    if (typeof f !== 'string' || f.trim().length === 0) fail(`configFiles[${i}]`, `is ${quotable(f)}`, 'give the absolute path of a config file');
  });
  if (new Set(props.configFiles).size !== props.configFiles.length) fail('configFiles', 'lists the same file twice', 'list each config file once');
  const configFormat = props.configFormat ?? 'dotenv';
  if (!CONFIG_FORMATS.includes(configFormat)) fail('configFormat', `${quotable(configFormat)} is not a known format`, `use one of ${CONFIG_FORMATS.join(', ')}`);
  const keyName = props.keyName ?? DEFAULT_KEY_NAME;
  if (typeof keyName !== 'string' || !ENTRY_NAME.test(keyName)) fail('keyName', `${quotable(keyName)} is not a config entry name`, `name the entry that holds the key, e.g. ${DEFAULT_KEY_NAME}`);

  if (props.databaseUrlEnv !== undefined && props.databaseUrlEntry !== undefined) {
    fail('databaseUrlEnv', 'and databaseUrlEntry are both set', 'set only one: the environment variable or the config entry that holds the database URL');
  }
  let databaseUrl: MasterKeySettings['databaseUrl'];
  if (props.databaseUrlEntry !== undefined) {
    if (typeof props.databaseUrlEntry !== 'string' || !ENTRY_NAME.test(props.databaseUrlEntry)) {
      fail('databaseUrlEntry', `${quotable(props.databaseUrlEntry)} is not a config entry name`, 'give the name of the entry (not the URL), e.g. DATABASE_URL');
    }
    databaseUrl = { entry: props.databaseUrlEntry };
  } else {
    const env = props.databaseUrlEnv ?? DEFAULT_DATABASE_URL_ENV;
    if (typeof env !== 'string' || !ENV_NAME.test(env)) {
      fail('databaseUrlEnv', `${quotable(env)} is not an environment variable name`, 'give the name of the variable (not the URL), e.g. DATABASE_URL, and export the URL in the shell that runs terraform');
    }
    databaseUrl = { env };
  }

  let window: RotationWindow | undefined;
  if (props.rotationPolicy !== undefined) {
    const p = props.rotationPolicy;
    const periodDays = checkPeriodDays(p?.periodDays, `MasterKey ${ctx.path}: rotationPolicy.periodDays`);
    const epoch = parseEpoch(p.epoch ?? DEFAULT_EPOCH, `MasterKey ${ctx.path}: rotationPolicy.epoch`);
    const at = p.evaluatedAt === undefined ? ctx.now : parseEpoch(p.evaluatedAt, `MasterKey ${ctx.path}: rotationPolicy.evaluatedAt`);
    if (at.getTime() < epoch.getTime()) fail('rotationPolicy.evaluatedAt', 'is before the epoch', 'give an epoch in the past, such as 1970-01-01');
    window = rotationWindow(periodDays, at, epoch);
  }

  const inventory = props.inventory ?? MasterKeyInventory.act();
  if (!(inventory instanceof MasterKeyInventory)) fail('inventory', 'is not a MasterKeyInventory', 'use MasterKeyInventory.act() or MasterKeyInventory.fromFile(path)');

  const resourceType = props.resourceType ?? 'terraform_data';
  if (!ROTATION_RESOURCE_TYPES.includes(resourceType)) fail('resourceType', `${quotable(resourceType)} is not supported`, `use one of ${ROTATION_RESOURCE_TYPES.join(', ')}`);

  if (props.verifySecrets !== undefined && typeof props.verifySecrets !== 'boolean') fail('verifySecrets', `is ${quotable(props.verifySecrets)}`, 'give true or false');
  if (props.verifySecrets !== undefined && resourceType !== 'provider') fail('verifySecrets', `is only used with resourceType "provider", not "${resourceType}"`, 'leave it out, or use the provider');
  if (resourceType === 'provider') {
    if (props.cliCommand !== undefined) fail('cliCommand', 'is not used with resourceType "provider"', 'leave it out: the provider runs the rotation inside terraform');
    if (props.environment !== undefined) fail('environment', 'is not used with resourceType "provider"', "leave it out: the provider runs the rotation in terraform's own environment, so export variables in the shell that runs terraform");
  }
  const cliCommand = props.cliCommand ?? ctx.defaultCliCommand;
  if (!Array.isArray(cliCommand) || cliCommand.length === 0 || !cliCommand.every((a) => typeof a === 'string' && a.length > 0)) {
    fail('cliCommand', 'is not a non-empty list of non-empty strings', 'give the program and its leading arguments, e.g. ["/usr/bin/node", "/opt/master-key/dist/src/cli/main.js"]');
  }

  const environment = props.environment ?? {};
  for (const [k, v] of Object.entries(environment)) {
    if (!ENV_NAME.test(k)) fail('environment', `has a variable named ${quotable(k)}`, 'use variable names made of letters, digits and underscores');
    if (typeof v !== 'string') fail(`environment.${k}`, 'is not a string', 'give every variable a string value');
    if ('env' in databaseUrl && k === databaseUrl.env) {
      fail(`environment.${k}`, 'would put the database URL into the terraform config', `leave it out and export ${k} in the shell that runs terraform`);
    }
  }

  const backupDir = optionalText('backupDir');
  return {
    name,
    generation,
    window,
    configFiles: [...props.configFiles],
    configFormat,
    keyName,
    databaseUrl,
    inventory,
    backupDir,
    reportDir: optionalText('reportDir') ?? backupDir,
    stopCommand: optionalText('stopCommand'),
    startCommand: optionalText('startCommand'),
    healthCommand: optionalText('healthCommand'),
    newKeyFile: optionalText('newKeyFile'),
    resourceType,
    verifySecrets: props.verifySecrets ?? false,
    cliCommand: [...cliCommand],
    environment: { ...environment },
  };
}

/**
 * The rotation resource's replacement triggers: every value is non-secret and
 * reads clearly in a plan, e.g. `generation = "2"` or
 * `policy_window = "90d #228 from 2026-03-08"`.
 */
export function rotationTriggers(s: MasterKeySettings): Record<string, string> {
  return {
    key: s.name,
    generation: String(s.generation),
    policy_window: s.window ? describeWindow(s.window) : 'none',
    inventory: s.inventory.describe(),
    config_targets: `${s.configFormat} ${s.keyName}: ${s.configFiles.join(', ')}`,
  };
}

/** The argument vector of the rotation (`cliCommand` followed by `apply ...`). */
export function rotationArgv(s: MasterKeySettings): string[] {
  const opt = (flag: string, value: string | undefined): string[] => (value === undefined ? [] : [flag, value]);
  return [
    ...s.cliCommand,
    'apply',
    '--generation',
    String(s.generation),
    ...(s.window ? ['--policy-days', String(s.window.periodDays), '--window-start', windowStartIso(s.window)] : []),
    ...s.configFiles.flatMap((f) => ['--config', f]),
    '--format',
    s.configFormat,
    '--key-name',
    s.keyName,
    ...('env' in s.databaseUrl ? ['--database-url-env', s.databaseUrl.env] : ['--database-url-entry', s.databaseUrl.entry]),
    '--inventory',
    s.inventory.spec,
    ...opt('--backup-dir', s.backupDir),
    ...opt('--report-dir', s.reportDir),
    ...opt('--stop-command', s.stopCommand),
    ...opt('--start-command', s.startCommand),
    ...opt('--health-command', s.healthCommand),
    ...opt('--new-key-out', s.newKeyFile),
  ];
}
