/** `master-key apply`: rotate (the runbook in `src/rotation/phases.ts`) and print the outcome. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { ExitCode, ExitCodeValue, MasterKeyError } from '../../errors';
import { runApply } from '../../rotation/phases';
import { RotationPlan } from '../../rotation/plan';
import { count } from '../../format';
import { summaryLine } from '../../rotation/report';
import { CliCommand, CommonOpts, DeclaredOpts, Io, declared, emit, makeContext, newKeySource, withCommon, withDeclared, withBatchSize, withDirs, withHooks, withSealAhead } from '../options';

export interface ApplyCliOptions extends CommonOpts, DeclaredOpts {
  newKeyFile?: string;
  newKeyStdin?: boolean;
  newKeyEnv?: string;
  newKeyOut?: string;
  plan?: string;
}

function readSavedPlan(path: string): RotationPlan {
  try {
    return JSON.parse(readFileSync(resolve(path), 'utf8')) as RotationPlan;
  } catch (e) {
    throw new MasterKeyError('USAGE', `Cannot read the saved plan ${path} (${(e as NodeJS.ErrnoException).code ?? 'not JSON'}); pass a file written by \`master-key plan --out\`.`);
  }
}

export const apply = {
  define: (program: Command) =>
    withDeclared(
      withSealAhead(withBatchSize(withHooks(withDirs(withCommon(program.command('apply').description('rotate: preflight, backup, re-encrypt in one transaction, config update, verify, report')))))),
      'declared generation: rotate only when the database is below it (idempotent)',
    )
      .option('--new-key-file <path>', 'read the new key from this file (default: generate one)')
      .option('--new-key-stdin', 'read the new key from standard input')
      .option('--new-key-env <NAME>', 'read the new key from this environment variable')
      .option('--new-key-out <path>', 'also write the new key to this file (created 0600)')
      .option('--plan <file>', 'refuse unless this saved plan (from `plan --out`) still matches'),

  async run(o: ApplyCliOptions, io: Io): Promise<ExitCodeValue> {
    const ctx = makeContext(o, io);
    const savedPlan = o.plan ? readSavedPlan(o.plan) : undefined;
    const r = await runApply(ctx, { ...declared(o), newKey: newKeySource(o), newKeyOut: o.newKeyOut ? resolve(o.newKeyOut) : undefined, savedPlan });
    if (r.action === 'none') {
      emit(io, o.json, { ok: true, action: 'none', reason: r.plan.reason, fingerprint: r.plan.oldFingerprint, generation: r.plan.fromGeneration }, '');
      return ExitCode.OK;
    }
    const rep = r.report;
    emit(
      io,
      o.json,
      { ok: true, action: 'rotated', report: rep, reportFiles: r.reportFiles },
      [
        '',
        `Rotation complete: ${rep.oldFingerprint} -> ${rep.newFingerprint} (generation ${rep.fromGeneration} -> ${rep.toGeneration}).`,
        summaryLine(rep),
        ...Object.entries(rep.byKind).map(([k, v]) => `  ${k.padEnd(34)} ${count(v).padStart(10)}`),
        `Verification: ${rep.verification.proved}`,
        `Server down: ${count(rep.timing.serverDownMs)} ms of ${count(rep.timing.totalMs)} ms (stop hook to start hooks).`,
        `Backup: ${rep.backup.path} (manifest sha256 ${rep.backup.manifestSha256})`,
        `Report: ${r.reportFiles.markdown}`,
        'Back up the new master key now.',
      ].join('\n'),
    );
    return ExitCode.OK;
  },
} satisfies CliCommand;
