/**
 * Writes the pages a long write transaction has handed to the kernel out
 * to disk while the transaction goes on, so that its COMMIT, which must
 * fsync them (`synchronous = FULL`), finds little left to write.
 *
 * SQLite writes a transaction's pages into the WAL (WAL mode), or the
 * original pages into the rollback journal (rollback-journal mode), as its
 * page cache fills; the kernel keeps them in memory until an fsync. `tick`
 * fdatasyncs that file on a thread of libuv's pool while this thread goes
 * on. An fsync only ever makes written data durable earlier: it changes
 * nothing SQLite relies on, and a failure here is left to the COMMIT's own
 * fsync to report.
 *
 * Never the database file itself: closing any descriptor of a file drops
 * every POSIX lock this process holds on it, SQLite's included (SQLite
 * keeps its own descriptors open for that reason). SQLite takes no lock on
 * its WAL or journal file.
 */
import { FileHandle, open } from 'node:fs/promises';

export class Flusher {
  private running?: Promise<void>;
  private readonly handles = new Map<string, FileHandle | null>();

  /** `files`: the WAL or the journal (opened when it exists; never the database file). */
  constructor(private readonly files: readonly string[]) {}

  /** Starts writing the files out, unless that is still going on. */
  tick(): void {
    if (this.running) return;
    this.running = this.flush().finally(() => (this.running = undefined));
  }

  private async flush(): Promise<void> {
    for (const f of this.files) {
      try {
        let h = this.handles.get(f);
        if (h === undefined || h === null) {
          h = await open(f, 'r');
          this.handles.set(f, h);
        }
        await h.datasync();
      } catch {
        // not there (yet), or not syncable: the COMMIT syncs what it must
      }
    }
  }

  /** Waits for a flush in progress and closes the files. */
  async close(): Promise<void> {
    await this.running;
    for (const h of this.handles.values()) await h?.close().catch(() => undefined);
    this.handles.clear();
  }
}
