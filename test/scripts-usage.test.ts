/**
 * Every script a newcomer runs (`npm start`, `npm run bench`, `bench:fleet`,
 * `soak`, `dev-db`) answers `--help` with its usage (exit 0, nothing on
 * stderr, nothing started), and refuses an option it does not know, or a bad
 * value, in one line naming `--help` (exit 3, no stack trace).
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const DIST = resolve(__dirname, '..', 'dist', 'scripts');
const SCRIPTS: ReadonlyArray<[file: string, npm: string]> = [
  ['demo.js', 'npm start'],
  ['bench.js', 'npm run bench'],
  ['bench-fleet.js', 'npm run bench:fleet'],
  ['soak.js', 'npm run soak'],
  ['dev-db.js', 'npm run dev-db'],
];

const run = (file: string, args: string[]) => spawnSync(process.execPath, [join(DIST, file), ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, MK_WORK_DIR: '/nonexistent/mk-work' } });

describe.each(SCRIPTS)('%s (%s)', (file, npm) => {
  it.each(['--help', '-h'])('%s prints the usage and exits 0', (flag) => {
    const r = run(file, [flag]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith(`${npm} -- [options]\n`)).toBe(true);
    expect(r.stdout).toMatch(/\n {2}--help +this text\n$/);
  });

  it('refuses an unknown option in one line naming --help, exit 3, no stack trace', () => {
    const r = run(file, ['--no-such-option']);
    expect(r.status).toBe(3);
    expect(r.stdout).toBe('');
    const name = npm.replace(/^npm (run )?/, '');
    expect(r.stderr).toBe(`${name}: unknown option --no-such-option; run \`${npm} -- --help\` for usage.\n`);
  });
});

describe('bad values', () => {
  it.each([
    ['bench.js', ['--rows', 'many'], 'bench: --rows needs a positive integer, got many; run `npm run bench -- --help` for usage.\n'],
    ['bench.js', ['--store', 'mysql'], 'bench: --store must be postgres or sqlite, got mysql; run `npm run bench -- --help` for usage.\n'],
    ['soak.js', ['--store', 'mysql'], 'soak: --store must be one of postgres, sqlite, got "mysql"; run `npm run soak -- --help` for usage.\n'],
    ['dev-db.js', ['--secrets', '3'], 'dev-db: --secrets needs a whole number of at least 8, got 3; run `npm run dev-db -- --help` for usage.\n'],
    ['demo.js', ['--store', 'mysql'], 'start: --store must be postgres or sqlite, got "mysql"; run `npm start -- --help` for usage.\n'],
  ])('%s %j: one line, exit 3', (file, args, line) => {
    const r = run(file, args);
    expect(r.stderr).toBe(line);
    expect(r.status).toBe(3);
  });
});
