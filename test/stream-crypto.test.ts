import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { nodeAead } from '../src/crypto/aead';
import { nobleAead } from './support/noble-aead';
import { CodecName, actCodec, codecByName, v1Codec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { BatchCrypto } from '../src/engine/stream-crypto';
import { GcmKey, selfTest, simple } from '../src/engine/stream-gcm';

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

describe('batch AES-GCM (stream-gcm)', () => {
  it('passes its run-time self-test', () => {
    expect(selfTest()).toBe(true);
  });

  it('seals exactly as node:crypto and @noble/ciphers do, and opens what they seal', () => {
    fc.assert(
      fc.property(bytes(32, 32), bytes(12, 12), bytes(0, 400), bytes(0, 40), (key, nonce, pt, aad) => {
        const g = new GcmKey(key);
        const mine = Buffer.from(simple.seal(g, nonce, pt, aad));
        expect(mine.equals(Buffer.from(nodeAead.seal(key, nonce, pt, aad)))).toBe(true);
        expect(mine.equals(Buffer.from(nobleAead.seal(key, nonce, pt, aad)))).toBe(true);
        const back = simple.open(g, nonce, nobleAead.seal(key, nonce, pt, aad), aad);
        expect(back && Buffer.from(back).equals(Buffer.from(pt))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('rejects any flipped bit in ciphertext, tag, nonce or additional data', () => {
    fc.assert(
      fc.property(bytes(32, 32), bytes(12, 12), bytes(1, 100), bytes(0, 20), fc.nat(), fc.integer({ min: 0, max: 7 }), fc.constantFrom('sealed', 'nonce', 'aad'), (key, nonce, pt, aad, where, bit, part) => {
        const g = new GcmKey(key);
        const sealed = Buffer.from(nodeAead.seal(key, nonce, pt, aad));
        const target = part === 'sealed' ? sealed : part === 'nonce' ? Buffer.from(nonce) : Buffer.from(aad);
        fc.pre(target.length > 0);
        target[where % target.length] ^= 1 << bit;
        const args = part === 'sealed' ? [nonce, target, aad] : part === 'nonce' ? [target, sealed, aad] : [nonce, sealed, target];
        expect(simple.open(g, args[0], args[1], args[2])).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });
});

/** Values of every shape a column may hold, for codec `name`. */
function valueArb(name: CodecName, inRing: MasterKey, other: MasterKey): fc.Arbitrary<string> {
  const codec = codecByName(name);
  const sealedBy = (k: MasterKey) => bytes(0, 300).map((pt) => codec.seal(k, pt));
  return fc.oneof(
    { arbitrary: sealedBy(inRing), weight: 6 },
    { arbitrary: sealedBy(other), weight: 1 },
    // tampered
    { arbitrary: fc.tuple(sealedBy(inRing), fc.nat()).map(([s, i]) => flipChar(s, name === 'v1' ? 17 + (i % (s.length - 17)) : i % s.length)), weight: 1 },
    // truncated, empty, junk, near-misses of the format
    { arbitrary: sealedBy(inRing).map((s) => s.slice(0, Math.max(0, s.length - 8))), weight: 1 },
    { arbitrary: fc.constantFrom('', 'AAAA', '====', 'not base64!', 'mk1:', 'mk2:abcdefabcdef:AAAA', 'mk1:ABCDEFABCDEF:AAAA', `mk1:${inRing.id}:`, ' '), weight: 1 },
    { arbitrary: fc.string({ maxLength: 60 }), weight: 1 },
    // non-canonical padding bits, whitespace inside, the other codec's format
    { arbitrary: sealedBy(inRing).map((s) => s.replace(/[AQgw]==$/, 'B==').replace(/([A-Za-z0-9])=$/, 'z=')), weight: 1 },
    { arbitrary: sealedBy(inRing).map((s) => `${s.slice(0, 10)}\n${s.slice(10)}`), weight: 1 },
    { arbitrary: bytes(0, 50).map((pt) => codecByName(name === 'act' ? 'v1' : 'act').seal(inRing, pt)), weight: 1 },
    // any ASCII character put in, over or out at any place ('=' inside, '-' or '_' in base64, '+' in base64url, ...)
    {
      arbitrary: fc.tuple(sealedBy(inRing), fc.nat(), fc.integer({ min: 0, max: 127 }), fc.constantFrom('replace', 'insert', 'delete')).map(([s, i, c, op]) => {
        const at = i % (s.length + 1);
        const ch = String.fromCharCode(c);
        return op === 'replace' ? s.slice(0, at) + ch + s.slice(at + 1) : op === 'insert' ? s.slice(0, at) + ch + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
      }),
      weight: 3,
    },
  );
}

function flipChar(s: string, i: number): string {
  const c = s[i];
  const r = c === 'A' ? 'B' : 'A';
  return s.slice(0, i) + r + s.slice(i + 1);
}

describe('BatchCrypto: the fast path agrees with the codecs on every value', () => {
  const k1 = MasterKey.generate();
  const k2 = MasterKey.generate();
  const other = MasterKey.generate();
  const to = MasterKey.generate();

  for (const name of ['act', 'v1'] as const) {
    it(`${name}: same outcome (error code or plaintext) as the codec, re-sealed values open with the codec under the new key only`, () => {
      const codec = codecByName(name);
      const ring = new Keyring([k1, k2]);
      const fast = new BatchCrypto(ring, to);
      const slow = new BatchCrypto(ring, to, { fast: false });
      expect(fast.fast).toBe(true);
      expect(slow.fast).toBe(false);
      fc.assert(
        fc.property(fc.array(fc.oneof(valueArb(name, k1, other), valueArb(name, k2, other)), { maxLength: 40 }), (values) => {
          const a = fast.process(name, values);
          const b = slow.process(name, values);
          values.forEach((v, i) => {
            expect(a[i].code).toBe(b[i].code);
            if (b[i].code) return;
            const expected = Buffer.from(codec.open(ring, v).plaintext);
            const opened = codec.open(new Keyring([to]), a[i].next!);
            expect(Buffer.from(opened.plaintext).equals(expected)).toBe(true);
            expect(opened.keyId).toBe(to.id);
            expect(() => codec.open(ring, a[i].next!)).toThrow();
          });
        }),
        { numRuns: 150 },
      );
    });
  }

  it('scans (no new key) with the same error codes as the codec, on large batches too', () => {
    const ring = new Keyring([k1]);
    const values = Array.from({ length: 3000 }, (_, i) => {
      const s = actCodec().seal(i % 7 === 0 ? other : k1, randomBytes(100 + (i % 200)));
      return i % 11 === 0 ? flipChar(s, 20) : s;
    });
    const a = new BatchCrypto(ring).process('act', values);
    const b = new BatchCrypto(ring, undefined, { fast: false }).process('act', values);
    expect(a).toEqual(b);
    expect(a.filter((r) => r.code).length).toBeGreaterThan(500);
    expect(a.every((r) => r.next === undefined)).toBe(true);
  });

  it('writes v1 headers with the new key id and fresh nonces (no two outputs share one)', () => {
    const pts = Array.from({ length: 2000 }, () => randomBytes(64));
    const values = pts.map((p) => v1Codec().seal(k1, p));
    const out = new BatchCrypto(new Keyring([k1]), to).process('v1', values);
    const nonces = new Set(out.map((r) => Buffer.from(r.next!.slice(17), 'base64url').subarray(0, 12).toString('hex')));
    expect(nonces.size).toBe(values.length);
    expect(out.every((r) => r.next!.startsWith(`mk1:${to.id}:`))).toBe(true);
  });
});
