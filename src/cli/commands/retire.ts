/** `master-key retire`: remove the backups (and the old keys they hold) beyond a retention, each recorded in the rotation history. */
import { Command } from 'commander';
import { ExitCode, ExitCodeValue, MasterKeyError } from '../../errors';
import { Retention, keepRetention, parseRetention } from '../../rotation/retention';
import { CliCommand, CommonOpts, Io, emit, onInstallation, positiveInt, withBackupDir, withCommon } from '../options';

export interface RetireOptions extends CommonOpts {
  keep?: string;
  olderThan?: string;
}

function retentionOf(o: RetireOptions): Retention {
  if ((o.keep === undefined) === (o.olderThan === undefined)) throw new MasterKeyError('USAGE', 'Give exactly one of --keep N (keep the newest N backups) and --older-than AGE (e.g. 30d); run `master-key retire --help` for usage.');
  if (o.keep !== undefined) return keepRetention(positiveInt('--keep', o.keep)!, '--keep');
  return parseRetention(o.olderThan!, '--older-than');
}

export const retire = {
  define: (program: Command) =>
    withBackupDir(withCommon(program.command('retire').description('remove the backups beyond a retention, with the old keys they hold; each retirement is recorded in the rotation history')))
      .option('--keep <n>', 'keep the newest N backups of this database, retire the others (N at least 1)')
      .option('--older-than <age>', 'retire the backups taken more than this long ago (e.g. 30d, 12w, 1y)'),

  async run(o: RetireOptions, io: Io): Promise<ExitCodeValue> {
    const retention = retentionOf(o);
    const r = await onInstallation(o, io, (inst) => inst.retire(retention));
    emit(io, o.json, { ok: true, ...r }, '');
    return ExitCode.OK;
  },
} satisfies CliCommand;
