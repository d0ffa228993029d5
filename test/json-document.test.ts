import fc from 'fast-check';
import { DocumentSplice, JsonNumber, documentBytes, documentSlots, findEntrySlots, findSlots, parseJsonLossless, slotValue, stringifyJsonLossless } from '../src/engine/json-document';
import type { TextSlot } from '../src/engine/json-document';
import type { InventoryEntry } from '../src/inventory/inventory';
import { BatchCrypto } from '../src/crypto/batch';
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { openBatch } from '../src/engine/reseal';
import { rowShape } from '../src/engine/rows';
import { InlineCrypto } from '../src/engine/value-crypto';

describe('lossless JSON for jsonb documents', () => {
  it('round-trips any JSON document to an equal value', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        const back = stringifyJsonLossless(parseJsonLossless(text));
        expect(JSON.parse(back)).toEqual(JSON.parse(text));
        // The hot path's bytes are the same text.
        expect(documentBytes(parseJsonLossless(text), 8).toString('utf8')).toBe(back);
      }),
      { numRuns: 500 },
    );
  });

  it('writes the bytes of any string exactly as JSON.stringify quotes it (escapes, lone surrogates, long texts)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', '"', '\\', '\n', '\u0001', '✓', '😀', '\ud800', '\udfff', '\u2028') }), (str) => {
        expect(documentBytes(str).toString('utf8')).toBe(JSON.stringify(str));
      }),
      { numRuns: 500 },
    );
    const long = 'x'.repeat(100_000) + '✓';
    expect(documentBytes(new Map([['k', long]]) as never).toString('utf8')).toBe(JSON.stringify({ k: long }));
  });

  it('keeps numbers exactly as written (jsonb numbers are arbitrary precision)', () => {
    const text = '{"big": 12345678901234567890.1234567890, "tiny": 1e-400, "neg": -0.0, "arr": [1.10, 2E+5]}';
    const doc = parseJsonLossless(text);
    expect(stringifyJsonLossless(doc)).toBe('{"big":12345678901234567890.1234567890,"tiny":1e-400,"neg":-0.0,"arr":[1.10,2E+5]}');
    expect((doc as Map<string, unknown>).get('big')).toEqual(new JsonNumber('12345678901234567890.1234567890'));
  });

  it('reads escapes, unicode and "__proto__" keys as plain data', () => {
    const text = '{"__proto__": {"x": "a\\"b\\\\c\\u00e9\\ud83d\\ude00"}, "constructor": null}';
    const doc = parseJsonLossless(text);
    expect(doc).toBeInstanceOf(Map);
    expect(JSON.parse(stringifyJsonLossless(doc))).toEqual(JSON.parse(text));
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('refuses a document nested deeper than 1,000 levels (a stack overflow before)', () => {
    const nested = (n: number) => `{"a":${'['.repeat(n)}${']'.repeat(n)}}`;
    expect(() => parseJsonLossless(nested(999))).not.toThrow();
    for (const n of [1000, 100_000]) expect(() => parseJsonLossless(nested(n))).toThrow(expect.objectContaining({ code: 'INVENTORY_INVALID', message: expect.stringContaining('nests deeper than 1000 levels') }));
  });

  it('refuses a member name twice in one object, anywhere in the document, naming where: a rewrite would keep only one', () => {
    expect(() => parseJsonLossless('{"TOKEN":"a","TOKEN":"b","OTHER":"c"}')).toThrow(expect.objectContaining({ code: 'SEALED_MALFORMED', details: { path: 'TOKEN' } }));
    expect(() => parseJsonLossless('{"env":[{"v":1},{"v":2,"v":3}]}')).toThrow(expect.objectContaining({ code: 'SEALED_MALFORMED', details: { path: 'env.1.v' }, message: expect.stringContaining('holds the member "v" twice (in "env.1")') }));
    // Member names are quoted as JSON: a line break in one cannot split the sentence.
    expect(() => parseJsonLossless('{"a\\nb":{"v":1,"v":2}}')).toThrow(expect.objectContaining({ message: expect.stringContaining('holds the member "v" twice (in "a\\nb")') }));
    expect(stringifyJsonLossless(parseJsonLossless('{"a":{"x":1},"b":{"x":2},"c":[{"x":3},{"x":4}]}'))).toBe('{"a":{"x":1},"b":{"x":2},"c":[{"x":3},{"x":4}]}');
  });

  it('refuses text that is not JSON', () => {
    // A raw control character in a string, and escapes JSON does not have (JSON.parse threw a SyntaxError on these).
    for (const bad of ['', '{', '{"a" 1}', '[1,]', 'tru', '{"a":1} x', "{'a':1}", '"a\nb"', '"\\x41"', '"\\u12"', '{"a\u0001":1}']) {
      expect(() => parseJsonLossless(bad)).toThrow(expect.objectContaining({ code: 'INVENTORY_INVALID' }));
    }
  });
});

describe('finding sealed values in a document', () => {
  const doc = () =>
    parseJsonLossless(
      JSON.stringify({
        env: [
          { name: 'A', value: 'sealed-a', secret: true },
          { name: 'B', value: 'plain', secret: false },
          { name: 'C', value: 7, secret: true },
          { name: 'D', secret: true },
          { name: 'E', value: 'sealed-e', secret: 1 },
        ],
        credentials: { aws: 'sealed-aws', 'dotted.key': 'sealed-dot', nested: { x: 'no' }, n: 3 },
      }),
    );

  it('follows * through arrays and objects, honours where, skips absent and non-string values', () => {
    expect(findSlots(doc(), ['env', '*', 'value'], { key: 'secret', equals: true }).map((s) => [s.path, s.value])).toEqual([['env.0.value', 'sealed-a']]);
    expect(findSlots(doc(), ['env', '*', 'value'], { key: 'secret', equals: 1 }).map((s) => s.path)).toEqual(['env.4.value']);
    expect(findSlots(doc(), ['env', '*', 'value']).map((s) => s.path)).toEqual(['env.0.value', 'env.1.value', 'env.4.value']);
    expect(findSlots(doc(), ['credentials', '*']).map((s) => s.value)).toEqual(['sealed-aws', 'sealed-dot']);
    expect(findSlots(doc(), ['env', '1', 'value']).map((s) => s.value)).toEqual(['plain']);
    expect(findSlots(doc(), ['missing', '*'])).toEqual([]);
    expect(findSlots(parseJsonLossless('"top"'), ['*'])).toEqual([]);
  });

  it('replaces values in place, and a location claimed by two entries counts once', () => {
    const d = doc();
    const e = (jsonPath: string[]): InventoryEntry => ({ kind: jsonPath.join('/'), table: 't', idColumn: 'id', column: 'c', codec: 'act', jsonPath });
    const slots = findEntrySlots(d, [e(['credentials', '*']), e(['credentials', 'aws'])]);
    expect(slots.map((s) => [s.entry.kind, s.slot.path])).toEqual([
      ['credentials/*', 'credentials.aws'],
      ['credentials/*', 'credentials.dotted.key'],
    ]);
    for (const s of slots) s.slot.set(`new-${s.slot.value}`);
    findSlots(d, ['env', '0', 'value'])[0].set('new-a');
    const back = JSON.parse(stringifyJsonLossless(d));
    expect(back.credentials).toEqual({ aws: 'new-sealed-aws', 'dotted.key': 'new-sealed-dot', nested: { x: 'no' }, n: 3 });
    expect(back.env[0].value).toBe('new-a');
  });
});

describe('finding sealed values in the text, without a tree (the hot path)', () => {
  const entry = (jsonPath: string[], where?: InventoryEntry['where']): InventoryEntry => ({ kind: jsonPath.join('/'), table: 't', idColumn: 'id', column: 'c', codec: 'act', jsonPath, ...(where ? { where } : {}) });
  /** Sets of entries as inventories hold them: wildcards at each depth, names, indices, `where`, and two entries claiming a place. */
  const inventories: InventoryEntry[][] = [
    [entry(['*'])],
    [entry(['*', '*'])],
    [entry(['*', '*', '*'])],
    [entry(['*', '*', 'value'], { key: 'secret', equals: true })],
    [entry(['*', '*', 'value'], { key: 'n', equals: 1 })],
    [entry(['*', '0'])],
    [entry(['*', '*']), entry(['*', 'a']), entry(['*'])],
    [entry(['env', '*', 'value'], { key: 'secret', equals: true }), entry(['env', '*', 'value'])],
  ];
  /** `text` with the strings of `slots` (in document order) replaced by `values` (undefined: kept). */
  const splice = (text: string, slots: TextSlot[], values: Array<string | undefined>) => {
    const out = new DocumentSplice(text);
    slots.forEach((s, i) => values[i] !== undefined && out.replace(s, values[i]!));
    return out.bytes().toString('utf8');
  };
  const same = (text: string, entries: InventoryEntry[]) => {
    let tree: Array<[string, string, string]> | Error;
    try {
      tree = findEntrySlots(parseJsonLossless(text), entries).map((s) => [s.entry.kind, s.slot.path, s.slot.value]);
    } catch (e) {
      tree = e as Error;
    }
    if (tree instanceof Error) {
      expect(() => documentSlots(text, entries)).toThrow(tree);
      return;
    }
    const slots = documentSlots(text, entries);
    expect(slots.map((s) => [s.entry.kind, s.path, slotValue(text, s)])).toEqual(tree);
    // Replaced in document order, everything else kept as written: the same document as the tree rewritten.
    const order = [...slots].sort((a, b) => a.start - b.start);
    const spliced = splice(text, order, order.map((s, i) => (i % 2 ? undefined : `new-${slotValue(text, s)}\n"`)));
    const doc = parseJsonLossless(text);
    const placed = new Map(findEntrySlots(doc, entries).map((s) => [s.slot.path, s.slot]));
    order.forEach((s, i) => i % 2 || placed.get(s.path)!.set(`new-${slotValue(text, s)}\n"`));
    expect(stringifyJsonLossless(parseJsonLossless(spliced))).toBe(stringifyJsonLossless(doc));
    if (slots.length === 0) expect(spliced).toBe(text);
  };

  it('finds what the tree finds, in the same order, and refuses what it refuses', () => {
    const member = fc.constantFrom('a', 'b', 'value', 'secret', 'n', 'env', 'x.y', '0', 'a"b');
    const leaf = fc.oneof(fc.string(), fc.constantFrom(true, false, null, 1, 1.5, '\\u00e9\n'), fc.integer());
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(member, tie('value'), { maxKeys: 4 })),
    }));
    fc.assert(
      fc.property(value, fc.constantFrom(...inventories), fc.boolean(), (v, entries, spaced) => {
        same(JSON.stringify(v, null, spaced ? 2 : undefined), entries);
      }),
      { numRuns: 400 },
    );
    for (const text of [
      '{"env":[{"value":"s1","secret":true},{"secret":true,"value":"s2"},{"value":"s3","secret":false},{"value":"s4"}]}',
      '{"env":[{"value":"a","value":"b"}]}',
      '{"env":[{"value":"a"}',
      `{"a":${'['.repeat(1000)}${']'.repeat(1000)}}`,
      '"top"',
      '{"a":{"0":"x"},"b":["y","z"]}',
    ]) {
      for (const entries of inventories) same(text, entries);
    }
  });

  it('keeps the rest of a document byte for byte (spaces, escapes, number spellings)', () => {
    const text = '{ "n": 1.50E+2,\n  "env": [ { "value" : "old\\/one", "k": "\\u00e9" } ] }';
    const slots = documentSlots(text, [entry(['env', '*', 'value'])]);
    expect(slots.map((s) => [s.path, slotValue(text, s)])).toEqual([['env.0.value', 'old/one']]);
    expect(splice(text, slots, ['new'])).toBe('{ "n": 1.50E+2,\n  "env": [ { "value" : "new", "k": "\\u00e9" } ] }');
  });

  it('writes a lone surrogate it keeps as its escape (it has no UTF-8 form), a pair as its character', () => {
    const text = '{"k":["\udc00x","\ud83d","\ud83d\ude00","\ud800\ud800\udfff"],"value":"old"}';
    const slots = documentSlots(text, [entry(['value'])]);
    const out = splice(text, slots, ['new']);
    expect(out).toBe('{"k":["\\udc00x","\\ud83d","\ud83d\ude00","\\ud800\ud800\udfff"],"value":"new"}');
    expect(Buffer.from(out, 'utf8').toString('utf8')).toBe(out); // well formed: no lone surrogate (it would come back as U+FFFD)
    expect(JSON.parse(out).k).toEqual(JSON.parse(text).k);
  });
});

describe('a stored document the reader refuses', () => {
  it('is a failure of its row (SEALED_MALFORMED), listed like a value that does not open: the walk goes on', async () => {
    const key = MasterKey.generate();
    const entry: InventoryEntry = { kind: 'document secret', table: 't', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['*'] };
    const sealed = actCodec().seal(key, Buffer.from('x'));
    // Not JSON; a number where a document belongs (SQLite may hold one); too deep; and a good document after them.
    const rows = [['1', 'not json'], ['2', 7], ['3', `{"a":${'['.repeat(1000)}${']'.repeat(1000)}}`], ['4', JSON.stringify({ a: sealed })]];
    const shape = rowShape({ table: 't', columns: [{ column: 'doc', json: true, entries: [entry] }], aadColumns: [] }, 0, 1);
    const out = await openBatch(rows, { shape, crypto: new InlineCrypto(new BatchCrypto(new Keyring([key]))) });
    expect(out.failures).toEqual([0, 1, 2].map((row) => ({ row, id: String(row + 1), column: 'doc', kind: 'document secret', code: 'SEALED_MALFORMED' })));
    expect(out.total).toBe(1);
    expect(out.rows).toEqual([0, 1, 2, 3]);
  });
});
