/**
 * JSON documents in the database (a jsonb or json column on PostgreSQL, a
 * text column on SQLite) holding sealed values at an inventory's jsonPath,
 * through the hot path's per-row work both stores share: `resealBatch`
 * (src/engine/reseal.ts: parse the document with the lossless reader,
 * find the sealed values, open and re-seal them, write the document back)
 * and `eachValue` (what verification digests).
 *
 * Inputs are documents generated around sealed values (objects, arrays,
 * `where` members, numbers of any precision, escapes, duplicate member
 * names), edited as text, with an entry's jsonPath and where. For every
 * input: resealBatch never throws (a document it cannot handle is a row
 * failure with a SEALED_* code); a re-sealed document holds every member of
 * the original (none lost), the same non-secret values byte for byte in
 * their canonical form, and each sealed value re-sealed under the new key to
 * the same plaintext; the reader accepts exactly what JSON.parse accepts,
 * apart from documents with a member name twice, which it refuses.
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { BatchCrypto } from '../../../src/crypto/batch';
import { CodecName, codecByName } from '../../../src/crypto/codec';
import { MasterKey } from '../../../src/crypto/key';
import { Keyring } from '../../../src/crypto/keyring';
import { ErrorCode } from '../../../src/errors';
import { sealedText } from '../../../src/crypto/batch';
import { JsonNumber, JsonValue, MAX_JSON_DEPTH, parseJsonLossless } from '../../../src/engine/json-document';
import { resealBatch } from '../../../src/engine/reseal';
import { eachValue, rowShape } from '../../../src/engine/rows';
import { InlineCrypto } from '../../../src/engine/value-crypto';
import type { InventoryEntry } from '../../../src/inventory/inventory';
import { FuzzDefect, FuzzTarget, checkRejection, invariant } from '../harness';
import { anyText, applyEdits, edits } from '../mutate';

const fixedKey = (label: string) => MasterKey.fromBytes(new Uint8Array(createHash('sha256').update(`cdktf-master-key fuzz documents ${label}`).digest()));
const OLD = fixedKey('old');
const NEW = fixedKey('new');
const READ_CODES: readonly ErrorCode[] = ['INVENTORY_INVALID', 'SEALED_MALFORMED'];

export interface DocumentInput {
  readonly text: string;
  readonly codec: CodecName;
  readonly jsonPath: readonly string[];
  readonly where: { readonly key: string; readonly equals: string | number | boolean } | null;
}

/** Sealed strings of the old key (fixed nonces: inputs replay the same). */
const sealedOf = (codec: CodecName, i: number) => codecByName(codec).seal(OLD, Buffer.from(`secret ${i}`), { nonce: Buffer.alloc(12, i) });

type Doc = { t: 'sealed'; i: number } | { t: 'lit'; raw: string } | { t: 's'; v: string } | { t: 'o'; m: Array<[string, Doc]> } | { t: 'a'; items: Doc[] };
const KEYS = ['env', 'value', 'secret', 'credentials', 'aws', 'TOKEN', 'OTHER', '0', 'a.b', '__proto__', ''];
const doc = fc.letrec<{ d: Doc }>((tie) => ({
  d: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.nat({ max: 5 }).map((i): Doc => ({ t: 'sealed', i })),
    fc.constantFrom('true', 'false', 'null', '0', '-0.0', '1e400', '12345678901234567890.123', '1.10', '2E+5').map((raw): Doc => ({ t: 'lit', raw })),
    fc.oneof(anyText(6), fc.constantFrom('plain', 'é\\', '\u2028')).map((v): Doc => ({ t: 's', v })),
    fc.array(fc.tuple(fc.constantFrom(...KEYS), tie('d')), { maxLength: 4 }).map((m): Doc => ({ t: 'o', m })),
    fc.array(tie('d'), { maxLength: 4 }).map((items): Doc => ({ t: 'a', items })),
  ),
})).d;

function print(d: Doc, codec: CodecName, ws: string, escape: boolean): string {
  const str = (s: string) => (escape ? JSON.stringify(s).replace(/[a-f]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`) : JSON.stringify(s));
  switch (d.t) {
    case 'sealed':
      return JSON.stringify(sealedOf(codec, d.i));
    case 'lit':
      return d.raw;
    case 's':
      return str(d.v);
    case 'o':
      return `{${ws}${d.m.map(([k, v]) => `${str(k)}${ws}:${ws}${print(v, codec, ws, escape)}`).join(`,${ws}`)}${ws}}`;
    case 'a':
      return `[${ws}${d.items.map((x) => print(x, codec, ws, escape)).join(`,${ws}`)}${ws}]`;
  }
}

const ENTRIES: ReadonlyArray<Pick<DocumentInput, 'jsonPath' | 'where'>> = [
  { jsonPath: ['*'], where: null },
  { jsonPath: ['env', '*', 'value'], where: { key: 'secret', equals: true } },
  { jsonPath: ['env', '*', 'value'], where: null },
  { jsonPath: ['credentials', '*'], where: null },
  { jsonPath: ['TOKEN'], where: null },
  { jsonPath: ['*', '*'], where: { key: 'secret', equals: 1 } },
];
const TOKENS = ['{', '}', '[', ']', '"', ':', ',', '\\', '\\u', '\\ud800', '\\x', '\u0000', '\n', '1e', '-', '"TOKEN":', '"env":[{"value":', 'true', '[[[[[[[['];

/** Very deep nesting now and then (a stack the reader must not overflow). */
const deep = fc.integer({ min: 100, max: 20_000 }).map((n) => `{"TOKEN":${'['.repeat(n)}${']'.repeat(n)}}`);

/** Every member name and value of a parsed document, as [path, canonical text] pairs: what a rewrite must keep. */
function members(v: JsonValue, path = ''): string[] {
  if (v instanceof Map) return [...v.entries()].flatMap(([k, x]) => [`${path}/${JSON.stringify(k)}`, ...members(x, `${path}/${JSON.stringify(k)}`)]);
  if (Array.isArray(v)) return v.flatMap((x, i) => members(x, `${path}/${i}`));
  return [`${path}=${v instanceof JsonNumber ? v.raw : JSON.stringify(v)}`];
}

/** How deep a JSON text nests (brackets outside strings). */
function nesting(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '{' || c === '[') max = Math.max(max, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return max;
}

/** How many member names a JSON text holds, counted on its string tokens (duplicates too): a string followed by a colon. */
function countMembers(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '"') continue;
    for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    let j = i + 1;
    while (/[ \t\n\r]/.test(text[j] ?? '')) j++;
    if (text[j] === ':') n++;
  }
  return n;
}

async function checkDocument(input: DocumentInput): Promise<void> {
  const { text, codec } = input;
  const entry: InventoryEntry = { kind: 'fuzzed secret', table: 't', idColumn: 'id', column: 'doc', codec, jsonPath: input.jsonPath, ...(input.where ? { where: input.where } : {}) };
  const columns = [{ column: 'doc', json: true, entries: [entry] }];
  const rows = [['1', text]];

  // The reader against JSON.parse.
  let mine: JsonValue | undefined;
  try {
    mine = parseJsonLossless(text);
  } catch (e) {
    checkRejection('parseJsonLossless', e, READ_CODES);
  }
  let theirs = true;
  try {
    JSON.parse(text);
  } catch {
    theirs = false;
  }
  if (mine !== undefined) invariant(theirs, 'the document reader accepted a text JSON.parse refuses');
  else if (theirs) {
    try {
      parseJsonLossless(text);
    } catch (e) {
      const allowed = (e as { code?: string }).code === 'SEALED_MALFORMED' || nesting(text) > MAX_JSON_DEPTH;
      invariant(allowed, `the document reader refused a text JSON.parse accepts (${(e as Error).message})`);
    }
  }

  // The hot path: never throws; a document it cannot handle is a row failure.
  const crypto = new InlineCrypto(new BatchCrypto(new Keyring([OLD]), NEW));
  const shape = rowShape({ table: 't', columns, aadColumns: [] }, 0, 1);
  let out;
  try {
    out = await resealBatch(rows, { shape, crypto });
  } catch (e) {
    throw new FuzzDefect(`resealBatch threw (${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}) instead of listing the row`);
  }
  for (const f of out.failures) invariant(/^SEALED_[A-Z_]+$/.test(f.code), `a row failure has the code ${f.code}`);
  if (mine === undefined) {
    invariant(out.failures.length > 0, 'a document the reader refuses was not listed as a failure');
    return;
  }
  try {
    eachValue(rows, shape, () => undefined);
  } catch (e) {
    throw new FuzzDefect(`eachValue threw on a document the reader accepts (${(e as Error).message})`);
  }
  const held = out.next[0]?.[0];
  if (out.failures.length > 0 || held === undefined || held === null) return;
  const next = sealedText(held);
  // The rewritten document: same members, same non-secret values, each sealed value re-sealed to the same plaintext.
  const after = parseJsonLossless(next);
  invariant(countMembers(next) === countMembers(text), `the rewritten document has ${countMembers(next)} members where the stored one has ${countMembers(text)}`);
  const before = members(mine);
  const now = members(after);
  invariant(before.length === now.length, 'the rewritten document lost or gained a member');
  const ring = new Keyring([NEW]);
  const oldRing = new Keyring([OLD]);
  before.forEach((b, i) => {
    if (b === now[i]) return;
    const [pathB, valueB] = [b.slice(0, b.indexOf('=')), b.slice(b.indexOf('=') + 1)];
    const [pathN, valueN] = [now[i].slice(0, now[i].indexOf('=')), now[i].slice(now[i].indexOf('=') + 1)];
    invariant(pathB === pathN, `the rewritten document changed a member name at ${pathB}`);
    const was = oldRing.openText(codecByName(codec), JSON.parse(valueB) as string);
    invariant(ring.openText(codecByName(codec), JSON.parse(valueN) as string) === was, `a re-sealed value at ${pathB} opens to another plaintext`);
  });
}

export const DOCUMENTS_TARGET: FuzzTarget<DocumentInput> = {
  name: 'json-documents',
  entry: 'JSON documents in the database: parseJsonLossless and documentSlots (src/engine/json-document.ts) through resealBatch (src/engine/reseal.ts) and eachValue (src/engine/rows.ts), shared by PostgreSQL and SQLite',
  arbitrary: fc
    .record({
      d: doc,
      codec: fc.constantFrom<CodecName>('act', 'v1'),
      entry: fc.constantFrom(...ENTRIES),
      ws: fc.constantFrom('', ' ', '\n  '),
      escape: fc.boolean(),
      edits: edits(TOKENS),
      raw: fc.oneof({ weight: 30, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyText(40) }, { weight: 1, arbitrary: deep }),
    })
    .map((r) => ({ text: r.raw ?? applyEdits(print(r.d, r.codec, r.ws, r.escape), r.edits), codec: r.codec, jsonPath: r.entry.jsonPath, where: r.entry.where })),
  check: checkDocument,
  async: true,
  toJson: (i) => i,
  fromJson: (j) => j as DocumentInput,
};
