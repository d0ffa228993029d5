/**
 * `master-key`'s commands: parses the options, runs one command
 * (`./commands/<name>.ts`), and returns the code it returns, or the
 * documented code of the error it throws (one line on stderr, and
 * `{"ok": false, ...}` on stdout with --json). The entry point is
 * `./main.ts`.
 */
import { Command, CommanderError } from 'commander';
import { ExitCode, MasterKeyError, isMasterKeyError } from '../errors';
import { apply } from './commands/apply';
import { init } from './commands/init';
import { plan } from './commands/plan';
import { recover } from './commands/recover';
import { remote } from './commands/remote';
import { restore } from './commands/restore';
import { retire } from './commands/retire';
import { set } from './commands/set';
import { show } from './commands/show';
import { status } from './commands/status';
import { verify } from './commands/verify';
import { CliCommand, Io } from './options';
import { providerInstall, providerPackage } from '../provider/command';
import { aesGcmEngineDescription } from '../crypto/gcm-batch';
import { packageVersion } from '../version';

const COMMANDS: readonly CliCommand[] = [init, plan, apply, status, verify, show, set, recover, restore, retire, providerInstall, providerPackage, remote];

/** This package's version (from its package.json, found above this file in src/ or dist/). */
const version = (): string => packageVersion() ?? 'unknown';

/**
 * What `master-key --version` prints: the version, then which AES-GCM
 * implementation runs here ("OpenSSL batch addon" or "node:crypto", with why).
 */
export function versionText(): string {
  return `${version()}\nAES-GCM: ${aesGcmEngineDescription()}`;
}

/** The parser; the command that runs reports its exit code through `exit`. */
function program(io: Io, exit: (code: number) => void, argv: readonly string[]): Command {
  const prog = new Command('master-key')
    .description("Rotate the master key that seals secrets in a PostgreSQL or SQLite database, crash-safely, with a plan and an auditor's report.")
    // The AES-GCM implementation is looked up (the addon loaded) only when the version is asked for.
    .version(argv.includes('--version') || argv.includes('-V') ? versionText() : version())
    // Parse errors are reported like every other error (one line, `--json`), by `main`.
    .configureOutput({ outputError: () => undefined })
    .addHelpText('after', '\nKeys are never read from arguments: use files, standard input or environment variables.\nExit codes: see docs/cli.md ("Exit codes").');
  prog.exitOverride();
  for (const cmd of COMMANDS) cmd.define(prog).action(async (o: object) => exit(await cmd.run(o, io)));
  return prog;
}

const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
};

/** A parse error as one sentence saying what to do (commander's own text, e.g. "error: unknown option '--x'"). */
function usageError(e: CommanderError, argv: readonly string[], prog: Command): MasterKeyError {
  const what = e.message.replace(/^error: /, '').replace(/\.$/, '');
  const cmd = prog.commands.some((c) => c.name() === argv[0]) ? ` ${argv[0]}` : '';
  return new MasterKeyError('USAGE', `${what[0].toUpperCase()}${what.slice(1)}; run \`master-key${cmd} --help\` for usage.`);
}

/**
 * `plan --detailed-exitcode` exits as terraform's does: 0 nothing to do, 2
 * changes, 1 on any error (the specific code stays in the message and in
 * `--json`).
 */
function detailedExitcode(argv: readonly string[]): boolean {
  return argv[0] === 'plan' && argv.includes('--detailed-exitcode');
}

/** Runs the command line `argv` (without node and the script); resolves to the process exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let exitCode: number = ExitCode.OK;
  const prog = program(io, (code) => (exitCode = code), argv);
  try {
    await prog.parseAsync(argv, { from: 'user' });
    return detailedExitcode(argv) && exitCode !== ExitCode.OK && exitCode !== ExitCode.CHANGES ? ExitCode.INTERNAL : exitCode;
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help')) return ExitCode.OK;
    const err = e instanceof CommanderError ? usageError(e, argv, prog) : isMasterKeyError(e) ? e : new MasterKeyError('INTERNAL', `Internal error: ${(e as Error)?.message ?? String(e)}; please report it.`);
    io.err(`master-key: ${err.message} [${err.code}]\n`);
    if (argv.includes('--json')) io.out(JSON.stringify({ ok: false, error: { code: err.code, exitCode: err.exitCode, message: err.message, ...err.details } }, null, 2) + '\n');
    if (err.code === 'INTERNAL' && io.env.MASTER_KEY_DEBUG) io.err(String((e as Error).stack) + '\n');
    return detailedExitcode(argv) ? ExitCode.INTERNAL : err.exitCode;
  }
}
