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

/** Runs the CLI through bench-rss (which reports its peak RSS on fd 3); resolves with exit code, seconds and RSS. */
export function runCliMeasured(args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ code: number; seconds: number; maxRssBytes: number; stderr: string }> {
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
      const maxRssBytes = rss ? (JSON.parse(rss) as { maxRssBytes: number }).maxRssBytes : 0;
      resolve({ code: code ?? -1, seconds, maxRssBytes, stderr });
    });
  });
}

/** The phase timings and the server-down window of the one apply report in `reports`. */
export function applyTimings(reports: string): { phases: Record<string, number>; serverDownMs: number } {
  const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('.json'))!), 'utf8')) as { phases: Record<string, number>; timing: { serverDownMs: number } };
  return { phases: report.phases, serverDownMs: report.timing.serverDownMs };
}

/**
 * Measures one `master-key apply` run (spawn to exit), or returns undefined
 * when the CLI has not been built. Each run starts clean: the tool's
 * metadata schema is dropped, `init` seals a canary under the old key, and
 * a fresh 0600 config file holds the old key.
 */
export async function measureApply(ctx: ApplyContext): Promise<ChildResult | undefined> {
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
    const apply = await runCliMeasured(['apply', ...common, '--backup-dir', join(dir, 'backups'), '--report-dir', join(dir, 'reports'), ...recipientArgs(ctx.recipients)], env);
    if (apply.code !== 0) throw new Error(`master-key apply failed (exit ${apply.code}): ${apply.stderr.trim()}`);
    return { seconds: apply.seconds, rows: ctx.rows, maxRssBytes: apply.maxRssBytes, ...applyTimings(join(dir, 'reports')) };
  } finally {
    removeScratch(dir);
  }
}
