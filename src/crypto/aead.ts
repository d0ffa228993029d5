/**
 * AES-256-GCM with a 12-byte nonce and a 16-byte tag, in two implementations
 * that produce identical bytes: @noble/ciphers (the audited reference) and
 * node:crypto (OpenSSL, about three times faster; used on the hot path).
 * A test cross-checks both on random inputs.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { gcm } from '@noble/ciphers/aes.js';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export interface Aead {
  readonly name: 'noble' | 'node';
  /** Returns ciphertext || tag. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** Returns the plaintext, or undefined when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | undefined;
}

export const nobleAead: Aead = {
  name: 'noble',
  seal(key, nonce, plaintext, aad) {
    return gcm(key, nonce, aad).encrypt(plaintext);
  },
  open(key, nonce, sealed, aad) {
    try {
      return gcm(key, nonce, aad).decrypt(sealed);
    } catch {
      return undefined;
    }
  },
};

export const nodeAead: Aead = {
  name: 'node',
  seal(key, nonce, plaintext, aad) {
    const c = createCipheriv('aes-256-gcm', key, nonce);
    c.setAAD(aad);
    const body = c.update(plaintext);
    const final = c.final();
    const tag = c.getAuthTag();
    return Buffer.concat([body, final, tag]);
  },
  open(key, nonce, sealed, aad) {
    if (sealed.length < TAG_BYTES) return undefined;
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(aad);
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const body = d.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([body, d.final()]);
    } catch {
      return undefined;
    }
  },
};

export function aeadByName(name: 'noble' | 'node'): Aead {
  return name === 'noble' ? nobleAead : nodeAead;
}
