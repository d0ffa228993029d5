/**
 * AES-256-GCM with a 12-byte nonce and a 16-byte tag, from node:crypto
 * (OpenSSL). The tests cross-check it on random inputs against the audited
 * @noble/ciphers implementation (test/support/noble-aead.ts), which is a
 * development dependency only: nothing here imports it at run time.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

export interface Aead {
  /** `node` here; `noble` for the reference the tests compare against. */
  readonly name: 'noble' | 'node';
  /** Returns ciphertext || tag. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  /** Returns the plaintext, or undefined when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | undefined;
}

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
