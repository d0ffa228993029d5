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
 *
 * The same sum is also kept per group of places (`DIGEST_GROUPS` groups,
 * a place's group fixed by its table, column and row id): where a stored
 * value differs from the one written (a server started again wrote since),
 * only its group's sums differ, and verification opens the values of those
 * groups instead of giving up on the proof for all of them.
 */
import { createHash, hash as oneShot } from 'node:crypto';
import { defaultEngine } from '../crypto/gcm-batch';
import { textSlices } from '../text-slices';

/** A digest as reports and callers keep it. */
export interface InventoryDigest {
  readonly algorithm: 'sha256-sum';
  /** Values summed. */
  readonly count: number;
  /** The sum modulo 2^256, 64 lowercase hex characters. */
  readonly sum: string;
  /** The sums and counts per group of places (`placeGroup`), which say where two digests differ. */
  readonly groups?: DigestGroups;
}

/** Per group of places: 32 bytes of sum (big-endian, modulo 2^256) and the values summed. */
export interface DigestGroups {
  readonly sums: Uint8Array;
  readonly counts: Uint32Array;
}

/** Groups of places a digest keeps apart. */
export const DIGEST_GROUPS = 4096;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a (32 bits) of `h` continued with one byte. */
function fnv(h: number, byte: number): number {
  return Math.imul(h ^ byte, FNV_PRIME) >>> 0;
}

/** FNV-1a continued with the UTF-8 bytes of `s` (as Buffer.from(s, 'utf8') has them; a lone surrogate as U+FFFD). */
function fnvText(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = fnv(h, c);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
    else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x800) h = fnv(fnv(h, 0xc0 | (c >> 6)), 0x80 | (c & 0x3f));
    else if (c < 0x10000) h = fnv(fnv(fnv(h, 0xe0 | (c >> 12)), 0x80 | ((c >> 6) & 0x3f)), 0x80 | (c & 0x3f));
    else h = fnv(fnv(fnv(fnv(h, 0xf0 | (c >> 18)), 0x80 | ((c >> 12) & 0x3f)), 0x80 | ((c >> 6) & 0x3f)), 0x80 | (c & 0x3f));
  }
  return h;
}

/** FNV-1a continued with bytes. */
function fnvBytes(h: number, b: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) h = fnv(h, b[i]);
  return h;
}

/** Where `table NUL column NUL` leaves the group hash (each of a walk's columns is hashed once). */
const prefixes = new Map<string, number>();
function prefixHash(table: string, column: string): number {
  const k = `${table}\u0000${column}\u0000`;
  let h = prefixes.get(k);
  if (h === undefined) {
    h = fnvText(FNV_OFFSET, k);
    if (prefixes.size > 10_000) prefixes.clear();
    prefixes.set(k, h);
  }
  return h;
}

/** The group of a place (its table, column and row id; every value of a JSON document is in its row's group). */
export function placeGroup(table: string, column: string, id: string): number {
  return (fnvText(prefixHash(table, column), id) & (DIGEST_GROUPS - 1)) >>> 0;
}

/** The groups whose sums or counts differ between two digests (none known when either has no groups: then every group, if they differ at all). */
export function differingGroups(a: InventoryDigest, b: InventoryDigest): number[] {
  if (!a.groups || !b.groups) return sameDigest(a, b) ? [] : Array.from({ length: DIGEST_GROUPS }, (_, g) => g);
  const out: number[] = [];
  for (let g = 0; g < DIGEST_GROUPS; g++) {
    if (a.groups.counts[g] !== b.groups.counts[g]) {
      out.push(g);
      continue;
    }
    for (let j = 0; j < 32; j++) {
      if (a.groups.sums[32 * g + j] !== b.groups.sums[32 * g + j]) {
        out.push(g);
        break;
      }
    }
  }
  return out;
}

/** Items buffered before they are hashed in one call. */
const FLUSH_AT = 4096;
const SCRATCH_BYTES = 1 << 20;
/** Items larger than this are hashed on their own as they come, not copied into the scratch buffer. */
const LARGE = SCRATCH_BYTES >> 2;
/** Characters of a large text converted to UTF-8 and hashed at a time. */
const SLICE = 1 << 20;

/** Adds a SHA-256 digest (32 bytes of `h` from `from`), read as a big-endian number, to `acc`'s 32 bytes at `at`, modulo 2^256. */
function addInto(acc: Uint8Array, h: Uint8Array, at = 0, from = 0): void {
  let carry = 0;
  for (let j = 31; j >= 0; j--) {
    const v = acc[at + j] + h[from + j] + carry;
    acc[at + j] = v & 0xff;
    carry = v >> 8;
  }
}

/** Feeds `text` to `hash` as UTF-8 a slice at a time, so a large text is not converted whole. */
function updateText(hash: ReturnType<typeof createHash>, text: string): void {
  for (const slice of textSlices(text, SLICE)) hash.update(slice, 'utf8');
}

/** SHA-256 of a text's UTF-8 bytes (the bytes a database stores of it); a large text converted a slice at a time, never whole. */
export function textSha256(text: string): Buffer {
  if (text.length <= SLICE) return oneShot('sha256', text, 'buffer');
  const h = createHash('sha256');
  updateText(h, text);
  return h.digest();
}

const NUL = Buffer.from([0]);
const ONE = Uint8Array.from({ length: 32 }, (_, j) => (j === 31 ? 1 : 0));

export class ValueDigest {
  /** The sums per group, 32 bytes each; the total is their sum. */
  private readonly acc = new Uint8Array(32 * DIGEST_GROUPS);
  private readonly counts = new Uint32Array(DIGEST_GROUPS);
  private readonly engine = defaultEngine();
  /** Items waiting to be hashed, written one after the other; `offs` holds (start, length) pairs, `groups` each one's group. */
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly offs = new Int32Array(FLUSH_AT * 2);
  private readonly groups = new Int32Array(FLUSH_AT);
  private items = 0;
  private at = 0;
  private count = 0;
  private lastHead?: Buffer;
  private lastHeadHash = FNV_OFFSET;

  /** The last table and column added, and where their bytes leave the group hash (consecutive values share them). */
  private lastPlace = { table: '', column: '', hash: FNV_OFFSET };

  private groupOf(table: string, column: string, id: string): number {
    const last = this.lastPlace;
    if (last.table !== table || last.column !== column) this.lastPlace = { table, column, hash: prefixHash(table, column) };
    return (fnvText(this.lastPlace.hash, id) & (DIGEST_GROUPS - 1)) >>> 0;
  }

  add(table: string, column: string, path: string | undefined, id: string, text: string): void {
    const head = `${table}\u0000${column}\u0000${path ?? ''}\u0000${id}\u0000`;
    const group = this.groupOf(table, column, id);
    // At most 3 bytes per UTF-16 unit.
    const most = 3 * (head.length + text.length);
    if (most > LARGE) {
      const h = createHash('sha256');
      updateText(h, head);
      updateText(h, text);
      this.addHash(group, h.digest());
      return;
    }
    if (this.items === FLUSH_AT || this.at + most > this.scratch.length) this.flush();
    const start = this.at;
    this.at += this.scratch.write(head, this.at, 'utf8');
    this.at += this.scratch.write(text, this.at, 'utf8');
    this.queue(start, this.at - start, group);
  }

  /** The same as `add` for a text given as its UTF-8 bytes (a large re-sealed value). */
  addTextBytes(table: string, column: string, path: string | undefined, id: string, text: Uint8Array): void {
    const h = createHash('sha256');
    updateText(h, `${table}\u0000${column}\u0000${path ?? ''}\u0000${id}\u0000`);
    this.addHash(this.groupOf(table, column, id), h.update(text).digest());
  }

  /**
   * The same as `add(table, column, undefined, id, text)` with `head` the
   * UTF-8 of `table NUL column NUL NUL`, and the id's and text's UTF-8
   * bytes taken from `src` where they are.
   */
  addBytes(head: Buffer, src: Buffer, idStart: number, idLength: number, textStart: number, textLength: number): void {
    // The group hashes `table NUL column NUL id`: the head without its last NUL (hashed once per head), then the id.
    if (head !== this.lastHead) {
      this.lastHead = head;
      this.lastHeadHash = fnvBytes(FNV_OFFSET, head, 0, head.length - 1);
    }
    const group = (fnvBytes(this.lastHeadHash, src, idStart, idStart + idLength) & (DIGEST_GROUPS - 1)) >>> 0;
    const size = head.length + idLength + 1 + textLength;
    if (size > LARGE) {
      const h = createHash('sha256').update(head).update(src.subarray(idStart, idStart + idLength)).update(NUL).update(src.subarray(textStart, textStart + textLength));
      this.addHash(group, h.digest());
      return;
    }
    if (this.items === FLUSH_AT || this.at + size > this.scratch.length) this.flush();
    const start = this.at;
    this.at += head.copy(this.scratch, this.at);
    this.at += src.copy(this.scratch, this.at, idStart, idStart + idLength);
    this.scratch[this.at++] = 0;
    this.at += src.copy(this.scratch, this.at, textStart, textStart + textLength);
    this.queue(start, size, group);
  }

  private queue(start: number, length: number, group: number): void {
    this.offs[2 * this.items] = start;
    this.offs[2 * this.items + 1] = length;
    this.groups[this.items] = group;
    this.counts[group]++;
    this.items++;
    this.count++;
  }

  private addHash(group: number, h: Uint8Array): void {
    addInto(this.acc, h, 32 * group);
    this.counts[group]++;
    this.count++;
  }

  private flush(): void {
    if (this.items > 0) this.engine.sumSha256(this.scratch.subarray(0, this.at), this.offs.subarray(0, 2 * this.items), this.acc, this.groups.subarray(0, this.items));
    this.items = 0;
    this.at = 0;
  }

  /** Adds another digest's values (the sum of two digests is the digest of both sets, as values are summed), group by group when it has them. */
  merge(other: InventoryDigest): void {
    if (other.algorithm !== 'sha256-sum' || !/^[0-9a-f]{64}$/.test(other.sum)) throw new Error(`not a sha256-sum digest: ${other.algorithm}`);
    if (!other.groups) throw new Error('a digest without groups cannot be merged into one with them');
    for (let g = 0; g < DIGEST_GROUPS; g++) {
      addInto(this.acc, other.groups.sums, 32 * g, 32 * g);
      this.counts[g] += other.groups.counts[g];
    }
    this.count += other.count;
  }

  /** Takes another digest's values out again (its group sums subtracted modulo 2^256): the digest of the set without them. */
  subtract(other: InventoryDigest): void {
    if (other.algorithm !== 'sha256-sum' || !other.groups) throw new Error('only a sha256-sum digest with groups can be subtracted');
    const negated = new Uint8Array(32);
    for (let g = 0; g < DIGEST_GROUPS; g++) {
      // Two's complement of the group's 32-byte sum: invert every byte, then add one.
      for (let j = 0; j < 32; j++) negated[j] = ~other.groups.sums[32 * g + j] & 0xff;
      addInto(this.acc, negated, 32 * g);
      addInto(this.acc, ONE, 32 * g);
      this.counts[g] -= other.groups.counts[g];
    }
    this.count -= other.count;
  }

  result(): InventoryDigest {
    this.flush();
    const total = new Uint8Array(32);
    for (let g = 0; g < DIGEST_GROUPS; g++) addInto(total, this.acc, 0, 32 * g);
    return { algorithm: 'sha256-sum', count: this.count, sum: Buffer.from(total).toString('hex'), groups: { sums: Uint8Array.from(this.acc), counts: Uint32Array.from(this.counts) } };
  }
}

export function sameDigest(a: InventoryDigest, b: InventoryDigest): boolean {
  return a.algorithm === b.algorithm && a.count === b.count && a.sum === b.sum;
}
