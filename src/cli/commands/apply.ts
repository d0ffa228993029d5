/** `master-key apply`: rotate (the runbook in `src/rotation/phases.ts`) and print the outcome. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { ExitCode, ExitCodeValue, MasterKeyError } from '../../errors';
import { runApply } from '../../rotation/phases';
import { PLAN_FORMAT, RotationPlan } from '../../rotation/plan';
import { count } from '../../format';
import { summaryLine } from '../../rotation/report';
import { CliCommand, CommonOpts, DeclaredOpts, Io, declared, emit, makeContext, newKeySource, withCommon, withDeclared, withBatchSize, withDirs, withHooks } from '../options';

export interface ApplyCliOptions extends CommonOpts, DeclaredOpts {
  newKeyFile?: string;
  newKeyStdin?: boolean;
  newKeyEnv?: string;
  newKeyOut?: string;
  plan?: string;
}

/** A plan saved by `plan --out`: only its digest and time are used, so only they are checked (USAGE otherwise). */
export function readSavedPlan(path: string): RotationPlan {
  let plan: Partial<RotationPlan> | null;
  try {
    plan = JSON.parse(readFileSync(resolve(path), 'utf8')) as Partial<RotationPlan> | null;
  } catch (e) {
    throw new MasterKeyError('USAGE', `Cannot read the saved plan ${path} (${(e as NodeJS.ErrnoException).code ?? 'not JSON'}); pass a file written by \`master-key plan --out\`.`);
  }
  const at = plan?.createdAt;
  const instant = typeof at === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(at) && !Number.isNaN(Date.parse(at));
  if (plan?.format !== PLAN_FORMAT || typeof plan.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(plan.digest) || !instant) {
    throw new MasterKeyError('USAGE', `The saved plan ${path} is not a plan of this version of cdktf-master-key (no format, digest or creation time as \`master-key plan --out\` writes them); run \`master-key plan --out\` again.`);
  }
  return plan as RotationPlan;
}

export const apply = {
  define: (program: Command) =>
    withDeclared(
      withBatchSize(withHooks(withDirs(withCommon(program.command('apply').description('rotate: preflight, backup, re-encrypt in one transaction, config update, verify, report'))))),
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
