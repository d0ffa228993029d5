/**
 * Inventory files through `parseInventory` (src/inventory/inventory.ts: what
 * `loadInventory` runs on a file's text), then everything that reads an
 * accepted inventory before any SQL: the table grouping of the hot path
 * (`groupInventory`), identifier quoting (`quoteIdent`), the digest and the
 * kinds. Inputs are inventories with fields of the wrong type, unknown
 * members, odd identifiers and paths, then edited as text.
 *
 * For every input: INVENTORY_INVALID with one sentence, or an inventory
 * whose every name quotes as a plain SQL identifier, that is reproduced
 * exactly by validating it again, and digests the same.
 */
import fc from 'fast-check';
import { groupInventory } from '../../../src/engine/tables';
import { ErrorCode } from '../../../src/errors';
import { inventoryDigest, inventoryKinds, parseInventory, quoteIdent, validateInventory } from '../../../src/inventory/inventory';
import { FuzzTarget, invariant, typed } from '../harness';
import { anyText, applyEdits, edits } from '../mutate';

const CODES: readonly ErrorCode[] = ['INVENTORY_INVALID'];
const FILE = '/etc/act/inventory.json';

const ident = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('servers', 'public.servers', 'id', 'value', 'spec', 'user_id', '_x1', 'a.b.c') },
  { weight: 1, arbitrary: fc.constantFrom('', '1abc', 'a b', 'a"b', 'x;DROP TABLE t', 'a.', '.a', 'a..b', 'é', 'a\nb') },
  { weight: 1, arbitrary: anyText(8) },
);
/** A field's value: usually right, sometimes any JSON value. */
const field = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 12, arbitrary: good }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });
const entry = fc.record(
  {
    kind: field(fc.constantFrom('git access token', 'x', '', 'ünïcode kind')),
    table: field(ident),
    idColumn: field(ident),
    column: field(ident),
    codec: field(fc.constantFrom('v1', 'act', 'v2', '')),
    jsonPath: field(fc.array(fc.constantFrom('env', '*', 'value', '0', '', 'a.b', '__proto__'), { maxLength: 4 })),
    where: field(fc.record({ key: field(fc.constantFrom('secret', '', 'k')), equals: field(fc.oneof(fc.boolean(), fc.integer(), fc.string())) })),
    aad: field(fc.record({ column: field(ident) })),
    extra: field(fc.string()),
  },
  { requiredKeys: ['kind', 'table', 'idColumn', 'column', 'codec'] },
);
/** Sometimes a member with any name, in the document or an entry. */
const withOddMember = <T extends object>(a: fc.Arbitrary<T>) =>
  fc.tuple(a, fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyText(6) })).map(([o, k]) => (k === null ? o : { ...o, [k]: 1 }));
const inventoryDoc = fc.record(
  { $schema: fc.string(), name: field(fc.constantFrom('act', 'custom', '')), entries: field(fc.array(withOddMember(entry), { maxLength: 4 })), extra: fc.jsonValue({ maxDepth: 1 }) },
  { requiredKeys: ['name', 'entries'] },
);

export interface InventoryInput {
  readonly text: string;
}

const TOKENS = ['{', '}', '[', ']', '"', ':', ',', '"jsonPath":["*"]', '"where":', '"aad":{"column":"id"}', 'null', '"__proto__":', '\\u0000', '1e999', '-0'];

function checkInventory({ text }: InventoryInput): void {
  const r = typed('parseInventory', () => parseInventory(text, FILE), CODES);
  if (!r.ok) return;
  const inv = r.value;
  for (const e of inv.entries) {
    for (const name of [e.table, e.idColumn, e.column, ...(e.aad ? [e.aad.column] : [])]) {
      const q = typed('quoteIdent', () => quoteIdent(name), []);
      invariant(q.ok && /^"[A-Za-z_][A-Za-z0-9_]*"(\."[A-Za-z_][A-Za-z0-9_]*")*$/.test(q.value), `an accepted inventory names ${JSON.stringify(name)}, which does not quote as a plain identifier`);
    }
  }
  typed('groupInventory', () => groupInventory(inv), CODES);
  const again = typed('validateInventory (again)', () => validateInventory(JSON.parse(JSON.stringify(inv))), []);
  invariant(again.ok && JSON.stringify(again.value) === JSON.stringify(inv), 'an accepted inventory does not validate to itself again');
  invariant(inventoryDigest(again.value) === inventoryDigest(inv) && /^sha256:[0-9a-f]{16}$/.test(inventoryDigest(inv)), 'the digest of an inventory is not stable');
  invariant(inventoryKinds(inv).every((k) => typeof k === 'string' && k.length > 0), 'an inventory kind is empty');
}

export const INVENTORY_TARGET: FuzzTarget<InventoryInput> = {
  name: 'inventory',
  entry: 'inventory files: parseInventory (src/inventory/inventory.ts, as loadInventory reads a file), then groupInventory, quoteIdent, inventoryDigest',
  arbitrary: fc
    .tuple(withOddMember(inventoryDoc), fc.constantFrom(undefined, 2, '\t'), edits(TOKENS), fc.oneof({ weight: 20, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: anyText(48) }))
    .map(([doc, indent, es, raw]) => ({ text: raw ?? applyEdits(JSON.stringify(doc, null, indent), es) })),
  check: checkInventory,
  toJson: (i) => i,
  fromJson: (j) => j as InventoryInput,
};
