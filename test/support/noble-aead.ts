/**
 * The independent AES-256-GCM reference the tests compare node:crypto (and
 * the batch crypto of src/crypto/batch.ts) against: @noble/ciphers, a development dependency only.
 */
import { gcm } from '@noble/ciphers/aes.js';
import type { Aead } from '../../src/crypto/aead';

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
