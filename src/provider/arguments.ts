/**
 * Reading and validating the arguments of `masterkey_key` and
 * `masterkey_status` from terraform values. Pure: each bad value becomes a
 * diagnostic on its attribute, with one sentence saying what is wrong and
 * what to do (never echoing anything that looks like a credential).
 */
import { isAbsolute } from 'node:path';
import { ConfigFormat, isConfigFormat } from '../config/formats';
import type { InstallationSettings, Surface } from '../context/build';
import { TERRAFORM_SPELLING } from '../context/spelling';
import { isLocalAddress } from '../config/nodes';
import { isMasterKeyError } from '../errors';
import { parseSshAddress } from '../remote/address';
import { SshNodeSettings, SshSettings, connectionOf, resolveSshHost } from '../remote/connection';
import { quietProgress } from '../rotation/context';
import type { Declared } from '../rotation/decide';
import { checkRecipientShapes } from '../rotation/age';
import { Retention, parseRetention } from '../rotation/retention';
import { parseEpoch, rotationWindow } from '../../constructs/window';
import { UNKNOWN, Value } from './cty';
import { lockTimeoutMs, parseLockTimeout } from '../lock-timeout';
import type { AttributePathStep, Diagnostic } from './protocol';
import type { KeyObject, NamesOf, StatusObject, KEY_RESOURCE } from './schema';

export function attributeError(name: string, summary: string, detail = '', index?: number): Diagnostic {
  const steps: AttributePathStep[] = [{ attribute_name: name }];
  if (index !== undefined) steps.push({ element_key_int: index });
  return { severity: 'ERROR', summary, detail, attribute: { steps } };
}

/** The arguments that say where the installation is and how to reach it (the resource's and the data source's); all must be known to look at it. */
export const INSTALLATION_ARGUMENTS = ['config_files', 'config_format', 'key_name', 'database_url_env', 'database_url_entry', 'inventory', 'ssh', 'ssh_nodes'] as const satisfies ReadonlyArray<
  NamesOf<typeof KEY_RESOURCE, 'required' | 'optional'> & keyof StatusObject
>;

/** Those arguments, in the resource's object or the data source's. */
export type InstallationObject = Pick<KeyObject, (typeof INSTALLATION_ARGUMENTS)[number]>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENTRY_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

const str = (v: Value): string | undefined => (typeof v === 'string' ? v : undefined);

/** A value as a message quotes it: a string as JSON (a line break cannot split the sentence), cut to 80 characters. */
function shown(v: Value): string {
  const text = typeof v === 'number' ? String(v) : (JSON.stringify(v) ?? String(v));
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** Checks the installation arguments that are known; unknown ones are checked at plan time again. */
export function validateInstallation(o: InstallationObject): Diagnostic[] {
  const d: Diagnostic[] = [];
  const files = o.config_files;
  if (files !== null && files !== UNKNOWN && !Array.isArray(files)) d.push(attributeError('config_files', 'config_files is not a list; list the absolute paths of the config files holding the key.'));
  if (Array.isArray(files)) {
    if (files.length === 0) d.push(attributeError('config_files', 'config_files is empty; list the absolute path of the config file holding the key (one per server node).'));
    files.forEach((f, i) => {
      if (typeof f === 'string' && isLocalAddress(f) && !isAbsolute(f)) d.push(attributeError('config_files', `config_files[${i}] ${shown(f)} is not an absolute path; write it absolute, e.g. with abspath().`, '', i));
      else if (typeof f !== 'string' && f !== UNKNOWN) d.push(attributeError('config_files', `config_files[${i}] is ${shown(f)}, not a path; give the absolute path of a config file.`, '', i));
    });
    const known = files.filter((f): f is string => typeof f === 'string');
    if (new Set(known).size !== known.length) d.push(attributeError('config_files', 'config_files lists the same file twice; list each config file once.'));
  }
  const fmt = str(o.config_format);
  if (fmt !== undefined && !isConfigFormat(fmt)) d.push(attributeError('config_format', `config_format ${shown(fmt)} is not a known format; use dotenv, json or xml.`));
  const key = str(o.key_name);
  if (key !== undefined && !ENTRY_NAME.test(key)) d.push(attributeError('key_name', 'key_name is not a config entry name; name the entry that holds the key, e.g. ACT_MASTER_KEY.'));
  if (o.database_url_env !== null && o.database_url_entry !== null) {
    d.push(attributeError('database_url_entry', 'database_url_env and database_url_entry are both set; set only one: the environment variable or the config entry that holds the database URL.'));
  }
  const env = str(o.database_url_env);
  if (env !== undefined && !ENV_NAME.test(env)) {
    d.push(attributeError('database_url_env', 'database_url_env is not an environment variable name; give the name of the variable (not the URL), e.g. DATABASE_URL.'));
  }
  const entry = str(o.database_url_entry);
  if (entry !== undefined && !ENTRY_NAME.test(entry)) d.push(attributeError('database_url_entry', 'database_url_entry is not a config entry name; give the name of the entry (not the URL), e.g. DATABASE_URL.'));
  const inv = str(o.inventory);
  if (inv !== undefined && inv !== 'act' && !isAbsolute(inv)) d.push(attributeError('inventory', `inventory ${shown(inv)} is neither "act" nor an absolute path; give "act" or the absolute path of an inventory JSON file.`));
  d.push(...validateConnections(o));
  return d;
}

/** A map of known strings (null when not all is known yet). */
function knownStrings(v: Value): Record<string, string> | null {
  if (v === null || v === UNKNOWN || typeof v !== 'object' || Array.isArray(v)) return null;
  const e = Object.entries(v);
  return e.every(([, x]) => typeof x === 'string') ? (Object.fromEntries(e) as Record<string, string>) : null;
}

/**
 * The connection settings, shared and per node, as the context builder takes
 * them. Throws a `MasterKeyError` naming the setting when one is wrong.
 */
export function connectionsOf(o: Pick<InstallationObject, 'ssh' | 'ssh_nodes'>): { ssh?: SshSettings; sshNodes?: SshNodeSettings[] } {
  const shared = knownStrings(o.ssh);
  const perNode = o.ssh_nodes !== null && o.ssh_nodes !== UNKNOWN && typeof o.ssh_nodes === 'object' ? o.ssh_nodes : {};
  const sshNodes: SshNodeSettings[] = [];
  for (const [address, m] of Object.entries(perNode)) {
    const own = knownStrings(m as Value);
    if (own) sshNodes.push({ address, ...connectionOf(own, `ssh_nodes["${address}"]`) });
  }
  return { ...(shared ? { ssh: connectionOf(shared, 'ssh') } : {}), ...(sshNodes.length ? { sshNodes } : {}) };
}

/** Checks the connection settings and, with them, every node on another host that config_files names. */
function validateConnections(o: InstallationObject): Diagnostic[] {
  let c: ReturnType<typeof connectionsOf>;
  try {
    c = connectionsOf(o);
  } catch (e) {
    if (!isMasterKeyError(e)) throw e;
    return [attributeError(e.message.startsWith('ssh_nodes') ? 'ssh_nodes' : 'ssh', e.message)];
  }
  const files = Array.isArray(o.config_files) ? o.config_files.filter((f): f is string => typeof f === 'string') : [];
  const d: Diagnostic[] = [];
  for (const n of c.sshNodes ?? []) {
    if (!files.includes(n.address)) d.push(attributeError('ssh_nodes', `ssh_nodes names ${shown(n.address)}, which config_files does not list; use the node's address exactly as config_files writes it.`));
  }
  files.forEach((f, i) => {
    if (isLocalAddress(f)) return;
    try {
      resolveSshHost(parseSshAddress(f), c.ssh, c.sshNodes?.find((n) => n.address === f), {});
    } catch (e) {
      if (!isMasterKeyError(e)) throw e;
      d.push(attributeError('config_files', e.message, '', i));
    }
  });
  return d;
}

const wholeNumber = (v: Value, min: number): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;

/** Checks the arguments of `masterkey_key`. */
export function validateKey(o: KeyObject): Diagnostic[] {
  const d = validateInstallation(o);
  const name = str(o.name);
  if (name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9 ._/-]*$/.test(name)) d.push(attributeError('name', 'name is not a plain label; use letters, digits, spaces, dots, dashes, slashes or underscores.'));
  if (o.generation !== UNKNOWN && o.generation !== null && !wholeNumber(o.generation, 0)) {
    d.push(attributeError('generation', `generation ${shown(o.generation)} is not a whole number of at least 0; give the key generation as an integer such as 1, and raise it by one to rotate.`));
  }
  if (o.rotation_period_days !== UNKNOWN && o.rotation_period_days !== null && !wholeNumber(o.rotation_period_days, 1)) {
    d.push(attributeError('rotation_period_days', `rotation_period_days ${shown(o.rotation_period_days)} is not a whole number of days; give a period such as 90 or 365.`));
  }
  for (const a of ['rotation_epoch', 'rotation_evaluated_at'] as const) {
    const v = str(o[a]);
    if (v === undefined) continue;
    try {
      parseEpoch(v, a);
    } catch (e) {
      d.push(attributeError(a, (e as Error).message));
    }
  }
  if ((o.rotation_epoch !== null || o.rotation_evaluated_at !== null) && o.rotation_period_days === null) {
    d.push(attributeError('rotation_period_days', 'rotation_epoch and rotation_evaluated_at need rotation_period_days; set the period or leave them out.'));
  }
  if (Array.isArray(o.backup_recipients) && o.backup_recipients.every((r) => typeof r === 'string')) {
    try {
      checkRecipientShapes(o.backup_recipients as string[], (i) => `backup_recipients[${i}]`);
    } catch (e) {
      d.push(attributeError('backup_recipients', (e as Error).message));
    }
  }
  const retention = str(o.backup_retention ?? null);
  if (retention !== undefined) {
    try {
      parseRetention(retention, 'backup_retention');
    } catch (e) {
      d.push(attributeError('backup_retention', (e as Error).message));
    }
  }
  const lockTimeout = str(o.lock_timeout);
  if (lockTimeout !== undefined && lockTimeoutMs(lockTimeout) === undefined) {
    d.push(attributeError('lock_timeout', `lock_timeout ${shown(lockTimeout)} is not a lock timeout; give a duration of more than 0 and at most a day, such as 30s, 500ms, 2min or 1h.`));
  }
  for (const a of ['backup_dir', 'report_dir', 'local_report_dir', 'new_key_file'] as const) {
    const v = str(o[a]);
    if (v !== undefined && !isAbsolute(v)) d.push(attributeError(a, `${a} ${shown(v)} is not an absolute path; write it absolute, e.g. with abspath().`));
  }
  return d;
}

/** Checks the arguments of `masterkey_status`. */
export function validateStatus(o: StatusObject): Diagnostic[] {
  const d = validateInstallation(o);
  if (o.max_age_days !== null && o.max_age_days !== UNKNOWN && !(typeof o.max_age_days === 'number' && o.max_age_days > 0)) {
    d.push(attributeError('max_age_days', 'max_age_days must be a positive number of days.'));
  }
  return d;
}

/** How terraform users name the settings (defined with the context builder, which sends it to other hosts). */
export { TERRAFORM_SPELLING };

/** The provider's surface: terraform's environment, lines to the provider's log, no progress bar. */
export function providerSurface(log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Surface {
  return { env, log, progress: quietProgress, spelling: TERRAFORM_SPELLING };
}

/** The resource's arguments for where files go and what runs around the rotation (the data source has none). */
export type RotationArguments = Partial<Pick<KeyObject, 'backup_dir' | 'report_dir' | 'local_report_dir' | 'backup_recipients' | 'backup_retention' | 'stop_command' | 'start_command' | 'health_command' | 'lock_timeout' | 'seal_ahead'>>;

/** What an object's (known) arguments declare; report_dir defaults to backup_dir when that is given. */
export function settingsOf(o: InstallationObject & RotationArguments): InstallationSettings {
  const backupDir = str(o.backup_dir ?? null);
  const databaseUrlEnv = str(o.database_url_env);
  const databaseUrlEntry = str(o.database_url_entry);
  return {
    configFiles: Array.isArray(o.config_files) ? o.config_files.filter((f): f is string => typeof f === 'string') : [],
    configFormat: str(o.config_format) as ConfigFormat | undefined,
    keyName: str(o.key_name),
    databaseUrl: databaseUrlEntry !== undefined ? { entry: databaseUrlEntry } : databaseUrlEnv !== undefined ? { env: databaseUrlEnv } : undefined,
    inventory: str(o.inventory),
    backupDir,
    reportDir: str(o.report_dir ?? null) ?? backupDir,
    backupRecipients: Array.isArray(o.backup_recipients) ? o.backup_recipients.filter((r): r is string => typeof r === 'string') : undefined,
    hooks: { stop: str(o.stop_command ?? null), start: str(o.start_command ?? null), health: str(o.health_command ?? null) },
    ...connectionsOf(o),
    localReportDir: str(o.local_report_dir ?? null),
    lockTimeoutMs: str(o.lock_timeout ?? null) !== undefined ? parseLockTimeout(str(o.lock_timeout ?? null)!, 'lock_timeout') : undefined,
    ...(typeof o.seal_ahead === 'boolean' ? { sealAhead: o.seal_ahead } : {}),
  };
}

/** The retention `backup_retention` declares, if any. */
export function retentionOf(o: RotationArguments): Retention | undefined {
  const v = str(o.backup_retention ?? null);
  return v === undefined ? undefined : parseRetention(v, 'backup_retention');
}

/** What `masterkey_key` declares, evaluated at `at`: the runbook's `Declared` (src/rotation/decide.ts). */
export function declaredOf(o: KeyObject, at: Date): Declared & { readonly targetGeneration: number } {
  const generation = o.generation as number;
  if (typeof o.rotation_period_days !== 'number') return { targetGeneration: generation };
  const evaluatedAt = typeof o.rotation_evaluated_at === 'string' ? parseEpoch(o.rotation_evaluated_at, 'rotation_evaluated_at') : at;
  const epoch = typeof o.rotation_epoch === 'string' ? parseEpoch(o.rotation_epoch, 'rotation_epoch') : undefined;
  const w = rotationWindow(o.rotation_period_days, evaluatedAt, epoch);
  return { targetGeneration: generation, windowStart: w.start, policyDays: w.periodDays };
}
