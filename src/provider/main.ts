#!/usr/bin/env node
/**
 * terraform-provider-masterkey: the entry point Terraform launches (through
 * the launcher script `master-key provider install` puts in its local
 * mirror). Serves the provider until Terraform shuts it down; when Terraform
 * dies without doing so, finishes the RPC in progress (a rotation is never
 * abandoned half-way by choice) and exits.
 */
import { log, servePlugin } from './plugin-server';
import { providerService, rpcsInFlight } from './provider';

/** Exits once the parent (Terraform) is gone and no RPC is running. */
function exitWithParent(parent: number): void {
  const timer = setInterval(() => {
    if (process.ppid === parent || rpcsInFlight() > 0) return;
    clearInterval(timer);
    process.exit(0);
  }, 1000);
  timer.unref();
}

async function main(): Promise<void> {
  // Terraform may be gone (kill -9) while we still write: a closed pipe must not kill a rotation in progress.
  process.stderr.on('error', () => undefined);
  process.stdout.on('error', () => undefined);
  const served = await servePlugin(providerService());
  exitWithParent(process.ppid);
  process.on('exit', () => served.stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).message ?? String(e)}\n`);
  log('error', 'terraform-provider-masterkey failed to start', { error: String((e as Error)?.stack ?? e) });
  process.exit(1);
});
