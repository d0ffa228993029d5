/**
 * A `MasterKey`'s props validated into settings, and the two things derived
 * from settings: the rotation resource's replacement triggers (what a
 * reviewer reads in `terraform plan`) and the argument vector of
 * `master-key apply`. Everything here is pure.
 *
 * `resolveSettings` reads as the list of what a declaration says: who the key
 * is, where it lives, how the database is reached, when it rotates, which
 * secrets it covers, how the rotation runs, the hooks around it and the
 * policy options. A new group of props is one more step here.
 */
import { checkRecipientShapes } from '../src/rotation/age';
import { isMasterKeyError } from '../src/errors';
import { parseSshAddress } from '../src/remote/address';
import { CONNECTION_SETTINGS, connectionOf } from '../src/remote/connection';
import { lockTimeoutMs } from '../src/lock-timeout';
import { quotable } from './credentials';
import { MasterKeyInventory } from './inventory-source';
import { checkPolicyProps } from './policy';
import {
  CONFIG_FORMATS,
  BackupRetentionProps,
  ConfigFormat,
  DEFAULT_DATABASE_URL_ENV,
  DEFAULT_KEY_NAME,
  MasterKeyProps,
  MasterKeySettings,
  ROTATION_RESOURCE_TYPES,
  RotationPolicyProps,
  RotationResourceType,
} from './types';
import { Fail, failFor } from './validation';
import { DEFAULT_EPOCH, checkPeriodDays, describeWindow, parseEpoch, rotationWindow, windowStartIso } from './window';

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

/**
 * Validates props and fills in defaults. Throws a USAGE error that names the
 * construct, the bad prop and value (unless it looks like a credential), and
 * the fix. Policy questions (relative paths, long periods...) are left to the
 * `MasterKeyPolicy` checks, which report them all at once.
 */
export function resolveSettings(props: MasterKeyProps, ctx: ResolveContext): MasterKeySettings {
  const fail = failFor(`MasterKey ${ctx.path}`);
  if (!props || typeof props !== 'object') fail('props', 'are missing', 'pass at least { generation, configFiles }');
  const who = identity(props, ctx.id, fail);
  const where = configTargets(props, fail);
  const database = databaseUrlSource(props, fail);
  const runs = howItRuns(props, ctx.defaultCliCommand, fail);
  const settings: MasterKeySettings = {
    ...who,
    ...where,
    ...sshSettings(props, where.configFiles, runs.resourceType, fail),
    ...database,
    ...schedule(props, ctx, fail),
    inventory: inventoryOf(props, fail),
    ...runs,
    environment: environmentOf(props, database, fail),
    ...hooks(props, fail),
    ...custody(props, fail),
  };
  checkPolicyProps(props.checks, 'checks', fail);
  return settings;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENTRY_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

/** The key's label and the generation the database must be at. */
function identity(props: MasterKeyProps, id: string, fail: Fail): Pick<MasterKeySettings, 'name' | 'generation'> {
  const name = props.name ?? id;
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9 ._/-]*$/.test(name)) {
    fail('name', `${quotable(name)} is not a plain label`, 'use letters, digits, spaces, dots, dashes, slashes or underscores');
  }
  const generation = props.generation;
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
    fail('generation', `${quotable(generation)} is not a whole number of at least 0`, 'give the key generation as an integer such as 1, and raise it by one to rotate');
  }
  return { name, generation };
}

/** Where the key lives: the config files, their format and the entry. */
function configTargets(props: MasterKeyProps, fail: Fail): Pick<MasterKeySettings, 'configFiles' | 'configFormat' | 'keyName'> {
  const files: unknown = props.configFiles;
  if (!Array.isArray(files) || files.length === 0) {
    fail('configFiles', Array.isArray(files) ? 'is empty' : `is ${quotable(files)}, not a list`, 'list the absolute path of the config file holding the key (one per server node)');
  }
  files.forEach((f, i) => {
    if (typeof f !== 'string' || f.trim().length === 0) fail(`configFiles[${i}]`, `is ${quotable(f)}`, 'give the absolute path of a config file');
  });
  if (new Set(files).size !== files.length) fail('configFiles', 'lists the same file twice', 'list each config file once');
  const configFormat = props.configFormat ?? ConfigFormat.DOTENV;
  if (!CONFIG_FORMATS.includes(configFormat)) fail('configFormat', `${quotable(configFormat)} is not a known format`, `use one of ${CONFIG_FORMATS.join(', ')}`);
  const keyName = props.keyName ?? DEFAULT_KEY_NAME;
  if (typeof keyName !== 'string' || !ENTRY_NAME.test(keyName)) fail('keyName', `${quotable(keyName)} is not a config entry name`, `name the entry that holds the key, e.g. ${DEFAULT_KEY_NAME}`);
  return { configFiles: [...(files as string[])], configFormat, keyName };
}

/** A `MasterKeyConnection` as the provider's `ssh` map (snake_case, string values), checked as the provider checks it. */
function connectionMap(c: unknown, prop: string, fail: Fail): Record<string, string> {
  if (c === undefined) return {};
  if (!c || typeof c !== 'object' || Array.isArray(c)) fail(prop, `is ${quotable(c)}`, 'give an object such as { knownHosts: "/home/ci/.ssh/known_hosts", privateKeyFile: "/home/ci/.ssh/id_ed25519" }');
  const byCamel = new Map(Object.entries(CONNECTION_SETTINGS).map(([snake, camel]) => [camel as string, snake]));
  const map: Record<string, string> = {};
  for (const [k, v] of Object.entries(c as object)) {
    if (v === undefined) continue;
    const snake = byCamel.get(k);
    if (!snake) fail(`${prop}.${k}`, 'is not a connection setting', `use ${[...byCamel.keys()].join(', ')}`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') fail(`${prop}.${k}`, `is ${quotable(v)}`, 'give a string, a number (ports) or a boolean (agent)');
    map[snake] = String(v);
  }
  try {
    connectionOf(map, prop);
  } catch (e) {
    if (!isMasterKeyError(e)) throw e;
    fail(prop, `is not usable: ${e.message.replace(/\.$/, '')}`, 'fix the setting it names');
  }
  return map;
}

/** How nodes on other hosts are reached; with a CLI resource type, only what the CLI's options can say. */
function sshSettings(props: MasterKeyProps, files: readonly string[], resourceType: RotationResourceType, fail: Fail): Pick<MasterKeySettings, 'ssh' | 'sshNodes' | 'localReportDir'> {
  const ssh = connectionMap(props.ssh, 'ssh', fail);
  const per: unknown = props.sshNodes ?? {};
  if (!per || typeof per !== 'object' || Array.isArray(per)) fail('sshNodes', `is ${quotable(per)}`, 'give an object of node addresses and their connection settings');
  const sshNodes: Record<string, Record<string, string>> = {};
  for (const [address, c] of Object.entries(per as object)) {
    if (!files.includes(address)) fail(`sshNodes["${address}"]`, 'names no node of configFiles', "use the node's address exactly as configFiles writes it");
    sshNodes[address] = connectionMap(c, `sshNodes["${address}"]`, fail);
  }
  if (resourceType !== RotationResourceType.PROVIDER) {
    for (const name of ['user', 'port'] as const) {
      if (ssh[name] !== undefined) fail(`ssh.${name}`, `is only used with resourceType "provider", not "${resourceType}"`, `write it in the node's address (ssh://user@host:port/path) instead`);
    }
    for (const [address, m] of Object.entries(sshNodes)) {
      const other = Object.keys(m).find((k) => k !== 'host_key');
      if (other) fail(`sshNodes["${address}"]`, `sets ${other}, which only the provider takes per node`, 'set it in ssh for every node, or use resourceType "provider"');
    }
  }
  const localReportDir: unknown = props.localReportDir;
  if (localReportDir !== undefined && (typeof localReportDir !== 'string' || !localReportDir.startsWith('/'))) fail('localReportDir', `is ${quotable(localReportDir)}`, 'give an absolute path');
  return { ssh, sshNodes, ...(localReportDir !== undefined ? { localReportDir: localReportDir as string } : {}) };
}

/** Where the database URL comes from: a variable of terraform's environment (by name) or an entry of the primary config file. */
function databaseUrlSource(props: MasterKeyProps, fail: Fail): Pick<MasterKeySettings, 'databaseUrlEnv' | 'databaseUrlEntry'> {
  if (props.databaseUrlEnv !== undefined && props.databaseUrlEntry !== undefined) {
    fail('databaseUrlEnv', 'and databaseUrlEntry are both set', 'set only one: the environment variable or the config entry that holds the database URL');
  }
  if (props.databaseUrlEntry !== undefined) {
    if (typeof props.databaseUrlEntry !== 'string' || !ENTRY_NAME.test(props.databaseUrlEntry)) {
      fail('databaseUrlEntry', `${quotable(props.databaseUrlEntry)} is not a config entry name`, 'give the name of the entry (not the URL), e.g. DATABASE_URL');
    }
    return { databaseUrlEntry: props.databaseUrlEntry };
  }
  const env = props.databaseUrlEnv ?? DEFAULT_DATABASE_URL_ENV;
  if (typeof env !== 'string' || !ENV_NAME.test(env)) {
    fail('databaseUrlEnv', `${quotable(env)} is not an environment variable name`, 'give the name of the variable (not the URL), e.g. DATABASE_URL, and export the URL in the shell that runs terraform');
  }
  return { databaseUrlEnv: env };
}

/** When the key rotates on a schedule: the policy as given and its current window. */
function schedule(props: MasterKeyProps, ctx: ResolveContext, fail: Fail): Pick<MasterKeySettings, 'rotationPolicy' | 'window'> {
  const p: unknown = props.rotationPolicy;
  if (p === undefined) return {};
  if (!p || typeof p !== 'object') fail('rotationPolicy', `is ${quotable(p)}`, 'give { periodDays: 90 }, or leave it out for no schedule');
  const { periodDays: period, epoch, evaluatedAt } = p as RotationPolicyProps;
  const periodDays = checkPeriodDays(period, `MasterKey ${ctx.path}: rotationPolicy.periodDays`);
  const start = parseEpoch(utcText(epoch, 'rotationPolicy.epoch', fail) ?? DEFAULT_EPOCH, `MasterKey ${ctx.path}: rotationPolicy.epoch`);
  const at = evaluatedAt === undefined ? ctx.now : parseEpoch(utcText(evaluatedAt, 'rotationPolicy.evaluatedAt', fail)!, `MasterKey ${ctx.path}: rotationPolicy.evaluatedAt`);
  if (at.getTime() < start.getTime()) fail('rotationPolicy.evaluatedAt', 'is before the epoch', 'give an epoch in the past, such as 1970-01-01');
  return {
    rotationPolicy: { periodDays, ...(epoch !== undefined ? { epoch } : {}), ...(evaluatedAt !== undefined ? { evaluatedAt } : {}) },
    window: rotationWindow(periodDays, at, start),
  };
}

/** An instant prop, which is ISO-8601 UTC text (a `Date` is refused with the way to write it). */
function utcText(value: unknown, prop: string, fail: Fail): string | undefined {
  if (value === undefined) return undefined;
  if (value instanceof Date) fail(prop, 'is a Date, not text', 'give ISO-8601 UTC text such as "2026-03-10T12:00:00Z" (date.toISOString() writes it)');
  if (typeof value !== 'string') fail(prop, `is ${quotable(value)}`, 'give ISO-8601 UTC text such as "2026-03-10T12:00:00Z"');
  return value as string;
}

/** Which secrets the key protects (a `MasterKeyInventory` of any copy of this library). */
function inventoryOf(props: MasterKeyProps, fail: Fail): MasterKeyInventory {
  const inventory = props.inventory ?? MasterKeyInventory.act();
  if (!MasterKeyInventory.isMasterKeyInventory(inventory)) fail('inventory', `is ${quotable(inventory)}, not a MasterKeyInventory`, 'use MasterKeyInventory.act() or MasterKeyInventory.fromFile(path)');
  return inventory;
}

/** How the rotation runs: the resource that carries it, and what only that resource uses. */
function howItRuns(props: MasterKeyProps, defaultCli: readonly string[], fail: Fail): Pick<MasterKeySettings, 'resourceType' | 'verifySecrets' | 'cliCommand'> {
  const resourceType = props.resourceType ?? RotationResourceType.TERRAFORM_DATA;
  if (!ROTATION_RESOURCE_TYPES.includes(resourceType)) fail('resourceType', `${quotable(resourceType)} is not supported`, `use one of ${ROTATION_RESOURCE_TYPES.join(', ')}`);
  const provider = resourceType === RotationResourceType.PROVIDER;
  if (props.verifySecrets !== undefined && typeof props.verifySecrets !== 'boolean') fail('verifySecrets', `is ${quotable(props.verifySecrets)}`, 'give true or false');
  if (props.verifySecrets !== undefined && !provider) fail('verifySecrets', `is only used with resourceType "provider", not "${resourceType}"`, 'leave it out, or use the provider');
  if (provider && props.cliCommand !== undefined) fail('cliCommand', 'is not used with resourceType "provider"', 'leave it out: the provider runs the rotation inside terraform');
  if (provider && props.environment !== undefined) {
    fail('environment', 'is not used with resourceType "provider"', "leave it out: the provider runs the rotation in terraform's own environment, so export variables in the shell that runs terraform");
  }
  const cliCommand: unknown = props.cliCommand ?? defaultCli;
  if (!Array.isArray(cliCommand) || cliCommand.length === 0 || !cliCommand.every((a) => typeof a === 'string' && a.length > 0)) {
    fail('cliCommand', 'is not a non-empty list of non-empty strings', 'give the program and its leading arguments, e.g. ["/usr/bin/node", "/opt/master-key/dist/src/cli/main.js"]');
  }
  return { resourceType, verifySecrets: props.verifySecrets ?? false, cliCommand: [...(cliCommand as string[])] };
}

/** Extra non-secret variables for the rotation script; never the one holding the database URL. */
function environmentOf(props: MasterKeyProps, database: Pick<MasterKeySettings, 'databaseUrlEnv'>, fail: Fail): MasterKeySettings['environment'] {
  const environment: unknown = props.environment ?? {};
  if (!environment || typeof environment !== 'object' || Array.isArray(environment)) {
    fail('environment', `is ${quotable(environment)}`, 'give an object of variable names and string values, e.g. { PGSSLMODE: "require" }');
  }
  for (const [k, v] of Object.entries(environment as object)) {
    if (!ENV_NAME.test(k)) fail('environment', `has a variable named ${quotable(k)}`, 'use variable names made of letters, digits and underscores');
    if (typeof v !== 'string') fail(`environment.${k}`, 'is not a string', 'give every variable a string value');
    if (k === database.databaseUrlEnv) fail(`environment.${k}`, 'would put the database URL into the terraform config', `leave it out and export ${k} in the shell that runs terraform`);
  }
  return { ...(environment as MasterKeySettings['environment']) };
}

/** What the rotation does around the data: backups, reports, server hooks, the copy of the new key. */
function hooks(props: MasterKeyProps, fail: Fail): Pick<MasterKeySettings, 'backupDir' | 'reportDir' | 'stopCommand' | 'startCommand' | 'healthCommand' | 'newKeyFile' | 'lockTimeout' | 'sealAhead'> {
  const text = (prop: 'backupDir' | 'reportDir' | 'stopCommand' | 'startCommand' | 'healthCommand' | 'newKeyFile'): string | undefined => {
    const v: unknown = props[prop];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim().length === 0) fail(prop, `is ${v === '' ? 'empty' : quotable(v)}`, 'give a non-empty string or leave it out');
    return v as string;
  };
  const backupDir = text('backupDir');
  const lockTimeout: unknown = props.lockTimeout;
  if (lockTimeout !== undefined && (typeof lockTimeout !== 'string' || lockTimeoutMs(lockTimeout) === undefined)) {
    fail('lockTimeout', `is ${quotable(lockTimeout)}, not a lock timeout`, 'give a duration of more than 0 and at most a day, such as "30s", "500ms" or "2min"');
  }
  return {
    lockTimeout: lockTimeout as string | undefined,
    backupDir,
    reportDir: text('reportDir') ?? backupDir,
    stopCommand: text('stopCommand'),
    startCommand: text('startCommand'),
    healthCommand: text('healthCommand'),
    newKeyFile: text('newKeyFile'),
    ...(props.sealAhead !== undefined ? { sealAhead: sealAheadOf(props.sealAhead, fail) } : {}),
  };
}

/** Whom backups are sealed to, and how long they are kept. */
function custody(props: MasterKeyProps, fail: Fail): Pick<MasterKeySettings, 'backupRecipients' | 'backupRetention'> {
  const list: unknown = props.backupRecipients ?? [];
  if (!Array.isArray(list) || !list.every((r) => typeof r === 'string')) fail('backupRecipients', `is ${quotable(list)}`, 'give a list of age recipients, e.g. ["age1…"]');
  try {
    checkRecipientShapes(list as string[], (i) => `backupRecipients[${i}]`);
  } catch (e) {
    fail('backupRecipients', (e as Error).message.replace(/\.$/, ''), 'give public age recipients (age-keygen -y prints one)');
  }
  const r: unknown = props.backupRetention;
  if (r === undefined) return { backupRecipients: [...(list as string[])] };
  const { keep, olderThanDays } = (r ?? {}) as BackupRetentionProps;
  const whole = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
  if (typeof r !== 'object' || r === null || (keep === undefined) === (olderThanDays === undefined)) fail('backupRetention', `is ${quotable(r)}`, 'give exactly one of { keep: N } and { olderThanDays: N }');
  if (keep !== undefined && !whole(keep)) fail('backupRetention.keep', `is ${quotable(keep)}`, 'give a whole number of backups of at least 1');
  if (olderThanDays !== undefined && !whole(olderThanDays)) fail('backupRetention.olderThanDays', `is ${quotable(olderThanDays)}`, 'give a whole number of days of at least 1');
  return { backupRecipients: [...(list as string[])], backupRetention: keep !== undefined ? `keep ${keep}` : `${olderThanDays}d` };
}

/** Seal-ahead's setting: true or false. */
function sealAheadOf(v: unknown, fail: Fail): boolean {
  if (typeof v !== 'boolean') fail('sealAhead', `is ${quotable(v)}`, 'give true or false, or leave it out to seal ahead where it pays off');
  return v as boolean;
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
    ...opt('--database-url-env', s.databaseUrlEnv),
    ...opt('--database-url-entry', s.databaseUrlEntry),
    '--inventory',
    s.inventory.spec,
    ...opt('--backup-dir', s.backupDir),
    ...opt('--report-dir', s.reportDir),
    ...opt('--stop-command', s.stopCommand),
    ...opt('--start-command', s.startCommand),
    ...opt('--health-command', s.healthCommand),
    ...opt('--new-key-out', s.newKeyFile),
    ...s.backupRecipients.flatMap((r) => ['--backup-recipient', r]),
    ...opt('--backup-retention', s.backupRetention),
    ...(s.sealAhead === undefined ? [] : [s.sealAhead ? '--seal-ahead' : '--no-seal-ahead']),
    ...opt('--lock-timeout', s.lockTimeout),
    ...connectionArgv(s),
  ];
}

/** The connection settings as the CLI's options (`sshSettings` lets through only what they can say). */
function connectionArgv(s: MasterKeySettings): string[] {
  const c = s.ssh;
  const opt = (flag: string, value: string | undefined): string[] => (value === undefined ? [] : [flag, value]);
  const bastion = c.bastion_host === undefined ? undefined : `${c.bastion_user ? `${c.bastion_user}@` : ''}${c.bastion_host}${c.bastion_port ? `:${c.bastion_port}` : ''}`;
  const perNode = Object.entries(s.sshNodes).flatMap(([address, m]) => {
    if (m.host_key === undefined) return [];
    const a = parseSshAddress(address);
    return ['--host-key', `${a.host}:${a.port ?? 22}=${m.host_key}`];
  });
  return [
    ...opt('--known-hosts', c.known_hosts),
    ...opt('--host-key', c.host_key),
    ...perNode,
    ...opt('--private-key-file', c.private_key_file),
    ...(c.agent === 'false' ? ['--no-ssh-agent'] : []),
    ...opt('--bastion', bastion),
    ...opt('--bastion-host-key', c.bastion_host_key),
    ...opt('--ssh-timeout', c.timeout),
    ...opt('--remote-command', c.remote_command),
    ...opt('--local-report-dir', s.localReportDir),
  ];
}
