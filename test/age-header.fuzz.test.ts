/**
 * Fuzz target "age headers as the restore path reads them" (issue 19), with
 * fast-check: `readAgeHeader` (the check restore makes of a sealed backup
 * file before the library decrypts it) and the recipient checks
 * (`checkRecipientShapes`, what a recipients file or option goes through)
 * either accept or throw a MasterKeyError with their code and one sentence,
 * never anything else, and never echo an identity. Real headers written by
 * age-encryption for 1 to 3 recipients (X25519 and hybrid) are read back
 * with their stanzas; every one-byte change of them is accepted or refused
 * with BACKUP_CORRUPT. `FUZZ_RUNS` raises the number of inputs (the fuzz
 * harness on branch fuzz19 can drive the same properties).
 */
import fc from 'fast-check';
import { Encrypter, generateHybridIdentity, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { MasterKeyError } from '../src/errors';
import { MAX_HEADER, checkRecipientShapes, readAgeHeader, recipientKind } from '../src/rotation/age';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);

/** Runs fn; passes when it returns or throws a MasterKeyError with `code` and a one-sentence message. */
function acceptsOrRefuses(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(MasterKeyError);
    expect((e as MasterKeyError).code).toBe(code);
    expect((e as MasterKeyError).message).not.toMatch(/\n/);
    expect((e as MasterKeyError).message).toMatch(/[.;)]$/);
  }
}

/** The header of a file sealed by age-encryption (everything before the payload nonce). */
async function sealedHeader(recipients: string[]): Promise<Uint8Array> {
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  const file = await e.encrypt('ACT_MASTER_KEY=not-a-real-key\n');
  return file;
}

describe('fuzz: age headers as the restore path reads them', () => {
  let x25519: string[];
  let hybrid: string;
  beforeAll(async () => {
    x25519 = await Promise.all([1, 2].map(async () => identityToRecipient(await generateX25519Identity())));
    hybrid = await identityToRecipient(await generateHybridIdentity());
  });

  it('reads the headers age-encryption writes: one stanza per recipient, X25519 and hybrid', async () => {
    for (const set of [[x25519[0]], [x25519[0], x25519[1]], [hybrid], [x25519[0], hybrid, x25519[1]]]) {
      const file = await sealedHeader(set);
      const h = readAgeHeader(file, 'the file');
      expect(h.stanzas).toEqual(set.map((r) => (recipientKind(r) === 'hybrid' ? 'mlkem768x25519' : 'X25519')));
      expect(new TextDecoder().decode(file.subarray(h.headerBytes - 48, h.headerBytes))).toMatch(/^--- [A-Za-z0-9+/]{43}\n$/);
    }
  });

  it('arbitrary bytes: accepted, or refused with BACKUP_CORRUPT; never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 4096 }), (bytes) => acceptsOrRefuses(() => readAgeHeader(bytes, 'the file'), 'BACKUP_CORRUPT')),
      { numRuns: RUNS },
    );
  });

  it('header-shaped text (version line, stanza lines, bodies, MAC lines in any order): accepted or refused with BACKUP_CORRUPT', () => {
    const b64 = fc.stringMatching(/^[A-Za-z0-9+/]{0,70}$/);
    const line = fc.oneof(
      fc.constant('age-encryption.org/v1'),
      fc.tuple(fc.constantFrom('X25519', 'mlkem768x25519', 'scrypt', ''), fc.array(b64, { maxLength: 3 })).map(([t, args]) => `-> ${[t, ...args].join(' ')}`),
      b64,
      b64.map((m) => `--- ${m}`),
      fc.string({ maxLength: 80 }),
    );
    fc.assert(
      fc.property(fc.boolean(), fc.array(line, { maxLength: 12 }), fc.boolean(), (versionFirst, lines, trailing) => {
        const text = [...(versionFirst ? ['age-encryption.org/v1'] : []), ...lines].join('\n') + (trailing ? '\n' : '');
        acceptsOrRefuses(() => readAgeHeader(new TextEncoder().encode(text), 'the file'), 'BACKUP_CORRUPT');
      }),
      { numRuns: RUNS },
    );
  });

  it('real headers with one byte changed, truncated, or padded past the header limit: accepted or refused with BACKUP_CORRUPT', async () => {
    const files = await Promise.all([[x25519[0]], [hybrid, x25519[1]]].map(sealedHeader));
    fc.assert(
      fc.property(fc.constantFrom(...files), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(), (file, at, byte, cut) => {
        const changed = Uint8Array.from(file);
        changed[at % changed.length] = byte;
        acceptsOrRefuses(() => readAgeHeader(changed, 'the file'), 'BACKUP_CORRUPT');
        acceptsOrRefuses(() => readAgeHeader(file.subarray(0, cut % file.length), 'the file'), 'BACKUP_CORRUPT');
      }),
      { numRuns: RUNS },
    );
    const long = new TextEncoder().encode(`age-encryption.org/v1\n-> X25519 ${'A'.repeat(MAX_HEADER)}\n`);
    expect(() => readAgeHeader(long, 'the file')).toThrow(/its age header does not end/);
  });

  it('recipient strings: accepted, or refused with RECIPIENT_INVALID, never quoting an identity', () => {
    const bech = fc.stringMatching(/^[02-9ac-hj-np-z]{0,70}$/);
    const candidate = fc.oneof(
      fc.string({ maxLength: 100 }),
      bech.map((b) => `age1${b}`),
      bech.map((b) => `age1pq1${b}`),
      bech.map((b) => `AGE-SECRET-KEY-1${b.toUpperCase()}`),
      fc.constantFrom(...x25519, hybrid),
    );
    fc.assert(
      fc.property(fc.array(candidate, { maxLength: 4 }), (list) => {
        try {
          checkRecipientShapes(list, (i) => `Recipient ${i + 1}`);
        } catch (e) {
          expect(e).toBeInstanceOf(MasterKeyError);
          expect((e as MasterKeyError).code).toBe('RECIPIENT_INVALID');
          for (const r of list) if (/^AGE-SECRET-KEY-/i.test(r.trim()) && r.trim().length > 16) expect((e as Error).message).not.toContain(r.trim());
        }
      }),
      { numRuns: RUNS },
    );
  });
});
