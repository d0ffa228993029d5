/**
 * The sealed-secret codecs (v1 and act) through a Keyring: round trips,
 * tamper and truncation detection, unknown and wrong keys, malformed input,
 * old+new keyrings, and error messages that never repeat the sealed value or
 * the plaintext.
 */
import fc from 'fast-check';
import { ErrorCode, MasterKeyError } from '../src/errors';
import { NONCE_BYTES, nodeAead } from '../src/crypto/aead';
import { nobleAead } from './support/noble-aead';
import { SecretCodec, actCodec, codecByName, isCutBase64, isPaddedBase64, v1Codec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';

const V1_HEADER_LENGTH = 'mk1:'.length + 12 + ':'.length;
const OLD = parseKey('11'.repeat(32));
const NEW = parseKey('22'.repeat(32));
const OTHER = parseKey('33'.repeat(32));
const SECRET = 'pw-7Hq!zX2@Vv9#secret ✓';

const CODECS: ReadonlyArray<readonly [string, SecretCodec]> = [
  ['v1/node', v1Codec(nodeAead)],
  ['v1/noble', v1Codec(nobleAead)],
  ['act/node', actCodec(nodeAead)],
  ['act/noble', actCodec(nobleAead)],
];

const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));
/** The part of a sealed value that carries nonce, ciphertext and tag. */
const payloadOf = (codec: SecretCodec, sealed: string) => (codec.name === 'v1' ? sealed.slice(V1_HEADER_LENGTH) : sealed);
const headerOf = (codec: SecretCodec, sealed: string) => (codec.name === 'v1' ? sealed.slice(0, V1_HEADER_LENGTH) : '');
const decode = (codec: SecretCodec, sealed: string) => Buffer.from(payloadOf(codec, sealed), codec.name === 'v1' ? 'base64url' : 'base64');
const alphabetOf = (codec: SecretCodec) => `ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789${codec.name === 'v1' ? '-_' : '+/'}`;
const encode = (codec: SecretCodec, header: string, raw: Uint8Array) => header + Buffer.from(raw).toString(codec.name === 'v1' ? 'base64url' : 'base64');

/** The sealed string with the lowest (unused) bit of the character at `at` flipped. */
function flipUnusedBit(codec: SecretCodec, sealed: string, at: number): string {
  const alphabet = alphabetOf(codec);
  return sealed.slice(0, at) + alphabet[alphabet.indexOf(sealed[at]) ^ 1] + sealed.slice(at + 1);
}

/** Every 8-character piece of `secret` found in `text`. */
function leakedPieces(text: string, secret: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 8 <= secret.length; i++) if (text.includes(secret.slice(i, i + 8))) found.push(secret.slice(i, i + 8));
  return found;
}

/**
 * Opens and expects a typed SEALED_* error (never a plaintext) whose message
 * and details repeat no 8-character piece of the payload or of `plaintext`.
 */
function openFails(ring: Keyring, codec: SecretCodec, sealed: string, plaintext = ''): MasterKeyError {
  let opened: unknown;
  try {
    opened = ring.open(codec, sealed);
  } catch (e) {
    expect(e).toBeInstanceOf(MasterKeyError);
    const err = e as MasterKeyError;
    expect(err.code).toMatch(/^SEALED_/);
    const shown = `${err.message} ${JSON.stringify(err.details)}`;
    expect(leakedPieces(shown, payloadOf(codec, sealed))).toEqual([]);
    if (sealed.length >= 8) expect(shown).not.toContain(sealed);
    expect(leakedPieces(shown, plaintext)).toEqual([]);
    expect(err.message).toMatch(/^[A-Z].*\.$/);
    return err;
  }
  throw new Error(`expected a SEALED_* error, but the value opened (${JSON.stringify(opened).length} chars)`);
}

function expectCode(ring: Keyring, codec: SecretCodec, sealed: string, code: ErrorCode, plaintext = ''): MasterKeyError {
  const err = openFails(ring, codec, sealed, plaintext);
  expect(`${err.code} for ${JSON.stringify(sealed)}`).toBe(`${code} for ${JSON.stringify(sealed)}`);
  return err;
}

describe.each(CODECS)('%s', (_, codec) => {
  const ring = new Keyring([NEW]);
  const tamperedCode: ErrorCode = codec.name === 'v1' ? 'SEALED_TAMPERED' : 'SEALED_WRONG_KEY';

  it('round-trips any Unicode string through a Keyring', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        const sealed = codec.seal(NEW, utf8(text));
        expect(codec.looksSealed(sealed)).toBe(true);
        expect(ring.openText(codec, sealed)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips any bytes and reports the key that opened them', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const opened = ring.open(codec, codec.seal(NEW, bytes));
        expect(Buffer.from(opened.plaintext).equals(Buffer.from(bytes))).toBe(true);
        expect(opened.keyId).toBe(NEW.id);
      }),
      { numRuns: 300 },
    );
  });

  it('has the documented shape and uses a fresh nonce each time', () => {
    const a = codec.seal(NEW, utf8(SECRET));
    const b = codec.seal(NEW, utf8(SECRET));
    expect(a).not.toBe(b);
    expect(decode(codec, a).subarray(0, NONCE_BYTES).equals(decode(codec, b).subarray(0, NONCE_BYTES))).toBe(false);
    expect(decode(codec, a)).toHaveLength(NONCE_BYTES + utf8(SECRET).length + 16);
    expect(a).toMatch(codec.name === 'v1' ? new RegExp(`^mk1:${NEW.id}:[A-Za-z0-9_-]+$`) : /^[A-Za-z0-9+/]+={0,2}$/);
    expect(leakedPieces(a, SECRET)).toEqual([]);
  });

  it('is deterministic for a given nonce, and noble and node agree', () => {
    const nonce = new Uint8Array(NONCE_BYTES).fill(9);
    const twin = codecByName(codec.name, codec === CODECS[0][1] || codec === CODECS[2][1] ? nobleAead : nodeAead);
    expect(codec.seal(NEW, utf8(SECRET), { nonce })).toBe(codec.seal(NEW, utf8(SECRET), { nonce }));
    expect(twin.seal(NEW, utf8(SECRET), { nonce })).toBe(codec.seal(NEW, utf8(SECRET), { nonce }));
  });

  it('detects any single flipped bit in the decoded payload', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), fc.nat(), (text, r) => {
        const sealed = codec.seal(NEW, utf8(text));
        const raw = decode(codec, sealed);
        const bit = r % (raw.length * 8);
        raw[bit >> 3] ^= 1 << (bit & 7);
        expectCode(ring, codec, encode(codec, headerOf(codec, sealed), raw), tamperedCode, text);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses every single-character change anywhere in the string', () => {
    // Each character replaced by the six characters one sextet bit away, and by a few outside the alphabet.
    const replacements = (ch: string) => {
      const at = alphabetOf(codec).indexOf(ch);
      const flips = at < 0 ? [] : [1, 2, 4, 8, 16, 32].map((bit) => alphabetOf(codec)[at ^ bit]);
      return [...flips, '=', ':', '.', ' ', 'A', 'f'].filter((r) => r !== ch);
    };
    for (const text of ['', 'a', 'ab', SECRET]) {
      const sealed = codec.seal(NEW, utf8(text));
      for (let i = 0; i < sealed.length; i++) {
        for (const ch of replacements(sealed[i])) openFails(ring, codec, sealed.slice(0, i) + ch + sealed.slice(i + 1), text);
      }
    }
  });

  it('reports every proper prefix as truncated (or, when long enough, as failing authentication)', () => {
    const sealed = codec.seal(NEW, utf8(SECRET));
    const start = codec.name === 'v1' ? V1_HEADER_LENGTH : 0;
    const minChars = Math.ceil(((NONCE_BYTES + 16) * 4) / 3); // 38 characters hold 28 bytes
    for (let len = start; len < sealed.length; len++) {
      const chars = len - start;
      const cut = chars % 4 === 1 || chars < minChars || (codec.name === 'act' && chars % 4 !== 0);
      expectCode(ring, codec, sealed.slice(0, len), cut ? 'SEALED_TRUNCATED' : tamperedCode, SECRET);
    }
  });

  it('an empty keyring cannot open anything', () => {
    const err = expectCode(new Keyring(), codec, codec.seal(NEW, utf8(SECRET)), codec.name === 'v1' ? 'SEALED_UNKNOWN_KEY' : 'SEALED_WRONG_KEY', SECRET);
    expect(err.exitCode).toBe(6);
  });

  it('a keyring with the old and the new key opens values sealed under either', () => {
    const both = new Keyring([OLD, NEW]);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 80 }), fc.boolean(), (text, underOld) => {
        const key = underOld ? OLD : NEW;
        const opened = both.open(codec, codec.seal(key, utf8(text)));
        expect(Buffer.from(opened.plaintext).toString('utf8')).toBe(text);
        expect(opened.keyId).toBe(key.id);
      }),
      { numRuns: 200 },
    );
    // Order in the keyring does not matter.
    expect(new Keyring([NEW, OLD]).openText(codec, codec.seal(OLD, utf8(SECRET)))).toBe(SECRET);
  });
});

describe.each(['v1', 'act'] as const)('%s with additional authenticated data per value', (name) => {
  const node = codecByName(name, nodeAead);
  const noble = codecByName(name, nobleAead);
  const ring = new Keyring([NEW]);
  const aadArb = fc.uint8Array({ minLength: 1, maxLength: 64 });
  const tamperedCode: ErrorCode = name === 'v1' ? 'SEALED_TAMPERED' : 'SEALED_WRONG_KEY';

  it('node and noble give identical bytes for the same nonce and data, and each opens what the other seals', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), aadArb, fc.uint8Array({ minLength: NONCE_BYTES, maxLength: NONCE_BYTES }), (pt, aad, nonce) => {
        const a = node.seal(NEW, pt, { nonce, aad });
        expect(noble.seal(NEW, pt, { nonce, aad })).toBe(a);
        expect(Buffer.from(noble.open(ring, node.seal(NEW, pt, { aad }), aad).plaintext).equals(Buffer.from(pt))).toBe(true);
        expect(Buffer.from(node.open(ring, noble.seal(NEW, pt, { aad }), aad).plaintext).equals(Buffer.from(pt))).toBe(true);
        // Without the data, the value is exactly what the codec wrote before additional data existed.
        expect(node.seal(NEW, pt, { nonce })).toBe(node.seal(NEW, pt, { nonce, aad: new Uint8Array() }));
      }),
      { numRuns: 200 },
    );
  });

  it('binds the data as documented: v1 authenticates header || data, act the data alone', () => {
    const nonce = new Uint8Array(NONCE_BYTES).fill(5);
    const aad = Buffer.from('user 42');
    const sealed = node.seal(NEW, utf8(SECRET), { nonce, aad });
    const header = headerOf(node, sealed);
    const expected = nodeAead.seal(NEW.bytes(), nonce, utf8(SECRET), Buffer.concat([Buffer.from(header, 'ascii'), aad]));
    expect(decode(node, sealed).subarray(NONCE_BYTES).equals(Buffer.from(expected))).toBe(true);
  });

  it('opens only with the same data: none, other data, or one flipped bit fails', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), aadArb, fc.nat(), (text, aad, r) => {
        for (const impl of [node, noble]) {
          const sealed = impl.seal(NEW, utf8(text), { aad });
          const flipped = Uint8Array.from(aad);
          flipped[(r >> 3) % aad.length] ^= 1 << (r & 7);
          expectCode(ring, impl, sealed, tamperedCode, text);
          for (const wrong of [flipped, Buffer.concat([aad, Buffer.from([0])])]) {
            let code: string | undefined;
            try {
              impl.open(ring, sealed, wrong);
            } catch (e) {
              code = (e as MasterKeyError).code;
            }
            expect(code).toBe(tamperedCode);
          }
          expect(ring.openText(impl, sealed, aad)).toBe(text);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('v1 specifics', () => {
  const v1 = v1Codec();

  it('a value under a key not in the keyring: SEALED_UNKNOWN_KEY naming only the fingerprint', () => {
    const sealed = v1.seal(OLD, utf8(SECRET));
    const err = expectCode(new Keyring([NEW, OTHER]), v1, sealed, 'SEALED_UNKNOWN_KEY', SECRET);
    expect(err.message).toContain(OLD.fingerprint);
    expect(err.details).toEqual({ keyId: OLD.fingerprint });
    expect(err.message).not.toContain(OLD.toHex().slice(0, 8));
  });

  it('changing any header character is detected', () => {
    const sealed = v1.seal(NEW, utf8(SECRET));
    const ring = new Keyring([NEW, OLD]);
    for (let i = 0; i < V1_HEADER_LENGTH; i++) {
      for (const ch of [...'0123456789abcdefmkAF:-_']) {
        if (ch === sealed[i]) continue;
        const altered = sealed.slice(0, i) + ch + sealed.slice(i + 1);
        const code = openFails(ring, v1, altered, SECRET).code;
        expect(['SEALED_MALFORMED', 'SEALED_UNKNOWN_KEY']).toContain(code);
      }
    }
  });

  it('relabelling a value with another key id in the keyring fails authentication (the header is AAD)', () => {
    const sealed = v1.seal(OLD, utf8(SECRET));
    const relabelled = sealed.replace(`mk1:${OLD.id}:`, `mk1:${NEW.id}:`);
    expect(relabelled).not.toBe(sealed);
    expectCode(new Keyring([OLD, NEW]), v1, relabelled, 'SEALED_TAMPERED', SECRET);
  });

  it('same bytes under a different key with the same id cannot exist: ids differ per key', () => {
    expect(new Set([OLD.id, NEW.id, OTHER.id]).size).toBe(3);
  });

  it.each([
    ['empty', ''],
    ['plain text', 'hunter2'],
    ['only the prefix', 'mk1:'],
    ['an upper-case key id', (s: string) => s.replace(/^mk1:([0-9a-f]{12})/, (_, id: string) => `mk1:${id.toUpperCase()}`)],
    ['an 11-character key id', (s: string) => s.slice(0, 15) + s.slice(16)],
    ['a missing second colon', (s: string) => s.slice(0, 16) + s.slice(17)],
    ['standard base64 characters', (s: string) => `${s.slice(0, 20)}+/${s.slice(22)}`],
    ['padding', (s: string) => `${s}==`],
    ['a trailing newline', (s: string) => `${s}\n`],
    ['a leading space', (s: string) => ` ${s}`],
    ['an upper-case prefix', (s: string) => `MK1${s.slice(3)}`],
    ['an act value', () => actCodec().seal(NEW, utf8(SECRET))],
  ])('%s: SEALED_MALFORMED', (_, make) => {
    const sealed = typeof make === 'string' ? make : make(v1.seal(NEW, utf8(SECRET)));
    const err = expectCode(new Keyring([NEW]), v1, sealed, 'SEALED_MALFORMED', SECRET);
    expect(err.message).toMatch(/not a v1 sealed secret/);
  });

  it.each(['mk2', 'mk0', 'mk10', 'mk99'])('unsupported version %s: SEALED_MALFORMED saying so', (prefix) => {
    const sealed = prefix + v1.seal(NEW, utf8(SECRET)).slice(3);
    const err = expectCode(new Keyring([NEW]), v1, sealed, 'SEALED_MALFORMED', SECRET);
    expect(err.message).toMatch(/unsupported format version/);
    expect(v1.looksSealed(sealed)).toBe(false);
  });

  it('a payload ending part-way through a group, or too short: SEALED_TRUNCATED', () => {
    const sealed = v1.seal(NEW, utf8(SECRET));
    expect(expectCode(new Keyring([NEW]), v1, sealed.slice(0, V1_HEADER_LENGTH + 41), 'SEALED_TRUNCATED').message).toMatch(/41-character payload/);
    expect(expectCode(new Keyring([NEW]), v1, sealed.slice(0, V1_HEADER_LENGTH + 20), 'SEALED_TRUNCATED').message).toMatch(/15 bytes, at least 28/);
    expectCode(new Keyring([NEW]), v1, sealed.slice(0, V1_HEADER_LENGTH), 'SEALED_TRUNCATED');
  });

  it('a non-canonical last character (same decoded bytes) is refused, not silently accepted', () => {
    // 29 bytes = 39 characters: the last one carries 2 unused bits.
    const sealed = v1.seal(NEW, utf8('x'));
    const altered = flipUnusedBit(v1, sealed, sealed.length - 1);
    expect(decode(v1, altered).equals(decode(v1, sealed))).toBe(true);
    expectCode(new Keyring([NEW]), v1, altered, 'SEALED_TAMPERED', 'x');
  });
});

describe('act specifics', () => {
  const act = actCodec();

  it('a value under a key not in the keyring: SEALED_WRONG_KEY', () => {
    const err = expectCode(new Keyring([NEW, OTHER]), act, act.seal(OLD, utf8(SECRET)), 'SEALED_WRONG_KEY', SECRET);
    expect(err.message).not.toContain(OLD.fingerprint);
  });

  it.each([
    ['plain text', 'hunter2!'],
    ['base64url characters', (s: string) => `${s.slice(0, 10)}-_${s.slice(12)}`],
    ['a trailing newline', (s: string) => `${s}\n`],
    ['inner whitespace', (s: string) => `${s.slice(0, 20)} ${s.slice(20)}`],
    ['too much padding', (s: string) => `${s.replace(/=+$/, '')}===`],
    ['only padding', '===='],
    ['a v1 value', () => v1Codec().seal(NEW, utf8(SECRET))],
  ])('%s: SEALED_MALFORMED', (_, make) => {
    const sealed = typeof make === 'string' ? make : make(act.seal(NEW, utf8(SECRET)));
    const err = expectCode(new Keyring([NEW]), act, sealed, 'SEALED_MALFORMED', SECRET);
    expect(err.message).toMatch(/not base64/);
  });

  it('a short value or one cut part-way through a group: SEALED_TRUNCATED', () => {
    const sealed = act.seal(NEW, utf8('a')); // 29 bytes: 40 characters ending in "="
    expect(sealed).toMatch(/[^=]=$/);
    const ring = new Keyring([NEW]);
    expect(expectCode(ring, act, sealed.slice(0, -1), 'SEALED_TRUNCATED').message).toMatch(/39-character payload/);
    expect(expectCode(ring, act, sealed.slice(0, 36), 'SEALED_TRUNCATED').message).toMatch(/27 bytes, at least 28/);
    expectCode(ring, act, '', 'SEALED_TRUNCATED');
    expectCode(ring, act, 'QUJD', 'SEALED_TRUNCATED');
  });

  it('a non-canonical last character (same decoded bytes) is refused, not silently accepted', () => {
    const sealed = act.seal(NEW, utf8('x')); // 29 bytes: "…XY=" where Y carries 2 unused bits
    const altered = flipUnusedBit(act, sealed, sealed.length - 2);
    expect(decode(act, altered).equals(decode(act, sealed))).toBe(true);
    expectCode(new Keyring([NEW]), act, altered, 'SEALED_TAMPERED', 'x');
  });

  it('the base64 checks agree with the grouped regular expressions they replace, on any text of base64 characters and padding', () => {
    const grouped = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
    const cut = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{1,3}|[A-Za-z0-9+/]{2}=)$/;
    const text = fc.string({ unit: fc.constantFrom('A', 'z', '0', '+', '/', '=', '-', ' '), maxLength: 14 });
    fc.assert(
      fc.property(text, (t) => {
        expect(isPaddedBase64(t)).toBe(grouped.test(t));
        expect(isCutBase64(t)).toBe(cut.test(t));
      }),
      { numRuns: 20_000 },
    );
  });

  it('a 16 MiB value that is not quite base64 is a MasterKeyError, not a stack overflow', () => {
    const ring = new Keyring([NEW]);
    const big = 'QUJD'.repeat(4 * 1024 * 1024);
    expect(isPaddedBase64(big)).toBe(true);
    expectCode(ring, act, `${big}!`, 'SEALED_MALFORMED');
    expectCode(ring, act, big.slice(1), 'SEALED_TRUNCATED');
    expect(act.looksSealed(big)).toBe(true);
  });

  it('looksSealed: base64 of at least 40 characters only', () => {
    expect(act.looksSealed(act.seal(NEW, new Uint8Array()))).toBe(true);
    expect(act.looksSealed('hunter2')).toBe(false);
    expect(act.looksSealed('QUJD')).toBe(false);
    expect(act.looksSealed(v1Codec().seal(NEW, utf8(SECRET)))).toBe(false);
  });
});

describe('codecByName and Keyring', () => {
  it('finds each codec and refuses an unknown name', () => {
    expect(codecByName('v1').name).toBe('v1');
    expect(codecByName('act').name).toBe('act');
    expect(() => codecByName('v2' as never)).toThrow(expect.objectContaining({ code: 'INVENTORY_INVALID' }));
  });

  it('holds keys by id, once each, and shows only fingerprints', () => {
    const ring = new Keyring([OLD, NEW, MasterKey.fromBytes(OLD.bytes())]);
    expect(ring.size).toBe(2);
    expect(ring.byId(OLD.id)?.equals(OLD)).toBe(true);
    expect(ring.byId(OTHER.id)).toBeUndefined();
    expect(ring.all().map((k) => k.id)).toEqual([OLD.id, NEW.id]);
    expect(JSON.stringify(ring)).toBe(JSON.stringify([OLD.fingerprint, NEW.fingerprint]));
    expect(ring.add(OTHER)).toBe(ring);
    expect(ring.size).toBe(3);
  });
});
