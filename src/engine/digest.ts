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
import { createHash } from 'node:crypto';
import { defaultEngine } from '../crypto/gcm-batch';
import { textSlices } from '../text-slices';

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
const SCRATCH_BYTES = 1 << 20;
/** Items larger than this are hashed on their own as they come, not copied into the scratch buffer. */
const LARGE = SCRATCH_BYTES >> 2;
/** Characters of a large text converted to UTF-8 and hashed at a time. */
const SLICE = 1 << 20;

/** Adds a SHA-256 digest, read as a big-endian number, to `acc` modulo 2^256. */
function addInto(acc: Uint8Array, h: Uint8Array): void {
  let carry = 0;
  for (let j = 31; j >= 0; j--) {
    const v = acc[j] + h[j] + carry;
    acc[j] = v & 0xff;
    carry = v >> 8;
  }
}

/** Feeds `text` to `hash` as UTF-8 a slice at a time, so a large text is not converted whole. */
function updateText(hash: ReturnType<typeof createHash>, text: string): void {
  for (const slice of textSlices(text, SLICE)) hash.update(slice, 'utf8');
}

const NUL = Buffer.from([0]);

export class ValueDigest {
  private readonly acc = new Uint8Array(32);
  private readonly engine = defaultEngine();
  /** Items waiting to be hashed, written one after the other; `offs` holds (start, length) pairs. */
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly offs = new Int32Array(FLUSH_AT * 2);
  private items = 0;
  private at = 0;
  private count = 0;

  add(table: string, column: string, path: string | undefined, id: string, text: string): void {
    const head = `${table}\u0000${column}\u0000${path ?? ''}\u0000${id}\u0000`;
    // At most 3 bytes per UTF-16 unit.
    const most = 3 * (head.length + text.length);
    if (most > LARGE) {
      const h = createHash('sha256');
      updateText(h, head);
      updateText(h, text);
      addInto(this.acc, h.digest());
      this.count++;
      return;
    }
    if (this.items === FLUSH_AT || this.at + most > this.scratch.length) this.flush();
    const start = this.at;
    this.at += this.scratch.write(head, this.at, 'utf8');
    this.at += this.scratch.write(text, this.at, 'utf8');
    this.offs[2 * this.items] = start;
    this.offs[2 * this.items + 1] = this.at - start;
    this.items++;
    this.count++;
  }

  /** The same as `add` for a text given as its UTF-8 bytes (a large re-sealed value). */
  addTextBytes(table: string, column: string, path: string | undefined, id: string, text: Uint8Array): void {
    const h = createHash('sha256');
    updateText(h, `${table}\u0000${column}\u0000${path ?? ''}\u0000${id}\u0000`);
    addInto(this.acc, h.update(text).digest());
    this.count++;
  }

  /**
   * The same as `add(table, column, undefined, id, text)` with `head` the
   * UTF-8 of `table NUL column NUL NUL`, and the id's and text's UTF-8
   * bytes taken from `src` where they are.
   */
  addBytes(head: Buffer, src: Buffer, idStart: number, idLength: number, textStart: number, textLength: number): void {
    const size = head.length + idLength + 1 + textLength;
    if (size > LARGE) {
      const h = createHash('sha256').update(head).update(src.subarray(idStart, idStart + idLength)).update(NUL).update(src.subarray(textStart, textStart + textLength));
      addInto(this.acc, h.digest());
      this.count++;
      return;
    }
    if (this.items === FLUSH_AT || this.at + size > this.scratch.length) this.flush();
    const start = this.at;
    this.at += head.copy(this.scratch, this.at);
    this.at += src.copy(this.scratch, this.at, idStart, idStart + idLength);
    this.scratch[this.at++] = 0;
    this.at += src.copy(this.scratch, this.at, textStart, textStart + textLength);
    this.offs[2 * this.items] = start;
    this.offs[2 * this.items + 1] = size;
    this.items++;
    this.count++;
  }

  private flush(): void {
    if (this.items > 0) this.engine.sumSha256(this.scratch.subarray(0, this.at), this.offs.subarray(0, 2 * this.items), this.acc);
    this.items = 0;
    this.at = 0;
  }

  /** Adds another digest's values (the sum of two digests is the digest of both sets, as values are summed). */
  merge(other: InventoryDigest): void {
    if (other.algorithm !== 'sha256-sum' || !/^[0-9a-f]{64}$/.test(other.sum)) throw new Error(`not a sha256-sum digest: ${other.algorithm}`);
    addInto(this.acc, Buffer.from(other.sum, 'hex'));
    this.count += other.count;
  }

  result(): InventoryDigest {
    this.flush();
    return { algorithm: 'sha256-sum', count: this.count, sum: Buffer.from(this.acc).toString('hex') };
  }
}

export function sameDigest(a: InventoryDigest, b: InventoryDigest): boolean {
  return a.algorithm === b.algorithm && a.count === b.count && a.sum === b.sum;
}
