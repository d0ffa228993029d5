/**
 * Verification: every secret opens with a key (`master-key verify`, the
 * end of apply, and recover after a rotation that was never verified).
 */
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { withStore } from '../store/open';
import { ScanResult, Store } from '../store/store';
import { assertKeyOpensCanary, requireCanary } from './canary';
import { Context, withProgress } from './context';
import { readConfiguredKey } from './keys';
import { count } from '../format';
import { Verification } from './report';

/** Opens every secret with `key` in one read-only snapshot; `label` shows progress. */
export function scanWith(ctx: Context, store: Store, key: MasterKey, label?: string): Promise<ScanResult> {
  const scan = (onProgress?: (done: number) => void) => store.read((tx) => tx.scan(ctx.inventory, new Keyring([key]), { onProgress, batchSize: ctx.batchSize }));
  return label ? withProgress(ctx.progress, label, undefined, scan) : scan();
}

/**
 * After a rotation (or a restore): one scan, after the commit, opening every
 * stored value with the key now in the config. (With AES-GCM a value that
 * opens under the new key cannot also open under the old one, so no second
 * scan is needed.)
 */
export async function verifyAfterCommit(ctx: Context, store: Store, newKey: MasterKey): Promise<Verification> {
  const scan = await scanWith(ctx, store, newKey, 'verifying with the new key');
  const ok = scan.failureCount === 0;
  const proved = ok
    ? `Every one of the ${count(scan.total)} stored values was read back after the commit and opens with ${newKey.fingerprint} (AES-GCM: each is authentic and sealed under that key).`
    : `${count(scan.failureCount)} of the ${count(scan.total)} stored values read back after the commit do not open with ${newKey.fingerprint}.`;
  return { ok, checked: scan.total, failures: scan.failureCount, proved };
}

/** `master-key verify`: opens every secret with the configured key. */
export async function runVerify(ctx: Context): Promise<{ fingerprint: string; scan: ScanResult }> {
  const { key } = readConfiguredKey(ctx);
  return withStore(ctx.databaseUrl, { doing: 'verifying secrets' }, async (store) => {
    const canary = requireCanary(await store.readCanary());
    assertKeyOpensCanary(canary, key, `the key in ${ctx.targets[0].path}`);
    return { fingerprint: key.fingerprint, scan: await scanWith(ctx, store, key, 'verifying') };
  });
}
