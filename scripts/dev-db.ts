/**
 * `npm run dev-db`: a local ACT installation for `npm run plan` / `npm run
 * deploy` on a fresh checkout. It starts an embedded PostgreSQL that keeps
 * running after this command ends, creates the database `act` with sample
 * secrets of every ACT kind sealed under a new key, writes that key to the
 * example app's config file (`.mk-work/act.env`, 0600) and runs `master-key
 * init`. It prints exactly one line on stdout, the shell line that points
 * the example at it:
 *
 *     export DATABASE_URL='postgresql://postgres:…@127.0.0.1:PORT/act'
 *
 * so `eval "$(npm run -s dev-db)"` works; everything else goes to stderr.
 * Run again, it prints the same line while the server is up. `--stop` stops
 * the server and removes it with the files it wrote (reports and backups
 * stay). The work folder is `.mk-work/` in the checkout, or MK_WORK_DIR.
 *
 * Usage: node dist/scripts/dev-db.js [--stop] [--secrets N]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MasterKey } from '../src/crypto/key';
import { DetachedServer, detachedRunning, startEmbeddedPostgres, stopDetached } from '../src/db/embedded';
import { PROJECT_ROOT } from '../main';
import { cliEntry, seedActSecrets } from './local-act';
import { withTestSql } from '../test/support/sql';
import { parseOrExit } from './usage';

/** What dev-db remembers between runs (`<work>/dev-db.json`, 0600). */
export interface DevDbState extends DetachedServer {
  readonly url: string;
  /** The config file it wrote (the example app's default). */
  readonly configPath: string;
}

/** The work folder: MK_WORK_DIR (relative to the checkout) or `.mk-work`, as in main.ts. */
export function workDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(PROJECT_ROOT, env.MK_WORK_DIR ?? '.mk-work');
}

/** The line dev-db prints: a POSIX shell `export` of the URL, single-quoted. */
export function exportLine(name: string, url: string): string {
  return `export ${name}='${url.replace(/'/g, `'\\''`)}'`;
}

function readState(file: string): DevDbState | undefined {
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as DevDbState) : undefined;
}

const say = (line: string) => process.stderr.write(`${line}\n`);

async function start(work: string, secrets: number): Promise<DevDbState> {
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const stateFile = join(work, 'dev-db.json');
  const configPath = join(work, 'act.env');
  if (existsSync(configPath)) {
    throw new Error(`${configPath} already exists and was not written by a running dev-db; move it away (it may hold a key you need), then run npm run dev-db again.`);
  }
  const server = await startEmbeddedPostgres({ detached: true });
  const state: DevDbState = { nativeDir: server.nativeDir, dataDir: server.dataDir, url: server.urlFor('act'), configPath };
  try {
    await server.createDatabase('act');
    const key = MasterKey.generate();
    await withTestSql(state.url, (db) => seedActSecrets(db, key, secrets));
    writeFileSync(configPath, `# ACT server configuration (npm run dev-db)\nACT_LISTEN=127.0.0.1:8080\nACT_MASTER_KEY=${key.toHex()}\n`, { mode: 0o600 });
    const init = spawnSync(process.execPath, [cliEntry(), 'init', '--config', configPath], { env: { ...process.env, DATABASE_URL: state.url }, encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`master-key init failed: ${init.stderr.trim()}`);
    writeFileSync(stateFile, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    say(`Started PostgreSQL on 127.0.0.1 (data in ${server.dataDir}); database "act" holds ${secrets} secrets sealed under ${key.fingerprint}, the key in ${configPath} (0600); master-key init done.`);
    return state;
  } catch (e) {
    stopDetached(state);
    rmSync(configPath, { force: true });
    throw e;
  }
}

function stop(work: string): void {
  const stateFile = join(work, 'dev-db.json');
  const state = readState(stateFile);
  if (!state) {
    say(`No dev database recorded in ${stateFile}: nothing to stop.`);
    return;
  }
  stopDetached(state);
  rmSync(state.configPath, { force: true });
  rmSync(stateFile, { force: true });
  say(`Stopped the dev database and removed it, ${state.configPath} and ${stateFile}; reports and backups in ${work} stay.`);
}

/** Runs dev-db; returns the exit code. */
export const DEV_DB_USAGE = `npm run dev-db -- [options]

Starts a local ACT installation for the example stack: an embedded
PostgreSQL (left running) with an ACT-shaped database of sealed secrets, its
config file .mk-work/act.env (0600) and \`master-key init\` done; prints
the \`export DATABASE_URL=…\` line for \`npm run plan\` and \`npm run deploy\`.

Options:
  --secrets <n>   how many secrets (at least 8; default 200)
  --stop          stop the server and remove what dev-db wrote
  --help          this text
`;

/** The options of dev-db. */
function parseDevDbArgs(argv: readonly string[]): { secrets: number; stop: boolean } {
  const o = { secrets: 200, stop: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--stop') o.stop = true;
    else if (a === '--secrets') {
      const v = argv[++i];
      if (!/^\d+$/.test(v ?? '') || Number(v) < 8) throw new Error(`--secrets needs a whole number of at least 8, got ${v ?? 'nothing'}`);
      o.secrets = Number(v);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

export async function main(argv: readonly string[]): Promise<number> {
  const { secrets, stop: stopIt } = parseOrExit('dev-db', DEV_DB_USAGE, argv, parseDevDbArgs);
  const work = workDir();
  if (stopIt) {
    stop(work);
    return 0;
  }
  const recorded = readState(join(work, 'dev-db.json'));
  let state: DevDbState;
  if (recorded && detachedRunning(recorded)) {
    say(`The dev database is already running (data in ${recorded.dataDir}); \`npm run dev-db -- --stop\` stops it.`);
    state = recorded;
  } else {
    if (recorded) stop(work);
    state = await start(work, secrets);
  }
  say('Point the example at it (or run: eval "$(npm run -s dev-db)"), then `npm run plan` and `npm run deploy`:');
  process.stdout.write(`${exportLine('DATABASE_URL', state.url)}\n`);
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      say(`dev-db failed: ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
