/** `master-key status`: fingerprint, generation, key age against the policy, every node, interrupted rotations. */
import { Command } from 'commander';
import { ExitCodeValue, MasterKeyError } from '../../errors';
import { parseDuration } from '../../rotation/decide';
import { renderStatus } from '../../rotation/status';
import { CliCommand, CommonOpts, Io, emit, onInstallation, withBackupDir, withCommon } from '../options';

export interface StatusOptions extends CommonOpts {
  maxAge?: string;
}

export const status = {
  define: (program: Command) =>
    withBackupDir(withCommon(program.command('status').description('current fingerprint, generation, key age vs policy, every node, the backups holding old keys, retirements, interrupted rotations'))).option(
      '--max-age <age>',
      'exit 11 when the key is older than this (e.g. 90d, 12w, 1y)',
    ),

  async run(o: StatusOptions, io: Io): Promise<ExitCodeValue> {
    let maxAgeMs: number | undefined;
    if (o.maxAge !== undefined) {
      maxAgeMs = parseDuration(o.maxAge);
      if (maxAgeMs === undefined) throw new MasterKeyError('USAGE', `--max-age must look like 365d, 12w, 48h or 1y, got ${JSON.stringify(o.maxAge)}.`);
    }
    const s = await onInstallation(o, io, (inst) => inst.status({ maxAgeMs }));
    emit(io, o.json, s, renderStatus(s));
    return s.exitCode;
  },
} satisfies CliCommand;
