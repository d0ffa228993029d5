/**
 * Verification: every secret opens with a key (`master-key verify`, the
 * end of apply, and recover after a rotation that was never verified).
 */
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { withStore } from '../store/open';
import { InventoryDigest, ScanResult, Store } from '../store/store';
import { assertKeyOpensCanary, requireCanary } from './canary';
import { Context, withProgress } from './context';
import { readConfiguredKey } from './keys';
import { count } from '../format';
import { RotationVerification, Verification } from './report';

/** Opens every secret with `key` in one read-only snapshot; `label` shows progress. */
export function scanWith(ctx: Context, store: Store, key: MasterKey, label?: string): Promise<ScanResult> {
  const scan = (onProgress?: (done: number) => void) => store.read((tx) => tx.scan(ctx.inventory, new Keyring([key]), { onProgress, batchSize: ctx.batchSize }));
  return label ? withProgress(ctx.progress, label, undefined, scan) : scan();
}

/**
 * After a rotation: one scan proving the database stores exactly what the
 * re-encryption wrote (equal digests over every value and its place) and
 * opening a random sample with the new key. Every value the re-encryption
 * wrote was sealed under the new key, so together they prove every stored
 * value opens with it, without decrypting everything a second time.
 * A server started again by the start hooks may already have added or
 * changed values: then the values the rotation wrote are proved stored as
 * written where the sums of their groups of places agree, and every value
 * stored where they differ is opened with the new key.
 */
export async function verifyRotation(ctx: Context, store: Store, newKey: MasterKey, written: InventoryDigest): Promise<RotationVerification> {
  const r = await withProgress(ctx.progress, 'verifying', undefined, (onProgress) =>
    store.read((tx) => tx.verify(ctx.inventory, newKey, { expected: written, batchSize: ctx.batchSize, onProgress })),
  );
  const changed = r.changedSince;
  return {
    ok: r.ok,
    checked: r.total,
    digestMatches: r.digestMatches === true,
    sampled: r.sampled,
    failures: r.sampleFailures.length + (changed?.failureCount ?? 0),
    ...(changed ? { changedSince: { groups: changed.groups, asWritten: changed.asWritten, opened: changed.opened, failures: changed.failureCount } } : {}),
    proved: r.proved,
  };
}

/**
 * After a restore: one scan, after the commit, opening every stored value
 * with the key now in the config (a restore writes values of several
 * origins, so every one is opened).
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
  return withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'verifying secrets' }, async (store) => {
    const canary = requireCanary(await store.readCanary());
    assertKeyOpensCanary(canary, key, `the key in ${ctx.targets[0].path}`);
    return { fingerprint: key.fingerprint, scan: await scanWith(ctx, store, key, 'verifying') };
  });
}
