/**
 * Batch AES-GCM (src/crypto/gcm-batch, batch; src/engine/value-crypto and
 * its worker threads, crypto-pool): every implementation is OpenSSL and agrees byte
 * for byte with @noble/ciphers (the independent reference), each opens what
 * the other seals, additional data per value is bound exactly as the codecs
 * bind it, and the batch crypto gives the codec's own outcome for every
 * value, whatever its shape, on this thread or in worker threads.
 */
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { NONCE_BYTES, nodeAead } from '../src/crypto/aead';
import { nobleAead } from './support/noble-aead';
import { sealedText } from '../src/crypto/batch';
import { CodecName, actCodec, codecByName, v1Codec } from '../src/crypto/codec';
import { join } from 'node:path';
import { GcmEngine, KEY_BYTES, aesGcmEngineDescription, nativeAddonPath, nativeEngine, nodeEngine, packJob } from '../src/crypto/gcm-batch';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { ValueDigest } from '../src/engine/digest';
import { CryptoMode, ValueCrypto, valueCrypto } from '../src/engine/value-crypto';

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

describe('the native addon', () => {
  it('is the prebuild `npm run build` makes (native/prebuilds/<platform>-<arch>, which the package ships) and passes its self-test against node:crypto', () => {
    expect(nativeAddonPath()).toBe(join(__dirname, '..', 'native', 'prebuilds', `${process.platform}-${process.arch}`, 'gcm_batch.glibc.node'));
    expect(nativeEngine()?.name).toBe('native');
    expect(aesGcmEngineDescription()).toMatch(/^OpenSSL batch addon \(OpenSSL 3\.\d+\.\d+.*, linux-x64\)$/);
  });
});

const ENGINES: Array<[string, GcmEngine]> = [['node', nodeEngine], ...(nativeEngine() ? [['native', nativeEngine()!] as [string, GcmEngine]] : [])];

/** A message as the implementations see it: one value per entry, sealed by noble under `key` with `aadOld`. */
interface Case {
  readonly pt: Uint8Array;
  readonly nonce: Uint8Array;
  readonly aadOld: Uint8Array;
  readonly aadNew: Uint8Array;
  /** Which of the two old keys sealed it. */
  readonly sealer: 0 | 1;
}

const caseArb = fc.record({ pt: bytes(0, 300), nonce: bytes(12, 12), aadOld: bytes(0, 40), aadNew: bytes(0, 40), sealer: fc.constantFrom(0 as const, 1 as const) });

/** Builds a job re-sealing every case from keys[sealer] to `to` with fresh random nonces. */
function jobFor(cases: readonly Case[], keys: readonly Uint8Array[], to: Uint8Array, keyIdx: (c: Case) => number) {
  const sealed = cases.map((c) => Buffer.concat([c.nonce, nobleAead.seal(keys[c.sealer], c.nonce, c.pt, c.aadOld)]));
  const job = packJob({ count: cases.length, keys: keys.length * KEY_BYTES, data: sealed.reduce((a, b) => a + b.length, 0), aad: cases.reduce((a, c) => a + c.aadOld.length + c.aadNew.length, 0), reseal: true });
  keys.forEach((k, i) => job.keys.set(k, i * KEY_BYTES));
  job.newKey!.set(to);
  job.nonces!.set(randomBytes(NONCE_BYTES * cases.length));
  let d = 0;
  let a = 0;
  cases.forEach((c, i) => {
    job.data.set(sealed[i], d);
    job.offs[2 * i] = d;
    job.offs[2 * i + 1] = sealed[i].length;
    d += sealed[i].length;
    job.aad.set(c.aadOld, a);
    job.aad.set(c.aadNew, a + c.aadOld.length);
    job.aadOffs.set([a, c.aadOld.length, a + c.aadOld.length, c.aadNew.length], 4 * i);
    a += c.aadOld.length + c.aadNew.length;
    job.keyIdx[i] = keyIdx(c);
  });
  return job;
}

describe.each(ENGINES)('%s implementation', (_, engine) => {
  it('re-seals exactly as @noble/ciphers seals, with any additional data, and noble opens the result', () => {
    fc.assert(
      fc.property(fc.array(caseArb, { minLength: 1, maxLength: 12 }), bytes(32, 32), bytes(32, 32), bytes(32, 32), (cases, k0, k1, to) => {
        fc.pre(Buffer.compare(k0, k1) !== 0);
        const job = jobFor(cases, [k0, k1], to, () => -1);
        expect(engine.run(job)).toBe(cases.length);
        cases.forEach((c, i) => {
          expect(job.status[i]).toBe(c.sealer);
          const nonce = job.nonces!.subarray(NONCE_BYTES * i, NONCE_BYTES * (i + 1));
          const out = job.out!.subarray(job.offs[2 * i], job.offs[2 * i] + job.offs[2 * i + 1]);
          expect(Buffer.from(out).equals(Buffer.concat([nonce, nobleAead.seal(to, nonce, c.pt, c.aadNew)]))).toBe(true);
          expect(Buffer.from(nobleAead.open(to, nonce, out.subarray(NONCE_BYTES), c.aadNew)!).equals(Buffer.from(c.pt))).toBe(true);
        });
      }),
      { numRuns: 150 },
    );
  });

  it('opens a value only with the key it names, its own additional data and an intact message', () => {
    fc.assert(
      fc.property(caseArb, bytes(32, 32), bytes(32, 32), fc.nat(), fc.constantFrom('bit', 'aad', 'key', 'short'), (c, k0, k1, r, how) => {
        fc.pre(Buffer.compare(k0, k1) !== 0);
        const job = jobFor([c], [k0, k1], k0, () => (how === 'key' ? 1 - c.sealer : -1));
        fc.pre(how !== 'aad' || c.aadOld.length > 0);
        if (how === 'bit') job.data[r % job.offs[1]] ^= 1 << (r % 8);
        else if (how === 'aad') job.aad[r % c.aadOld.length] ^= 1;
        else if (how === 'short') job.offs[1] = r % 28;
        expect(engine.run(job)).toBe(0);
        expect(job.status[0]).toBe(how === 'short' ? -2 : -1);
      }),
      { numRuns: 200 },
    );
  });

  it('scans (no new key): opens without writing anything', () => {
    const k = randomBytes(32);
    const nonce = randomBytes(12);
    const sealed = Buffer.concat([nonce, nodeAead.seal(k, nonce, Buffer.from('hello'), new Uint8Array())]);
    const job = packJob({ count: 1, keys: 32, data: sealed.length, aad: 0, reseal: false });
    job.keys.set(k);
    job.data.set(sealed);
    job.offs.set([0, sealed.length]);
    job.keyIdx[0] = -1;
    expect(engine.run(job)).toBe(1);
    expect(job.status[0]).toBe(0);
    expect(job.out).toBeUndefined();
  });

  it('sums SHA-256 digests as node:crypto does (order-independent)', () => {
    const items = Array.from({ length: 50 }, (_, i) => Buffer.from(`item ${i} ${'x'.repeat(i)}`));
    const data = Buffer.concat(items);
    const offs = new Int32Array(items.length * 2);
    let o = 0;
    items.forEach((b, i) => {
      offs.set([o, b.length], 2 * i);
      o += b.length;
    });
    const a = new Uint8Array(32);
    engine.sumSha256(data, offs, a);
    const reversed = new Int32Array(offs.length);
    for (let i = 0; i < items.length; i++) reversed.set(offs.subarray(2 * (items.length - 1 - i), 2 * (items.length - i)), 2 * i);
    const b = new Uint8Array(32);
    nodeEngine.sumSha256(data, reversed, b);
    expect(Buffer.from(a).toString('hex')).toBe(Buffer.from(b).toString('hex'));
    expect(Buffer.from(a).equals(Buffer.alloc(32))).toBe(false);
    // Per group: each item into its group's 32 bytes; the groups add up to the sum of all, and a group alone is the sum of its items.
    const groups = Int32Array.from(items, (_, i) => i % 3);
    const byGroup = new Uint8Array(3 * 32);
    engine.sumSha256(data, offs, byGroup, groups);
    const first = new Uint8Array(32);
    const firstOffs = new Int32Array(offs.filter((_, j) => (j >> 1) % 3 === 0));
    nodeEngine.sumSha256(data, firstOffs, first);
    expect(Buffer.from(byGroup.subarray(0, 32)).equals(Buffer.from(first))).toBe(true);
    const total = new Uint8Array(32);
    let carry = 0;
    for (let j = 31; j >= 0; j--) {
      const v = byGroup[j] + byGroup[32 + j] + byGroup[64 + j] + carry;
      total[j] = v & 0xff;
      carry = v >> 8;
    }
    expect(Buffer.from(total).equals(Buffer.from(a))).toBe(true);
    expect(() => engine.sumSha256(data, offs, new Uint8Array(64), new Int32Array(items.length).fill(2))).toThrow();
  });
});

describe('crypto in worker threads', () => {
  const from = MasterKey.generate();
  const to = MasterKey.generate();
  const sealed = (n: number, salt: number) => Array.from({ length: n }, (_, i) => actCodec().seal(from, Buffer.from(`secret ${salt}-${i}`)));
  const places = (n: number, salt: number) => ({ table: 't', column: 'c', ids: Array.from({ length: n }, (_, i) => `${salt}-${i}`) });

  it('runs batches in worker threads with several in flight, results in order, and sums the digest of what each worker placed', async () => {
    const crypto = valueCrypto({ from: new Keyring([from]), to }, { crypto: 'workers', workers: 2 });
    const digest = new ValueDigest();
    try {
      expect(crypto.mode).toBe('workers');
      expect(crypto.depth).toBe(4);
      const batches = Array.from({ length: 6 }, (_, j) => sealed(50 + j, j));
      const outs = await Promise.all(batches.map((b, j) => crypto.process('act', b, undefined, places(b.length, j))));
      outs.forEach((out, j) =>
        out.forEach((r, i) => {
          expect(new Keyring([to]).openText(actCodec(), sealedText(r.next!))).toBe(`secret ${j}-${i}`);
          digest.add('t', 'c', undefined, `${j}-${i}`, sealedText(r.next!));
        }),
      );
      expect(await crypto.digest()).toEqual(digest.result());
    } finally {
      await crypto.close();
    }
  });

  it('fails the batch a worker was running when it stops, and every later one', async () => {
    process.env.MASTER_KEY_TEST_WORKER_EXIT_AT = '2';
    let crypto: ValueCrypto;
    try {
      crypto = valueCrypto({ from: new Keyring([from]), to }, { crypto: 'workers', workers: 1 });
    } finally {
      delete process.env.MASTER_KEY_TEST_WORKER_EXIT_AT;
    }
    try {
      expect((await crypto.process('act', sealed(10, 0))).every((r) => r.next)).toBe(true);
      await expect(crypto.process('act', sealed(10, 1))).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('stopped unexpectedly') });
      await expect(crypto.process('act', sealed(10, 2))).rejects.toMatchObject({ code: 'INTERNAL' });
    } finally {
      await crypto.close();
    }
  });
});

/** Values of every shape a column may hold, for codec `name`. */
function valueArb(name: CodecName, inRing: MasterKey, other: MasterKey, aad: Uint8Array | undefined): fc.Arbitrary<string> {
  const codec = codecByName(name);
  const sealedBy = (k: MasterKey, a = aad) => bytes(0, 300).map((pt) => codec.seal(k, pt, { aad: a }));
  return fc.oneof(
    { arbitrary: sealedBy(inRing), weight: 6 },
    { arbitrary: sealedBy(other), weight: 1 },
    // sealed with other additional data than the value comes with
    { arbitrary: sealedBy(inRing, Buffer.from('other additional data')), weight: 1 },
    // tampered
    { arbitrary: fc.tuple(sealedBy(inRing), fc.nat()).map(([s, i]) => flipChar(s, name === 'v1' ? 17 + (i % (s.length - 17)) : i % s.length)), weight: 1 },
    // truncated, empty, junk, near-misses of the format
    { arbitrary: sealedBy(inRing).map((s) => s.slice(0, Math.max(0, s.length - 8))), weight: 1 },
    { arbitrary: fc.constantFrom('', 'AAAA', '====', 'not base64!', 'mk1:', 'mk2:abcdefabcdef:AAAA', 'mk1:ABCDEFABCDEF:AAAA', `mk1:${inRing.id}:`, ' '), weight: 1 },
    { arbitrary: fc.string({ maxLength: 60 }), weight: 1 },
    // non-canonical padding bits, whitespace inside, the other codec's format
    { arbitrary: sealedBy(inRing).map((s) => s.replace(/[AQgw]==$/, 'B==').replace(/([A-Za-z0-9])=$/, 'z=')), weight: 1 },
    { arbitrary: sealedBy(inRing).map((s) => `${s.slice(0, 10)}\n${s.slice(10)}`), weight: 1 },
    { arbitrary: bytes(0, 50).map((pt) => codecByName(name === 'act' ? 'v1' : 'act').seal(inRing, pt, { aad })), weight: 1 },
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

const MODES: CryptoMode[] = ['node', 'workers', ...(nativeEngine() ? ['native' as const] : [])];

describe.each(MODES)('batch crypto (%s) gives the codec’s own outcome on every value', (mode) => {
  const k1 = MasterKey.generate();
  const k2 = MasterKey.generate();
  const other = MasterKey.generate();
  const to = MasterKey.generate();
  const ring = new Keyring([k1, k2]);
  let crypto: ValueCrypto;
  beforeAll(() => {
    crypto = valueCrypto({ from: ring, to }, { crypto: mode, workers: 2 });
  });
  afterAll(() => crypto.close());

  for (const name of ['act', 'v1'] as const) {
    it(`${name}: same error code or plaintext as the codec (with and without additional data); re-sealed values open with the codec under the new key only`, async () => {
      const codec = codecByName(name);
      expect(crypto.mode).toBe(mode);
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.option(bytes(0, 30), { nil: undefined }).chain((aad) => fc.tuple(fc.oneof(valueArb(name, k1, other, aad), valueArb(name, k2, other, aad)), fc.constant(aad))),
            { maxLength: 30 },
          ),
          async (pairs) => {
            const values = pairs.map(([v]) => v);
            const aads = pairs.map(([, a]) => a);
            const got = await crypto.process(name, values, aads);
            values.forEach((v, i) => {
              let expected: Uint8Array | undefined;
              let code: string | undefined;
              try {
                expected = codec.open(ring, v, aads[i]).plaintext;
              } catch (e) {
                code = (e as { code: string }).code;
              }
              expect(got[i].code).toBe(code);
              if (code) return;
              const opened = codec.open(new Keyring([to]), sealedText(got[i].next!), aads[i]);
              expect(Buffer.from(opened.plaintext).equals(Buffer.from(expected!))).toBe(true);
              expect(opened.keyId).toBe(to.id);
              expect(() => codec.open(ring, sealedText(got[i].next!), aads[i])).toThrow();
              if (aads[i]?.length) expect(() => codec.open(new Keyring([to]), sealedText(got[i].next!))).toThrow();
            });
          },
        ),
        { numRuns: mode === 'workers' ? 60 : 150 },
      );
    });
  }

  it('re-sealed values open with @noble/ciphers through the codec, and the batch opens what noble sealed', async () => {
    const noble = actCodec(nobleAead);
    const aad = Buffer.from('row 42');
    const pts = Array.from({ length: 200 }, (_, i) => randomBytes(i));
    const out = await crypto.process(
      'act',
      pts.map((p) => noble.seal(k1, p, { aad })),
      pts.map(() => aad),
    );
    out.forEach((r, i) => expect(Buffer.from(noble.open(new Keyring([to]), sealedText(r.next!), aad).plaintext).equals(pts[i])).toBe(true));
  });

  it('writes v1 headers with the new key id and fresh nonces (no two outputs share one)', async () => {
    const values = Array.from({ length: 2000 }, () => v1Codec().seal(k1, randomBytes(64)));
    const out = await crypto.process('v1', values);
    const nonces = new Set(out.map((r) => Buffer.from(sealedText(r.next!).slice(17), 'base64url').subarray(0, 12).toString('hex')));
    expect(nonces.size).toBe(values.length);
    expect(out.every((r) => sealedText(r.next!).startsWith(`mk1:${to.id}:`))).toBe(true);
  });
});

describe('batch crypto scan (no new key)', () => {
  it('gives the same error codes as the codec on large batches, in every mode', async () => {
    const k1 = MasterKey.generate();
    const other = MasterKey.generate();
    const ring = new Keyring([k1]);
    const values = Array.from({ length: 3000 }, (_, i) => {
      const s = actCodec().seal(i % 7 === 0 ? other : k1, randomBytes(100 + (i % 200)));
      return i % 11 === 0 ? flipChar(s, 20) : s;
    });
    const expected = values.map((v) => {
      try {
        actCodec().open(ring, v);
        return {};
      } catch (e) {
        return { code: (e as { code: string }).code };
      }
    });
    for (const mode of MODES) {
      const c = valueCrypto({ from: ring }, { crypto: mode });
      try {
        expect(await c.process('act', values)).toEqual(expected);
      } finally {
        await c.close();
      }
    }
    expect(expected.filter((r) => r.code).length).toBeGreaterThan(500);
  });
});

describe('large values, a slice at a time (src/crypto/large-value)', () => {
  const k1 = MasterKey.generate();
  const k2 = MasterKey.generate();
  const to = MasterKey.generate();
  const ring = new Keyring([k1, k2]);
  /** Plaintexts of 1-3 MiB: their texts are past LARGE_VALUE, and span several slices, with every length modulo 3. */
  const plaintexts = [1 << 20, (3 << 20) + 1, (2 << 20) + 2].map((n) => randomBytes(n));

  it.each(['act', 'v1'] as const)('%s: re-sealed with its own additional data, opening with the codec (and noble) under the new key only; the codec’s error code when it does not open', async (name) => {
    const codec = codecByName(name);
    const noble = codecByName(name, nobleAead);
    const aad = Buffer.from('row 7');
    const good = plaintexts.map((pt, i) => codec.seal(i === 1 ? k2 : k1, pt, { aad: i === 2 ? aad : undefined }));
    const tampered = flipChar(good[0], good[0].length - 30);
    const foreign = codec.seal(MasterKey.generate(), plaintexts[0]);
    const aads = [undefined, undefined, aad, undefined, undefined];
    for (const mode of MODES) {
      const c = valueCrypto({ from: ring, to }, { crypto: mode });
      try {
        const out = await c.process(name, [...good, tampered, foreign], aads);
        good.forEach((_, i) => {
          expect(Buffer.from(noble.open(new Keyring([to]), sealedText(out[i].next!), aads[i]).plaintext).equals(plaintexts[i])).toBe(true);
          expect(() => codec.open(ring, sealedText(out[i].next!), aads[i])).toThrow();
        });
        for (const [v, i] of [[tampered, 3], [foreign, 4]] as const) {
          const expected = (() => {
            try {
              codec.open(ring, v);
              return undefined;
            } catch (e) {
              return (e as { code: string }).code;
            }
          })();
          expect(out[i]).toEqual({ code: expected });
        }
      } finally {
        await c.close();
      }
    }
    // Opening only (a scan): the same outcomes, nothing re-sealed.
    const scan = valueCrypto({ from: ring });
    try {
      expect(await scan.process(name, [...good, tampered], aads.slice(0, 4))).toEqual([{}, {}, {}, { code: expect.stringMatching(/^SEALED_/) }]);
    } finally {
      await scan.close();
    }
  });
});
