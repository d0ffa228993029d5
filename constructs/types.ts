/**
 * The library's types in one place, which imports nothing of the library
 * but types: the `MasterKey` construct's props, the settings they resolve to,
 * and what a policy rule sees and returns. Props are readonly, documented
 * structs with `@default`; every choice is an enum; there are no union types,
 * so everything stays expressible in every jsii language. No prop may hold a
 * secret.
 */
import type { SshSettings } from '../src/remote/connection';
import type { MasterKeyInventory } from './inventory-source';
import type { RotationWindow } from './window';

/** The format of the config files that hold the key. */
export enum ConfigFormat {
  /** `NAME=value` lines (`.env`, systemd `EnvironmentFile`). */
  DOTENV = 'dotenv',
  /** A JSON document; the entry is a dotted path such as `database.url`. */
  JSON = 'json',
  /** An XML document such as .NET's `web.config` or `OctopusServer.config`. */
  XML = 'xml',
}
/** Every config format, for validation and docs. */
export const CONFIG_FORMATS: readonly ConfigFormat[] = Object.values(ConfigFormat);

/** The terraform resource that carries the rotation. */
export enum RotationResourceType {
  /** The built-in `terraform_data` running the CLI through `local-exec` (no provider download, works air-gapped). */
  TERRAFORM_DATA = 'terraform_data',
  /** hashicorp/null's `null_resource` running the CLI through `local-exec`. */
  NULL_RESOURCE = 'null_resource',
  /** `masterkey_key` of this package's own terraform provider, which reads the key's real state at plan time. */
  PROVIDER = 'provider',
}
/** Every rotation resource type, for validation and docs. */
export const ROTATION_RESOURCE_TYPES: readonly RotationResourceType[] = Object.values(RotationResourceType);

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
   * The instant the window is evaluated at, as ISO-8601 UTC text (a date or
   * a date-time ending in `Z`; for a `Date` d, `d.toISOString()`). Set it
   * only to preview a future window or in tests.
   * @default - the time of synth (with `RotationResourceType.PROVIDER`: the time of each plan)
   */
  readonly evaluatedAt?: string;
}

/**
 * How the hosts of config files on other hosts (`ssh://[user@]host[:port]/path`)
 * are reached: the settings of terraform's `connection` block, in camelCase
 * (the CLI's and the provider's, defined once in src/remote/connection.ts).
 * Key content never goes here, only the path of a key file. Defaults are
 * OpenSSH's (docs/remote.md).
 */
export type MasterKeyConnection = SshSettings;

/** The props of a `MasterKey` construct. No prop may hold a secret. */
export interface MasterKeyProps {
  /**
   * The key's name as shown in the plan (a label, not the config entry).
   * @default - the construct id
   */
  readonly name?: string;
  /**
   * The key generation the database must be at. Raising it makes the plan
   * replace the rotation resource and the apply rotate the key once.
   */
  readonly generation: number;
  /**
   * A scheduled rotation every `periodDays` days.
   * @default - no schedule: the key rotates only when `generation` is raised
   */
  readonly rotationPolicy?: RotationPolicyProps;
  /**
   * Absolute paths of the server config file(s) that hold the key; the first
   * is the primary, one more per node of a highly available server.
   */
  readonly configFiles: readonly string[];
  /**
   * Format of the config files.
   * @default ConfigFormat.DOTENV
   */
  readonly configFormat?: ConfigFormat;
  /**
   * The entry in the config files that holds the key.
   * @default 'ACT_MASTER_KEY'
   */
  readonly keyName?: string;
  /**
   * How the hosts of config files on other hosts (`ssh://…` in `configFiles`)
   * are reached, for every such node.
   * @default - OpenSSH's defaults
   */
  readonly ssh?: MasterKeyConnection;
  /**
   * Connection settings of single nodes, by their address as written in
   * `configFiles`, over `ssh` (e.g. a `hostKey` per host). With a
   * CLI resource type only `hostKey` may be given per node.
   * @default - none
   */
  readonly sshNodes?: { readonly [address: string]: MasterKeyConnection };
  /**
   * Nodes on other hosts: absolute path of the directory on the machine that
   * runs terraform that receives a copy of each rotation's report (the report
   * itself is written on the primary node's host).
   * @default - master-key-reports in terraform's working directory
   */
  readonly localReportDir?: string;
  /**
   * The *name* of the environment variable of the terraform process that
   * holds the database URL (never the URL itself).
   * @default - 'DATABASE_URL', unless `databaseUrlEntry` is given
   */
  readonly databaseUrlEnv?: string;
  /**
   * Instead of `databaseUrlEnv`: the entry of the primary config file that
   * holds the database URL.
   * @default - none: the URL comes from the variable named by `databaseUrlEnv`
   */
  readonly databaseUrlEntry?: string;
  /**
   * Which secrets the key protects.
   * @default MasterKeyInventory.act()
   */
  readonly inventory?: MasterKeyInventory;
  /**
   * Absolute path of the directory for backups taken before each rotation.
   * @default - none: the policy check reports its absence as an error
   */
  readonly backupDir?: string;
  /**
   * Absolute path of the directory for the auditor's rotation reports.
   * @default - the backup directory
   */
  readonly reportDir?: string;
  /**
   * Shell command that stops the server before the rotation.
   * @default - none: the server keeps running during the rotation
   */
  readonly stopCommand?: string;
  /**
   * Shell command that starts the server after the rotation.
   * @default - none
   */
  readonly startCommand?: string;
  /**
   * Shell command that checks the server is healthy after it started.
   * @default - none
   */
  readonly healthCommand?: string;
  /**
   * Absolute path of a file (created 0600) that receives a copy of the new key,
   * e.g. on a mounted backup medium.
   * @default - none
   */
  readonly newKeyFile?: string;
  /**
   * age recipients every backup file is sealed to: X25519 (`age1…`) or the
   * post-quantum hybrid (`age1pq1…`) recipients of an escrow holder.
   * Restore then needs the identity of one of them. Public strings only;
   * never an identity (`AGE-SECRET-KEY-…`).
   * @default - none: the backup holds the old key in cleartext (the policy check `MasterKey-BackupRecipients` warns)
   */
  readonly backupRecipients?: string[];
  /**
   * Retire the backups beyond this after each verified rotation (never
   * before verification); each retirement is recorded in the rotation
   * history.
   * @default - none: backups are kept until `master-key retire` removes them
   */
  readonly backupRetention?: BackupRetentionProps;
  /**
   * How long the rotation waits for a lock another session holds on the
   * secret tables (a server stuck in a transaction; on SQLite, the file)
   * before it refuses with TABLES_BUSY, having changed nothing and started
   * the server again: a duration such as "30s", "500ms" or "2min"
   * (`master-key apply --lock-timeout`, the provider's `lock_timeout`).
   * @default "30s"
   */
  readonly lockTimeout?: string;
  /**
   * Seal every secret under the new key while the server still runs, and
   * stop it only to swap them in (true); keep the single pass with the
   * server stopped (false). See docs/seal-ahead.md.
   * @default - where it pays off (from 10,000 secrets; on SQLite in WAL mode only)
   */
  readonly sealAhead?: boolean;
  /**
   * The terraform resource that carries the rotation: the built-in
   * `terraform_data` (no provider download, works air-gapped),
   * `null_resource` from the hashicorp/null provider, or `provider`: the
   * `masterkey_key` resource of this package's own terraform provider
   * (`cdktf-master-key/masterkey`; install it offline with
   * `npx master-key provider install`), which reads the key's real state,
   * plans the data-level change, sees drift and can import an installation.
   * @default RotationResourceType.TERRAFORM_DATA
   */
  readonly resourceType?: RotationResourceType;
  /**
   * With `RotationResourceType.PROVIDER`: open every secret at refresh and
   * plan (slow on large databases) instead of counting them, so rows that do
   * not open fail the plan rather than the apply.
   * @default false
   */
  readonly verifySecrets?: boolean;
  /**
   * The command that runs the rotation CLI, as an argument vector; the
   * construct appends `apply --generation N ...`. Not used with
   * `RotationResourceType.PROVIDER`.
   * @default - the node binary running synth and this package's dist/src/cli/main.js
   */
  readonly cliCommand?: readonly string[];
  /**
   * Extra non-secret environment variables for the rotation script (e.g.
   * `PGSSLMODE`). The database URL must not be set here: it reaches the
   * script from the environment of the terraform process. Not used with
   * `RotationResourceType.PROVIDER`.
   * @default - none
   */
  readonly environment?: { readonly [name: string]: string };
  /**
   * Options of the policy checks this construct applies to itself at synth
   * (a `MasterKeyPolicy` Aspect added higher up, e.g. on the stack, wins).
   * @default - the default checks: maximum period 365 days, nothing suppressed, no additional rules
   */
  readonly checks?: MasterKeyPolicyProps;
}

/**
 * Validated, defaulted props: what the construct synthesizes from. Each
 * field means what the prop of the same name means, with its default applied.
 */
export interface MasterKeySettings {
  /** The key's label (the construct id unless `name` was given). */
  readonly name: string;
  readonly generation: number;
  /** The rotation policy as given; undefined without a schedule. */
  readonly rotationPolicy?: RotationPolicyProps;
  /** The policy's window at `evaluatedAt` (or the time of synth); undefined without a schedule. */
  readonly window?: RotationWindow;
  readonly configFiles: readonly string[];
  readonly configFormat: ConfigFormat;
  readonly keyName: string;
  /** The shared SSH settings as the provider's `ssh` map (the snake_case names of terraform's connection block, string values); empty when none. */
  readonly ssh: { readonly [name: string]: string };
  /** The per-node settings, the same way, by address. */
  readonly sshNodes: { readonly [address: string]: { readonly [name: string]: string } };
  readonly localReportDir?: string;
  /** The variable holding the database URL; undefined when `databaseUrlEntry` is set. */
  readonly databaseUrlEnv?: string;
  /** The primary config file's entry holding the database URL; undefined when `databaseUrlEnv` is set. */
  readonly databaseUrlEntry?: string;
  readonly inventory: MasterKeyInventory;
  readonly backupDir?: string;
  /** The report directory (the backup directory unless `reportDir` was given). */
  readonly reportDir?: string;
  readonly stopCommand?: string;
  readonly startCommand?: string;
  readonly healthCommand?: string;
  readonly newKeyFile?: string;
  /** The age recipients backups are sealed to (empty: cleartext backups). */
  readonly backupRecipients: readonly string[];
  /** The retention as the CLI and the provider spell it (`keep 3`, `30d`), when declared. */
  readonly backupRetention?: string;
  /** The lock timeout as given (checked); undefined: the tool's default. */
  readonly lockTimeout?: string;
  /** Seal ahead (true), never (false), or where it pays off (undefined). */
  readonly sealAhead?: boolean;
  readonly resourceType: RotationResourceType;
  readonly verifySecrets: boolean;
  readonly cliCommand: readonly string[];
  readonly environment: { readonly [name: string]: string };
}

/** How many backups, or how old, to keep (one of the two). */
export interface BackupRetentionProps {
  /** Keep the newest N backups (at least 1). */
  readonly keep?: number;
  /** Retire the backups taken more than this many days ago. */
  readonly olderThanDays?: number;
}

/** A waived policy rule and the reason for waiving it. */
export interface PolicySuppression {
  /** The rule id, e.g. `MasterKey-RotationPolicy`. */
  readonly id: string;
  /** Why the rule does not apply here (at least 10 characters). */
  readonly reason: string;
}

/** The options of a `MasterKeyPolicy` (and of a `MasterKey`'s own `checks`). */
export interface MasterKeyPolicyProps {
  /**
   * The longest rotation period allowed, in days.
   * @default 365
   */
  readonly maxRotationDays?: number;
  /**
   * Rules not to apply, each with the reason (kept in the synth output as an
   * info annotation so that a reviewer sees what was waived and why).
   * @default - nothing is suppressed
   */
  readonly suppressions?: readonly PolicySuppression[];
  /**
   * Rules of your own, run after the built-in `POLICY_RULES`. Ids must be
   * unique and must not start with `MasterKey-` (reserved for built-in rules).
   * @default - the built-in rules only
   */
  readonly additionalRules?: readonly IPolicyRule[];
}

/** @deprecated use `MasterKeyPolicyProps`. */
export type MasterKeyChecksOptions = MasterKeyPolicyProps;

/** How bad a finding is. */
export enum FindingLevel {
  /** Fails synth. */
  ERROR = 'error',
  /** Shown; synth goes on. */
  WARNING = 'warning',
}

/** One thing a rule found wrong with a key's declaration. */
export interface PolicyFinding {
  /** The id of the rule that found it, e.g. `MasterKey-BackupDir`. */
  readonly ruleId: string;
  readonly level: FindingLevel;
  /** What is wrong (names the prop; never a secret value). */
  readonly problem: string;
  /** What to do about it. */
  readonly fix: string;
}

/** A key's declaration, as the rules see it. */
export interface KeyDeclaration {
  /** The validated settings. */
  readonly settings: MasterKeySettings;
  /** The props as given (for the credential scan of every prop). */
  readonly props: MasterKeyProps;
}

/** What a rule looks at: a key's declaration and the policy's limits. */
export interface PolicyInput extends KeyDeclaration {
  /** The longest rotation period the policy allows, in days. */
  readonly maxRotationDays: number;
}

/**
 * A policy rule: an id, a one-line description and a pure check. Rules of
 * your own (`MasterKeyPolicyProps.additionalRules`) implement this too.
 */
export interface IPolicyRule {
  /** A stable id, e.g. `Acme-BackupOnNfs`; `MasterKey-` is reserved for the built-in rules. */
  readonly id: string;
  /** What the rule wants, in one sentence. */
  readonly description: string;
  /** The findings for one key (none when it complies). A rule that throws is reported as a `MasterKey-RuleFailed` warning instead. */
  check(input: PolicyInput): PolicyFinding[];
}

/** @deprecated use `IPolicyRule` (the name jsii gives an interface with a method). */
export type PolicyRule = IPolicyRule;
