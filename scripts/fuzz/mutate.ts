/**
 * Input generators shared by the targets: characters from every corner of
 * UTF-16 (lone surrogates, NUL, the byte-order mark, line separators), and
 * mutation of valid documents: a generated document with a few random
 * edits (insert a token, delete or duplicate a slice, cut the end). Most
 * inputs are then nearly valid, which reaches deep into a parser; fast-check
 * shrinks a failing one by dropping edits and simplifying the document.
 */
import fc from 'fast-check';

/** Characters a parser may trip on. */
export const AWKWARD = ['\u0000', '\t', '\n', '\r', '\r\n', '\u000b', '\u000c', ' ', '\u00a0', '\u2028', '\u2029', '\ufeff', '\ud800', '\udc00', '\ud83d\ude00', '\u0085', '\u007f', '\uffff', 'é', '\\', '"', "'"];

/** Any UTF-16 code unit (lone surrogates included), weighted towards ASCII and the awkward ones. */
export const anyChar: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 2, arbitrary: fc.constantFrom(...AWKWARD) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) },
);

/** A short string of `anyChar`. */
export const anyText = (maxLength = 12): fc.Arbitrary<string> => fc.string({ unit: anyChar, maxLength });

export interface Edit {
  readonly kind: 'insert' | 'delete' | 'replace' | 'duplicate' | 'truncate' | 'swap';
  readonly at: number;
  readonly len: number;
  readonly token: string;
}

function applyEdit(s: string, e: Edit): string {
  const at = e.at % (s.length + 1);
  const end = Math.min(s.length, at + e.len);
  switch (e.kind) {
    case 'insert':
      return s.slice(0, at) + e.token + s.slice(at);
    case 'delete':
      return s.slice(0, at) + s.slice(end);
    case 'replace':
      return s.slice(0, at) + e.token + s.slice(end);
    case 'duplicate':
      return s.slice(0, end) + s.slice(at, end) + s.slice(end);
    case 'truncate':
      return s.slice(0, at);
    case 'swap': {
      const other = (e.at * 7 + e.len * 13) % (s.length + 1);
      const [a, b] = at < other ? [at, other] : [other, at];
      const n = Math.min(e.len, b - a);
      return s.slice(0, a) + s.slice(b, b + n) + s.slice(a + n, b) + s.slice(a, a + n) + s.slice(b + n);
    }
  }
}

/** A text with edits applied in order. */
export function applyEdits(s: string, es: readonly Edit[]): string {
  return es.reduce(applyEdit, s);
}

/** Random edits of a text (none for about half), inserting `tokens` (the format's own punctuation) or any characters. */
export function edits(tokens: readonly string[]): fc.Arbitrary<Edit[]> {
  const edit = fc.record({
    kind: fc.constantFrom<Edit['kind']>('insert', 'insert', 'delete', 'replace', 'replace', 'duplicate', 'truncate', 'swap'),
    at: fc.nat(),
    len: fc.nat({ max: 24 }),
    token: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...tokens) }, { weight: 1, arbitrary: anyText(4) }),
  });
  return fc.oneof(fc.constant<Edit[]>([]), fc.array(edit, { minLength: 1, maxLength: 4 }));
}

/**
 * Documents from `valid`, about half of them edited a few times (the
 * others left valid: round trips need accepted inputs), and a few random texts.
 */
export function mutated(valid: fc.Arbitrary<string>, tokens: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 20, arbitrary: fc.tuple(valid, edits(tokens)).map(([s, es]) => applyEdits(s, es)) },
    { weight: 1, arbitrary: anyText(64) },
  );
}

/** A key as a config file holds it: 64 hex characters. */
export const hexKey: fc.Arbitrary<string> = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));

/** Bytes as base64 for the corpus, and back. */
export const bytesJson = {
  to: (b: Uint8Array): string => Buffer.from(b).toString('base64'),
  from: (j: unknown): Uint8Array => new Uint8Array(Buffer.from(String(j), 'base64')),
};
