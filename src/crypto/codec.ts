/**
 * Sealed-secret codecs: how one secret is stored as text in a database column.
 *
 * - `v1` (default for new schemas): `mk1:<key id>:<base64url(nonce || ciphertext || tag)>`,
 *   with the header `mk1:<key id>:` bound as AES-GCM additional data. The format
 *   is specified byte for byte in docs/sealed-secret-format.md.
 * - `act` (what ACT stores today): `Base64(nonce(12) || ciphertext || tag(16))`,
 *   no key id, no additional data.
 *
 * Both take optional additional authenticated data per value (`aad`, e.g. a
 * column of the value's row): `v1` authenticates `header || aad`, `act`
 * authenticates `aad` alone. Opening needs exactly the bytes sealing used.
 */
import { randomBytes } from 'node:crypto';
import { MasterKeyError } from '../errors';
import { Aead, NONCE_BYTES, TAG_BYTES, nodeAead } from './aead';
import { KEY_ID_BYTES, MasterKey } from './key';

export type CodecName = 'v1' | 'act';
export const CODEC_NAMES: readonly CodecName[] = ['v1', 'act'];

export const V1_PREFIX = 'mk1';
const V1_HEADER_LENGTH = V1_PREFIX.length + 1 + KEY_ID_BYTES * 2 + 1;
const V1_RE = /^mk1:([0-9a-f]{12}):([A-Za-z0-9_-]*)$/;
const B64_CHARS_RE = /^[A-Za-z0-9+/]*$/;
/**
 * Padded base64: whole 4-character groups, `=` only as the last one or two
 * characters. Checked by length and one character class, in linear time: a
 * regular expression of repeated groups overflows V8's stack on a value of a
 * few megabytes.
 */
export function isPaddedBase64(text: string): boolean {
  if (text.length % 4 !== 0) return false;
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return B64_CHARS_RE.test(pad ? text.slice(0, text.length - pad) : text);
}
/** Base64 that ends part-way through a 4-character group (padding missing or cut): a cut-off ACT value. */
export function isCutBase64(text: string): boolean {
  const rest = text.length % 4;
  if (rest === 0) return false;
  if (rest === 3 && text.endsWith('=')) return !text.endsWith('==') && B64_CHARS_RE.test(text.slice(0, -1));
  return B64_CHARS_RE.test(text);
}
const EMPTY = new Uint8Array(0);

export interface Opened {
  readonly plaintext: Uint8Array;
  /** The id of the key that opened it. */
  readonly keyId: string;
}

/** Something that can give the keys to try for a sealed value. */
export interface KeySource {
  byId(id: string): MasterKey | undefined;
  all(): readonly MasterKey[];
}

/** What a caller of `SecretCodec.seal` may give besides the key and the plaintext. */
export interface SealOptions {
  readonly nonce?: Uint8Array | undefined;
  readonly aad?: Uint8Array | undefined;
}

export interface SecretCodec {
  readonly name: CodecName;
  /**
   * Seals plaintext under key with a fresh random nonce, or with `nonce` when
   * the caller draws it (tests, for fixed vectors). A nonce must never repeat
   * under one key. `aad`: the value's own additional authenticated data.
   */
  seal(key: MasterKey, plaintext: Uint8Array, opts?: SealOptions): string;
  /** Opens a sealed value with one of the keys (and the `aad` it was sealed with); throws a typed SEALED_* error. */
  open(keys: KeySource, sealed: string, aad?: Uint8Array): Opened;
  /** Cheap check whether text has this codec's shape (no decryption). */
  looksSealed(text: string): boolean;
}

/**
 * Decodes the base64 or base64url payload of a sealed value: nonce || ciphertext || tag.
 * Refuses a payload too short to hold a nonce and a tag, and one that is not
 * the canonical encoding of its bytes: Node's decoder ignores the unused low
 * bits of the last character, so without this check several different strings
 * would open to the same plaintext and an altered value would go unnoticed.
 */
function decodePayload(text: string, encoding: 'base64' | 'base64url'): Buffer {
  const raw = Buffer.from(text, encoding);
  if (raw.length < NONCE_BYTES + TAG_BYTES) {
    throw new MasterKeyError('SEALED_TRUNCATED', `The sealed value is truncated (its payload is ${raw.length} bytes, at least ${NONCE_BYTES + TAG_BYTES} needed); restore it from a backup.`);
  }
  if (raw.toString(encoding) !== text) {
    throw new MasterKeyError('SEALED_TAMPERED', 'The sealed value was altered (its base64 text is not in canonical form); restore it from a backup.');
  }
  return raw;
}

function partialGroup(chars: number): MasterKeyError {
  return new MasterKeyError('SEALED_TRUNCATED', `The sealed value is truncated (its ${chars}-character payload ends part-way through a base64 group); restore it from a backup.`);
}

/** What `v1` authenticates: the ASCII header, then the value's own additional data. */
function v1Aad(header: string, aad: Uint8Array): Uint8Array {
  const h = Buffer.from(header, 'ascii');
  return aad.length === 0 ? h : Buffer.concat([h, aad]);
}

export function v1Codec(aead: Aead = nodeAead): SecretCodec {
  return {
    name: 'v1',
    seal(key, plaintext, { nonce = randomBytes(NONCE_BYTES), aad = EMPTY } = {}) {
      const header = `${V1_PREFIX}:${key.id}:`;
      const body = aead.seal(key.bytes(), nonce, plaintext, v1Aad(header, aad));
      return header + Buffer.concat([nonce, body]).toString('base64url');
    },
    open(keys, sealed, aad = EMPTY) {
      const m = V1_RE.exec(sealed);
      if (!m) {
        if (sealed.startsWith('mk') && /^mk\d+:/.test(sealed) && !sealed.startsWith(`${V1_PREFIX}:`)) {
          throw new MasterKeyError('SEALED_MALFORMED', 'The sealed value has an unsupported format version; upgrade cdktf-master-key.');
        }
        throw new MasterKeyError('SEALED_MALFORMED', 'The value is not a v1 sealed secret (expected mk1:<key id>:<base64url>); check the inventory codec for this column.');
      }
      const keyId = m[1];
      if (m[2].length % 4 === 1) throw partialGroup(m[2].length);
      const raw = decodePayload(m[2], 'base64url');
      const key = keys.byId(keyId);
      if (!key) {
        throw new MasterKeyError('SEALED_UNKNOWN_KEY', `The value is sealed under key mk:${keyId}, which is not in the keyring; supply that key.`, { keyId: `mk:${keyId}` });
      }
      const pt = aead.open(key.bytes(), raw.subarray(0, NONCE_BYTES), raw.subarray(NONCE_BYTES), v1Aad(sealed.slice(0, V1_HEADER_LENGTH), aad));
      if (!pt) {
        throw new MasterKeyError('SEALED_TAMPERED', `The value sealed under mk:${keyId} fails authentication (it was altered or corrupted); restore it from a backup.`, { keyId: `mk:${keyId}` });
      }
      return { plaintext: pt, keyId };
    },
    looksSealed(text) {
      return V1_RE.test(text);
    },
  };
}

export function actCodec(aead: Aead = nodeAead): SecretCodec {
  return {
    name: 'act',
    seal(key, plaintext, { nonce = randomBytes(NONCE_BYTES), aad = EMPTY } = {}) {
      const body = aead.seal(key.bytes(), nonce, plaintext, aad);
      return Buffer.concat([nonce, body]).toString('base64');
    },
    open(keys, sealed, aad = EMPTY) {
      if (!isPaddedBase64(sealed)) {
        if (isCutBase64(sealed)) throw partialGroup(sealed.length);
        throw new MasterKeyError('SEALED_MALFORMED', 'The value is not base64 (ACT format: Base64(nonce || ciphertext || tag)); check the inventory codec for this column.');
      }
      const raw = decodePayload(sealed, 'base64');
      const nonce = raw.subarray(0, NONCE_BYTES);
      const body = raw.subarray(NONCE_BYTES);
      for (const key of keys.all()) {
        const pt = aead.open(key.bytes(), nonce, body, aad);
        if (pt) return { plaintext: pt, keyId: key.id };
      }
      throw new MasterKeyError('SEALED_WRONG_KEY', 'No key in the keyring opens the value (wrong key, or the value was altered); supply the key it was sealed under.');
    },
    looksSealed(text) {
      return text.length >= 40 && isPaddedBase64(text);
    },
  };
}

export function codecByName(name: CodecName, aead: Aead = nodeAead): SecretCodec {
  switch (name) {
    case 'v1':
      return v1Codec(aead);
    case 'act':
      return actCodec(aead);
    default:
      throw new MasterKeyError('INVENTORY_INVALID', `Unknown codec "${String(name)}"; use one of: ${CODEC_NAMES.join(', ')}.`);
  }
}
