/**
 * Rows read undecoded: a buffer and where each field's bytes are in it
 * (for a text field: its UTF-8 text, exactly). A store that can read rows
 * this way (PostgreSQL's binary COPY) lets verification hash text as bytes
 * and decode only the values its sample keeps.
 */

/**
 * Rows undecoded: where each field's bytes are in `buf` (for a text field:
 * its UTF-8 text, exactly).
 */
export interface RawRows {
  readonly buf: Buffer;
  readonly count: number;
  readonly fields: number;
  /** Row r's field f starts at `at[2 * (r * fields + f)]`, its length follows (-1: NULL). */
  readonly at: Int32Array;
}

/** The text of a raw row's field (null for NULL). */
export function rawText(rows: RawRows, row: number, field: number): string | null {
  const i = 2 * (row * rows.fields + field);
  const n = rows.at[i + 1];
  return n < 0 ? null : rows.buf.toString('utf8', rows.at[i], rows.at[i] + n);
}
