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
import { RotationReport } from './report';

/** Opens every secret with `key` in one read-only snapshot; `label` shows progress. */
export function scanWith(ctx: Context, store: Store, key: MasterKey, label?: string): Promise<ScanResult> {
  const scan = (onProgress?: (done: number) => void) => store.read((tx) => tx.scan(ctx.inventory, new Keyring([key]), { onProgress, batchSize: ctx.batchSize }));
  return label ? withProgress(ctx.progress, label, undefined, scan) : scan();
}

/** After a rotation: every secret opens with the new key; how many the old key still opens (it should be none). */
export async function verifyAfterRotation(ctx: Context, store: Store, newKey: MasterKey, oldKey: MasterKey): Promise<RotationReport['verification']> {
  const withNew = await scanWith(ctx, store, newKey, 'verifying with the new key');
  const withOld = await scanWith(ctx, store, oldKey);
  return { ok: withNew.failureCount === 0, checked: withNew.total, failures: withNew.failureCount, openWithOldKey: withOld.total - withOld.failureCount };
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
