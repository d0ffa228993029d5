/**
 * Master keys: parsing (what is accepted, what is refused and how the refusal
 * reads), generation, constant-time comparison, the fingerprint, and that no
 * printable form of a key ever shows its bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { format, inspect } from 'node:util';
import fc from 'fast-check';
import { isMasterKeyError } from '../src/errors';
import { FINGERPRINT_LABEL, KEY_BYTES, MasterKey, keyIdOf, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';

/** 000102…1f: the fixed key of the worked example. */
const FIXED_HEX = Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString('hex');
const HEX_CHARS = [...'0123456789abcdef'];

/** Every substring of `secret` at least 8 characters long that occurs in `text`. */
function leakedPieces(text: string, secret: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 8 <= secret.length; i++) if (text.includes(secret.slice(i, i + 8))) found.push(secret.slice(i, i + 8));
  return found;
}

/** Parses and expects KEY_MALFORMED whose message names no 8+ character piece of the input. */
function expectRefused(text: string, messagePart?: RegExp): void {
  let caught: unknown;
  try {
    parseKey(text);
  } catch (e) {
    caught = e;
  }
  expect(isMasterKeyError(caught, 'KEY_MALFORMED')).toBe(true);
  const err = caught as Error;
  expect(leakedPieces(err.message, text)).toEqual([]);
  expect(leakedPieces(err.message, text.trim())).toEqual([]);
  expect(err.message).toMatch(/^[A-Z].*\.$/); // one sentence
  if (messagePart) expect(err.message).toMatch(messagePart);
}

/** The fingerprint computed here from its definition, independently of src/. */
function independentFingerprint(key: Uint8Array): string {
  const digest = createHash('sha256')
    .update(Buffer.concat([Buffer.from('cdktf-master-key/fingerprint/v1', 'ascii'), Buffer.from([0x00]), key]))
    .digest();
  return `mk:${digest.subarray(0, 6).toString('hex')}`;
}

const hexString = (min: number, max: number) => fc.array(fc.constantFrom(...HEX_CHARS, 'A', 'B', 'C', 'D', 'E', 'F'), { minLength: min, maxLength: max }).map((a) => a.join(''));

describe('parseKey accepts', () => {
  it.each([
    ['lower-case hex', FIXED_HEX],
    ['upper-case hex', FIXED_HEX.toUpperCase()],
    ['mixed case', FIXED_HEX.slice(0, 32).toUpperCase() + FIXED_HEX.slice(32)],
    ['a trailing newline', `${FIXED_HEX}\n`],
    ['a trailing CRLF', `${FIXED_HEX}\r\n`],
    ['surrounding spaces and tabs', ` \t ${FIXED_HEX} \t`],
    ['leading blank lines', `\n\n${FIXED_HEX}\n`],
  ])('%s', (_, text) => {
    const key = parseKey(text);
    expect(Buffer.from(key.bytes()).toString('hex')).toBe(FIXED_HEX);
    expect(key.toHex()).toBe(FIXED_HEX);
  });

  it('any 32 bytes written as hex in either case, giving back the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.boolean(), (bytes, upper) => {
        const hex = Buffer.from(bytes).toString('hex');
        const key = parseKey(upper ? hex.toUpperCase() : hex);
        expect(Buffer.from(key.bytes()).equals(Buffer.from(bytes))).toBe(true);
        expect(key.toHex()).toBe(hex);
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseKey refuses with KEY_MALFORMED and never echoes the input', () => {
  it.each([
    ['empty', '', /is empty/],
    ['only whitespace', ' \r\n\t ', /is empty/],
    ['63 hex characters', FIXED_HEX.slice(0, 63), /63 characters long, not 64/],
    ['65 hex characters', `${FIXED_HEX}a`, /65 characters long, not 64/],
    ['32 hex characters (a 16-byte key)', FIXED_HEX.slice(0, 32), /32 characters long/],
    ['128 hex characters (two keys)', FIXED_HEX + FIXED_HEX, /128 characters long/],
    ['a non-hex letter', `${FIXED_HEX.slice(0, 40)}g${FIXED_HEX.slice(41)}`, /not hex digits/],
    ['a 0x prefix', `0x${FIXED_HEX.slice(2)}`, /not hex digits/],
    ['an inner space', `${FIXED_HEX.slice(0, 31)} ${FIXED_HEX.slice(32)}`, /not hex digits/],
    ['base64 of the key', Buffer.from(FIXED_HEX, 'hex').toString('base64'), /44 characters long/],
    ['a byte-order mark first', `\uFEFF${FIXED_HEX}`, /byte-order mark/],
    ['a byte-order mark after leading whitespace', ` \uFEFF${FIXED_HEX}`, /byte-order mark/],
    ['a byte-order mark at the end', `${FIXED_HEX}\uFEFF\n`, /byte-order mark/],
  ])('%s', (_, text, part) => {
    expectRefused(text, part);
  });

  it('near-keys: any hex string of the wrong length', () => {
    fc.assert(
      fc.property(hexString(1, 140).filter((s) => s.length !== 64), fc.constantFrom('', '\n', '\r\n', '  '), (hex, tail) => {
        expectRefused(hex + tail, new RegExp(`is ${hex.length} characters long, not 64`));
      }),
      { numRuns: 300 },
    );
  });

  it('64 characters with at least one that is not a hex digit', () => {
    const notHex = fc.constantFrom('g', 'z', 'G', 'x', '-', '_', '+', '/', '=', '.', 'é', '０');
    fc.assert(
      fc.property(hexString(64, 64), fc.nat(63), notHex, (hex, at, bad) => {
        expectRefused(hex.slice(0, at) + bad + hex.slice(at + 1), /not hex digits/);
      }),
      { numRuns: 300 },
    );
  });

  it('names the source it was given', () => {
    expect(() => parseKey('abc', 'the key in /etc/act/act.env')).toThrow(/^The key in \/etc\/act\/act\.env is 3 characters long/);
  });
});

describe('MasterKey', () => {
  it('generate() gives 32 random bytes, distinct each time', () => {
    const keys = Array.from({ length: 200 }, () => MasterKey.generate());
    const hexes = new Set(keys.map((k) => k.toHex()));
    expect(hexes.size).toBe(keys.length);
    for (const k of keys) expect(k.bytes()).toHaveLength(KEY_BYTES);
    // Every byte position varies across 200 keys (a fixed or zero-filled position would not).
    for (let i = 0; i < KEY_BYTES; i++) expect(new Set(keys.map((k) => k.bytes()[i])).size).toBeGreaterThan(50);
    // Roughly half of the 51200 bits are set (25600, standard deviation about 113).
    const ones = keys.reduce((n, k) => n + [...k.bytes()].reduce((m, b) => m + b.toString(2).replace(/0/g, '').length, 0), 0);
    expect(Math.abs(ones - 25600)).toBeLessThan(800);
  });

  it('fromBytes copies its input and refuses other lengths', () => {
    const raw = new Uint8Array(randomBytes(32));
    const key = MasterKey.fromBytes(raw);
    const before = key.toHex();
    raw.fill(0);
    expect(key.toHex()).toBe(before);
    for (const n of [0, 16, 31, 33, 64]) {
      expect(() => MasterKey.fromBytes(new Uint8Array(n))).toThrow(expect.objectContaining({ code: 'KEY_MALFORMED' }));
    }
  });

  it('equals() is correct: same bytes in different objects, and any single bit flipped', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.nat(255), (bytes, bit) => {
        const a = MasterKey.fromBytes(bytes);
        const b = parseKey(Buffer.from(bytes).toString('hex'));
        const flipped = Uint8Array.from(bytes);
        flipped[bit >> 3] ^= 1 << (bit & 7);
        const c = MasterKey.fromBytes(flipped);
        expect(a.equals(b)).toBe(true);
        expect(b.equals(a)).toBe(true);
        expect(a.equals(a)).toBe(true);
        expect(a.equals(c)).toBe(false);
        expect(c.equals(a)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('equals() compares in constant time through crypto.timingSafeEqual', () => {
    // The module object itself (an `import * as` namespace would be a copy).
    const spy = jest.spyOn(require('node:crypto') as typeof import('node:crypto'), 'timingSafeEqual');
    try {
      const a = MasterKey.generate();
      const b = MasterKey.fromBytes(a.bytes());
      expect(a.equals(b)).toBe(true);
      expect(a.equals(MasterKey.generate())).toBe(false);
      expect(spy).toHaveBeenCalledTimes(2);
      expect(Buffer.from(spy.mock.calls[0][0] as Uint8Array).equals(Buffer.from(a.bytes()))).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });

  describe('printable forms show only the fingerprint', () => {
    const key = parseKey(FIXED_HEX);
    const fp = 'mk:29dc6333aec2';
    const forms: Array<[string, () => string]> = [
      ['JSON.stringify', () => JSON.stringify(key)],
      ['JSON.stringify nested', () => JSON.stringify({ config: { key, list: [key] } })],
      ['util.inspect', () => inspect(key)],
      ['util.inspect nested, showHidden', () => inspect({ a: { b: key } }, { showHidden: true, depth: 10 })],
      ['String()', () => String(key)],
      ['template literal', () => `${key}`],
      ['util.format %s %o %O %j', () => format('%s %o %O %j', key, key, key, key)],
      ['Object.entries', () => JSON.stringify(Object.entries(key))],
      ['an error message built from it', () => new Error(`bad ${key}`).message],
      ['a Keyring as JSON', () => JSON.stringify(new Keyring([key, MasterKey.generate()]))],
      ['a Keyring inspected', () => inspect(new Keyring([key]), { depth: 10, showHidden: true })],
    ];
    it.each(forms)('%s', (_, show) => {
      const text = show();
      expect(text).toContain(key.id);
      expect(leakedPieces(text.toLowerCase(), FIXED_HEX)).toEqual([]);
      expect(text).not.toContain(Buffer.from(FIXED_HEX, 'hex').toString('base64').slice(0, 12));
    });

    it('exact forms', () => {
      expect(JSON.stringify(key)).toBe(JSON.stringify(fp));
      expect(String(key)).toBe(`MasterKey(${fp})`);
      expect(inspect(key)).toBe(`MasterKey(${fp})`);
      expect(Object.keys(key)).toEqual(['id']);
    });
  });
});

describe('fingerprint', () => {
  it('is fixed for a fixed key (asserted literally and recomputed from its definition)', () => {
    const key = parseKey(FIXED_HEX);
    expect(key.fingerprint).toBe('mk:29dc6333aec2');
    expect(key.id).toBe('29dc6333aec2');
    expect(independentFingerprint(key.bytes())).toBe('mk:29dc6333aec2');
    expect(parseKey('ff'.repeat(32)).fingerprint).toBe('mk:e2989fd5816a');
    expect(FINGERPRINT_LABEL).toBe('cdktf-master-key/fingerprint/v1');
  });

  it('is mk: plus 12 lower-case hex, equal to the independent computation, for any key', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const key = MasterKey.fromBytes(bytes);
        expect(key.fingerprint).toMatch(/^mk:[0-9a-f]{12}$/);
        expect(key.fingerprint).toBe(independentFingerprint(bytes));
        expect(key.fingerprint).toBe(`mk:${key.id}`);
        expect(keyIdOf(bytes)).toBe(key.id);
      }),
      { numRuns: 300 },
    );
  });

  it('is stable: the same however the key was written or built', () => {
    const forms = [FIXED_HEX, FIXED_HEX.toUpperCase(), ` ${FIXED_HEX}\r\n`];
    const fps = new Set([...forms.map((t) => parseKey(t).fingerprint), MasterKey.fromBytes(Buffer.from(FIXED_HEX, 'hex')).fingerprint]);
    expect([...fps]).toEqual(['mk:29dc6333aec2']);
  });

  it('differs between generated keys', () => {
    const fps = new Set(Array.from({ length: 500 }, () => MasterKey.generate().fingerprint));
    expect(fps.size).toBe(500);
  });
});
