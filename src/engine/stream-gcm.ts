/**
 * AES-256-GCM for many small messages at once.
 *
 * node:crypto's per-message `createCipheriv('aes-256-gcm')` costs several
 * microseconds of set-up for a 200-byte secret, which dominates a rotation.
 * Here a whole batch shares one OpenSSL AES-ECB call that encrypts every
 * counter block of every message (the GCM keystreams and tag masks, at
 * AES-NI speed), and GHASH runs in JavaScript with per-byte-position tables
 * (16 x 256 entries, 64 KiB, built once per key).
 *
 * The bytes are exactly those of NIST SP 800-38D with a 12-byte nonce, what
 * `nodeAead` and `nobleAead` produce; tests cross-check all three on random
 * inputs, and `selfTest()` re-checks against node:crypto at run time before
 * the engine trusts this path.
 *
 * Messages live in shared buffers at offsets, laid out as a sealed value is:
 * nonce(12) || ciphertext || tag(16), so a batch allocates a few large
 * buffers instead of several small ones per message.
 */
import { KeyObject, createCipheriv, createSecretKey, randomFillSync } from 'node:crypto';
import { NONCE_BYTES, TAG_BYTES, nodeAead } from '../crypto/aead';

const BLOCK = 16;
/** Bytes of a sealed message around its ciphertext. */
export const OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** Multiplies a 4-word big-endian GF(2^128) element by x (GCM's bit-reflected convention). */
function mulX(v: Uint32Array): void {
  const lsb = v[3] & 1;
  v[3] = (v[3] >>> 1) | (v[2] << 31);
  v[2] = (v[2] >>> 1) | (v[1] << 31);
  v[1] = (v[1] >>> 1) | (v[0] << 31);
  v[0] = (v[0] >>> 1) ^ (lsb ? 0xe1000000 : 0);
}

function bswap(w: number): number {
  return ((w & 0xff) << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24);
}

/**
 * Little-endian 32-bit word of b at o, zero-padded beyond `end`. All GHASH
 * state is kept in little-endian words (what a Uint32Array reads on x86 and
 * ARM), so aligned data is read without byte shuffling.
 */
function readLE(b: Uint8Array, o: number, end: number): number {
  if (o + 4 <= end) return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
  let w = 0;
  for (let i = 3; i >= 0; i--) w = (w << 8) | (o + i < end ? b[o + i] : 0);
  return w;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

function writeLE(b: Uint8Array, o: number, w: number): void {
  b[o] = w & 0xff;
  b[o + 1] = (w >>> 8) & 0xff;
  b[o + 2] = (w >>> 16) & 0xff;
  b[o + 3] = w >>> 24;
}

/**
 * GHASH under one hash key H. Multiplying a block X by H is linear in X, so
 * X·H = XOR over byte positions p of T[p][X_p], with T[p][b] = (b at byte p)·H
 * (stored as little-endian words).
 */
export class Ghash {
  private readonly t = new Int32Array(16 * 256 * 4);
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;
  /** The last data buffer's word view (batches reuse one buffer). */
  private viewOf: Uint8Array | undefined;
  private view: Int32Array | undefined;

  constructor(h: Uint8Array) {
    const be = (o: number) => ((h[o] << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3]) >>> 0;
    const v = Uint32Array.of(be(0), be(4), be(8), be(12));
    const t = this.t;
    for (let p = 0; p < 16; p++) {
      // Bit 0x80 of byte p is the coefficient of x^(8p): T[p][0x80] = H·x^(8p), T[p][0x40] = H·x^(8p+1), ...
      for (let bit = 0x80; bit > 0; bit >>= 1) {
        for (let w = 0; w < 4; w++) t[(p * 256 + bit) * 4 + w] = bswap(v[w]);
        mulX(v);
      }
      for (let b = 2; b < 256; b <<= 1) {
        for (let j = 1; j < b; j++) for (let w = 0; w < 4; w++) t[(p * 256 + b + j) * 4 + w] = t[(p * 256 + b) * 4 + w] ^ t[(p * 256 + j) * 4 + w];
      }
    }
  }

  /**
   * Writes GHASH(aad, data[at..at+len]) XOR mask[maskAt..+16] (the GCM tag)
   * to out[outAt..+16].
   */
  tag(aad: Uint8Array, data: Uint8Array, at: number, len: number, mask: Uint8Array, maskAt: number, out: Uint8Array, outAt: number): void {
    this.s0 = this.s1 = this.s2 = this.s3 = 0;
    this.absorb(aad, 0, aad.length);
    this.absorb(data, at, len);
    // Bit lengths as two big-endian 64-bit numbers; messages here are far below 2^32 bits.
    this.block(0, bswap(aad.length * 8), 0, bswap(len * 8));
    writeLE(out, outAt, this.s0 ^ readLE(mask, maskAt, maskAt + 4));
    writeLE(out, outAt + 4, this.s1 ^ readLE(mask, maskAt + 4, maskAt + 8));
    writeLE(out, outAt + 8, this.s2 ^ readLE(mask, maskAt + 8, maskAt + 12));
    writeLE(out, outAt + 12, this.s3 ^ readLE(mask, maskAt + 12, maskAt + 16));
  }

  /** A word view of d (Int32Array: values stay small integers for the JIT), when d is aligned on a little-endian host. */
  private words(d: Uint8Array): Int32Array | undefined {
    if (!LITTLE_ENDIAN_HOST || d.byteOffset % 4 !== 0) return undefined;
    if (this.viewOf !== d || !this.view) {
      this.viewOf = d;
      this.view = new Int32Array(d.buffer, d.byteOffset, d.byteLength >> 2);
    }
    return this.view;
  }

  private absorb(d: Uint8Array, at: number, len: number): void {
    const end = at + len;
    let o = at;
    const v = len >= BLOCK && at % 4 === 0 ? this.words(d) : undefined;
    if (v) {
      const blocks = (end - o) >> 4;
      this.run(v, at >> 2, blocks);
      o += blocks * BLOCK;
    }
    for (; o < end; o += BLOCK) this.block(readLE(d, o, end), readLE(d, o + 4, end), readLE(d, o + 8, end), readLE(d, o + 12, end));
  }

  /**
   * Y = (Y xor X)·H for `blocks` blocks of words starting at v[q]: one
   * table lookup per byte of Y xor X (byte p is bits 8(p%4).. of word p/4),
   * with the state in locals (the hot loop).
   */
  private run(v: Int32Array, q: number, blocks: number): void {
    const t = this.t;
    let s0 = this.s0;
    let s1 = this.s1;
    let s2 = this.s2;
    let s3 = this.s3;
    for (let b = 0; b < blocks; b++, q += 4) {
      const x0 = s0 ^ v[q];
      const x1 = s1 ^ v[q + 1];
      const x2 = s2 ^ v[q + 2];
      const x3 = s3 ^ v[q + 3];
      let j = (x0 & 0xff) << 2;
      s0 = t[j];
      s1 = t[j + 1];
      s2 = t[j + 2];
      s3 = t[j + 3];
      j = 1024 + (((x0 >>> 8) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 2048 + (((x0 >>> 16) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 3072 + ((x0 >>> 24) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 4096 + ((x1 & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 5120 + (((x1 >>> 8) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 6144 + (((x1 >>> 16) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 7168 + ((x1 >>> 24) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 8192 + ((x2 & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 9216 + (((x2 >>> 8) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 10240 + (((x2 >>> 16) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 11264 + ((x2 >>> 24) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 12288 + ((x3 & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 13312 + (((x3 >>> 8) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 14336 + (((x3 >>> 16) & 0xff) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
      j = 15360 + ((x3 >>> 24) << 2); s0 ^= t[j]; s1 ^= t[j + 1]; s2 ^= t[j + 2]; s3 ^= t[j + 3];
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }

  private readonly one = new Int32Array(4);

  /** Y = (Y xor X)·H for one block given as words. */
  private block(b0: number, b1: number, b2: number, b3: number): void {
    const one = this.one;
    one[0] = b0;
    one[1] = b1;
    one[2] = b2;
    one[3] = b3;
    this.run(one, 0, 1);
  }
}

/**
 * Where the messages of a batch are: `buf[at[i]..]` holds message i as
 * nonce || ciphertext || tag, with `len[i]` bytes of ciphertext.
 */
export interface Messages {
  readonly buf: Buffer;
  readonly at: Int32Array;
  readonly len: Int32Array;
  readonly count: number;
}

/** A keystream computed for a batch: message i's J0 block is at `ks[ksAt[i]]` (-1: not computed). */
export interface Keystream {
  readonly ks: Buffer;
  readonly ksAt: Int32Array;
}

/** Counter blocks go to OpenSSL in pieces of this size (large single calls are slower). */
const ECB_CHUNK = 64 * 1024;
let counterScratch = new Int32Array(ECB_CHUNK >> 2);

/** One key's batch context: the key object for OpenSSL and the GHASH table. */
export class GcmKey {
  private readonly key: KeyObject;
  readonly ghash: Ghash;

  constructor(raw: Uint8Array) {
    this.key = createSecretKey(raw);
    this.ghash = new Ghash(createCipheriv('aes-256-ecb', this.key, null).setAutoPadding(false).update(new Uint8Array(BLOCK)));
  }

  /**
   * The encrypted counter blocks of the selected messages: for each its J0
   * = nonce || 1 (the tag mask), then nonce || 2, 3, ... covering its
   * ciphertext. Written to `into` when it is large enough (it is returned).
   */
  keystream(m: Messages, selected: (i: number) => boolean, into?: Buffer): Keystream {
    const ksAt = new Int32Array(m.count).fill(-1);
    let total = 0;
    for (let i = 0; i < m.count; i++) {
      if (!selected(i)) continue;
      ksAt[i] = total;
      total += BLOCK * (1 + Math.ceil(m.len[i] / BLOCK));
    }
    const ks = into && into.length >= total ? into : Buffer.allocUnsafe(Math.max(total, into ? into.length * 2 : 0));
    const cipher = createCipheriv('aes-256-ecb', this.key, null).setAutoPadding(false);
    const src = m.buf;
    let ctr = counterScratch;
    let fill = 0;
    let flushed = 0;
    const flush = () => {
      cipher.update(new Uint8Array(ctr.buffer, 0, fill * 4)).copy(ks, flushed);
      flushed += fill * 4;
      fill = 0;
    };
    for (let i = 0; i < m.count; i++) {
      if (ksAt[i] < 0) continue;
      // The counter blocks' words in memory order, from the nonce bytes.
      const n = m.at[i];
      const w0 = readLE(src, n, n + 4);
      const w1 = readLE(src, n + 4, n + 8);
      const w2 = readLE(src, n + 8, n + 12);
      const blocks = 1 + Math.ceil(m.len[i] / BLOCK);
      if (blocks * 4 > ctr.length) counterScratch = ctr = new Int32Array(blocks * 8);
      if (fill + blocks * 4 > ctr.length) flush();
      for (let b = 1; b <= blocks; b++, fill += 4) {
        ctr[fill] = w0;
        ctr[fill + 1] = w1;
        ctr[fill + 2] = w2;
        ctr[fill + 3] = bswap(b);
      }
    }
    if (fill > 0) flush();
    return { ks, ksAt };
  }
}

/**
 * Checks each selected message's tag under `key`; returns its keystream
 * (to decrypt with) and which messages verified.
 */
export function verifyBatch(key: GcmKey, m: Messages, aad: (i: number) => Uint8Array, selected: (i: number) => boolean, into?: Buffer): Keystream & { ok: Uint8Array } {
  const { ks, ksAt } = key.keystream(m, selected, into);
  const ok = new Uint8Array(m.count);
  const expect = new Uint8Array(TAG_BYTES);
  for (let i = 0; i < m.count; i++) {
    if (ksAt[i] < 0) continue;
    const ct = m.at[i] + NONCE_BYTES;
    key.ghash.tag(aad(i), m.buf, ct, m.len[i], ks, ksAt[i], expect, 0);
    let diff = 0;
    const tag = ct + m.len[i];
    for (let j = 0; j < TAG_BYTES; j++) diff |= expect[j] ^ m.buf[tag + j];
    ok[i] = diff === 0 ? 1 : 0;
  }
  return { ks, ksAt, ok };
}

/** Word views of buffers, made once per batch (a view per message would cost more than the XOR). */
class Views {
  private readonly views = new Map<Uint8Array, Int32Array | null>();
  /** An Int32Array over all of b, or null when b is not 4-byte aligned. */
  of(b: Uint8Array): Int32Array | null {
    let v = this.views.get(b);
    if (v === undefined) this.views.set(b, (v = b.byteOffset % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2) : null));
    return v;
  }
}

/** dst[d..d+n] = a[x..x+n] ^ b[y..y+n] ^ c[z..z+n], a word at a time where all four are aligned. */
function xor3(views: Views, dst: Uint8Array, d: number, a: Uint8Array, x: number, b: Uint8Array, y: number, c: Uint8Array, z: number, n: number): void {
  let j = 0;
  const W = views.of(dst);
  const A = views.of(a);
  const B = views.of(b);
  const C = views.of(c);
  if (W && A && B && C && ((d | x | y | z) & 3) === 0) {
    const words = n >> 2;
    const wd = d >> 2;
    const wx = x >> 2;
    const wy = y >> 2;
    const wz = z >> 2;
    for (let q = 0; q < words; q++) W[wd + q] = A[wx + q] ^ B[wy + q] ^ C[wz + q];
    j = words * 4;
  }
  for (; j < n; j++) dst[d + j] = a[x + j] ^ b[y + j] ^ c[z + j];
}

/**
 * Seals the selected messages of `out` (nonces already in place) from the
 * bytes of `src` XOR `srcKs` (the old keystream: an old ciphertext becomes
 * the new one without the plaintext ever being stored; a zero keystream
 * for plaintext input).
 */
export function sealBatch(key: GcmKey, out: Messages, aad: Uint8Array, src: Messages, srcKs: (i: number) => { ks: Uint8Array; at: number }, selected: (i: number) => boolean, into?: Buffer): Buffer {
  const { ks, ksAt } = key.keystream(out, selected, into);
  const views = new Views();
  for (let i = 0; i < out.count; i++) {
    if (ksAt[i] < 0) continue;
    const n = out.len[i];
    const o = out.at[i] + NONCE_BYTES;
    const old = srcKs(i);
    xor3(views, out.buf, o, src.buf, src.at[i] + NONCE_BYTES, old.ks, old.at + BLOCK, ks, ksAt[i] + BLOCK, n);
    key.ghash.tag(aad, out.buf, o, n, ks, ksAt[i], out.buf, o + n);
  }
  return ks;
}

/** Random 96-bit nonces from the OS CSPRNG, drawn a few thousand at a time. */
export class NoncePool {
  private buf = Buffer.allocUnsafe(NONCE_BYTES * 4096);
  private at = this.buf.length;

  /** Writes a fresh nonce to dst[o..o+12]. */
  fill(dst: Uint8Array, o: number): void {
    if (this.at + NONCE_BYTES > this.buf.length) {
      randomFillSync(this.buf);
      this.at = 0;
    }
    const b = this.buf;
    for (let j = 0; j < NONCE_BYTES; j++) dst[o + j] = b[this.at + j];
    this.at += NONCE_BYTES;
  }
}

/**
 * Lays out messages of the given ciphertext lengths in one buffer (each at
 * a 16-byte aligned offset), reusing `reuse` when it is large enough.
 */
export function layout(lengths: ArrayLike<number>, reuse?: Buffer): Messages {
  const count = lengths.length;
  const at = new Int32Array(count);
  const len = new Int32Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    at[i] = total;
    len[i] = lengths[i];
    total += Math.ceil((lengths[i] + OVERHEAD) / BLOCK) * BLOCK;
  }
  const buf = reuse && reuse.length >= total ? reuse : Buffer.alloc(Math.max(total, reuse ? reuse.length * 2 : 0));
  return { buf, at, len, count };
}

/** Simple one-message-per-call forms over the batch functions (for tests and the self-test). */
export const simple = {
  seal(key: GcmKey, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
    const src = layout([plaintext.length]);
    src.buf.set(plaintext, NONCE_BYTES);
    const out = layout([plaintext.length]);
    out.buf.set(nonce, 0);
    const zero = new Uint8Array(BLOCK * (2 + Math.ceil(plaintext.length / BLOCK)));
    sealBatch(key, out, aad, src, () => ({ ks: zero, at: 0 }), () => true);
    return out.buf.subarray(NONCE_BYTES, NONCE_BYTES + plaintext.length + TAG_BYTES);
  },
  open(key: GcmKey, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | undefined {
    if (sealed.length < TAG_BYTES) return undefined;
    const m = layout([sealed.length - TAG_BYTES]);
    m.buf.set(nonce, 0);
    m.buf.set(sealed, NONCE_BYTES);
    const v = verifyBatch(key, m, () => aad, () => true);
    if (!v.ok[0]) return undefined;
    const n = m.len[0];
    const pt = new Uint8Array(n);
    for (let j = 0; j < n; j++) pt[j] = m.buf[NONCE_BYTES + j] ^ v.ks[BLOCK + j];
    return pt;
  },
};

let selfTested: boolean | undefined;

/**
 * Known-answer check against node:crypto's AES-GCM on random keys, nonces,
 * lengths (0-300 bytes) and additional data, run once per process. The
 * engine uses the batch path only when this passes.
 */
export function selfTest(): boolean {
  if (selfTested !== undefined) return selfTested;
  const rnd = (n: number) => randomFillSync(Buffer.alloc(n));
  let ok = true;
  for (let round = 0; round < 4 && ok; round++) {
    const raw = rnd(32);
    const key = new GcmKey(raw);
    for (const [i, n] of [0, 1, 15, 16, 17, 31, 33, 100, 255, 300].entries()) {
      const nonce = rnd(NONCE_BYTES);
      const pt = rnd(n);
      const aad = rnd(i % 3 === 0 ? 0 : i * 3);
      const ref = Buffer.from(nodeAead.seal(raw, nonce, pt, aad));
      const mine = simple.seal(key, nonce, pt, aad);
      const back = simple.open(key, nonce, ref, aad);
      if (!ref.equals(mine) || !back || !pt.equals(back)) ok = false;
    }
  }
  selfTested = ok;
  return ok;
}
