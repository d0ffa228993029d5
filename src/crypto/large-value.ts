/**
 * One large sealed value opened, and re-sealed, a slice at a time: its
 * encoded body (nonce || ciphertext || tag, in base64 or base64url) is
 * decoded slice by slice into AES-256-GCM of node:crypto (OpenSSL) and the
 * new ciphertext encoded as it comes, so a value of tens of megabytes is
 * never held decoded, nor as a batch job's buffers, beside its texts.
 *
 * AES-GCM streams plaintext before it checks the tag. Nothing of it leaves
 * here before the tag verified: each plaintext slice only goes into the
 * new cipher and is wiped at once, and the new text is returned only when
 * the old value authenticated (`final()`); otherwise it is dropped.
 * `BatchCrypto` sends values above `LARGE_VALUE` characters here, of a
 * shape the codec accepts (canonical encoding), and lets the codec judge
 * any that do not open, for its exact error code.
 */
import { DecipherGCM, createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { NONCE_BYTES, TAG_BYTES } from './aead';

/** Encoded characters above which a value is opened a slice at a time. */
export const LARGE_VALUE = 1 << 20;
/**
 * Encoded characters decoded at a time (a whole number of 4-character
 * groups). Small enough that each slice's buffers and the text encoded from
 * it are short-lived young objects, which the next scavenge frees, rather
 * than large ones that stay until a full collection.
 */
const SLICE = 48 * 1024;

export type Encoding = 'base64' | 'base64url';

/**
 * Bytes turned into text of `encoding` as they come, a whole number of
 * 3-byte groups at a time, into one buffer of the text's known length (so
 * the pieces of text die young instead of adding up): the new value's text
 * as bytes (ASCII), which the stores write as they are, so it is never
 * held as bytes and as a string at once.
 */
class Encoder {
  private carry = Buffer.alloc(0);
  private readonly text: Buffer;
  private at = 0;

  constructor(
    private readonly encoding: Encoding,
    header: string,
    bytes: number,
  ) {
    this.text = Buffer.allocUnsafe(header.length + (encoding === 'base64' ? 4 * Math.ceil(bytes / 3) : Math.ceil((4 * bytes) / 3)));
    this.at = this.text.write(header, 'latin1');
  }

  push(bytes: Uint8Array): void {
    const all = this.carry.length ? Buffer.concat([this.carry, bytes]) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const whole = all.length - (all.length % 3);
    if (whole > 0) this.at += this.text.write(all.toString(this.encoding, 0, whole), this.at, 'latin1');
    this.carry = Buffer.from(all.subarray(whole));
  }

  end(): Buffer {
    if (this.carry.length) this.at += this.text.write(this.carry.toString(this.encoding), this.at, 'latin1');
    return this.text.subarray(0, this.at);
  }
}

/** What opening a large value gives: which key opened it, and the new text (as its ASCII bytes) when it was re-sealed. */
export interface LargeOpened {
  readonly key: number;
  readonly next?: Uint8Array;
}

/**
 * Opens `body` (the encoded nonce || ciphertext || tag, `decoded` bytes)
 * with each of `keys` in turn, authenticating `aad`; given `to`, seals the
 * plaintext again under `to.key` with a fresh nonce and `to.aad`, encoded as
 * the input was, after `to.header`. Undefined when no key opens it.
 */
export function openLarge(
  body: string,
  decoded: number,
  encoding: Encoding,
  keys: readonly Uint8Array[],
  aad: Uint8Array,
  to?: { readonly key: Uint8Array; readonly aad: Uint8Array; readonly header: string },
): LargeOpened | undefined {
  const tagAt = decoded - TAG_BYTES;
  for (let k = 0; k < keys.length; k++) {
    const next = attempt(body, tagAt, encoding, keys[k], aad, to);
    if (next !== false) return { key: k, ...(next !== undefined ? { next } : {}) };
  }
  return undefined;
}

/** One key's attempt: false when the value does not open with it; the new text (or undefined when only opening) when it does. */
function attempt(body: string, tagAt: number, encoding: Encoding, key: Uint8Array, aad: Uint8Array, to: Parameters<typeof openLarge>[5]): Uint8Array | undefined | false {
  let decipher: DecipherGCM | undefined;
  const tag = Buffer.alloc(TAG_BYTES);
  const newNonce = to ? randomBytes(NONCE_BYTES) : undefined;
  const cipher = to ? createCipheriv('aes-256-gcm', to.key, newNonce!) : undefined;
  cipher?.setAAD(to!.aad);
  // Re-sealing keeps the length: the new text encodes as many bytes as the old one decodes to.
  const out = to ? new Encoder(encoding, to.header, tagAt + TAG_BYTES) : undefined;
  out?.push(newNonce!);
  const reseal = (pt: Buffer) => {
    if (cipher && pt.length) out!.push(cipher.update(pt));
    pt.fill(0);
  };
  let pos = 0;
  // Every slice decodes into the same buffer (a slice is whole 4-character groups, so only the last one ends in padding).
  const scratch = Buffer.allocUnsafe((SLICE / 4) * 3);
  for (let i = 0; i < body.length; i += SLICE) {
    const bytes = scratch.subarray(0, scratch.write(body.slice(i, i + SLICE), encoding));
    const start = pos;
    pos += bytes.length;
    let from = 0;
    if (!decipher) {
      // The first slice holds the nonce whole (a slice decodes to far more than 12 bytes).
      decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, NONCE_BYTES));
      decipher.setAAD(aad);
      from = NONCE_BYTES;
    }
    const ctEnd = Math.min(bytes.length, Math.max(from, tagAt - start));
    reseal(decipher.update(bytes.subarray(from, ctEnd)));
    if (pos > tagAt) bytes.copy(tag, Math.max(0, start - tagAt), Math.max(ctEnd, tagAt - start));
  }
  if (!decipher) return false;
  decipher.setAuthTag(tag);
  try {
    reseal(decipher.final());
  } catch {
    return false;
  }
  if (!cipher) return undefined;
  out!.push(cipher.final());
  out!.push(cipher.getAuthTag());
  return out!.end();
}
