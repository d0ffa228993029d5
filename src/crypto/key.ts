/**
 * Master keys: 32 random bytes written as 64 lowercase hex characters (what
 * `openssl rand -hex 32` prints). A `MasterKey` never shows its bytes when
 * printed, logged or serialised: only its fingerprint.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { MasterKeyError } from '../errors';

export const KEY_BYTES = 32;
export const KEY_HEX_LENGTH = KEY_BYTES * 2;
/** Domain-separation label hashed before the key bytes. */
export const FINGERPRINT_LABEL = 'cdktf-master-key/fingerprint/v1';
/** Bytes of the SHA-256 digest kept as the key id (12 hex characters). */
export const KEY_ID_BYTES = 6;

const keyBytes = new WeakMap<MasterKey, Uint8Array>();

export class MasterKey {
  /** 12 lowercase hex characters derived from SHA-256 of the label and the key. */
  readonly id: string;

  private constructor(bytes: Uint8Array) {
    keyBytes.set(this, bytes);
    this.id = keyIdOf(bytes);
  }

  /** Wraps 32 raw bytes (copied). */
  static fromBytes(bytes: Uint8Array): MasterKey {
    if (bytes.length !== KEY_BYTES) {
      throw new MasterKeyError('KEY_MALFORMED', `A master key must be ${KEY_BYTES} bytes, got ${bytes.length}; generate one with \`openssl rand -hex 32\`.`);
    }
    return new MasterKey(Uint8Array.from(bytes));
  }

  /** A new key from the operating system's CSPRNG. */
  static generate(): MasterKey {
    return new MasterKey(new Uint8Array(randomBytes(KEY_BYTES)));
  }

  /** `mk:` followed by the key id, the only printable form of a key. */
  get fingerprint(): string {
    return `mk:${this.id}`;
  }

  /** The raw key bytes. Handle with care: never log or pass them on argv. */
  bytes(): Uint8Array {
    return keyBytes.get(this)!;
  }

  /** The key as 64 lowercase hex characters, for writing config files only. */
  toHex(): string {
    return Buffer.from(this.bytes()).toString('hex');
  }

  /** Constant-time comparison of the key bytes. */
  equals(other: MasterKey): boolean {
    return timingSafeEqual(this.bytes(), other.bytes());
  }

  toString(): string {
    return `MasterKey(${this.fingerprint})`;
  }

  toJSON(): string {
    return this.fingerprint;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export function keyIdOf(bytes: Uint8Array): string {
  return createHash('sha256').update(FINGERPRINT_LABEL).update(Buffer.from([0])).update(bytes).digest('hex').slice(0, KEY_ID_BYTES * 2);
}

/**
 * Parses a key written as 64 hex characters. Surrounding whitespace and a
 * trailing newline are tolerated; upper-case hex is accepted. The error names
 * the problem (empty, wrong length, not hex) and never echoes the input.
 *
 * @param source words naming where the text came from, e.g. "the key in /etc/act/act.env"
 */
export function parseKey(text: string, source = 'the key'): MasterKey {
  // Checked before trimming: String#trim() silently strips U+FEFF, so a mark
  // after leading whitespace or at the end would otherwise be accepted.
  if (text.includes('\uFEFF')) {
    throw new MasterKeyError('KEY_MALFORMED', `${cap(source)} contains a byte-order mark; save it as plain ASCII (64 hex characters, as \`openssl rand -hex 32\` prints).`);
  }
  const t = text.trim();
  if (t.length === 0) {
    throw new MasterKeyError('KEY_MALFORMED', `${cap(source)} is empty; it must be 64 hex characters (generate one with \`openssl rand -hex 32\`).`);
  }
  if (t.length !== KEY_HEX_LENGTH) {
    throw new MasterKeyError('KEY_MALFORMED', `${cap(source)} is ${t.length} characters long, not ${KEY_HEX_LENGTH}; it must be 64 hex characters (generate one with \`openssl rand -hex 32\`).`);
  }
  if (!/^[0-9a-fA-F]+$/.test(t)) {
    throw new MasterKeyError('KEY_MALFORMED', `${cap(source)} contains characters that are not hex digits (0-9, a-f); it must be 64 hex characters (generate one with \`openssl rand -hex 32\`).`);
  }
  return MasterKey.fromBytes(new Uint8Array(Buffer.from(t, 'hex')));
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
