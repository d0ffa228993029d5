/**
 * What every script (`npm start`, `npm run bench`, `bench:fleet`, `soak`,
 * `dev-db`) does with its command line before anything starts: `--help` (or
 * `-h`) prints its usage on stdout and exits 0; an option it does not know,
 * or a bad value, is one line on stderr naming `--help`, exit 3, no stack
 * trace.
 */

/** Exit code of a command line the script cannot use (the CLI's USAGE). */
export const USAGE_EXIT = 3;

/**
 * Parses argv with `parse` (which throws an Error with a sentence on
 * anything it cannot use), or ends the process as described above.
 */
export function parseOrExit<T>(script: string, usage: string, argv: readonly string[], parse: (argv: readonly string[]) => T): T {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage.endsWith('\n') ? usage : `${usage}\n`);
    process.exit(0);
  }
  try {
    return parse(argv);
  } catch (e) {
    const what = String((e as Error).message ?? e).replace(/[.;]?\s*$/, '');
    process.stderr.write(`${script}: ${what}; run \`${script === 'start' ? 'npm start' : `npm run ${script}`} -- --help\` for usage.\n`);
    process.exit(USAGE_EXIT);
  }
}
