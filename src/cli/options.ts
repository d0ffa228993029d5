/**
 * What every command shares: its output sinks (`Io`), the options common to
 * commands that reach the database, and turning them into a `Context`.
 * Key material is never accepted on argv.
 */
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CONFIG_FORMATS, ConfigFormat } from '../config/formats';
import { InstallationSettings, Spelling, buildContext } from '../context/build';
import { ExitCodeValue, MasterKeyError } from '../errors';
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

export interface CommonOpts {
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
  sealAhead?: boolean;
  json?: boolean;
}

export const collect = (v: string, prev: string[]) => [...prev, v];

/** The config file when no --config is given. */
export const DEFAULT_CONFIG = './act.env';

/** Options of every command that reaches the database. */
export function withCommon(cmd: Command): Command {
  return cmd
    .addOption(configOption('config file holding the master key; repeat once per server node (the first is the primary)'))
    .addOption(new Option('--format <format>', 'config file format (default: from the extension: .json, .xml/.config, else dotenv)').choices(CONFIG_FORMATS as string[]))
    .option('--key-name <entry>', 'config entry holding the key: dotenv variable, JSON dotted path or XML key', 'ACT_MASTER_KEY')
    .option('--database-url-env <NAME>', 'environment variable holding the database URL (default: DATABASE_URL, unless the ACT preset finds ACT_DATABASE_URL in the primary config)')
    .option('--database-url-entry <entry>', 'read the database URL from this entry of the primary config file instead (default with --inventory act: ACT_DATABASE_URL when the file holds it)')
    .option('--inventory <act|file>', 'secret inventory: the built-in ACT preset or an inventory JSON file', 'act')
    .option('--pending-file <path>', "the rotation's pending-key file (default: .<config name>.mk-pending beside the primary config)")
    .option('--json', 'print stable JSON on stdout (human text goes to stderr)');
}

/** The config file option: repeatable, `./act.env` when not given (shown as such in --help). */
export function configOption(help: string): Option {
  return new Option('--config <path>', help).argParser(collect).default([], DEFAULT_CONFIG);
}

/** Where backups and reports go (plan, apply). */
export function withDirs(cmd: Command): Command {
  return cmd
    .option('--backup-dir <dir>', 'where backups go (default: master-key-backups beside the primary config)')
    .option('--report-dir <dir>', 'where reports go (default: master-key-reports beside the primary config)');
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
    .option('--seal-ahead', 'seal every secret under the new key while the server runs, then stop it only to swap them in (default: where it pays off: PostgreSQL from 10,000 secrets)')
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

/** How the CLI names the settings in its sentences. */
export const CLI_SPELLING: Spelling = {
  databaseUrlEnv: (name) => (name ? `--database-url-env ${name}` : '--database-url-env'),
  databaseUrlEntry: (name) => (name ? `--database-url-entry ${name}` : '--database-url-entry'),
  exportWhere: '',
};

/** What the options declare (the config files default to ./act.env). */
export function settingsOf(o: CommonOpts): InstallationSettings {
  const batchSize = o.batchSize ? Number.parseInt(o.batchSize, 10) : undefined;
  if (batchSize !== undefined && !(batchSize > 0)) throw new MasterKeyError('USAGE', `--batch-size must be a positive whole number, got "${o.batchSize}".`);
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
    ...(o.sealAhead !== undefined ? { sealAhead: o.sealAhead } : {}),
  };
}

/** Resolves the options once into what the engine needs (`buildContext`, which the provider shares). */
export function makeContext(o: CommonOpts, io: Io): Context {
  const log = (line: string) => (o.json ? io.err : io.out)(line + '\n');
  return buildContext(settingsOf(o), { env: io.env, log, progress: terminalProgress(!o.json), spelling: CLI_SPELLING });
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
  if (!/^\d+$/.test(v) || Number(v) < min) throw new MasterKeyError('USAGE', `${name} must be a whole number of at least ${min}, got "${v}".`);
  return Number(v);
}

function parseInstant(name: string, v: string | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new MasterKeyError('USAGE', `${name} must be an ISO-8601 date and time such as 2026-01-01T00:00:00Z, got "${v}".`);
  return d;
}

/** Prints `value` as JSON with --json, else the human text (if any). */
export function emit(io: Io, json: boolean | undefined, value: unknown, human: string): void {
  if (json) io.out(JSON.stringify(value, null, 2) + '\n');
  else if (human) io.out(human + '\n');
}
