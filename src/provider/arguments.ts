/**
 * Reading and validating the arguments of `masterkey_key` and
 * `masterkey_status` from terraform values. Pure: each bad value becomes a
 * diagnostic on its attribute, with one sentence saying what is wrong and
 * what to do (never echoing anything that looks like a credential).
 */
import { isAbsolute } from 'node:path';
import { ConfigFormat, isConfigFormat } from '../config/formats';
import type { InstallationSettings, Spelling, Surface } from '../context/build';
import { isLocalAddress } from '../config/nodes';
import { quietProgress } from '../rotation/context';
import type { Declared } from '../rotation/decide';
import { parseEpoch, rotationWindow } from '../../constructs/window';
import { UNKNOWN, Value } from './cty';
import type { AttributePathStep, Diagnostic } from './protocol';
import type { KeyObject, NamesOf, StatusObject, KEY_RESOURCE } from './schema';

export function attributeError(name: string, summary: string, detail = '', index?: number): Diagnostic {
  const steps: AttributePathStep[] = [{ attribute_name: name }];
  if (index !== undefined) steps.push({ element_key_int: index });
  return { severity: 'ERROR', summary, detail, attribute: { steps } };
}

/** The arguments that say where the installation is and how to reach it (the resource's and the data source's); all must be known to look at it. */
export const INSTALLATION_ARGUMENTS = ['config_files', 'config_format', 'key_name', 'database_url_env', 'database_url_entry', 'inventory'] as const satisfies ReadonlyArray<
  NamesOf<typeof KEY_RESOURCE, 'required' | 'optional'> & keyof StatusObject
>;

/** Those arguments, in the resource's object or the data source's. */
export type InstallationObject = Pick<KeyObject, (typeof INSTALLATION_ARGUMENTS)[number]>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENTRY_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

const str = (v: Value): string | undefined => (typeof v === 'string' ? v : undefined);

/** Checks the installation arguments that are known; unknown ones are checked at plan time again. */
export function validateInstallation(o: InstallationObject): Diagnostic[] {
  const d: Diagnostic[] = [];
  const files = o.config_files;
  if (Array.isArray(files)) {
    if (files.length === 0) d.push(attributeError('config_files', 'config_files is empty; list the absolute path of the config file holding the key (one per server node).'));
    files.forEach((f, i) => {
      if (typeof f === 'string' && isLocalAddress(f) && !isAbsolute(f)) d.push(attributeError('config_files', `config_files[${i}] "${f}" is not an absolute path; write it absolute, e.g. with abspath().`, '', i));
    });
    const known = files.filter((f): f is string => typeof f === 'string');
    if (new Set(known).size !== known.length) d.push(attributeError('config_files', 'config_files lists the same file twice; list each config file once.'));
  }
  const fmt = str(o.config_format);
  if (fmt !== undefined && !isConfigFormat(fmt)) d.push(attributeError('config_format', `config_format "${fmt}" is not a known format; use dotenv, json or xml.`));
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
  if (inv !== undefined && inv !== 'act' && !isAbsolute(inv)) d.push(attributeError('inventory', `inventory "${inv}" is neither "act" nor an absolute path; give "act" or the absolute path of an inventory JSON file.`));
  return d;
}

const wholeNumber = (v: Value, min: number): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;

/** Checks the arguments of `masterkey_key`. */
export function validateKey(o: KeyObject): Diagnostic[] {
  const d = validateInstallation(o);
  const name = str(o.name);
  if (name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9 ._/-]*$/.test(name)) d.push(attributeError('name', 'name is not a plain label; use letters, digits, spaces, dots, dashes, slashes or underscores.'));
  if (o.generation !== UNKNOWN && o.generation !== null && !wholeNumber(o.generation, 0)) {
    d.push(attributeError('generation', `generation ${String(o.generation)} is not a whole number of at least 0; give the key generation as an integer such as 1, and raise it by one to rotate.`));
  }
  if (o.rotation_period_days !== UNKNOWN && o.rotation_period_days !== null && !wholeNumber(o.rotation_period_days, 1)) {
    d.push(attributeError('rotation_period_days', `rotation_period_days ${String(o.rotation_period_days)} is not a whole number of days; give a period such as 90 or 365.`));
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
  for (const a of ['backup_dir', 'report_dir', 'new_key_file'] as const) {
    const v = str(o[a]);
    if (v !== undefined && !isAbsolute(v)) d.push(attributeError(a, `${a} "${v}" is not an absolute path; write it absolute, e.g. with abspath().`));
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

/** How terraform users name the settings: by the arguments of the resource and the data source. */
export const TERRAFORM_SPELLING: Spelling = {
  databaseUrlEnv: (name) => (name ? `database_url_env = "${name}"` : 'database_url_env'),
  databaseUrlEntry: (name) => (name ? `database_url_entry = "${name}"` : 'database_url_entry'),
  exportWhere: ' in the shell that runs terraform',
};

/** The provider's surface: terraform's environment, lines to the provider's log, no progress bar. */
export function providerSurface(log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Surface {
  return { env, log, progress: quietProgress, spelling: TERRAFORM_SPELLING };
}

/** The resource's arguments for where files go and what runs around the rotation (the data source has none). */
export type RotationArguments = Partial<Pick<KeyObject, 'backup_dir' | 'report_dir' | 'stop_command' | 'start_command' | 'health_command' | 'seal_ahead'>>;

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
    hooks: { stop: str(o.stop_command ?? null), start: str(o.start_command ?? null), health: str(o.health_command ?? null) },
    ...(typeof o.seal_ahead === 'boolean' ? { sealAhead: o.seal_ahead } : {}),
  };
}

/** What `masterkey_key` declares, evaluated at `at`: the engine's `Declared`. */
export function declaredOf(o: KeyObject, at: Date): Declared & { readonly targetGeneration: number } {
  const generation = o.generation as number;
  if (typeof o.rotation_period_days !== 'number') return { targetGeneration: generation };
  const evaluatedAt = typeof o.rotation_evaluated_at === 'string' ? parseEpoch(o.rotation_evaluated_at, 'rotation_evaluated_at') : at;
  const epoch = typeof o.rotation_epoch === 'string' ? parseEpoch(o.rotation_epoch, 'rotation_epoch') : undefined;
  const w = rotationWindow(o.rotation_period_days, evaluatedAt, epoch);
  return { targetGeneration: generation, windowStart: w.start, policyDays: w.periodDays };
}
