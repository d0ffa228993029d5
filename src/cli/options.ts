/**
 * What every command shares: its output sinks (`Io`), the options common to
 * commands that reach the database, and turning them into a `Context`.
 * Key material is never accepted on argv.
 */
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CONFIG_FORMATS, ConfigFormat } from '../config/formats';
import { InstallationSettings, Surface, buildContext } from '../context/build';
import { Installation, withInstallation } from '../context/installation';
import { isSshAddress, parseSshAddress } from '../remote/address';
import type { SshNodeSettings, SshSettings } from '../remote/connection';
import { CLI_SPELLING } from '../context/spelling';
import { ExitCodeValue, MasterKeyError } from '../errors';
import { parseLockTimeout } from '../lock-timeout';
import { Context, NewKeySource } from '../rotation/context';
import { terminalProgress } from './progress';

/** Where a command writes, and the environment it reads. */
export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

/** One `master-key` command: its options, and the typed function that runs it. */
export interface CliCommand {
  /** Declares the command and its options on the program. */
  define(program: Command): Command;
  /** Runs the command with the options commander parsed; resolves to the exit code. (A method: each command narrows `opts` to its own options.) */
  run(opts: object, io: Io): Promise<ExitCodeValue>;
}

/** How nodes on other hosts (`--config ssh://…`) are reached. */
export interface SshOpts {
  knownHosts?: string;
  hostKey?: string[];
  privateKeyFile?: string;
  sshAgent: boolean;
  bastion?: string;
  bastionHostKey?: string;
  sshTimeout?: string;
  remoteCommand?: string;
}

export interface CommonOpts extends SshOpts {
  config: string[];
  format?: ConfigFormat;
  keyName: string;
  databaseUrlEnv?: string;
  databaseUrlEntry?: string;
  inventory: string;
  pendingFile?: string;
  backupDir?: string;
  reportDir?: string;
  stopCommand?: string;
  startCommand?: string;
  healthCommand?: string;
  batchSize?: string;
  backupRecipient?: string[];
  backupRecipientsFile?: string;
  localReportDir?: string;
  lockTimeout?: string;
  sealAhead?: boolean;
  json?: boolean;
}

export const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The config file when no --config is given. */
export const DEFAULT_CONFIG = './act.env';

/** Options of every command that reaches the database. */
export function withCommon(cmd: Command): Command {
  cmd
    .addOption(configOption('config file holding the master key; repeat once per server node (the first is the primary)'))
    .addOption(new Option('--format <format>', 'config file format (default: from the extension: .json, .xml/.config, else dotenv)').choices(CONFIG_FORMATS as string[]))
    .option('--key-name <entry>', 'config entry holding the key: dotenv variable, JSON dotted path or XML key', 'ACT_MASTER_KEY')
    .option('--database-url-env <NAME>', 'environment variable holding the database URL (default: DATABASE_URL, unless the ACT preset finds ACT_DATABASE_URL in the primary config)')
    .option('--database-url-entry <entry>', 'read the database URL from this entry of the primary config file instead (default with --inventory act: ACT_DATABASE_URL when the file holds it)')
    .option('--inventory <act|file>', 'secret inventory: the built-in ACT preset or an inventory JSON file', 'act')
    .option('--pending-file <path>', "the rotation's pending-key file (default: .<config name>.mk-pending beside the primary config)")
    .option('--lock-timeout <duration>', 'how long to wait for a lock another session holds on the secret tables (or the SQLite file) before refusing with TABLES_BUSY, e.g. 30s, 500ms, 2min (default: 30s)')
    .option('--json', 'print stable JSON on stdout (human text goes to stderr)');
  return withSsh(cmd).addHelpText('after', SSH_HELP);
}

const SSH_HELP = `
A config file on another host is written ssh://[user@]host[:port]/path; the rotation then runs on the
primary node's host (by the master-key installed there) and the other nodes get the key with
\`master-key set\` on their own hosts. See docs/remote.md.`;

/** The options that say how nodes on other hosts are reached (named after terraform's connection block). */
export function withSsh(cmd: Command): Command {
  return cmd
    .option('--known-hosts <file>', 'OpenSSH known_hosts file the hosts\' keys are checked against (default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts)')
    .addOption(new Option('--host-key <[host[:port]=]SHA256:…>', "pin a host's key (as `ssh-keygen -lf` prints it, or its public key line); repeat once per host").argParser(collect))
    .option('--private-key-file <path>', 'private key to log in with (default: the agent, then ~/.ssh/id_ed25519 and ~/.ssh/id_rsa)')
    .option('--no-ssh-agent', 'do not use the SSH agent at $SSH_AUTH_SOCK')
    .option('--bastion <[user@]host[:port]>', 'reach the hosts through this jump host')
    .option('--bastion-host-key <SHA256:…>', "pin the jump host's key")
    .option('--ssh-timeout <duration>', 'how long to wait for a host, e.g. 30s or 2m (default 30s)')
    .option('--remote-command <cmd>', 'the command that runs master-key on the hosts (default: master-key from their PATH)')
    .option('--local-report-dir <dir>', 'where this machine keeps a copy of each report from a host (default: ./master-key-reports)');
}

/** The config file option: repeatable, `./act.env` when not given (shown as such in --help). */
export function configOption(help: string): Option {
  return new Option('--config <path>', help).argParser(collect).default([], DEFAULT_CONFIG);
}

/** Where backups are (apply, plan, status, retire). */
export function withBackupDir(cmd: Command): Command {
  return cmd.option('--backup-dir <dir>', 'where backups go (default: master-key-backups beside the primary config)');
}

/** Where backups and reports go, and whom backups are sealed to (plan, apply). */
export function withDirs(cmd: Command): Command {
  return withBackupDir(cmd)
    .option('--report-dir <dir>', 'where reports go (default: master-key-reports beside the primary config)')
    .addOption(new Option('--backup-recipient <age1…>', 'seal every backup file to this age recipient (X25519 age1… or hybrid age1pq1…); repeatable').argParser(collect).default([], 'none: the backup holds the old key in cleartext'))
    .option('--backup-recipients-file <path>', 'seal backups to the recipients listed in this file, one a line (age -R format)');
}

const HOOK_HELP = {
  stop: 'shell command that stops the server before re-encryption',
  start: 'shell command that starts the server after the config files are updated',
  health: 'shell command that checks the server after it started',
} as const;

/** The server hooks a command runs (apply and plan: all three; recover: start and health). */
export function withHooks(cmd: Command, hooks: ReadonlyArray<keyof typeof HOOK_HELP> = ['stop', 'start', 'health']): Command {
  for (const h of hooks) cmd.option(`--${h}-command <cmd>`, HOOK_HELP[h]);
  return cmd;
}

/** Rows per batch, for commands that read or write every secret. */
export function withBatchSize(cmd: Command): Command {
  return cmd.option('--batch-size <n>', 'rows per batch (tuning)');
}

/** Seal-ahead's choice (plan, apply): neither flag means where it pays off. */
export function withSealAhead(cmd: Command): Command {
  return cmd
    .option('--seal-ahead', 'seal every secret under the new key while the server runs, then stop it only to swap them in (default: where it pays off: from 10,000 secrets, on SQLite in WAL mode only)')
    .option('--no-seal-ahead', 'keep the single pass: re-encrypt every secret with the server stopped');
}

/** Options of the commands that take a policy (plan, apply). */
export function withDeclared(cmd: Command, generationHelp: string): Command {
  return cmd
    .option('--generation <n>', generationHelp)
    .option('--policy-days <d>', 'rotation policy period in days (with --window-start)')
    .option('--window-start <iso>', 'start of the current policy window: rotate keys set before it');
}

export interface DeclaredOpts {
  generation?: string;
  policyDays?: string;
  windowStart?: string;
}

/** The declared generation and policy window. */
export function declared(o: DeclaredOpts): { targetGeneration?: number; windowStart?: Date; policyDays?: number } {
  return {
    targetGeneration: positiveInt('--generation', o.generation, 0),
    windowStart: parseInstant('--window-start', o.windowStart),
    policyDays: positiveInt('--policy-days', o.policyDays),
  };
}

/** How the CLI names the settings in its sentences (defined with the context builder, which sends it to other hosts). */
export { CLI_SPELLING };

/** `--host-key` values: a bare pin for every host, `host[:port]=pin` for one. */
function hostKeys(values: readonly string[]): { shared?: string; byHost: Array<{ host: string; port?: number; pin: string }> } {
  let shared: string | undefined;
  const byHost: Array<{ host: string; port?: number; pin: string }> = [];
  for (const v of values) {
    const m = /^([^=\s]+?)(?::(\d+))?=((?:SHA256:|ssh-|ecdsa-|sk-).*)$/.exec(v);
    if (m) byHost.push({ host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : undefined, pin: m[3] });
    else if (shared === undefined) shared = v;
    else throw new MasterKeyError('USAGE', 'Two --host-key values name no host; give them as host[:port]=SHA256:… for each host.');
  }
  return { shared, byHost };
}

/** `--bastion [user@]host[:port]`. */
function bastionOf(v: string | undefined): Pick<SshSettings, 'bastionHost' | 'bastionUser' | 'bastionPort'> {
  if (v === undefined) return {};
  const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s]+)(?::(\d+))?$/.exec(v);
  if (!m) throw new MasterKeyError('USAGE', `--bastion "${v}" is not [user@]host[:port]; e.g. --bastion jump@bastion.example.com:22.`);
  return { bastionHost: m[2].replace(/^\[|\]$/g, ''), ...(m[1] ? { bastionUser: m[1] } : {}), ...(m[3] ? { bastionPort: Number(m[3]) } : {}) };
}

/** The SSH settings the options declare: shared by every node, and per host for `--host-key host=…`. */
export function sshSettingsOf(o: SshOpts, configFiles: readonly string[]): Pick<InstallationSettings, 'ssh' | 'sshNodes'> {
  const keys = hostKeys(o.hostKey ?? []);
  const ssh: SshSettings = {
    knownHosts: o.knownHosts !== undefined ? resolve(o.knownHosts) : undefined,
    hostKey: keys.shared,
    privateKeyFile: o.privateKeyFile !== undefined ? resolve(o.privateKeyFile) : undefined,
    agent: o.sshAgent === false ? false : undefined,
    ...bastionOf(o.bastion),
    bastionHostKey: o.bastionHostKey,
    timeout: o.sshTimeout,
    remoteCommand: o.remoteCommand,
  };
  const sshNodes: SshNodeSettings[] = [];
  const unused = new Set(keys.byHost);
  for (const address of configFiles.filter(isSshAddress)) {
    const a = parseSshAddress(address);
    const k = keys.byHost.find((x) => x.host === a.host && (x.port === undefined || x.port === (a.port ?? 22)));
    if (k) {
      sshNodes.push({ address, hostKey: k.pin });
      unused.delete(k);
    }
  }
  if (unused.size) {
    const u = [...unused][0];
    throw new MasterKeyError('USAGE', `--host-key ${u.host}${u.port ? `:${u.port}` : ''}=… names a host no --config is on; check the host name and port.`);
  }
  return { ssh, ...(sshNodes.length ? { sshNodes } : {}) };
}

/** What the options declare (the config files default to ./act.env). */
export function settingsOf(o: CommonOpts): InstallationSettings {
  const batchSize = o.batchSize ? Number.parseInt(o.batchSize, 10) : undefined;
  if (batchSize !== undefined && !(batchSize > 0)) throw new MasterKeyError('USAGE', `--batch-size must be a positive whole number, got ${JSON.stringify(o.batchSize)}.`);
  return {
    configFiles: o.config.length ? o.config : [DEFAULT_CONFIG],
    configFormat: o.format,
    keyName: o.keyName,
    databaseUrl: o.databaseUrlEntry ? { entry: o.databaseUrlEntry } : o.databaseUrlEnv ? { env: o.databaseUrlEnv } : undefined,
    inventory: o.inventory,
    pendingFile: o.pendingFile,
    backupDir: o.backupDir,
    reportDir: o.reportDir,
    hooks: { stop: o.stopCommand, start: o.startCommand, health: o.healthCommand },
    batchSize,
    backupRecipients: o.backupRecipient,
    backupRecipientsFile: o.backupRecipientsFile,
    ...sshSettingsOf(o, o.config.length ? o.config : [DEFAULT_CONFIG]),
    localReportDir: o.localReportDir,
    lockTimeoutMs: o.lockTimeout !== undefined ? parseLockTimeout(o.lockTimeout, '--lock-timeout') : undefined,
    ...(o.sealAhead !== undefined ? { sealAhead: o.sealAhead } : {}),
  };
}

/** The surface a command runs with: its environment, its log (stderr under --json), a progress bar on a terminal. */
export function cliSurface(o: { json?: boolean }, io: Io): Surface {
  const log = (line: string) => (o.json ? io.err : io.out)(line + '\n');
  return { env: io.env, log, progress: terminalProgress(!o.json), spelling: CLI_SPELLING };
}

/** Resolves the options once into the context a command runs with (`buildContext`, which the provider shares). */
export function makeContext(o: CommonOpts, io: Io): Context {
  return buildContext(settingsOf(o), cliSurface(o, io));
}

/** Runs fn on the installation the options describe (here, or over SSH on the hosts of its nodes), closing it after. */
export function onInstallation<T>(o: CommonOpts, io: Io, fn: (i: Installation) => Promise<T>): Promise<T> {
  return withInstallation(settingsOf(o), cliSurface(o, io), fn);
}

/** Where a key comes from: one of a file, standard input or an environment variable; else generated. */
export function newKeySource(o: { newKeyFile?: string; newKeyStdin?: boolean; newKeyEnv?: string; keyFile?: string; keyStdin?: boolean; keyEnv?: string }): NewKeySource {
  const file = o.newKeyFile ?? o.keyFile;
  const stdin = o.newKeyStdin ?? o.keyStdin;
  const env = o.newKeyEnv ?? o.keyEnv;
  const given = [file !== undefined, !!stdin, env !== undefined].filter(Boolean).length;
  if (given > 1) throw new MasterKeyError('USAGE', 'Give the key one way only: a file, standard input or an environment variable.');
  if (file !== undefined) return { kind: 'file', path: resolve(file) };
  if (stdin) return { kind: 'stdin' };
  if (env !== undefined) return { kind: 'env', name: env };
  return { kind: 'generate' };
}

export function positiveInt(name: string, v: string | undefined, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new MasterKeyError('USAGE', `${name} must be a whole number of at least ${min}, got ${JSON.stringify(v)}.`);
  return Number(v);
}

function parseInstant(name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new MasterKeyError('USAGE', `${name} must be an ISO-8601 date and time such as 2026-01-01T00:00:00Z, got ${JSON.stringify(v)}.`);
  return d;
}

/** Prints `value` as JSON with --json, else the human text (if any). */
export function emit(io: Io, json: boolean | undefined, value: unknown, human: string): void {
  if (json) io.out(JSON.stringify(value, null, 2) + '\n');
  else if (human) io.out(human + '\n');
}
