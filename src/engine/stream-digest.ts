/**
 * An order-independent digest of sealed values: the sum, modulo 2^256, of
 * SHA-256(table NUL column NUL path NUL id NUL text) over every value. The
 * re-encryption sums what it writes; verification sums what the database
 * stores; equal sums and counts mean the database holds exactly those
 * values at exactly those places, whatever order rows come back in.
 *
 * What it is for: catching any difference between what was written and
 * what is stored (a lost or reordered write, a concurrent writer, a driver
 * or encoding bug). Any such accidental difference changes the sum except
 * with probability about 2^-256. It is not a defence against someone who
 * can write the database and chooses very many values to collide a 256-bit
 * additive sum on purpose (generalised birthday attacks make that far
 * cheaper than breaking SHA-256); such a writer could change the values
 * after any check anyway. SHA-256 runs in OpenSSL (the addon's loop, or
 * node:crypto). Pure apart from hashing; no I/O.
 */
import { defaultEngine } from '../crypto/gcm-batch';

/** A digest as reports and callers keep it. */
export interface InventoryDigest {
  readonly algorithm: 'sha256-sum';
  /** Values summed. */
  readonly count: number;
  /** The sum modulo 2^256, 64 lowercase hex characters. */
  readonly sum: string;
}

/** Items buffered before they are hashed in one call. */
const FLUSH_AT = 4096;

export class ValueDigest {
  private readonly acc = new Uint8Array(32);
  private readonly engine = defaultEngine();
  private items: string[] = [];
  private count = 0;

  add(table: string, column: string, path: string | undefined, id: string, text: string): void {
    this.items.push(`${table}\u0000${column}\u0000${path ?? ''}\u0000${id}\u0000${text}`);
    this.count++;
    if (this.items.length >= FLUSH_AT) this.flush();
  }

  private flush(): void {
    const items = this.items;
    if (items.length === 0) return;
    this.items = [];
    let size = 0;
    for (const s of items) size += Buffer.byteLength(s, 'utf8');
    const data = Buffer.allocUnsafe(size);
    const offs = new Int32Array(items.length * 2);
    let o = 0;
    items.forEach((s, i) => {
      const n = data.write(s, o, 'utf8');
      offs[2 * i] = o;
      offs[2 * i + 1] = n;
      o += n;
    });
    this.engine.sumSha256(data, offs, this.acc);
  }

  result(): InventoryDigest {
    this.flush();
    return { algorithm: 'sha256-sum', count: this.count, sum: Buffer.from(this.acc).toString('hex') };
  }
}

export function sameDigest(a: InventoryDigest, b: InventoryDigest): boolean {
  return a.algorithm === b.algorithm && a.count === b.count && a.sum === b.sum;
}
