/** `master-key apply`: rotate (the runbook in `src/rotation/phases.ts`) and print the outcome. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { ExitCode, ExitCodeValue, MasterKeyError } from '../../errors';
import { NodeOutcome } from '../../context/installation';
import { isSshAddress } from '../../remote/address';
import { PLAN_FORMAT, RotationPlan } from '../../rotation/plan';
import { count } from '../../format';
import { summaryLine } from '../../rotation/report';
import { parseRetention } from '../../rotation/retention';
import { CliCommand, CommonOpts, DeclaredOpts, Io, declared, emit, newKeySource, onInstallation, withCommon, withDeclared, withBatchSize, withDirs, withHooks, withSealAhead } from '../options';

export interface ApplyCliOptions extends CommonOpts, DeclaredOpts {
  newKeyFile?: string;
  newKeyStdin?: boolean;
  newKeyEnv?: string;
  newKeyOut?: string;
  plan?: string;
  backupRetention?: string;
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
      withSealAhead(withBatchSize(withHooks(withDirs(withCommon(program.command('apply').description('rotate: preflight, backup, re-encrypt in one transaction, config update, verify, report')))))),
      'declared generation: rotate only when the database is below it (idempotent)',
    )
      .option('--new-key-file <path>', 'read the new key from this file (default: generate one)')
      .option('--new-key-stdin', 'read the new key from standard input')
      .option('--new-key-env <NAME>', 'read the new key from this environment variable')
      .option('--new-key-out <path>', 'also write the new key to this file (created 0600)')
      .option('--plan <file>', 'refuse unless this saved plan (from `plan --out`) still matches')
      .option('--backup-retention <keep N|age>', 'after a verified rotation, retire the backups beyond this: "keep N" (the newest N) or an age such as 30d'),

  async run(o: ApplyCliOptions, io: Io): Promise<ExitCodeValue> {
    const savedPlan = o.plan ? readSavedPlan(o.plan) : undefined;
    const retention = o.backupRetention !== undefined ? parseRetention(o.backupRetention, '--backup-retention') : undefined;
    const remote = o.config.some(isSshAddress);
    const opts = { ...declared(o), newKey: newKeySource(o), newKeyOut: o.newKeyOut ? (remote ? o.newKeyOut : resolve(o.newKeyOut)) : undefined, savedPlan, retention };
    const r = await onInstallation(o, io, (inst) => inst.apply(opts));
    const missed = (r.nodes ?? []).filter((n) => n.setBy === 'not set');
    const nodes = r.nodes ? { nodes: r.nodes, nodesInSync: missed.length === 0 } : {};
    if (r.action === 'none') {
      emit(io, o.json, { ok: true, action: 'none', reason: r.plan.reason, fingerprint: r.plan.oldFingerprint, generation: r.plan.fromGeneration, ...nodes }, missed.map(notSet).join('\n'));
      return missed.length ? ExitCode.NODE_MISMATCH : ExitCode.OK;
    }
    const rep = r.report;
    emit(
      io,
      o.json,
      { ok: true, action: 'rotated', report: rep, reportFiles: r.reportFiles, ...(r.localReportFiles ? { localReportFiles: r.localReportFiles } : {}), ...nodes },
      [
        '',
        `Rotation complete: ${rep.oldFingerprint} -> ${rep.newFingerprint} (generation ${rep.fromGeneration} -> ${rep.toGeneration}).`,
        summaryLine(rep),
        ...Object.entries(rep.byKind).map(([k, v]) => `  ${k.padEnd(34)} ${count(v).padStart(10)}`),
        `Verification: ${rep.verification.proved}`,
        ...(r.nodes ?? []).map((n) => `Node ${n.address} (${n.host}): ${n.setBy === 'not set' ? `NOT SET: ${n.error}` : `${n.after} (${n.setBy === 'rotation' ? 'by the rotation' : n.setBy === 'set' ? 'by master-key set there' : 'already held it'})`}`),
        `Server down: ${count(rep.timing.serverDownMs)} ms of ${count(rep.timing.totalMs)} ms (stop hook to start hooks).`,
        `Backup: ${rep.backup.path}${r.localReportFiles ? ' (on the primary node\'s host)' : ''} (manifest sha256 ${rep.backup.manifestSha256})`,
        `Report: ${r.reportFiles.markdown}${r.localReportFiles ? ` (on the primary node's host; copy here: ${r.localReportFiles.markdown})` : ''}`,
        ...missed.map(notSet),
        'Back up the new master key now.',
      ].join('\n'),
    );
    return missed.length ? ExitCode.NODE_MISMATCH : ExitCode.OK;
  },
} satisfies CliCommand;

/** The line for a node that did not get the key: what to run once its host is back. */
function notSet(n: NodeOutcome): string {
  return `OUT OF STEP: ${n.address} was not set (${n.error}); once its host is reachable run \`master-key set --config ${n.address} --key-stdin\` with the database's key, or \`master-key apply\` again.`;
}
