/**
 * Opening and re-sealing many sealed values of one codec at once, for any
 * store (PostgreSQL today, SQLite next).
 *
 * Values whose text has exactly the shape the codec accepts are decoded
 * into one job (./gcm-batch) and opened and re-sealed by OpenSSL a batch at
 * a time; plaintexts stay inside the AES-GCM job and never become JavaScript
 * strings or buffers. Anything else, and anything that does not open, goes
 * to the codec itself, so error codes (SEALED_*) and edge cases are exactly
 * the codec's. Output is the codec's format: tests open batch output with
 * the codecs (node and noble) and codec output with the batch.
 *
 * Additional data: a value may come with its own additional authenticated
 * data (for example a column of its row); it is bound exactly as the codec
 * binds it (`v1`: after the header; `act`: alone), when opening and when
 * re-sealing.
 */
import { randomFillSync } from 'node:crypto';
import { ErrorCode, MasterKeyError, isMasterKeyError } from '../errors';
import { CodecName, KeySource, SecretCodec, V1_PREFIX, codecByName } from './codec';
import { EngineName, GcmEngine, KEY_BYTES, OVERHEAD, PackedJob, defaultEngine, engineByName, packJob, wipeKeys } from './gcm-batch';
import { KEY_ID_BYTES, MasterKey } from './key';
import { LARGE_VALUE, openLarge } from './large-value';

/**
 * A new stored text: a string, or its UTF-8 bytes: a value over
 * `LARGE_VALUE` characters that was re-sealed (ASCII), or a JSON document
 * written back (any UTF-8), so a large new text is never held as bytes and
 * as a string at once (stores write either as text).
 */
export type SealedText = string | Uint8Array;

/** The text of a `SealedText` (its bytes read as UTF-8: a document's text may hold any character). */
export function sealedText(t: SealedText): string {
  return typeof t === 'string' ? t : Buffer.from(t.buffer, t.byteOffset, t.length).toString('utf8');
}

/** One value's outcome: its re-sealed text (re-encryption), or why it does not open. */
export interface CryptoResult {
  readonly next?: SealedText;
  readonly code?: ErrorCode;
}

export interface BatchCryptoOptions {
  /**
   * `native` (the OpenSSL EVP addon) or `node` (node:crypto per value), on
   * the calling thread (worker threads each run their own: src/engine/crypto-pool).
   * @default `native` when the addon is built, else `node`
   */
  readonly mode?: EngineName;
}

const V1_HEADER = V1_PREFIX.length + 1 + KEY_ID_BYTES * 2 + 1;
const KEY_ID_RE = /^[0-9a-f]{12}$/;

/** How a codec's text wraps nonce || ciphertext || tag. */
interface Format {
  readonly encoding: 'base64' | 'base64url';
  /** Length of the text before the encoded bytes. */
  readonly headerLength: number;
  /** The key id named in the header (v1), '' when there is none (act: try every key), undefined when malformed. */
  keyId(s: string): string | undefined;
  /**
   * Bytes the encoded part decodes to when the codec itself would accept
   * its shape (the same pattern, length and canonical-form rules), else -1.
   * Decoding is then node's, as in the codec, so both see the same bytes.
   */
  decodedLength(body: string): number;
}

/** Any character outside the alphabets (a negated class is scanned several times faster than an anchored pattern). */
const NOT_B64 = /[^A-Za-z0-9+/=]/;
const NOT_B64URL = /[^A-Za-z0-9_-]/;

/** The 6-bit value of a base64 or base64url character (after the pattern check). */
function sextet(c: number): number {
  if (c >= 97) return c - 71; // a-z
  if (c >= 65) return c - 65; // A-Z
  if (c >= 48) return c + 4; // 0-9
  return 62 + (c === 47 || c === 95 ? 1 : 0); // + - / _
}

/**
 * Whether the last character of an encoding with `tail` characters in its
 * final group (2 or 3; 0 = none) leaves the unused low bits zero, i.e. the
 * text is the canonical encoding of its bytes, as the codecs require.
 */
function canonical(body: string, dataEnd: number, tail: number): boolean {
  if (tail === 0) return true;
  const v = sextet(body.charCodeAt(dataEnd - 1));
  return (v & (tail === 2 ? 0x0f : 0x03)) === 0;
}

const FORMATS: Record<CodecName, Format> = {
  act: {
    encoding: 'base64',
    headerLength: 0,
    keyId: () => '',
    decodedLength(b) {
      // The codec's pattern: alphabet, then at most two '=' that end the text, length a multiple of 4.
      if (b.length % 4 !== 0 || NOT_B64.test(b)) return -1;
      const eq = b.indexOf('=');
      const pad = eq < 0 ? 0 : b.length - eq;
      if (pad > 2 || (pad === 2 && b.charCodeAt(b.length - 1) !== 61)) return -1;
      return canonical(b, b.length - pad, pad === 0 ? 0 : 4 - pad) ? (b.length / 4) * 3 - pad : -1;
    },
  },
  v1: {
    encoding: 'base64url',
    headerLength: V1_HEADER,
    keyId(s) {
      if (!s.startsWith(`${V1_PREFIX}:`) || s[V1_HEADER - 1] !== ':') return undefined;
      const id = s.slice(V1_PREFIX.length + 1, V1_HEADER - 1);
      return KEY_ID_RE.test(id) ? id : undefined;
    },
    decodedLength: (b) => (b.length % 4 !== 1 && !NOT_B64URL.test(b) && canonical(b, b.length, b.length % 4) ? Math.floor((b.length * 3) / 4) : -1),
  },
};

const EMPTY = new Uint8Array(0);
/** The largest job buffer kept from one batch for the next. */
const KEEP_SCRATCH = 16 << 20;
/** keyIdx of a value the batch does not take (the codec judges it). */
const NOT_FAST = -3;

/** Opens (and, given `to`, re-seals) sealed values in batches, on the calling thread. One instance per scan or re-encryption (or worker thread). */
export class BatchCrypto {
  private readonly codecs = new Map<CodecName, SecretCodec>();
  private readonly keys: readonly MasterKey[];
  private readonly engine: GcmEngine;
  /** The last job's buffer, reused when large enough (one batch at a time). */
  private scratch: ArrayBuffer | undefined;
  /** Which implementation runs the AES-GCM work. */
  readonly mode: EngineName;

  constructor(
    private readonly from: KeySource,
    private readonly to?: MasterKey,
    opts: BatchCryptoOptions = {},
  ) {
    this.keys = from.all();
    if (this.keys.length > 64) throw new MasterKeyError('USAGE', `At most 64 keys can be tried at once, got ${this.keys.length}.`);
    this.engine = opts.mode ? engineByName(opts.mode) : defaultEngine();
    this.mode = this.engine.name;
  }

  private codec(name: CodecName): SecretCodec {
    let c = this.codecs.get(name);
    if (!c) this.codecs.set(name, (c = codecByName(name)));
    return c;
  }

  /**
   * Results in input order. Never throws for a bad value. `aad[i]`, when
   * given, is value i's own additional authenticated data.
   */
  async process(codec: CodecName, sealed: readonly string[], aad?: ReadonlyArray<Uint8Array | undefined>): Promise<CryptoResult[]> {
    const out = new Array<CryptoResult>(sealed.length);
    if (sealed.length === 0) return out;
    const fmt = FORMATS[codec];
    const large = new Map<number, { key: number; decoded: number }>();
    const done = this.buildJob(fmt, sealed, aad, large);
    if (done) this.engine.run(done);
    const resealed = done?.out ? Buffer.from(done.out.buffer, done.out.byteOffset, done.out.length) : undefined;
    const header = fmt.headerLength && this.to ? `${V1_PREFIX}:${this.to.id}:` : '';
    try {
      for (let i = 0; i < sealed.length; i++) {
        const big = large.get(i);
        if (big) {
          out[i] = this.large(fmt, sealed[i], big, aad?.[i]) ?? this.slow(codec, sealed[i], aad?.[i]);
          continue;
        }
        if (done && done.status[i] >= 0) {
          const off = done.offs[2 * i];
          out[i] = resealed ? { next: header + resealed.toString(fmt.encoding, off, off + done.offs[2 * i + 1]) } : {};
          continue;
        }
        // Whatever the batch did not open, the codec judges (exact error codes) and, rarely, opens.
        out[i] = this.slow(codec, sealed[i], aad?.[i]);
      }
    } finally {
      if (done) {
        wipeKeys(done);
        // Kept for the next batch, unless a large value made it large: then it goes (memory stays bounded by the batches to come).
        this.scratch = done.buffer.byteLength <= KEEP_SCRATCH ? done.buffer : undefined;
      }
    }
    return out;
  }

  /** A large value, a slice at a time (./large-value); undefined when it does not open (the codec then says why). */
  private large(fmt: Format, s: string, v: { key: number; decoded: number }, extra: Uint8Array = EMPTY): CryptoResult | undefined {
    const keys = v.key >= 0 ? [this.keys[v.key]] : this.keys;
    const header = fmt.headerLength ? Buffer.from(s.slice(0, fmt.headerLength), 'latin1') : EMPTY;
    const newHeader = fmt.headerLength && this.to ? `${V1_PREFIX}:${this.to.id}:` : '';
    const to = this.to ? { key: this.to.bytes(), aad: Buffer.concat([Buffer.from(newHeader, 'latin1'), extra]), header: newHeader } : undefined;
    const opened = openLarge(
      fmt.headerLength ? s.slice(fmt.headerLength) : s,
      v.decoded,
      fmt.encoding,
      keys.map((k) => k.bytes()),
      Buffer.concat([header, extra]),
      to,
    );
    if (!opened) return undefined;
    return opened.next !== undefined ? { next: opened.next } : {};
  }

  private slow(codec: CodecName, sealed: string, aad: Uint8Array | undefined): CryptoResult {
    const c = this.codec(codec);
    try {
      const pt = c.open(this.from, sealed, aad).plaintext;
      if (!this.to) return {};
      const next = c.seal(this.to, pt, { aad });
      pt.fill(0);
      return { next };
    } catch (e) {
      if (!isMasterKeyError(e)) throw e;
      return { code: e.code };
    }
  }

  /** Decodes every value the batch can take into one job; undefined when none. */
  private buildJob(fmt: Format, sealed: readonly string[], aad: ReadonlyArray<Uint8Array | undefined> | undefined, large: Map<number, { key: number; decoded: number }>): PackedJob | undefined {
    const n = sealed.length;
    const keyIdx = new Int32Array(n);
    const lens = new Int32Array(n);
    let data = 0;
    let aadBytes = 0;
    let any = false;
    const newHeaderBytes = fmt.headerLength ? Buffer.from(`${V1_PREFIX}:${this.to?.id ?? ''}:`, 'latin1') : EMPTY;
    for (let i = 0; i < n; i++) {
      const s = sealed[i];
      keyIdx[i] = NOT_FAST;
      if (s.length <= fmt.headerLength) continue;
      const id = fmt.keyId(s);
      if (id === undefined) continue;
      const k = id === '' ? -1 : this.keys.findIndex((x) => x.id === id);
      if (k === -1 && id !== '') continue;
      const len = fmt.decodedLength(fmt.headerLength ? s.slice(fmt.headerLength) : s);
      if (len < OVERHEAD) continue;
      if (s.length > LARGE_VALUE) {
        // On its own, a slice at a time, not in the job's buffers.
        large.set(i, { key: k, decoded: len });
        continue;
      }
      keyIdx[i] = k;
      lens[i] = len;
      data += len;
      const extra = aad?.[i]?.length ?? 0;
      aadBytes += 2 * (fmt.headerLength + extra);
      any = true;
    }
    if (!any) return undefined;
    const job = packJob({ count: n, keys: this.keys.length * KEY_BYTES, data, aad: aadBytes, reseal: this.to !== undefined }, this.scratch);
    this.scratch = undefined;
    this.keys.forEach((k, i) => job.keys.set(k.bytes(), i * KEY_BYTES));
    if (this.to) {
      job.newKey!.set(this.to.bytes());
      randomFillSync(job.nonces!);
    }
    const dataBuf = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.length);
    const aadBuf = Buffer.from(job.aad.buffer, job.aad.byteOffset, job.aad.length);
    let d = 0;
    let a = 0;
    for (let i = 0; i < n; i++) {
      job.keyIdx[i] = keyIdx[i];
      if (keyIdx[i] === NOT_FAST) {
        job.offs[2 * i + 1] = -1;
        continue;
      }
      const s = sealed[i];
      const written = dataBuf.write(fmt.headerLength ? s.slice(fmt.headerLength) : s, d, lens[i], fmt.encoding);
      job.offs[2 * i] = d;
      job.offs[2 * i + 1] = written === lens[i] ? lens[i] : -1;
      d += lens[i];
      const extra = aad?.[i] ?? EMPTY;
      // Old additional data: the value's own header (v1), then its extra data; new: the new key's header, then the same.
      const startOld = a;
      if (fmt.headerLength) a += aadBuf.write(s.slice(0, fmt.headerLength), a, 'latin1');
      aadBuf.set(extra, a);
      a += extra.length;
      job.aadOffs[4 * i] = startOld;
      job.aadOffs[4 * i + 1] = a - startOld;
      const startNew = a;
      aadBuf.set(newHeaderBytes, a);
      a += newHeaderBytes.length;
      aadBuf.set(extra, a);
      a += extra.length;
      job.aadOffs[4 * i + 2] = startNew;
      job.aadOffs[4 * i + 3] = a - startNew;
    }
    return job;
  }
}
