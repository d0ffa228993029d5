#!/usr/bin/env node
/**
 * `master-key`: the command line. Parses options into a Context, runs one
 * engine command, prints human text (or stable JSON with --json) and exits
 * with a documented code. Key material is never accepted on argv.
 */
import { resolve, dirname, join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { CONFIG_FORMATS, ConfigFormat } from '../config/formats';
import { configTarget, readConfigEntry } from '../config/config-file';
import { ExitCode, MasterKeyError, isMasterKeyError } from '../errors';
import { loadInventory } from '../inventory/inventory';
import { Context, NewKeySource } from '../rotation/context';
import { parseDuration } from '../rotation/decide';
import { FaultPoints } from '../rotation/faults';
import { runInit } from '../rotation/init';
import { runSet, runShow } from '../rotation/keys';
import { defaultPendingPath } from '../rotation/pending';
import { runApply } from '../rotation/phases';
import { renderPlan, RotationPlan } from '../rotation/plan';
import { runPlan } from '../rotation/preflight';
import { runRecover } from '../rotation/recover';
import { runRestore } from '../rotation/restore';
import { renderStatus, runStatus } from '../rotation/status';
import { summaryLine } from '../rotation/report';
import { runVerify } from '../rotation/verify';
import { atomicWriteFile } from '../fsutil';
import { terminalProgress } from './progress';

interface CommonOpts {
  config: string[];
  format?: ConfigFormat;
  keyName: string;
  databaseUrlEnv: string;
  databaseUrlEntry?: string;
  inventory: string;
  pendingFile?: string;
  backupDir?: string;
  reportDir?: string;
  stopCommand?: string;
  startCommand?: string;
  healthCommand?: string;
  batchSize?: string;
  json?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

function withCommon(cmd: Command): Command {
  return cmd
    .option('--config <path>', 'config file holding the master key; repeat once per server node (the first is the primary)', collect, [])
    .addOption(new Option('--format <format>', 'config file format (default: from the extension: .json, .xml/.config, else dotenv)').choices(CONFIG_FORMATS as string[]))
    .option('--key-name <entry>', 'config entry holding the key: dotenv variable, JSON dotted path or XML key', 'ACT_MASTER_KEY')
    .option('--database-url-env <NAME>', 'environment variable holding the database URL', 'DATABASE_URL')
    .option('--database-url-entry <entry>', 'read the database URL from this entry of the primary config file instead')
    .option('--inventory <act|file>', 'secret inventory: the built-in ACT preset or an inventory JSON file', 'act')
    .option('--pending-file <path>', "the rotation's pending-key file (default: .<config name>.mk-pending beside the primary config)")
    .option('--json', 'print stable JSON on stdout (human text goes to stderr)');
}

function withRotationDirs(cmd: Command): Command {
  return cmd
    .option('--backup-dir <dir>', 'where backups go (default: master-key-backups beside the primary config)')
    .option('--report-dir <dir>', 'where reports go (default: master-key-reports beside the primary config)')
    .option('--stop-command <cmd>', 'shell command that stops the server before re-encryption')
    .option('--start-command <cmd>', 'shell command that starts the server after the config files are updated')
    .option('--health-command <cmd>', 'shell command that checks the server after it started')
    .option('--batch-size <n>', 'rows per batch (tuning)');
}

function makeContext(o: CommonOpts, logToStderr: boolean): Context {
  const paths = o.config.length ? o.config : ['act.env'];
  const targets = paths.map((p) => configTarget(p, o.keyName, o.format));
  const primary = targets[0].path;
  let databaseUrl: string;
  if (o.databaseUrlEntry) {
    databaseUrl = readConfigEntry(targets[0], o.databaseUrlEntry);
  } else {
    databaseUrl = process.env[o.databaseUrlEnv] ?? '';
    if (!databaseUrl) {
      throw new MasterKeyError('USAGE', `The environment variable ${o.databaseUrlEnv} is not set; export the database URL in it (or name another with --database-url-env, or use --database-url-entry).`);
    }
  }
  const log = (line: string) => (logToStderr ? process.stderr : process.stdout).write(line + '\n');
  const batchSize = o.batchSize ? Number.parseInt(o.batchSize, 10) : undefined;
  if (batchSize !== undefined && !(batchSize > 0)) throw new MasterKeyError('USAGE', `--batch-size must be a positive whole number, got "${o.batchSize}".`);
  return {
    targets,
    databaseUrl,
    inventory: loadInventory(o.inventory),
    pendingPath: o.pendingFile ? resolve(o.pendingFile) : defaultPendingPath(primary),
    backupDir: resolve(o.backupDir ?? join(dirname(primary), 'master-key-backups')),
    reportDir: resolve(o.reportDir ?? join(dirname(primary), 'master-key-reports')),
    hooks: { stop: o.stopCommand, start: o.startCommand, health: o.healthCommand },
    log,
    progress: terminalProgress(!o.json),
    faults: new FaultPoints(process.env.MASTER_KEY_TEST_KILL_AT),
    now: () => new Date(),
    batchSize,
  };
}

function newKeySource(o: { newKeyFile?: string; newKeyStdin?: boolean; newKeyEnv?: string; keyFile?: string; keyStdin?: boolean; keyEnv?: string }): NewKeySource {
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

function positiveInt(name: string, v: string | undefined, min = 1): number | undefined {
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

function emit(json: boolean | undefined, value: unknown, human: string): void {
  if (json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
  else if (human) process.stdout.write(human + '\n');
}

let exitCode: number = ExitCode.OK;

/** This package's version (from its package.json, found above this file in src/ or dist/). */
function packageVersion(): string {
  for (let d = __dirname; d !== dirname(d); d = dirname(d)) {
    const p = join(d, 'package.json');
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

function program(): Command {
  const prog = new Command('master-key')
    .description('Rotate the master key that seals secrets in a PostgreSQL database, crash-safely, with a plan and an auditor\'s report.')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', '\nKeys are never read from arguments: use files, standard input or environment variables.\nExit codes: see the README ("Exit codes").');
  prog.exitOverride();

  withCommon(prog.command('init').description('create the integrity canary and rotation history for the configured key'))
    .option('--generation <n>', 'generation of the current key', '1')
    .option('--create-act-schema', 'also create the tables of the built-in ACT preset (if missing)')
    .action(async (o: CommonOpts & { generation: string; createActSchema?: boolean }) => {
      const ctx = makeContext(o, !!o.json);
      const r = await runInit(ctx, { generation: positiveInt('--generation', o.generation)!, createActSchema: !!o.createActSchema });
      emit(o.json, { ok: true, ...r }, '');
    });

  const planCmd = withRotationDirs(withCommon(prog.command('plan').description('dry run: show everything apply would do; writes nothing')))
    .option('--generation <n>', 'declared generation: rotate only when the database is below it')
    .option('--policy-days <d>', 'rotation policy period in days (with --window-start)')
    .option('--window-start <iso>', 'start of the current policy window: rotate keys set before it')
    .option('--detailed-exitcode', 'exit 0 when there is nothing to do, 2 when a rotation is pending, 1 on error (as terraform)')
    .option('--out <file>', 'save the plan (JSON) for `apply --plan <file>`');
  planCmd.action(async (o: CommonOpts & { generation?: string; policyDays?: string; windowStart?: string; detailedExitcode?: boolean; out?: string }) => {
    const ctx = makeContext(o, !!o.json);
    const plan = await runPlan(ctx, {
      targetGeneration: positiveInt('--generation', o.generation, 0),
      windowStart: parseInstant('--window-start', o.windowStart),
      policyDays: positiveInt('--policy-days', o.policyDays),
    });
    if (o.out) {
      atomicWriteFile(resolve(o.out), JSON.stringify(plan, null, 2) + '\n', { mode: 0o600 });
    }
    emit(o.json, plan, renderPlan(plan));
    if (plan.blockers.length) exitCode = plan.undecryptable.count ? ExitCode.UNDECRYPTABLE : ExitCode.FILES;
    else if (o.detailedExitcode && plan.action !== 'none') exitCode = ExitCode.CHANGES;
  });

  withRotationDirs(withCommon(prog.command('apply').description('rotate: preflight, backup, re-encrypt in one transaction, config update, verify, report')))
    .option('--generation <n>', 'declared generation: rotate only when the database is below it (idempotent)')
    .option('--policy-days <d>', 'rotation policy period in days (with --window-start)')
    .option('--window-start <iso>', 'start of the current policy window: rotate keys set before it')
    .option('--new-key-file <path>', 'read the new key from this file (default: generate one)')
    .option('--new-key-stdin', 'read the new key from standard input')
    .option('--new-key-env <NAME>', 'read the new key from this environment variable')
    .option('--new-key-out <path>', 'also write the new key to this file (created 0600)')
    .option('--plan <file>', 'refuse unless this saved plan (from `plan --out`) still matches')
    .action(async (o: CommonOpts & { generation?: string; policyDays?: string; windowStart?: string; newKeyFile?: string; newKeyStdin?: boolean; newKeyEnv?: string; newKeyOut?: string; plan?: string }) => {
      const ctx = makeContext(o, !!o.json);
      let savedPlan: RotationPlan | undefined;
      if (o.plan) {
        try {
          savedPlan = JSON.parse(readFileSync(resolve(o.plan), 'utf8')) as RotationPlan;
        } catch (e) {
          throw new MasterKeyError('USAGE', `Cannot read the saved plan ${o.plan} (${(e as NodeJS.ErrnoException).code ?? 'not JSON'}); pass a file written by \`master-key plan --out\`.`);
        }
      }
      const r = await runApply(ctx, {
        targetGeneration: positiveInt('--generation', o.generation, 0),
        windowStart: parseInstant('--window-start', o.windowStart),
        policyDays: positiveInt('--policy-days', o.policyDays),
        newKey: newKeySource(o),
        newKeyOut: o.newKeyOut ? resolve(o.newKeyOut) : undefined,
        savedPlan,
      });
      if (r.action === 'none') {
        emit(o.json, { ok: true, action: 'none', reason: r.plan.reason, fingerprint: r.plan.oldFingerprint, generation: r.plan.fromGeneration }, '');
        return;
      }
      const rep = r.report;
      emit(
        o.json,
        { ok: true, action: 'rotated', report: rep, reportFiles: r.reportFiles },
        [
          '',
          `Rotation complete: ${rep.oldFingerprint} -> ${rep.newFingerprint} (generation ${rep.fromGeneration} -> ${rep.toGeneration}).`,
          summaryLine(rep),
          ...Object.entries(rep.byKind).map(([k, v]) => `  ${k.padEnd(34)} ${String(v).padStart(10)}`),
          `Verification: ${rep.verification.checked} secrets open with the new key, ${rep.verification.failures} fail; the old key opens ${rep.verification.openWithOldKey}.`,
          `Backup: ${rep.backup.path} (manifest sha256 ${rep.backup.manifestSha256})`,
          `Report: ${r.reportFiles.markdown}`,
          'Back up the new master key now.',
        ].join('\n'),
      );
    });

  withCommon(prog.command('status').description('current fingerprint, generation, key age vs policy, every node, interrupted rotations'))
    .option('--max-age <age>', 'exit 11 when the key is older than this (e.g. 90d, 12w, 1y)')
    .action(async (o: CommonOpts & { maxAge?: string }) => {
      const ctx = makeContext(o, !!o.json);
      let maxAgeMs: number | undefined;
      if (o.maxAge !== undefined) {
        maxAgeMs = parseDuration(o.maxAge);
        if (maxAgeMs === undefined) throw new MasterKeyError('USAGE', `--max-age must look like 365d, 12w, 48h or 1y, got "${o.maxAge}".`);
      }
      const s = await runStatus(ctx, { maxAgeMs });
      emit(o.json, s, renderStatus(s));
      exitCode = s.exitCode;
    });

  withCommon(prog.command('verify').description('open every secret with the configured key and report failures')).action(async (o: CommonOpts) => {
    const ctx = makeContext(o, !!o.json);
    const r = await runVerify(ctx);
    const ok = r.scan.failureCount === 0;
    emit(
      o.json,
      { ok, fingerprint: r.fingerprint, checked: r.scan.total, byKind: r.scan.byKind, failures: r.scan.failures, failureCount: r.scan.failureCount },
      [
        `${ok ? 'OK' : 'FAILED'}: ${r.scan.total - r.scan.failureCount} of ${r.scan.total} secrets open with ${r.fingerprint}.`,
        ...r.scan.failures.map((f) => `  ${f.table}.${f.column}${f.path ? `#${f.path}` : ''} id=${f.id} (${f.kind}): ${f.code}`),
      ].join('\n'),
    );
    if (!ok) exitCode = ExitCode.UNDECRYPTABLE;
  });

  prog
    .command('show')
    .description("print the configured key's fingerprint (the key itself only with --reveal)")
    .option('--config <path>', 'config file holding the master key', collect, [])
    .addOption(new Option('--format <format>', 'config file format').choices(CONFIG_FORMATS as string[]))
    .option('--key-name <entry>', 'config entry holding the key', 'ACT_MASTER_KEY')
    .option('--reveal', 'print the key itself (64 hex characters) on stdout')
    .option('--json', 'print JSON')
    .action((o: { config: string[]; format?: ConfigFormat; keyName: string; reveal?: boolean; json?: boolean }) => {
      const targets = (o.config.length ? o.config : ['act.env']).map((p) => configTarget(p, o.keyName, o.format));
      const r = runShow({ targets }, !!o.reveal);
      emit(o.json, r, r.key ?? r.fingerprint);
    });

  withCommon(prog.command('set').description("write a key into another node's config file, only if it opens the database's canary"))
    .option('--key-file <path>', 'read the key from this file')
    .option('--key-stdin', 'read the key from standard input')
    .option('--key-env <NAME>', 'read the key from this environment variable')
    .action(async (o: CommonOpts & { keyFile?: string; keyStdin?: boolean; keyEnv?: string }) => {
      if (o.config.length !== 1) throw new MasterKeyError('USAGE', "Name exactly one node's config file with --config.");
      const ctx = makeContext(o, !!o.json);
      const r = await runSet(ctx, ctx.targets[0], newKeySource(o));
      emit(o.json, { ok: true, ...r }, '');
    });

  withRotationDirs(withCommon(prog.command('recover').description('finish or undo an interrupted rotation'))).action(async (o: CommonOpts) => {
    const ctx = makeContext(o, !!o.json);
    const r = await runRecover(ctx);
    emit(o.json, { ok: true, ...r }, '');
  });

  withCommon(prog.command('restore').description('put a backup back: stored values, canary and config files'))
    .requiredOption('--backup <dir>', 'backup directory printed by apply')
    .action(async (o: CommonOpts & { backup: string }) => {
      const ctx = makeContext(o, !!o.json);
      const r = await runRestore(ctx, resolve(o.backup));
      emit(o.json, { ok: true, ...r }, '');
    });

  return prog;
}

export async function main(argv: string[]): Promise<number> {
  exitCode = ExitCode.OK;
  const json = argv.includes('--json');
  try {
    await program().parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return ExitCode.OK;
      return ExitCode.USAGE;
    }
    const err = isMasterKeyError(e) ? e : new MasterKeyError('INTERNAL', `Internal error: ${(e as Error)?.message ?? String(e)}; please report it.`);
    process.stderr.write(`master-key: ${err.message} [${err.code}]\n`);
    if (json) process.stdout.write(JSON.stringify({ ok: false, error: { code: err.code, exitCode: err.exitCode, message: err.message, ...err.details } }, null, 2) + '\n');
    if (err.code === 'INTERNAL' && process.env.MASTER_KEY_DEBUG) process.stderr.write(String((e as Error).stack) + '\n');
    return err.exitCode;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = ExitCode.INTERNAL;
    },
  );
}
