/**
 * Sealed values (`v1` and `act`) through both of their parsers: the codec
 * (`codecByName(name).open`, src/crypto/codec.ts) and the batch decoder of
 * the hot path (`BatchCrypto.process`, src/crypto/batch.ts, with each AES-GCM
 * implementation), which must agree on every input.
 *
 * Inputs are values sealed under a fixed keyring, then edited (characters
 * changed, inserted, cut; the header's version or key id changed; base64
 * padding added or dropped), or random text. For every input: a typed
 * SEALED_* rejection or the right plaintext; a value that opens is exactly
 * the one sealed (no other text opens: canonical base64, authenticated
 * header); `looksSealed` never throws; the batch gives the codec's code for
 * every value, and its re-sealed text opens with the new key to the same
 * plaintext (and the same additional data).
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { BatchCrypto } from '../../../src/crypto/batch';
import { CodecName, codecByName } from '../../../src/crypto/codec';
import { nativeEngine } from '../../../src/crypto/gcm-batch';
import { MasterKey } from '../../../src/crypto/key';
import { Keyring } from '../../../src/crypto/keyring';
import { ErrorCode } from '../../../src/errors';
import { FuzzTarget, checkRejection, invariant } from '../harness';
import { Edit, anyText, applyEdits, edits } from '../mutate';

/** Keys derived from fixed labels, so corpus inputs replay the same. */
const fixedKey = (label: string) => MasterKey.fromBytes(new Uint8Array(createHash('sha256').update(`cdktf-master-key fuzz ${label}`).digest()));
const KEYS = [fixedKey('old'), fixedKey('older')];
const NOT_IN_RING = fixedKey('unknown');
const NEW_KEY = fixedKey('new');
const RING = new Keyring(KEYS);
const CODES: readonly ErrorCode[] = ['SEALED_MALFORMED', 'SEALED_TRUNCATED', 'SEALED_UNKNOWN_KEY', 'SEALED_TAMPERED', 'SEALED_WRONG_KEY'];

export interface SealedValue {
  /** Base64 of the plaintext, of the nonce (12 bytes) and of the additional data (null: none). */
  readonly pt: string;
  readonly nonce: string;
  readonly aad: string | null;
  /** 0, 1: a key of the ring; 2: a key not in it. */
  readonly key: number;
  /** Opened with other additional data than it was sealed with. */
  readonly otherAad: boolean;
  /** Random text instead of a sealed value (then the fields above are unused). */
  readonly raw: string | null;
  /** Edits of the sealed text (see ../mutate). */
  readonly edits: readonly Edit[];
  /** Base64 characters changed to others: `back` characters from the end, the 6-bit value XORed with `xor` (the low bits of the last one are unused). */
  readonly flips: ReadonlyArray<{ readonly back: number; readonly xor: number }>;
}

export interface CodecInput {
  readonly codec: CodecName;
  readonly values: readonly SealedValue[];
  readonly engine: 'native' | 'node';
  readonly reseal: boolean;
}

const b64 = (n: number, max = n) => fc.uint8Array({ minLength: n, maxLength: max }).map((b) => Buffer.from(b).toString('base64'));
const TOKENS = ['=', '==', '-', '_', '+', '/', ':', 'mk1:', 'mk2:', 'mk1', 'A', 'AAAA', ' ', '\n', '%', '.', ...KEYS.map((k) => k.id), NOT_IN_RING.id, 'MK1:'];

const value: fc.Arbitrary<SealedValue> = fc.record({
  pt: b64(0, 48),
  nonce: b64(12),
  aad: fc.option(b64(0, 16), { nil: null }),
  key: fc.constantFrom(0, 0, 0, 1, 2),
  otherAad: fc.constantFrom(false, false, false, false, true),
  raw: fc.oneof({ weight: 10, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyText(40) }),
  edits: edits(TOKENS),
  flips: fc.oneof(fc.constant([]), fc.array(fc.record({ back: fc.nat({ max: 6 }), xor: fc.integer({ min: 1, max: 63 }) }), { minLength: 1, maxLength: 2 })),
});

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Changes base64 characters near the end of a text (skipping padding), in the alphabet of `codec`. */
function flip(codec: CodecName, text: string, flips: SealedValue['flips']): string {
  const alphabet = B64 + (codec === 'v1' ? '-_' : '+/');
  const chars = [...text];
  const end = text.replace(/=+$/, '').length;
  for (const f of flips) {
    const at = end - 1 - f.back;
    const v = alphabet.indexOf(chars[at] ?? '');
    if (at >= 0 && v >= 0) chars[at] = alphabet[v ^ f.xor];
  }
  return chars.join('');
}

/** The text to open and the additional data to open it with. */
function textOf(codec: CodecName, v: SealedValue): { text: string; aad?: Uint8Array; sealed?: string; pt?: Buffer } {
  const aad = v.aad === null ? undefined : Buffer.from(v.aad, 'base64');
  const openAad = v.otherAad ? Buffer.concat([aad ?? Buffer.alloc(0), Buffer.from([1])]) : aad;
  if (v.raw !== null) return { text: v.raw, aad: openAad };
  const pt = Buffer.from(v.pt, 'base64');
  const key = [...KEYS, NOT_IN_RING][v.key];
  const sealed = codecByName(codec).seal(key, pt, { nonce: Buffer.from(v.nonce, 'base64'), aad });
  return { text: flip(codec, applyEdits(sealed, v.edits), v.flips), aad: openAad, sealed, pt };
}

async function checkCodec(input: CodecInput): Promise<void> {
  const codec = codecByName(input.codec);
  const texts = input.values.map((v) => textOf(input.codec, v));
  const expected: Array<{ pt?: Buffer; code?: ErrorCode }> = texts.map((t, i) => {
    const v = input.values[i];
    try {
      codec.looksSealed(t.text);
    } catch (e) {
      throw checkRejection('looksSealed', e, []);
    }
    try {
      const opened = codec.open(RING, t.text, t.aad);
      const pt = Buffer.from(opened.plaintext);
      invariant(t.sealed !== undefined && t.text === t.sealed, `a ${input.codec} value that is not the one sealed opened (${t.sealed === undefined ? 'random text' : 'an edited value'})`);
      invariant(pt.equals(t.pt!) && !v.otherAad && v.key < 2, 'a value opened to another plaintext, with other additional data or under a key not in the ring');
      return { pt };
    } catch (e) {
      const r = checkRejection(`${input.codec} open`, e, CODES);
      invariant(t.text !== t.sealed || v.otherAad || v.key === 2, `an unaltered ${input.codec} value under a key of the ring did not open (${r.code})`);
      return { code: r.code };
    }
  });
  if (input.engine === 'native' && !nativeEngine()) return;
  let results;
  try {
    results = await new BatchCrypto(RING, input.reseal ? NEW_KEY : undefined, { mode: input.engine }).process(
      input.codec,
      texts.map((t) => t.text),
      texts.map((t) => t.aad),
    );
  } catch (e) {
    throw checkRejection('BatchCrypto.process', e, []);
  }
  expected.forEach((want, i) => {
    const got = results[i];
    invariant(got.code === want.code, `the batch decoder (${input.engine}) says ${got.code ?? 'opens'} where the ${input.codec} codec says ${want.code ?? 'opens'}`);
    if (want.pt && input.reseal) {
      invariant(typeof got.next === 'string', 'the batch gave no re-sealed text for a value that opens');
      const back = codec.open(new Keyring([NEW_KEY]), got.next!, texts[i].aad);
      invariant(Buffer.from(back.plaintext).equals(want.pt), 'the re-sealed text opens to another plaintext');
    }
  });
}

export const CODEC_TARGET: FuzzTarget<CodecInput> = {
  name: 'sealed-values',
  entry: 'v1 and act sealed values: codecByName(name).open (src/crypto/codec.ts) and BatchCrypto.process (src/crypto/batch.ts, native and node implementations)',
  arbitrary: fc.record({
    codec: fc.constantFrom<CodecName>('v1', 'act'),
    values: fc.array(value, { minLength: 1, maxLength: 4 }),
    engine: fc.constantFrom<'native' | 'node'>('native', 'node'),
    reseal: fc.boolean(),
  }),
  check: checkCodec,
  async: true,
  toJson: (i) => i,
  fromJson: (j) => j as CodecInput,
};
