/**
 * The PostgreSQL store's read-only walks: opening every sealed value of an
 * inventory (`scanInventory`) and verification (`verifyInventory`), in one
 * snapshot, streaming rows by COPY in bounded memory whatever the table
 * size. The per-row work is the engine's.
 */
import type { ClientBase } from 'pg';
import type { KeySource } from '../../crypto/codec';
import type { MasterKey } from '../../crypto/key';
import { Inventory } from '../../inventory/inventory';
import { releaseLarge, textIn } from '../../engine/memory';
import { openBatch } from '../../engine/reseal';
import { valueCrypto } from '../../engine/value-crypto';
import { PlaceFilter, VerifyOptions, VerifyResult, VerifyScan, inGroups } from '../../engine/verify';
import { Keyring } from '../../crypto/keyring';
import { ScanResult, ScanTally, WalkOptions, batchSizeOf } from '../../engine/walk';
import { naming, withTransaction } from './client';
import { copyRawRows } from './copy';
import { copyBatches } from './row-source';
import { rowLayout, selectSql } from './statements';
import { planInventory } from './tables';

/** Runs fn in a read-only repeatable-read transaction unless the client is already in one. */
function inReadTransaction<T>(client: ClientBase, fn: () => Promise<T>): Promise<T> {
  return client.getTransactionStatus() === 'I' ? withTransaction(client, fn, 'read only') : fn();
}

/** Read-only: open every sealed value of every inventory entry with `keys` (given `only`: those at its places); never throws for bad values (lists them). */
export async function scanInventory(client: ClientBase, inv: Inventory, keys: KeySource, opts: WalkOptions = {}, only?: PlaceFilter): Promise<ScanResult> {
  const batchSize = batchSizeOf(opts);
  const plans = await planInventory(client, inv);
  const crypto = valueCrypto({ from: keys }, opts);
  const tally = new ScanTally(inv);
  await inReadTransaction(client, async () => {
    for (const plan of plans) {
      await naming(plan, 'reading', async () => {
        const shape = rowLayout(plan);
        // Nothing else runs on the connection meanwhile, so COPY can stream the rows (cheaper than FETCH).
        for await (const rows of copyBatches(client, selectSql(plan), batchSize)) {
          const done = tally.add(plan.table, await openBatch(rows, { shape, crypto, ...(only ? { only } : {}) }));
          releaseLarge(textIn(rows));
          opts.onProgress?.(done);
        }
      });
    }
  }).finally(() => crypto.close());
  return tally.result();
}


/**
 * Read-only: proves the database stores what a re-encryption wrote,
 * without decrypting every value again. Reads every sealed value in one
 * snapshot (a read-only repeatable-read transaction unless the caller is in
 * one), computes the digest of what is stored (see the engine's digest) and
 * compares it with `opts.expected`, and opens a random sample of
 * `opts.sampleSize` values with `key`. Never throws for a bad value: the
 * result says what holds (`ok`, `proved`).
 */
export async function verifyInventory(client: ClientBase, inv: Inventory, key: MasterKey, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const batchSize = batchSizeOf(opts);
  const scan = new VerifyScan(inv, opts);
  const plans = await planInventory(client, inv);
  let reopened: ScanResult | undefined;
  await inReadTransaction(client, async () => {
    for (const plan of plans) {
      await naming(plan, 'verifying', async () => {
        const shape = rowLayout(plan);
        if (plan.columns.some((c) => c.json)) {
          for await (const rows of copyBatches(client, selectSql(plan), batchSize)) {
            scan.add(rows, shape);
            const chars = textIn(rows);
            // Emptied: the batch's texts go before the next is read (the reading generators hold it until resumed).
            rows.length = 0;
            releaseLarge(chars);
          }
          return;
        }
        // Plain text columns: hashed as the bytes COPY sends, undecoded.
        const fields = shape.first + plan.columns.length + plan.aadColumns.length;
        for await (const rows of copyRawRows(client, selectSql(plan), fields)) {
          scan.addRaw(rows, shape);
          releaseLarge(rows.buf.length);
        }
      });
    }
    // Where the stored values differ from the written ones, every value there is opened, in the same snapshot.
    const differing = scan.differingGroups();
    if (differing.length > 0) reopened = await scanInventory(client, inv, new Keyring([key]), { batchSize }, inGroups(differing));
  });
  return scan.finish(key, reopened);
}

