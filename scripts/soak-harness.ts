/**
 * Fault-injection harness shared by the soak (`npm run soak`) and the fault
 * tests: an ACT installation with one config file per server node, the real
 * CLI as a child process that can be SIGKILLed at a named phase
 * (MASTER_KEY_TEST_KILL_AT) or after a delay, and the checks of the crash
 * invariant:
 *
 * - right after a kill, some key on disk (a config file or the rotation's
 *   pending-key file) opens every secret to its original plaintext;
 * - after `master-key recover`, every config file holds one key, it opens the
 *   canary and every secret to its original plaintext, no pending or temp
 *   file is left, and the history agrees with the canary.
 *
 * Only public surfaces are driven (the CLI, the database, the files); the
 * checks read the database and the files directly.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configTarget, readConfigKey } from '../src/config/config-file';
import { MasterKey } from '../src/crypto/key';
import { CANARY_PLAINTEXT, canaryOpensWith } from '../src/rotation/canary';
import { FAULT_POINTS, FaultPoint } from '../src/rotation/faults';
import { defaultPendingPath, readPending } from '../src/rotation/pending';
import { ExitCode } from '../src/errors';
import { leftoverTempFiles } from '../src/fsutil';
import { readPlaintexts, seedAct } from '../test/support/act-data';
import { childEnv } from '../test/support/scenario';
import { TestSql, withTestSql } from '../test/support/sql';
import { cliEntry } from './local-act';
import { stagingFile } from '../src/store/sqlite/staging';
import { sqliteFile } from '../src/store/sqlite/url';
import { scratchDir } from './scratch';

export { cliEntry };

/** The config entry every node file holds the key in. */
export const KEY_ENTRY = 'ACT_MASTER_KEY';


/** One config file per node, in the three formats, so one rotation updates all of them. */
const NODE_FILES: ReadonlyArray<{ name: string; text: (hex: string) => string; mode: number }> = [
  { name: 'act.env', mode: 0o600, text: (k) => `# ACT node 1\nACT_LISTEN=0.0.0.0:8080\n${KEY_ENTRY}=${k}\nACT_LOG_LEVEL=info\n` },
  { name: 'node2.json', mode: 0o640, text: (k) => `{\n  "listen": "0.0.0.0:8080",\n  "${KEY_ENTRY}": "${k}",\n  "log": { "level": "info" }\n}\n` },
  { name: 'node3.xml', mode: 0o600, text: (k) => `<?xml version="1.0" encoding="utf-8"?>\n<configuration>\n  <appSettings>\n    <add key="${KEY_ENTRY}" value="${k}" />\n  </appSettings>\n</configuration>\n` },
];

/** A seeded, initialised installation that the harness rotates again and again. */
export interface Installation {
  readonly dir: string;
  readonly url: string;
  /** Node config files; the first is the primary. */
  readonly configs: readonly string[];
  readonly pendingPath: string;
  readonly backupDir: string;
  readonly reportDir: string;
  /** Expected plaintext of every secret, by location (see test/support/scenario). */
  readonly plaintexts: ReadonlyMap<string, string>;
  /** Child environment: PATH, HOME, TMPDIR and DATABASE_URL only. */
  readonly env: NodeJS.ProcessEnv;
  /** The key the installation was seeded with. */
  readonly firstKey: MasterKey;
}

export interface InstallationOptions {
  /** Rows per ACT kind. @default 3 */
  readonly perKind?: number;
  /** Node config files (1 to 3). @default 1 */
  readonly nodes?: number;
}

/** Writes the node config files holding `key`. */
export function writeNodeConfigs(dir: string, key: MasterKey, nodes: number): string[] {
  return NODE_FILES.slice(0, nodes).map((f) => {
    const path = join(dir, f.name);
    writeFileSync(path, f.text(key.toHex()));
    chmodSync(path, f.mode);
    return path;
  });
}

/** Seeds an empty database with ACT secrets, writes the node configs and runs `master-key init`. */
export async function createInstallation(url: string, opts: InstallationOptions = {}): Promise<Installation> {
  const dir = scratchDir('mk-soak-');
  const key = MasterKey.generate();
  const configs = writeNodeConfigs(dir, key, Math.min(Math.max(opts.nodes ?? 1, 1), NODE_FILES.length));
  const plaintexts = await withTestSql(url, (db) => seedAct(db, key, { perKind: opts.perKind ?? 3 }));
  const inst: Installation = {
    dir,
    url,
    configs,
    pendingPath: defaultPendingPath(configs[0]),
    backupDir: join(dir, 'backups'),
    reportDir: join(dir, 'reports'),
    plaintexts,
    env: childEnv({ DATABASE_URL: url }),
    firstKey: key,
  };
  const init = await runCli(inst, ['init']);
  if (init.code !== 0) throw new Error(`master-key init failed (${init.code}): ${init.stderr}`);
  return inst;
}

/** How a child run ended. */
export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
  readonly pid: number;
}

/** Where to SIGKILL a child: at the n-th time it reaches a phase, or after a delay. */
export type KillPoint = { readonly phase: FaultPoint; readonly n: number } | { readonly afterMs: number };

export function describeKill(k: KillPoint | undefined): string {
  if (!k) return 'no kill';
  return 'phase' in k ? `${k.phase}${k.n > 1 ? `@${k.n}` : ''}` : `after ${k.afterMs} ms`;
}

export interface RunOptions {
  readonly kill?: KillPoint;
  /** Extra environment for the child. */
  readonly env?: NodeJS.ProcessEnv;
  /** Called with the child's pid as soon as it started. */
  readonly onSpawn?: (pid: number) => void;
}

/** `--config` for every node plus the backup and report directories. */
export function commonArgs(inst: Installation): string[] {
  return [...inst.configs.flatMap((p) => ['--config', p]), '--key-name', KEY_ENTRY];
}

/** Runs `master-key <cmd> <common args> <extra>` as a child process; resolves when it exits. */
export function runCli(inst: Installation, args: readonly string[], opts: RunOptions = {}): Promise<CliRun> {
  const [cmd, ...rest] = args;
  const dirs = cmd === 'apply' || cmd === 'plan' ? ['--backup-dir', inst.backupDir, '--report-dir', inst.reportDir] : [];
  return runCliRaw([cmd, ...commonArgs(inst), ...dirs, ...rest], { ...inst.env, ...(opts.env ?? {}) }, opts);
}

/** Runs the CLI with exactly these arguments and environment. */
export function runCliRaw(args: readonly string[], env: NodeJS.ProcessEnv, opts: Omit<RunOptions, 'env'> = {}): Promise<CliRun> {
  const childEnv = { ...env };
  if (opts.kill && 'phase' in opts.kill) childEnv.MASTER_KEY_TEST_KILL_AT = `${opts.kill.phase}@${opts.kill.n}`;
  const started = Date.now();
  const child = spawn(process.execPath, [cliEntry(), ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  opts.onSpawn?.(child.pid ?? -1);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = opts.kill && 'afterMs' in opts.kill ? setTimeout(() => child.kill('SIGKILL'), opts.kill.afterMs) : undefined;
  return new Promise((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, ms: Date.now() - started, pid: child.pid ?? -1 });
    });
  });
}

/** The apply phases a kill can target (recover's own phase, and a host's side of a runner, excluded). */
export const APPLY_PHASES: readonly FaultPoint[] = FAULT_POINTS.filter((p) => !p.startsWith('recover') && !p.startsWith('remote'));

/** The key each node config holds, or the reason it cannot be read. */
export function configKeys(inst: Installation): Array<MasterKey | Error> {
  return inst.configs.map((p) => {
    try {
      return readConfigKey(configTarget(p, KEY_ENTRY));
    } catch (e) {
      return e as Error;
    }
  });
}

/** How many secrets open with `key` to exactly their original plaintext. */
export async function secretsOpening(inst: Installation, key: MasterKey): Promise<number> {
  const got = await readPlaintexts(inst.url, key, inst.plaintexts.keys());
  let ok = 0;
  for (const [loc, expected] of inst.plaintexts) if (got.get(loc) === expected) ok++;
  return ok;
}

/** What the files and the database hold right now. */
export interface DiskState {
  readonly configKeys: ReadonlyArray<MasterKey | Error>;
  readonly pendingKey?: MasterKey;
  /** The best key on disk and how many secrets it opens (of `total`). */
  readonly best?: MasterKey;
  readonly opened: number;
  readonly total: number;
  readonly canaryOpensWithBest: boolean;
}

/**
 * Invariant 1, checked right after a kill: some key on disk opens every
 * secret (and the canary). `total - opened` is the number of secrets that
 * no key on disk can open: lost.
 */
export async function diskState(inst: Installation): Promise<DiskState> {
  const keys = configKeys(inst);
  let pendingKey: MasterKey | undefined;
  try {
    pendingKey = readPending(inst.pendingPath)?.newKey;
  } catch {
    pendingKey = undefined;
  }
  const candidates = [...keys.filter((k): k is MasterKey => k instanceof MasterKey), ...(pendingKey ? [pendingKey] : [])];
  const unique = candidates.filter((k, i) => candidates.findIndex((x) => x.equals(k)) === i);
  let best: MasterKey | undefined;
  let opened = 0;
  for (const k of unique) {
    const n = await secretsOpening(inst, k);
    if (n > opened || !best) {
      best = k;
      opened = n;
    }
  }
  const canary = await withTestSql(inst.url, readCanary);
  return { configKeys: keys, pendingKey, best, opened, total: inst.plaintexts.size, canaryOpensWithBest: !!(best && canary && canaryOpensWith(canary, best)) };
}

/** The canary as the checks need it, read directly (undefined when it is gone). */
async function readCanary(db: TestSql): Promise<{ fingerprint: string; generation: number; sealed: string } | undefined> {
  const [row] = await db.query<{ fingerprint: string; generation: number; sealed: string }>(`SELECT fingerprint, generation, sealed FROM ${db.meta.canary}`);
  return row;
}

/** What is left of seal-ahead's staging area: PostgreSQL's staging tables, SQLite's staging file. */
export async function stagingLeft(db: TestSql, url: string): Promise<string[]> {
  if (db.kind === 'sqlite') {
    const file = stagingFile(sqliteFile(url));
    return existsSync(file) ? [file] : [];
  }
  const rows = await db.query<{ name: string }>("SELECT relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'master_key' AND c.relkind = 'r' AND c.relname LIKE 'stage\\_%'");
  return rows.map((r) => `master_key.${r.name}`);
}

/** One history row as the checks need it. */
interface HistoryFacts {
  readonly old_fingerprint: string;
  readonly new_fingerprint: string;
  readonly from_generation: number;
  readonly to_generation: number;
  readonly outcome: string;
}

/** The result of the full invariant check after recovery. */
export interface InvariantResult {
  /** Empty when everything agrees; otherwise one sentence per problem. */
  readonly violations: readonly string[];
  /** Secrets that do not open to their original plaintext with the configured key. */
  readonly lost: number;
  readonly key?: MasterKey;
  readonly generation?: number;
  readonly historyRows: number;
}

/**
 * The invariant after `recover`: every node's config holds the same key; it
 * opens the canary and every secret to its original plaintext; no pending
 * file or temp file is left; the history is one unbroken chain ending at the
 * canary's key and generation.
 */
export async function checkInvariant(inst: Installation): Promise<InvariantResult> {
  const violations: string[] = [];
  const keys = configKeys(inst);
  const bad = keys.map((k, i) => (k instanceof MasterKey ? undefined : `${inst.configs[i]}: ${k.message}`)).filter((x): x is string => !!x);
  violations.push(...bad);
  const good = keys.filter((k): k is MasterKey => k instanceof MasterKey);
  const key = good[0];
  if (good.some((k) => !k.equals(key))) violations.push(`the node configs disagree: ${good.map((k) => k.fingerprint).join(', ')}`);
  if (existsSync(inst.pendingPath)) violations.push(`the pending file ${inst.pendingPath} is still there`);
  for (const p of [...inst.configs, inst.pendingPath]) {
    const tmp = leftoverTempFiles(p);
    if (tmp.length) violations.push(`temp files left next to ${p}: ${tmp.join(', ')}`);
  }
  const { canary, history, staging } = await withTestSql(inst.url, async (db) => ({
    canary: await readCanary(db),
    history: await db.query<HistoryFacts>(`SELECT old_fingerprint, new_fingerprint, from_generation, to_generation, outcome FROM ${db.meta.history} ORDER BY id`),
    staging: await stagingLeft(db, inst.url),
  }));
  if (staging.length) violations.push(`a staging area of seal-ahead is left: ${staging.join(', ')}`);
  if (!canary) violations.push('the integrity canary is gone');
  if (canary && key && !canaryOpensWith(canary, key)) violations.push(`the configured key ${key.fingerprint} does not open the canary (${canary.fingerprint}, "${CANARY_PLAINTEXT}")`);
  if (canary && key && canary.fingerprint !== key.fingerprint) violations.push(`the canary names ${canary.fingerprint} but the configs hold ${key.fingerprint}`);
  violations.push(...historyProblems(history, canary?.fingerprint, canary?.generation, inst.firstKey.fingerprint));
  const lost = key ? inst.plaintexts.size - (await secretsOpening(inst, key)) : inst.plaintexts.size;
  if (lost) violations.push(`${lost} secret(s) do not open to their original plaintext with the configured key`);
  return { violations, lost, key, generation: canary?.generation, historyRows: history.length };
}

/** Pure: the history must chain from the first key to the canary, one generation per committed rotation. */
export function historyProblems(rows: readonly HistoryFacts[], fingerprint: string | undefined, generation: number | undefined, firstFingerprint: string): string[] {
  const out: string[] = [];
  let fp = firstFingerprint;
  let gen = 1;
  rows.forEach((r, i) => {
    if (r.old_fingerprint !== fp) out.push(`history row ${i + 1} starts from ${r.old_fingerprint}, but the key before it was ${fp}`);
    if (r.from_generation !== gen || r.to_generation !== gen + 1) out.push(`history row ${i + 1} goes ${r.from_generation} -> ${r.to_generation}, expected ${gen} -> ${gen + 1}`);
    if (!/^(committed|verified)/.test(r.outcome)) out.push(`history row ${i + 1} has outcome "${r.outcome}"`);
    fp = r.new_fingerprint;
    gen = r.to_generation;
  });
  if (fingerprint !== undefined && fp !== fingerprint) out.push(`the history ends at ${fp} but the canary is ${fingerprint}`);
  if (generation !== undefined && gen !== generation) out.push(`the history ends at generation ${gen} but the canary is at ${generation}`);
  return out;
}

/** What one `recover` sequence did. */
export interface RecoverOutcome {
  /** recover runs, including killed ones and retries after LOCKED. */
  readonly runs: number;
  readonly killed: number;
  /** The action of the run that completed: none, finished or undone. */
  readonly action: string;
}

/**
 * Runs `recover` until it completes: optionally killed once first (at a
 * phase or after a delay), retried while the dead process's lock is still
 * being released. Throws when recover fails for another reason.
 */
export async function recoverUntilDone(inst: Installation, killFirst?: KillPoint): Promise<RecoverOutcome> {
  let runs = 0;
  let killed = 0;
  let kill = killFirst;
  for (let attempt = 0; attempt < 50; attempt++) {
    const r = await runCli(inst, ['recover', '--json'], { kill });
    runs++;
    if (kill && r.signal === 'SIGKILL') killed++;
    kill = undefined;
    if (r.signal === 'SIGKILL') continue;
    if (r.code === 0) return { runs, killed, action: (JSON.parse(r.stdout) as { action: string }).action };
    if (r.code === ExitCode.LOCKED) {
      await new Promise((res) => setTimeout(res, 100));
      continue;
    }
    throw new Error(`master-key recover failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  throw new Error('master-key recover did not complete in 50 attempts');
}

/** Reads a text file, or '' when it is missing. */
export function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
