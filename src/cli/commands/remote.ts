/**
 * `master-key remote` (hidden): the host's side of a master-key running on
 * another machine over SSH (src/remote/front.ts). It reads its request on
 * standard input; it is never run by hand.
 */
import { Command } from 'commander';
import { ExitCodeValue } from '../../errors';
import { runFront, runWorker } from '../../remote/front';
import { CliCommand, Io } from '../options';

export const remote = {
  define: (program: Command) =>
    program
      .command('remote', { hidden: true })
      .description('the host side of a master-key on another machine: reads its request on standard input (not for use by hand)')
      .option('--worker <dir>', 'run the job in this directory (started by `master-key remote` itself)'),

  async run(o: { worker?: string }, _io: Io): Promise<ExitCodeValue> {
    try {
      return (o.worker ? await runWorker(o.worker) : await runFront()) as ExitCodeValue;
    } finally {
      process.stdin.destroy();
    }
  },
} satisfies CliCommand;
