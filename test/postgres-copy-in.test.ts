/**
 * Rows sent by COPY's text format (`copyTextRows`, which seal-ahead's
 * staging uses): every field arrives in PostgreSQL exactly as sent, escapes,
 * nulls, bytes and long fields sent in slices included.
 */
import { Client } from 'pg';
import { CopyField, copyIn, copyTextRows } from '../src/store/postgres/copy';
import { dropDatabase, freshDatabase } from './support/db';

let url: string;
let c: Client;

beforeAll(async () => {
  url = await freshDatabase('copyin');
  c = new Client({ connectionString: url });
  await c.connect();
  await c.query('CREATE TABLE rows (id bigint PRIMARY KEY, a text, b text)');
});

afterAll(async () => {
  await c?.end();
  if (url) await dropDatabase(url);
});

beforeEach(() => c.query('TRUNCATE rows'));

/** Copies `rows` in and reads them back in id order, as texts. */
async function roundTrip(rows: CopyField[][]): Promise<Array<[string, string | null, string | null]>> {
  const n = await copyIn(c, 'COPY rows (id, a, b) FROM STDIN', copyTextRows(rows));
  expect(n).toBe(rows.length);
  const back = await c.query<{ id: string; a: string | null; b: string | null }>('SELECT id::text AS id, a, b FROM rows ORDER BY rows.id');
  return back.rows.map((r) => [r.id, r.a, r.b]);
}

const text = (v: CopyField): string | null => (v === null ? null : typeof v === 'string' ? v : Buffer.from(v).toString('utf8'));

test('short fields: the characters COPY escapes, a literal \\N, null, non-ASCII text and bytes arrive as sent', async () => {
  const rows: CopyField[][] = [
    ['1', 'tab\there', 'new\nline\r\nand \\ backslash'],
    ['2', '\\N', null],
    ['3', null, '{"env":[{"value":"a\\"b"}]} ✓ 😀'],
    ['4', Buffer.from('bytes\twith\\specials\n', 'utf8'), Buffer.from('plain ascii bytes', 'latin1')],
    ['5', '', '\\.'],
  ];
  expect(await roundTrip(rows)).toEqual(rows.map((r) => r.map(text)));
});

test('long fields go in slices (a surrogate pair on a slice boundary kept whole), bytes with and without escapes', async () => {
  const slice = 64 * 1024;
  // A pair straddling the first slice boundary, escapes spread through, a text several slices long.
  const long = `${'x'.repeat(slice - 1)}😀${'ab\\c\td\n'.repeat(30_000)}`;
  const asciiBytes = Buffer.from('QUJD'.repeat(100_000), 'latin1');
  const escapedBytes = Buffer.from(`${'y'.repeat(3 * slice)}\\\t\n\r${'z'.repeat(slice)}`, 'utf8');
  const rows: CopyField[][] = [
    ['10', long, asciiBytes],
    ['11', 'short between long ones', null],
    ['12', escapedBytes, long],
  ];
  const back = await roundTrip(rows);
  expect(back).toEqual(rows.map((r) => r.map(text)));
  // Nothing was copied whole into one chunk: every chunk stays near the slice size.
  const sizes = [...copyTextRows(rows)].map((chunk) => (typeof chunk === 'string' ? chunk.length : chunk.length));
  expect(Math.max(...sizes)).toBeLessThanOrEqual(2 * slice + 64);
});

test('many short rows are gathered into chunks of about 64 Ki characters', async () => {
  const rows: CopyField[][] = Array.from({ length: 5000 }, (_, i) => [String(i + 100), `value ${i}`.repeat(5), i % 7 === 0 ? null : `n\t${i}`]);
  const chunks = [...copyTextRows(rows)];
  expect(chunks.length).toBeGreaterThan(1);
  expect(chunks.length).toBeLessThan(rows.length / 100);
  expect(await roundTrip(rows)).toEqual(rows.map((r) => r.map(text)));
});
