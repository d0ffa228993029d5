/**
 * The PostgreSQL store's part of a backup: every stored value of the
 * inventory's columns, exactly as stored, one JSON line each
 * (`{"t" : table, "c" : column, "id" : id, "v" : value}`, plus `"a" :
 * {column : text}` with the row's additional-data columns when the
 * location's entries name any), in the file `secrets.jsonl`, written from
 * the rows the re-encryption reads (`BackupTee`). `./restore.ts` reads it back.
 *
 * A rotation that sealed ahead writes its backup in two files instead:
 * `secrets-ahead.jsonl`, the same lines from the rows seal-ahead reads in
 * its snapshot (server up), and `changes.jsonl`, written in the window:
 * the value at the lock of every place whose value is not the snapshot's
 * any more (added or changed since; `"v" : null` where none is left).
 * Together they hold exactly the values at the lock: the snapshot's,
 * overridden by place by the changes. The bulk has a name of its own so
 * that a build which knows only `secrets.jsonl` refuses such a backup
 * instead of restoring the snapshot's values without the changes.
 */
import { MasterKeyError } from '../../errors';
import { Inventory } from '../../inventory/inventory';
import { textSlices } from '../../text-slices';
import { BackupFileWriter, BackupPart, aadColumnsAt, inventoryLocations } from '../store';
import type { Row } from './row-source';
import { rowLayout } from './statements';
import type { TablePlan } from './tables';

export const SECRETS_FILE = 'secrets.jsonl';
/** The bulk of a backup made ahead, in seal-ahead's snapshot (see the file's comment). */
export const AHEAD_FILE = 'secrets-ahead.jsonl';
/** The values at the lock of the places changed since seal-ahead's snapshot (see the file's comment). */
export const CHANGES_FILE = 'changes.jsonl';

/** A JSON string as PostgreSQL's json functions write it (for valid UTF-8 text, the same escapes as JSON.stringify). */
const jsonText = (v: string | null): string => (v === null ? 'null' : JSON.stringify(v));

/** Characters a JSON string escapes. */
const JSON_ESCAPED = /["\\\u0000-\u001f]/;
const QUOTE = 0x22;
const QUOTE_BYTES = Buffer.from('"');

/** Texts longer than this are measured (UTF-8 bytes) before they are copied in, rather than given room for 3 bytes a character. */
const MEASURE_ABOVE = 64 * 1024;
/** Values longer than this are written to the file on their own, a slice at a time, not copied into a batch's buffer. */
const LARGE_VALUE = 1 << 20;
/** Characters of such a value written at a time. */
const SLICE = 64 * 1024;
/**
 * Bytes built up for one write, in a buffer that grows (no string per
 * line: at a million values, building and joining strings costs seconds).
 */
class LineBuffer {
  buf = Buffer.allocUnsafe(1 << 18);
  at = 0;
  private room(text: string, extra = 0): void {
    const n = (text.length > MEASURE_ABOVE ? Buffer.byteLength(text, 'utf8') : 3 * text.length) + extra;
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }
  /** Appends `text` as UTF-8 (trusted: already JSON). */
  raw(text: string): void {
    this.room(text);
    this.at += this.buf.write(text, this.at, 'utf8');
  }
  /** Appends `v` as a JSON string (null: `null`). */
  json(v: string | null): void {
    if (v === null || JSON_ESCAPED.test(v)) return this.raw(jsonText(v));
    this.room(v, 2);
    this.buf[this.at++] = QUOTE;
    this.at += this.buf.write(v, this.at, 'utf8');
    this.buf[this.at++] = QUOTE;
  }
}

/** Where a location's value and additional data are in the rows the re-encryption reads, and its lines' start. */
interface TeeColumn {
  /** `{"t" : …, "c" : …, "id" : ` */
  readonly head: string;
  readonly id: number;
  readonly at: number;
  readonly aad: ReadonlyArray<readonly [name: string, at: number]>;
}

/**
 * The backup written from the rows the re-encryption reads, as it reads
 * them (`ReencryptOptions.onRead`), instead of a second scan: secrets.jsonl,
 * one line per stored value, each batch's values grouped by column (so a
 * reader's batches stay large), and by construction exactly the values the
 * transaction rewrites. One write in flight at a time (the reading waits
 * for the previous batch's write, so memory stays bounded); the file is
 * durable once `finish` resolves, which the rotation awaits before it
 * returns.
 */
export class BackupTee {
  private readonly columns = new Map<TablePlan, TeeColumn[]>();
  private writing: Promise<void> = Promise.resolve();
  private values = 0;

  constructor(
    private readonly inv: Inventory,
    private readonly file: BackupFileWriter,
  ) {}

  /**
   * Appends the values of a batch of `plan`'s rows (as `selectSql(plan)`
   * reads them). With `had` (a changes file): also a `null` line where a
   * row holds no value but the bulk held one (`had(row, i)`, for the
   * plan's i-th column), and the count is what the lines add to the bulk's.
   */
  readonly add = async (plan: TablePlan, rows: readonly Row[], had?: (row: Row, column: number) => boolean): Promise<void> => {
    let out = new LineBuffer();
    const flush = async () => {
      if (out.at === 0) return;
      await this.writing;
      this.writing = this.file.write(out.buf.subarray(0, out.at));
      this.writing.catch(() => undefined);
      out = new LineBuffer();
    };
    for (const [i, col] of this.layout(plan).entries()) {
      for (const row of rows) {
        const v = row[col.at];
        const held = had?.(row, i) ?? false;
        if (v === null && !held) continue;
        if (held) this.values--;
        out.raw(col.head);
        out.json(row[col.id]);
        out.raw(', "v" : ');
        if (v !== null && v.length > LARGE_VALUE) {
          await flush();
          await this.writeLarge(v);
        } else out.json(v);
        col.aad.forEach(([name, at], j) => {
          out.raw(j === 0 ? `, "a" : {${name} : ` : `, ${name} : `);
          out.json(row[at]);
        });
        out.raw(col.aad.length ? '}}\n' : '}\n');
        if (v !== null) this.values++;
      }
    }
    await flush();
  };

  /** A large value as a JSON string, written a slice at a time (each through the same buffer) once the writes before it are done. */
  private async writeLarge(v: string): Promise<void> {
    await this.writing;
    await this.file.write(QUOTE_BYTES);
    let scratch = Buffer.alloc(0);
    for (const slice of textSlices(v, SLICE)) {
      const text = JSON_ESCAPED.test(slice) ? JSON.stringify(slice).slice(1, -1) : slice;
      // At most 3 bytes a UTF-16 unit (6 characters for an escaped control character, itself one byte).
      if (scratch.length < 6 * text.length) scratch = Buffer.allocUnsafe(6 * text.length);
      await this.file.write(scratch.subarray(0, scratch.write(text, 'utf8')));
    }
    await this.file.write(QUOTE_BYTES);
  }

  /** Waits for every write and ends the file (durable); what the backup holds. Throws DISK_FULL or BACKUP_UNWRITABLE (then call `abort`). */
  async finish(): Promise<BackupPart> {
    await this.writing;
    return { files: [await this.file.end()], values: this.values, locations: inventoryLocations(this.inv) };
  }

  /** Gives the file up (the re-encryption failed, or a write did), once the write in flight has settled. */
  async abort(): Promise<void> {
    await this.writing.catch(() => undefined);
    await this.file.abort();
  }

  private layout(plan: TablePlan): TeeColumn[] {
    let cols = this.columns.get(plan);
    if (!cols) {
      const at = rowLayout(plan);
      cols = plan.columns.map((c, i) => ({
        head: `{"t" : ${jsonText(plan.table)}, "c" : ${jsonText(c.column)}, "id" : `,
        id: at.idAt,
        at: at.first + i,
        aad: aadColumnsAt(this.inv, { table: plan.table, column: c.column }).map((name) => {
          const j = at.aad.get(name);
          if (j === undefined) throw new MasterKeyError('INTERNAL', `The AAD column ${name} was not read with the row; this is a bug.`);
          return [jsonText(name), j] as const;
        }),
      }));
      this.columns.set(plan, cols);
    }
    return cols;
  }
}

