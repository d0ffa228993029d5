/**
 * The benchmark's last method: the full `master-key apply` as a child
 * process, on the same freshly restored table the other methods get.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { MasterKey } from '../src/crypto/key';
import type { ChildResult } from './bench-child';

/** What the apply measurement gets from the benchmark. */
export interface ApplyContext {
  /** Database holding `bench_secrets` (restored, sealed under `oldKey`, canary not yet created). */
  readonly url: string;
  readonly oldKey: MasterKey;
  readonly newKey: MasterKey;
  /** Rows in `bench_secrets`; the inventory is `BENCH_INVENTORY` from ./bench-data. */
  readonly rows: number;
}

/** The CLI entry point in the build output, if it was built. */
export function cliPath(): string {
  return join(__dirname, '..', 'src', 'cli', 'main.js');
}

/**
 * Measures one `master-key apply` run, or returns undefined when the CLI
 * cannot do it yet (the report then says "not measured").
 *
 * TODO(orchestrator): fill this in once `master-key init`/`apply` exist:
 *  1. write a 0600 config file in a temp dir holding `oldKey` (e.g.
 *     `ACT_MASTER_KEY=<hex>` in act.env) and `BENCH_INVENTORY` as an inventory
 *     JSON file;
 *  2. run `master-key init` for ctx.url (database URL through an environment
 *     variable, never argv) to create the canary under `oldKey`;
 *  3. time `node <cliPath()> apply ...` (new key generated at apply or given
 *     through a file, never argv), from spawn to exit;
 *  4. return { seconds, rows: ctx.rows, maxRssBytes } where maxRssBytes is
 *     the child's peak RSS (e.g. have the CLI report
 *     `process.resourceUsage().maxRSS`, or read it from the report file).
 */
export async function measureApply(ctx: ApplyContext): Promise<ChildResult | undefined> {
  if (!existsSync(cliPath())) return undefined;
  void ctx;
  return undefined;
}
