/**
 * The order-independent digest of sealed values (src/engine/digest):
 * the same values give the same digest in any order and batching, any
 * change of a value or of where it is changes it, and it is the documented
 * sum of SHA-256 digests, computed independently here.
 */
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { DIGEST_GROUPS, InventoryDigest, ValueDigest, differingGroups, placeGroup, sameDigest, textSha256 } from '../src/engine/digest';

type Item = [table: string, column: string, path: string | undefined, id: string, text: string];

function fullDigestOf(items: readonly Item[]): InventoryDigest {
  const d = new ValueDigest();
  for (const it of items) d.add(...it);
  return d.result();
}

/** The digest's total (what reports compare), without its groups. */
function digestOf(items: readonly Item[]): Omit<InventoryDigest, 'groups'> {
  const { groups: _groups, ...total } = fullDigestOf(items);
  return total;
}

/** The documented definition, with BigInt: sum of SHA-256(table NUL column NUL path NUL id NUL text) mod 2^256. */
function reference(items: readonly Item[]): string {
  let sum = 0n;
  for (const [t, c, p, id, text] of items) sum += BigInt(`0x${createHash('sha256').update(`${t}\0${c}\0${p ?? ''}\0${id}\0${text}`, 'utf8').digest('hex')}`);
  return (sum % 2n ** 256n).toString(16).padStart(64, '0');
}

const itemArb = fc.tuple(
  fc.constantFrom('servers', 'app.vault'),
  fc.constantFrom('value', 'spec'),
  fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ maxLength: 80 }),
);

describe('ValueDigest', () => {
  it('is the documented sum of SHA-256 digests, whatever the order', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { maxLength: 60 }), fc.nat(), (items, seed) => {
        const shuffled = [...items].sort((a, b) => ((JSON.stringify(a).length * 31 + seed) % 7) - ((JSON.stringify(b).length * 31 + seed) % 7));
        const a = digestOf(items);
        expect(a).toEqual({ algorithm: 'sha256-sum', count: items.length, sum: reference(items) });
        expect(sameDigest(a, digestOf(shuffled))).toBe(true);
      }),
      { numRuns: 100 },
    );
  });

  it('changes when any value, or where it is, changes', () => {
    const base: Item[] = Array.from({ length: 10 }, (_, i) => ['t', 'c', undefined, String(i), `value-${i}`]);
    const d = digestOf(base);
    const variants: Item[][] = [
      base.map((x, i) => (i === 3 ? [x[0], x[1], x[2], x[3], 'value-x'] : x)),
      base.map((x, i) => (i === 3 ? [x[0], x[1], x[2], '4', x[4]] : i === 4 ? [x[0], x[1], x[2], '3', x[4]] : x)),
      base.map((x, i) => (i === 3 ? [x[0], 'other', x[2], x[3], x[4]] : x)),
      base.map((x, i) => (i === 3 ? [x[0], x[1], 'a.b', x[3], x[4]] : x)),
      base.slice(1),
      [...base, base[0]],
    ];
    for (const v of variants) expect(sameDigest(d, digestOf(v))).toBe(false);
  });

  it('handles many items, values larger than its scratch buffer, and non-ASCII text', () => {
    const items: Item[] = Array.from({ length: 10_000 }, (_, i) => ['t', 'c', undefined, `ïd-${i}`, i === 5000 ? 'x'.repeat(2_000_000) : `v✓${i}`]);
    expect(digestOf(items)).toEqual({ algorithm: 'sha256-sum', count: 10_000, sum: reference(items) });
  });

  it('hashes a large value on its own, in slices that never split a character, as it would whole; from bytes too', () => {
    // Surrogate pairs and 3-byte characters across every slice boundary of a text of several MiB.
    const text = Array.from({ length: 400_000 }, (_, i) => (i % 3 === 0 ? '😀ab' : i % 3 === 1 ? '✓xyz' : 'plain')).join('');
    const items: Item[] = [['t', 'c', 'a.b', 'ïd', text], ['t', 'c', undefined, '1', 'small'], ['t', 'c', undefined, '2', 'ä'.repeat(300_000)]];
    expect(digestOf(items)).toEqual({ algorithm: 'sha256-sum', count: 3, sum: reference(items) });
    const fromBytes = new ValueDigest();
    const big = Buffer.from(`2${'x'.repeat(3_000_000)}`, 'utf8');
    fromBytes.addBytes(Buffer.from('t\0c\0\0', 'utf8'), big, 0, 1, 1, big.length - 1);
    expect(fromBytes.result()).toEqual(fullDigestOf([['t', 'c', undefined, '2', 'x'.repeat(3_000_000)]]));
  });

  it('keeps the sums per group of places (table, column, row id), so where two digests differ tells which places differ', () => {
    fc.assert(
      fc.property(fc.array(itemArb, { minLength: 1, maxLength: 60 }), fc.nat(), fc.string({ maxLength: 20 }), (items, i, changed) => {
        const d = fullDigestOf(items);
        // The groups add up to the total, and each holds exactly the documented sum of its places' values.
        const byGroup = new Map<number, Item[]>();
        for (const it of items) byGroup.set(placeGroup(it[0], it[1], it[3]), [...(byGroup.get(placeGroup(it[0], it[1], it[3])) ?? []), it]);
        for (const [g, its] of byGroup) {
          expect(d.groups!.counts[g]).toBe(its.length);
          expect(Buffer.from(d.groups!.sums.subarray(32 * g, 32 * g + 32)).toString('hex')).toBe(reference(its));
        }
        expect([...d.groups!.counts].reduce((a, b) => a + b, 0)).toBe(items.length);
        // One value changed: only its place's group differs.
        const k = i % items.length;
        const other = items.map((x, j): Item => (j === k ? [x[0], x[1], x[2], x[3], `${x[4]}!${changed}`] : x));
        expect(differingGroups(d, fullDigestOf(other))).toEqual([placeGroup(items[k][0], items[k][1], items[k][3])]);
        expect(differingGroups(d, fullDigestOf(items))).toEqual([]);
      }),
      { numRuns: 100 },
    );
    // From bytes, a place is in the same group as from text (non-ASCII ids too).
    const raw = new ValueDigest();
    const src = Buffer.from('ïd-7😀value', 'utf8');
    raw.addBytes(Buffer.from('t\0c\0\0', 'utf8'), src, 0, Buffer.byteLength('ïd-7😀'), Buffer.byteLength('ïd-7😀'), Buffer.byteLength('value'));
    expect(differingGroups(raw.result(), fullDigestOf([['t', 'c', undefined, 'ïd-7😀', 'value']]))).toEqual([]);
    // Merged digests add up group by group.
    const a = new ValueDigest();
    a.add('t', 'c', undefined, '1', 'x');
    a.merge(fullDigestOf([['t', 'c', undefined, '2', 'y']]));
    expect(a.result()).toEqual(fullDigestOf([['t', 'c', undefined, '1', 'x'], ['t', 'c', undefined, '2', 'y']]));
    expect(DIGEST_GROUPS).toBeGreaterThan(1000);
  });
});

describe('textSha256', () => {
  it('is the SHA-256 of the UTF-8 bytes, for a short text and for one hashed a slice at a time (a surrogate pair on the 1 MiB boundary)', () => {
    const sha = (t: string) => createHash('sha256').update(Buffer.from(t, 'utf8')).digest('hex');
    for (const t of ['', 'é€😀', `${'a'.repeat((1 << 20) - 1)}😀${'ü'.repeat(5000)}`, 'x'.repeat(3 << 20)]) {
      expect(textSha256(t).toString('hex')).toBe(sha(t));
    }
  });
});
