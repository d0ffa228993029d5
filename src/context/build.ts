/**
 * The one place an installation's declared settings become the rotation's
 * `Context`: the CLI (from its options) and the provider (from a resource's
 * or data source's arguments) both call `buildContext`, so a default, a
 * path rule or the database URL's source is decided the same way whichever
 * one runs. Each surface says how it spells its settings (`Spelling`), so
 * that a refusal names the option or argument the user wrote.
 */
import { dirname, join, resolve } from 'node:path';
import { ConfigTarget, readConfigEntry } from '../config/config-file';
import { ConfigFormat } from '../config/formats';
import { MasterKeyError, isMasterKeyError } from '../errors';
import { Inventory, loadInventory, validateInventory } from '../inventory/inventory';
import { Context, Progress } from '../rotation/context';
import { FaultPoints } from '../rotation/faults';
import { Hooks } from '../rotation/hooks';
import { defaultPendingPath } from '../rotation/pending';
import { resolveStoreUrl } from '../store/open';
import { ConfigNode, configNodes } from '../config/nodes';
export { CLI_SPELLING, TERRAFORM_SPELLING, type Spelling } from './spelling';
import type { Spelling } from './spelling';
import type { SshNodeSettings, SshSettings } from '../remote/connection';
import { DEFAULT_LOCK_TIMEOUT_MS } from '../lock-timeout';
import { checkRecipientShapes, readRecipientsFile } from '../rotation/age';

/** Where the database URL comes from: an environment variable, an entry of the primary config file, or (neither given) the default. */
export type DatabaseUrlSource = { readonly env: string } | { readonly entry: string };

/** An installation as the user declares it; everything but the config files has a default. */
export interface InstallationSettings {
  /** Each node's config file by address (see `src/config/nodes.ts`); the first is the primary. */
  readonly configFiles: readonly string[];
  /** @default from each file's extension (.json, .xml/.config), else dotenv */
  readonly configFormat?: ConfigFormat;
  /** The config entry holding the key. @default ACT_MASTER_KEY */
  readonly keyName?: string;
  /**
   * @default with the ACT inventory, ACT_DATABASE_URL in the primary config
   * file when it holds that entry; else the environment variable DATABASE_URL
   */
  readonly databaseUrl?: DatabaseUrlSource;
  /** `act` (the built-in preset), the path of an inventory JSON file, or the inventory itself (sent to another host). @default act */
  readonly inventory?: string | Inventory;
  /** @default .<config name>.mk-pending beside the primary config */
  readonly pendingFile?: string;
  /** @default master-key-backups beside the primary config */
  readonly backupDir?: string;
  /** @default master-key-reports beside the primary config */
  readonly reportDir?: string;
  readonly hooks?: Hooks;
  /** Rows per batch (tuning). @default the store's */
  readonly batchSize?: number;
  /** age recipients (`age1…`, `age1pq1…`) every backup is sealed to. @default none: backups hold the old key in cleartext */
  readonly backupRecipients?: readonly string[];
  /** A file listing more recipients, one a line (age's `-R` format). */
  readonly backupRecipientsFile?: string;
  /** SSH settings shared by every node on another host (`ssh://` addresses). */
  readonly ssh?: SshSettings;
  /** SSH settings of single nodes, by address (over the shared ones). */
  readonly sshNodes?: readonly SshNodeSettings[];
  /**
   * Nodes on other hosts: where the runner keeps a copy of each rotation's
   * report (the report itself is written on the primary node's host).
   * @default master-key-reports in the working directory
   */
  readonly localReportDir?: string;
  /** How long to wait for a lock another session holds, in ms. @default 30 s */
  readonly lockTimeoutMs?: number;
  /**
   * Seal ahead while the server runs (true), keep the single pass with the
   * server stopped (false), or seal ahead where it pays off (undefined).
   * @default undefined
   */
  readonly sealAhead?: boolean;
}

/** What the surface running the command gives it: its environment, its output sinks, its spelling. */
export interface Surface {
  readonly env: NodeJS.ProcessEnv;
  readonly log: (line: string) => void;
  readonly progress: Progress;
  readonly spelling: Spelling;
}

export const DEFAULT_KEY_NAME = 'ACT_MASTER_KEY';
export const DEFAULT_INVENTORY = 'act';
/** The entry of ACT's config that names its database (`sqlite:/var/lib/act/act.db` by default). */
export const ACT_DATABASE_URL_ENTRY = 'ACT_DATABASE_URL';
export const DEFAULT_DATABASE_URL_ENV = 'DATABASE_URL';

/** The nodes the settings name, each on its host (addresses parsed once, here). */
export function nodesOf(s: InstallationSettings, env: NodeJS.ProcessEnv): ConfigNode[] {
  if (s.configFiles.length === 0) throw new MasterKeyError('USAGE', 'No config file was given; name the config file that holds the master key (one per server node).');
  return configNodes(s.configFiles, s.keyName ?? DEFAULT_KEY_NAME, s.configFormat, { shared: s.ssh, perNode: s.sshNodes, env });
}

/**
 * The context the declared settings describe, for the rotation in this
 * process: every node must be on this machine (`openInstallation` sends
 * the work for nodes on other hosts there). Nothing is opened: files and the
 * database are read when a command needs them.
 */
export function buildContext(s: InstallationSettings, surface: Surface): Context {
  const nodes = nodesOf(s, surface.env);
  const remote = nodes.find((n) => n.host.kind !== 'local');
  if (remote) throw new MasterKeyError('INTERNAL', `The node ${remote.address} is on another host but reached the local rotation; this is a bug.`);
  const primary = nodes[0].target;
  const beside = (name: string) => join(dirname(primary.path), name);
  const inventory = s.inventory ?? DEFAULT_INVENTORY;
  const inventoryName = typeof inventory === 'string' ? inventory : 'inline';
  return {
    nodes,
    targets: nodes.map((n) => n.target),
    databaseUrl: resolveStoreUrl(databaseUrlOf(s.databaseUrl, primary, inventoryName, surface), dirname(primary.path)),
    inventory: typeof inventory === 'string' ? loadInventory(inventory) : validateInventory(inventory, `the inventory ${inventory.name}`),
    pendingPath: s.pendingFile !== undefined ? resolve(s.pendingFile) : defaultPendingPath(primary.path),
    backupDir: resolve(s.backupDir ?? beside('master-key-backups')),
    reportDir: resolve(s.reportDir ?? beside('master-key-reports')),
    hooks: s.hooks ?? {},
    log: surface.log,
    progress: surface.progress,
    faults: new FaultPoints(surface.env.MASTER_KEY_TEST_KILL_AT),
    now: () => new Date(),
    batchSize: s.batchSize,
    backupRecipients: backupRecipientsOf(s, surface.spelling),
    lockTimeoutMs: s.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
    ...(s.sealAhead !== undefined ? { sealAhead: s.sealAhead } : {}),
  };
}

/** The declared recipients (given ones first, then the file's), each shape-checked, none twice. */
export function backupRecipientsOf(s: InstallationSettings, spelling: Spelling): string[] {
  const given = s.backupRecipients ?? [];
  const fromFile = s.backupRecipientsFile !== undefined ? readRecipientsFile(resolve(s.backupRecipientsFile)) : [];
  return checkRecipientShapes([...given, ...fromFile], (i) => (i < given.length ? `${spelling.backupRecipient} number ${i + 1}` : `Recipient ${i - given.length + 1} of ${s.backupRecipientsFile}`));
}

/** The entry's value, or undefined when the file does not have it. */
function optionalEntry(t: ConfigTarget, entry: string): string | undefined {
  try {
    return readConfigEntry(t, entry);
  } catch (e) {
    if (isMasterKeyError(e, 'CONFIG_KEY_MISSING')) return undefined;
    throw e;
  }
}

/**
 * The database URL as given (a SQLite path may still be relative): from the
 * named config entry, from the named environment variable, or by default
 * from ACT_DATABASE_URL in the primary config (ACT preset, when the file
 * holds it) or else $DATABASE_URL. When the default finds both and they
 * name different databases, the user must choose.
 */
function databaseUrlOf(source: DatabaseUrlSource | undefined, primary: ConfigTarget, inventory: string, surface: Surface): string {
  const { env, spelling } = surface;
  if (source && 'entry' in source) return readConfigEntry(primary, source.entry);
  const fromEnv = (name: string) => {
    const url = env[name] ?? '';
    if (!url) {
      throw new MasterKeyError(
        'USAGE',
        `The environment variable ${name} is not set; export the database URL in it${spelling.exportWhere} (or name another with ${spelling.databaseUrlEnv()}, or use ${spelling.databaseUrlEntry()}).`,
      );
    }
    return url;
  };
  if (source) return fromEnv(source.env);
  const actUrl = inventory === 'act' ? optionalEntry(primary, ACT_DATABASE_URL_ENTRY) : undefined;
  if (actUrl === undefined) return fromEnv(DEFAULT_DATABASE_URL_ENV);
  const envUrl = env[DEFAULT_DATABASE_URL_ENV];
  const base = dirname(primary.path);
  if (envUrl && resolveStoreUrl(envUrl, base) !== resolveStoreUrl(actUrl, base)) {
    throw new MasterKeyError(
      'USAGE',
      `${primary.path} sets ${ACT_DATABASE_URL_ENTRY} and the environment sets ${DEFAULT_DATABASE_URL_ENV} to a different database; choose one with ${spelling.databaseUrlEntry(ACT_DATABASE_URL_ENTRY)} or ${spelling.databaseUrlEnv(DEFAULT_DATABASE_URL_ENV)}.`,
    );
  }
  return actUrl;
}

