/**
 * The age header of a sealed backup file as `restore` and `restore --drill`
 * read it (issue 19's sealed backups): `readAgeHeader` (src/rotation/age.ts),
 * the check restore makes of every sealed file before age-encryption
 * decrypts it, and the recipient checks (`checkRecipientShapes`, what
 * `--backup-recipient`, a recipients file, `backup_recipients` and
 * `backupRecipients` go through).
 *
 * Inputs: arbitrary bytes; header-shaped text (version line, stanza lines,
 * bodies, MAC lines in any order); real headers written by age-encryption
 * for 1 to 3 recipients (X25519 and hybrid), read back unchanged, then with
 * one byte changed or cut short; a header longer than the limit; lists of
 * recipient-like strings (identities among them).
 *
 * For every input: BACKUP_CORRUPT or RECIPIENT_INVALID only, each one
 * sentence, never quoting an identity; an unchanged real header reads as one
 * stanza per recipient, of its type, ending with its MAC line.
 */
import fc from 'fast-check';
import { MAX_HEADER, checkRecipientShapes, loadAge, readAgeHeader, recipientKind } from '../../../src/rotation/age';
import { FuzzTarget, invariant, typed } from '../harness';

export type AgeHeaderInput =
  /** Any bytes, as hex. */
  | { readonly bytes: string }
  /** Header-shaped text. */
  | { readonly text: string }
  /** Real header `real` (of REAL_SETS), byte `at` set to `byte` (when given), cut at `cut` (when given). */
  | { readonly real: number; readonly at?: number; readonly byte?: number; readonly cut?: number }
  /** A list of recipients as an option or file gives them. */
  | { readonly recipients: readonly string[] };

/** Which recipients each real header is sealed to: indexes into the X25519 pair, or 'hybrid'. */
const REAL_SETS: ReadonlyArray<ReadonlyArray<0 | 1 | 'hybrid'>> = [[0], [0, 1], ['hybrid'], [0, 'hybrid', 1]];

interface Real {
  readonly file: Uint8Array;
  readonly stanzas: readonly string[];
}

/** Fresh recipients and the real files sealed to them (made once per process, on first use). */
let made: Promise<{ readonly reals: readonly Real[]; readonly recipients: readonly string[]; readonly identities: readonly string[] }> | undefined;

async function make() {
  const age = await loadAge();
  const identities = [await age.generateX25519Identity(), await age.generateX25519Identity(), await age.generateHybridIdentity()];
  const [a, b, hybrid] = await Promise.all(identities.map((i) => age.identityToRecipient(i)));
  const reals: Real[] = [];
  for (const set of REAL_SETS) {
    const recipients = set.map((r) => (r === 'hybrid' ? hybrid : r === 0 ? a : b));
    const e = new age.Encrypter();
    for (const r of recipients) e.addRecipient(r);
    const file = await e.encrypt('ACT_MASTER_KEY=not-a-real-key\n');
    reals.push({ file, stanzas: recipients.map((r) => (recipientKind(r) === 'hybrid' ? 'mlkem768x25519' : 'X25519')) });
  }
  return { reals, recipients: [a, b, hybrid], identities };
}

const b64 = fc.stringMatching(/^[A-Za-z0-9+/]{0,70}$/);
const bech = fc.stringMatching(/^[02-9ac-hj-np-z]{0,70}$/);

const headerText = fc
  .tuple(
    fc.boolean(),
    fc.array(
      fc.oneof(
        fc.constant('age-encryption.org/v1'),
        fc.tuple(fc.constantFrom('X25519', 'mlkem768x25519', 'scrypt', ''), fc.array(b64, { maxLength: 3 })).map(([t, args]) => `-> ${[t, ...args].join(' ')}`),
        b64,
        b64.map((m) => `--- ${m}`),
        fc.string({ maxLength: 80 }),
      ),
      { maxLength: 12 },
    ),
    fc.boolean(),
  )
  .map(([versionFirst, lines, trailing]) => ({ text: [...(versionFirst ? ['age-encryption.org/v1'] : []), ...lines].join('\n') + (trailing ? '\n' : '') }));

const recipientList = fc
  .array(
    fc.oneof(
      fc.string({ maxLength: 100 }),
      bech.map((b) => `age1${b}`),
      bech.map((b) => `age1pq1${b}`),
      bech.map((b) => `AGE-SECRET-KEY-1${b.toUpperCase()}`),
      // The real recipients (and, by mistake, an identity): index into those made in `make`.
      fc.constantFrom('#0', '#1', '#2', '#identity'),
    ),
    { maxLength: 4 },
  )
  .map((recipients) => ({ recipients }));

/** A header longer than the limit: refused before it is read to its end. */
const LONG = { text: `age-encryption.org/v1\n-> X25519 ${'A'.repeat(MAX_HEADER)}\n` };

async function check(input: AgeHeaderInput): Promise<void> {
  const m = await (made ??= make());
  if ('recipients' in input) {
    // `#0` to `#2` stand for the real recipients; any other text (`#3` included) is given as it is.
    const list = input.recipients.map((r) => (r === '#identity' ? m.identities[0] : /^#[0-2]$/.test(r) ? m.recipients[Number(r[1])] : r));
    const identities = [...m.identities, ...list.map((r) => r.trim()).filter((r) => /^AGE-SECRET-KEY-/i.test(r) && r.length > 16)];
    typed('checkRecipientShapes', () => checkRecipientShapes(list, (i) => `Recipient ${i + 1}`), ['RECIPIENT_INVALID'], identities);
    return;
  }
  if ('real' in input) {
    const real = m.reals[Math.abs(input.real) % m.reals.length];
    const h = typed('readAgeHeader (a header age-encryption wrote)', () => readAgeHeader(real.file, 'the file'), []);
    invariant(h.ok && JSON.stringify(h.value.stanzas) === JSON.stringify(real.stanzas), `a header age-encryption wrote reads as other stanzas than its recipients' (${h.ok ? JSON.stringify(h.value.stanzas) : 'refused'})`);
    if (h.ok) invariant(/^--- [A-Za-z0-9+/]{43}\n$/.test(new TextDecoder().decode(real.file.subarray(h.value.headerBytes - 48, h.value.headerBytes))), 'a header age-encryption wrote does not end with its MAC line');
    let bytes = Uint8Array.from(real.file);
    if (input.at !== undefined && input.byte !== undefined) bytes[Math.abs(input.at) % bytes.length] = input.byte & 0xff;
    if (input.cut !== undefined) bytes = bytes.subarray(0, Math.abs(input.cut) % bytes.length);
    typed('readAgeHeader', () => readAgeHeader(bytes, 'the file'), ['BACKUP_CORRUPT']);
    return;
  }
  const bytes = 'bytes' in input ? Uint8Array.from(Buffer.from(input.bytes, 'hex')) : new TextEncoder().encode(input.text);
  const h = typed('readAgeHeader', () => readAgeHeader(bytes, 'the file'), ['BACKUP_CORRUPT']);
  if (input === LONG) invariant(!h.ok, 'a header longer than the limit was accepted');
}

export const AGE_HEADER_TARGET: FuzzTarget<AgeHeaderInput> = {
  name: 'age-header',
  entry: 'sealed backup files: readAgeHeader and checkRecipientShapes (src/rotation/age.ts), as restore, restore --drill and every recipients setting reach them',
  arbitrary: fc.oneof(
    fc.uint8Array({ maxLength: 4096 }).map((b) => ({ bytes: Buffer.from(b).toString('hex') })),
    headerText,
    fc.record({ real: fc.nat(), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ real: fc.nat(), cut: fc.nat() }),
    fc.record({ real: fc.nat(), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), cut: fc.nat() }),
    recipientList,
    fc.constant(LONG),
  ),
  check,
  async: true,
  toJson: (i) => i,
  fromJson: (j) => j as AgeHeaderInput,
};
