#!/usr/bin/env node
/**
 * `master-key`: the command line (`./program.ts` parses it and runs the
 * command). `master-key remote`, the side of a host that a master-key on
 * another machine runs over SSH (src/remote/front.ts), starts without
 * loading the commands: it runs once per call and per job there, so its
 * start-up time is the SSH overhead of every rotation.
 */
import type { Io } from './options';

/** Runs the command line `argv` (without node and the script); resolves to the process exit code. */
export async function main(argv: string[], io?: Io): Promise<number> {
  return (require('./program') as typeof import('./program')).main(argv, io);
}

/** `master-key remote [--worker <dir>]`, without the command-line parser. */
async function remote(argv: readonly string[]): Promise<number> {
  const front = require('../remote/front') as typeof import('../remote/front');
  try {
    return argv[0] === '--worker' && argv[1] ? await front.runWorker(argv[1]) : await front.runFront();
  } finally {
    process.stdin.destroy();
  }
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const lean = argv[0] === 'remote' && (argv.length === 1 || (argv.length === 3 && argv[1] === '--worker'));
  (lean ? remote(argv.slice(1)) : main(argv)).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = 1;
    },
  );
}
