/**
 * AES-256-GCM: the @noble/ciphers and node:crypto implementations give the
 * same bytes, open each other's output, match the published GCM test vectors,
 * and refuse anything altered.
 */
import fc from 'fast-check';
import { Aead, NONCE_BYTES, TAG_BYTES, nodeAead } from '../src/crypto/aead';
import { nobleAead } from './support/noble-aead';

const IMPLS: readonly Aead[] = [nobleAead, nodeAead];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
const nonce = fc.uint8Array({ minLength: NONCE_BYTES, maxLength: NONCE_BYTES });
const plaintext = fc.uint8Array({ maxLength: 300 });
const aad = fc.uint8Array({ maxLength: 64 });

describe('noble and node AES-256-GCM', () => {
  it('give identical bytes and open each other’s output', () => {
    fc.assert(
      fc.property(key, nonce, plaintext, aad, (k, n, p, a) => {
        const byNoble = nobleAead.seal(k, n, p, a);
        const byNode = nodeAead.seal(k, n, p, a);
        expect(hex(byNode)).toBe(hex(byNoble));
        expect(byNoble).toHaveLength(p.length + TAG_BYTES);
        expect(hex(nodeAead.open(k, n, byNoble, a)!)).toBe(hex(p));
        expect(hex(nobleAead.open(k, n, byNode, a)!)).toBe(hex(p));
      }),
      { numRuns: 400 },
    );
  });

  // NIST GCM specification (McGrew & Viega), test cases 13, 14 and 16 (AES-256).
  const vectors = [
    { key: '00'.repeat(32), iv: '00'.repeat(12), pt: '', aad: '', ct: '', tag: '530f8afbc74536b9a963b4f1c4cb738b' },
    { key: '00'.repeat(32), iv: '00'.repeat(12), pt: '00'.repeat(16), aad: '', ct: 'cea7403d4d606b6e074ec5d3baf39d18', tag: 'd0d1c8a799996bf0265b98b5d48ab919' },
    {
      key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
      iv: 'cafebabefacedbaddecaf888',
      pt: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
      aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
      ct: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
      tag: '76fc6ece0f4e1768cddf8853bb2d551b',
    },
  ];
  it.each(IMPLS.flatMap((impl) => vectors.map((v, i) => [impl.name, i, impl, v] as const)))('%s matches GCM test vector #%d', (_, __, impl, v) => {
    const b = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
    expect(hex(impl.seal(b(v.key), b(v.iv), b(v.pt), b(v.aad)))).toBe(v.ct + v.tag);
    expect(hex(impl.open(b(v.key), b(v.iv), b(v.ct + v.tag), b(v.aad))!)).toBe(v.pt);
  });

  describe.each(IMPLS.map((impl) => [impl.name, impl] as const))('%s open refuses', (_, impl) => {
    it('a wrong key, a wrong nonce or wrong additional data', () => {
      fc.assert(
        fc.property(key, key, nonce, nonce, plaintext, aad, aad, (k1, k2, n1, n2, p, a1, a2) => {
          const sealed = IMPLS[0].seal(k1, n1, p, a1);
          if (hex(k1) !== hex(k2)) expect(impl.open(k2, n1, sealed, a1)).toBeUndefined();
          if (hex(n1) !== hex(n2)) expect(impl.open(k1, n2, sealed, a1)).toBeUndefined();
          if (hex(a1) !== hex(a2)) expect(impl.open(k1, n1, sealed, a2)).toBeUndefined();
        }),
        { numRuns: 200 },
      );
    });

    it('any single flipped bit in ciphertext or tag', () => {
      fc.assert(
        fc.property(key, nonce, plaintext, aad, fc.nat(), (k, n, p, a, r) => {
          const sealed = Uint8Array.from(IMPLS[1].seal(k, n, p, a));
          const bit = r % (sealed.length * 8);
          sealed[bit >> 3] ^= 1 << (bit & 7);
          expect(impl.open(k, n, sealed, a)).toBeUndefined();
        }),
        { numRuns: 300 },
      );
    });

    it('a flipped bit in the additional data', () => {
      fc.assert(
        fc.property(key, nonce, plaintext, fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), (k, n, p, a, r) => {
          const sealed = impl.seal(k, n, p, a);
          const bit = r % (a.length * 8);
          const altered = Uint8Array.from(a);
          altered[bit >> 3] ^= 1 << (bit & 7);
          expect(impl.open(k, n, sealed, altered)).toBeUndefined();
        }),
        { numRuns: 200 },
      );
    });

    it('input shorter than a tag, and a truncated tag', () => {
      const k = new Uint8Array(32).fill(7);
      const n = new Uint8Array(NONCE_BYTES).fill(1);
      const sealed = impl.seal(k, n, new Uint8Array([1, 2, 3]), new Uint8Array());
      for (const len of [0, 1, TAG_BYTES - 1, TAG_BYTES, sealed.length - 1]) {
        expect(impl.open(k, n, sealed.subarray(0, len), new Uint8Array())).toBeUndefined();
      }
    });
  });
});
