/**
 * Opening and re-sealing many sealed values of one codec at once.
 *
 * The fast path decodes the two codec formats (`act`, `v1`; see
 * src/crypto/codec.ts) into one buffer and runs AES-GCM a batch at a time
 * (./stream-gcm): it verifies each tag under the old key and turns the old
 * ciphertext into the new one directly (old keystream XOR new keystream),
 * so plaintexts are never materialised. Anything it does not accept as
 * plainly well-formed and authentic goes to the codec itself, so errors
 * (SEALED_* codes) and edge cases are exactly the codec's. Output is
 * byte-compatible with the codecs: tests open fast-path output with the
 * codecs and codec output with the fast path.
 */
import { NONCE_BYTES, TAG_BYTES } from '../crypto/aead';
import { CodecName, KeySource, SecretCodec, V1_PREFIX, codecByName } from '../crypto/codec';
import { KEY_ID_BYTES, MasterKey } from '../crypto/key';
import { ErrorCode, isMasterKeyError } from '../errors';
import { GcmKey, Keystream, Messages, NoncePool, OVERHEAD, layout, sealBatch, selfTest, verifyBatch } from './stream-gcm';

/** One value's outcome: its re-sealed text (re-encryption), or why it does not open. */
export interface CryptoResult {
  readonly next?: string;
  readonly code?: ErrorCode;
}

const EMPTY = new Uint8Array(0);
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

/** A batch decoded into one buffer; `fast[i]` says whether value i is on the fast path (anything else is the codec's to judge). */
interface Decoded extends Messages {
  readonly fast: Uint8Array;
  readonly keyIds: Array<string | undefined>;
}

function decode(fmt: Format, sealed: readonly string[], reuse?: Buffer): Decoded {
  const keyIds = sealed.map((s) => (s.length > fmt.headerLength ? fmt.keyId(s) : undefined));
  const lens = sealed.map((s, i) => (keyIds[i] === undefined ? -1 : fmt.decodedLength(fmt.headerLength ? s.slice(fmt.headerLength) : s)));
  const m = layout(
    lens.map((n) => Math.max(0, n - OVERHEAD)),
    reuse,
  );
  const fast = new Uint8Array(sealed.length);
  for (let i = 0; i < sealed.length; i++) {
    const n = lens[i];
    if (n < OVERHEAD) continue;
    const s = sealed[i];
    const body = fmt.headerLength ? s.slice(fmt.headerLength) : s;
    if (m.buf.write(body, m.at[i], n, fmt.encoding) === n) fast[i] = 1;
  }
  return { ...m, fast, keyIds };
}

/**
 * Opens (and, given `to`, re-seals) sealed values in batches. One instance
 * per scan or re-encryption: it caches per-key GCM tables and a nonce pool.
 */
export class BatchCrypto {
  private readonly gcmKeys = new WeakMap<MasterKey, GcmKey>();
  private readonly nonces = new NoncePool();
  private readonly codecs = new Map<CodecName, SecretCodec>();
  /** Buffers reused from batch to batch: decoded input, sealed output. */
  private scratchIn: Buffer | undefined;
  private scratchOut: Buffer | undefined;
  /** Keystream buffers by role: one per old key (verify) and one for the new key (seal). */
  private readonly scratchKs = new Map<string, Buffer>();
  /** False when the batch AES-GCM self-test failed (or was turned off): then every value goes through the codec. */
  readonly fast: boolean;

  constructor(
    private readonly from: KeySource,
    private readonly to?: MasterKey,
    opts: { fast?: boolean } = {},
  ) {
    this.fast = (opts.fast ?? true) && selfTest();
  }

  private gcm(k: MasterKey): GcmKey {
    let g = this.gcmKeys.get(k);
    if (!g) this.gcmKeys.set(k, (g = new GcmKey(k.bytes())));
    return g;
  }

  private codec(name: CodecName): SecretCodec {
    let c = this.codecs.get(name);
    if (!c) this.codecs.set(name, (c = codecByName(name)));
    return c;
  }

  /** Results in input order. Never throws for a bad value. */
  process(codec: CodecName, sealed: readonly string[]): CryptoResult[] {
    const out = new Array<CryptoResult>(sealed.length);
    const fmt = FORMATS[codec];
    const d = this.fast ? decode(fmt, sealed, this.scratchIn) : undefined;
    if (d) this.scratchIn = d.buf;
    const opened = d ? this.verify(fmt, sealed, d) : [];
    // Whatever the fast path did not open, the codec judges (exact error codes) and, rarely, opens.
    const slow = new Map<number, Uint8Array>();
    for (let i = 0; i < sealed.length; i++) {
      if (opened[i]) continue;
      try {
        slow.set(i, this.codec(codec).open(this.from, sealed[i]).plaintext);
      } catch (e) {
        if (!isMasterKeyError(e)) throw e;
        out[i] = { code: e.code };
      }
    }
    if (!this.to) {
      for (let i = 0; i < sealed.length; i++) out[i] ??= {};
      return out;
    }
    for (const [i, pt] of slow) out[i] = { next: this.codec(codec).seal(this.to, pt) };
    if (d) this.reseal(codec, d, opened, out);
    return out;
  }

  /** Verifies tags key by key; returns, per value, the keystream that opens it. */
  private verify(fmt: Format, sealed: readonly string[], d: Decoded): Array<{ ks: Uint8Array; at: number } | undefined> {
    const opened = new Array<{ ks: Uint8Array; at: number } | undefined>(sealed.length);
    const headers = new Map<string, Uint8Array>();
    const aad = (i: number): Uint8Array => {
      if (!fmt.headerLength) return EMPTY;
      const h = sealed[i].slice(0, fmt.headerLength);
      let b = headers.get(h);
      if (!b) headers.set(h, (b = Buffer.from(h, 'latin1')));
      return b;
    };
    for (const key of this.from.all()) {
      const want = (i: number) => d.fast[i] === 1 && !opened[i] && (d.keyIds[i] === '' || d.keyIds[i] === key.id);
      let any = false;
      for (let i = 0; i < d.count && !any; i++) any = want(i);
      if (!any) continue;
      const v: Keystream & { ok: Uint8Array } = verifyBatch(this.gcm(key), d, aad, want, this.scratchKs.get(`verify:${key.id}`));
      this.scratchKs.set(`verify:${key.id}`, v.ks);
      for (let i = 0; i < d.count; i++) if (v.ok[i]) opened[i] = { ks: v.ks, at: v.ksAt[i] };
    }
    return opened;
  }

  /** Seals every fast-opened value under `to`, straight from its old ciphertext. */
  private reseal(codec: CodecName, d: Decoded, opened: ReadonlyArray<{ ks: Uint8Array; at: number } | undefined>, out: CryptoResult[]): void {
    const to = this.to!;
    const fmt = FORMATS[codec];
    const header = fmt.headerLength ? `${V1_PREFIX}:${to.id}:` : '';
    const aad = header ? Buffer.from(header, 'latin1') : EMPTY;
    const target = layout(d.len, this.scratchOut);
    this.scratchOut = target.buf;
    const sel = (i: number) => opened[i] !== undefined;
    for (let i = 0; i < d.count; i++) if (sel(i)) this.nonces.fill(target.buf, target.at[i]);
    this.scratchKs.set('seal', sealBatch(this.gcm(to), target, aad, d, (i) => opened[i]!, sel, this.scratchKs.get('seal')));
    const buf = target.buf;
    for (let i = 0; i < d.count; i++) {
      if (!sel(i)) continue;
      const at = target.at[i];
      out[i] = { next: header + buf.toString(fmt.encoding, at, at + NONCE_BYTES + d.len[i] + TAG_BYTES) };
    }
  }
}
