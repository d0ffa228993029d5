/**
 * The benchmark's last method: the full `master-key apply` (preflight,
 * backup, re-encryption, config update, verification, report) as a child
 * process, on the same freshly restored table the other methods get.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClientBase } from 'pg';
import type { MasterKey } from '../src/crypto/key';
import { loadAge } from '../src/rotation/age';
import { BENCH_INVENTORY } from './bench-data';
import type { ChildResult } from './bench-child';
import { removeScratch, scratchDir } from './scratch';

/** What the apply measurement gets from the benchmark. */
export interface ApplyContext {
  /** Database holding `bench_secrets` (restored, sealed under `oldKey`). */
  readonly url: string;
  /** A connection to it (to reset the tool's metadata between runs). */
  readonly client: ClientBase;
  readonly oldKey: MasterKey;
  readonly rows: number;
  /** Another build's CLI entry point to run instead of this one (`--baseline-cli`). */
  readonly cli?: string;
  /** Seal the backup to these age recipients (`--sealed`). */
  readonly recipients?: readonly string[];
}

/** One fresh X25519 recipient to seal the benchmark's backups to (its identity is not kept: the bench never opens them). */
export async function benchRecipient(): Promise<string> {
  const { generateX25519Identity, identityToRecipient } = await loadAge();
  return identityToRecipient(await generateX25519Identity());
}

/** The apply's options sealing its backup to `recipients`. */
export function recipientArgs(recipients: readonly string[] = []): string[] {
  return recipients.flatMap((r) => ['--backup-recipient', r]);
}

/** The CLI entry point in the build output. */
export function cliPath(): string {
  return join(__dirname, '..', 'src', 'cli', 'main.js');
}

/** The environment variable the CLI reads the database URL from (never argv). */
const URL_ENV = 'MK_BENCH_DATABASE_URL';

/** Runs the CLI through bench-rss (which reports its peak RSS, CPU time, its main thread's CPU time and minor page faults on fd 3); resolves with exit code, seconds, RSS, CPU seconds (user + system; the main thread's where /proc tells) and page faults. */
export function runCliMeasured(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; seconds: number; maxRssBytes: number; cpuSeconds: number; mainThreadCpuSeconds?: number; minorFaults: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [join(__dirname, 'bench-rss.js'), ...args], { env, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let rss = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    (child.stdio[3] as NodeJS.ReadableStream).setEncoding('utf8').on('data', (d: string) => (rss += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const usage = rss ? (JSON.parse(rss) as { maxRssBytes: number; cpuMicros: number; mainThreadCpuMicros?: number; minorFaults: number }) : { maxRssBytes: 0, cpuMicros: 0, minorFaults: 0 };
      const main = usage.mainThreadCpuMicros;
      resolve({ code: code ?? -1, seconds, maxRssBytes: usage.maxRssBytes, cpuSeconds: usage.cpuMicros / 1e6, ...(main !== undefined ? { mainThreadCpuSeconds: main / 1e6 } : {}), minorFaults: usage.minorFaults, stderr });
    });
  });
}

/** What an apply's report says about its time: phases, the server-down window and seal-ahead's window with the server up. */
export interface ApplyTimings {
  readonly phases: Record<string, number>;
  /** The server-down window, less the stop hook when it is the benchmark's writer (`writerMs`). */
  readonly serverDownMs: number;
  readonly serverUpSealAheadMs?: number;
  /** The stop hook's time when it was the benchmark's 1 % writer (not the tool's: not counted as server down). */
  readonly writerMs?: number;
}

/** The timings of the one apply report in `reports`; with `writer`, the stop hook is the benchmark's writer and leaves the server-down window. */
export function applyTimings(reports: string, writer = false): ApplyTimings {
  const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('.json'))!), 'utf8')) as {
    phases: Record<string, number>;
    timing: { serverDownMs: number; serverUpSealAheadMs?: number };
    hooks: Array<{ which: string; ms: number }>;
  };
  const writerMs = writer ? report.hooks.filter((h) => h.which === 'stop').reduce((a, h) => a + h.ms, 0) : 0;
  return {
    phases: report.phases,
    serverDownMs: report.timing.serverDownMs - writerMs,
    ...(report.timing.serverUpSealAheadMs !== undefined ? { serverUpSealAheadMs: report.timing.serverUpSealAheadMs } : {}),
    ...(writer ? { writerMs } : {}),
  };
}

/** Share of the rows the benchmark's writer changes between seal-ahead and the stop hook. */
export const WRITER_SHARE = 0.01;

/**
 * The benchmark's writer, run as the stop hook (the server's last writes
 * before it stops, after seal-ahead): changes 1 % of `bench_secrets`' rows
 * (every 100th id, from a random offset) to new values sealed under the old
 * key, read from the config file (never from argv). PostgreSQL's URL comes
 * from the environment the CLI passes on, SQLite's from the config file.
 * Returns the stop command.
 */
export function writerHook(work: string): string {
  const root = join(__dirname, '..');
  const req = (m: string) => JSON.stringify(require.resolve(m, { paths: [root] }));
  const script = join(work, 'bench-writer.js');
  writeFileSync(
    script,
    `
const { readFileSync } = require('node:fs');
const { randomBytes } = require('node:crypto');
const { actCodec } = require(${JSON.stringify(join(root, 'src', 'crypto', 'codec.js'))});
const { parseKey } = require(${JSON.stringify(join(root, 'src', 'crypto', 'key.js'))});
const config = readFileSync(${JSON.stringify(join(work, 'act.env'))}, 'utf8');
const key = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(config)[1]);
const sqlite = /^ACT_DATABASE_URL=sqlite:(.*)$/m.exec(config);
const every = Math.round(1 / ${WRITER_SHARE});
const offset = Math.floor(Math.random() * every);
const seal = () => actCodec().seal(key, Buffer.from(randomBytes(150).toString('base64'), 'utf8'));
(async () => {
  if (sqlite) {
    const Database = require(${req('better-sqlite3')});
    const db = new Database(sqlite[1], { timeout: 30000 });
    const ids = db.prepare('SELECT id FROM bench_secrets WHERE id % ? = ?').pluck().all(every, offset);
    const update = db.prepare('UPDATE bench_secrets SET value = ? WHERE id = ?');
    db.transaction(() => { for (const id of ids) update.run(seal(), id); })();
    db.close();
  } else {
    const { Client } = require(${req('pg')});
    const c = new Client({ connectionString: process.env.MK_BENCH_DATABASE_URL });
    await c.connect();
    const ids = (await c.query('SELECT id::text FROM bench_secrets WHERE id % $1 = $2', [every, offset])).rows.map((r) => r.id);
    await c.query('UPDATE bench_secrets t SET value = v.value FROM unnest($1::bigint[], $2::text[]) v(id, value) WHERE t.id = v.id', [ids, ids.map(seal)]);
    await c.end();
  }
})().catch((e) => { console.error(e); process.exit(1); });
`,
    { mode: 0o600 },
  );
  return `node '${script}'`;
}

/** The apply flags of a benchmark method: the full apply seals ahead (asked for: SQLite would not by default); the one-pass apply does not. */
export function applyFlags(method: string): string[] {
  return method === 'apply-one-pass' ? ['--no-seal-ahead'] : ['--seal-ahead'];
}

/**
 * Measures one `master-key apply` run (spawn to exit), or returns undefined
 * when the CLI has not been built. Each run starts clean: the tool's
 * metadata schema is dropped, `init` seals a canary under the old key, and
 * a fresh 0600 config file holds the old key.
 */
export async function measureApply(ctx: ApplyContext, flags: readonly string[] = []): Promise<ChildResult | undefined> {
  if (!existsSync(ctx.cli ?? cliPath())) return undefined;
  const dir = scratchDir('mk-bench-apply-');
  try {
    const config = join(dir, 'act.env');
    writeFileSync(config, `ACT_MASTER_KEY=${ctx.oldKey.toHex()}\n`, { mode: 0o600 });
    const inventory = join(dir, 'inventory.json');
    writeFileSync(inventory, JSON.stringify(BENCH_INVENTORY));
    const common = ['--config', config, '--inventory', inventory, '--database-url-env', URL_ENV];
    const env = { ...process.env, [URL_ENV]: ctx.url, ...(ctx.cli ? { MK_BENCH_CLI: ctx.cli } : {}) };
    await ctx.client.query('DROP SCHEMA IF EXISTS master_key CASCADE');
    const init = await runCliMeasured(['init', ...common], env);
    if (init.code !== 0) throw new Error(`master-key init failed (exit ${init.code}): ${init.stderr.trim()}`);
    const stop = ['--stop-command', writerHook(dir)];
    const apply = await runCliMeasured(['apply', ...common, ...stop, ...flags, '--backup-dir', join(dir, 'backups'), '--report-dir', join(dir, 'reports'), ...recipientArgs(ctx.recipients)], env);
    if (apply.code !== 0) throw new Error(`master-key apply failed (exit ${apply.code}): ${apply.stderr.trim()}`);
    const t = applyTimings(join(dir, 'reports'), true);
    // The writer is the server's doing, not the tool's: its time is not counted.
    return { seconds: apply.seconds - (t.writerMs ?? 0) / 1000, rows: ctx.rows, maxRssBytes: apply.maxRssBytes, ...t };
  } finally {
    removeScratch(dir);
  }
}
