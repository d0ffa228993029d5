/**
 * The age sealer on a file system that fills up, on this thread and in the
 * sealing thread a backup file uses: whichever call meets the failure (a
 * write while bytes are still sent, or the end once every write was
 * taken), it reports the write's own error (ENOSPC, DISK_FULL for a
 * backup file), never the input stream's ERR_INVALID_STATE ("Controller is
 * already closed": age cancels its input when the sealed file's write
 * fails, before that failure is recorded), and nothing is left behind.
 * Which call meets it depends on the timing of the background writes; the
 * PostgreSQL full-disk test (test/postgres-backup) met the end-time case
 * in about one run of five before the sealer reported the write's error.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Sealer, loadAge } from '../src/rotation/age';
import { SealingFileWriter } from '../src/rotation/sealed-backup';
import { removeScratch, scratchDir } from '../scripts/scratch';

describe('age sealer on a full disk', () => {
  let dir: string;
  let mnt: string;
  let recipient: string;

  beforeAll(async () => {
    const { generateIdentity, identityToRecipient } = await loadAge();
    recipient = await identityToRecipient(await generateIdentity());
    dir = scratchDir('mk-age-sealer-');
    mnt = join(dir, 'small');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k,mode=0700', 'tmpfs', mnt]);
  });
  afterAll(() => {
    if (mnt) execFileSync('umount', ['-l', mnt]);
    removeScratch(dir);
  });

  /** Pushes `total` bytes in 64 KiB chunks, then finishes; the error met (or undefined). */
  async function sealInto(path: string, total: number): Promise<unknown> {
    const s = await Sealer.open([recipient], path);
    try {
      for (let at = 0; at < total; at += 64 << 10) await s.push(new Uint8Array(64 << 10).fill(at & 0xff));
      await s.finish();
      return undefined;
    } catch (e) {
      await s.abort();
      return e;
    }
  }

  /** The same through the sealing thread a backup file uses (bytes sent as messages). */
  async function sealInThread(path: string, total: number): Promise<unknown> {
    const w = await SealingFileWriter.create('values', path, [recipient], () => undefined);
    try {
      // Writes the size of a batch of rows, each after a turn of the event loop (as a store's reads interleave them).
      for (let at = 0; at < total; at += 70_000) {
        await w.write(new Uint8Array(70_000).fill(at & 0xff));
        await new Promise((r) => setImmediate(r));
      }
      await w.end();
      return undefined;
    } catch (e) {
      await w.abort();
      return e;
    }
  }

  it.each([
    ['sealing thread, every write taken before the file fails (end meets it)', 1 << 20],
    ['sealing thread, the file fails while bytes are still sent', 16 << 20],
  ])('%s: DISK_FULL, no file left', async (_, total) => {
    for (let run = 0; run < 8; run++) {
      const e = await sealInThread(join(mnt, `values-${run}.age`), total);
      expect(e).toMatchObject({ code: 'DISK_FULL' });
      expect(readdirSync(mnt)).toEqual([]);
    }
  });

  it.each([
    ['this thread, every push taken before the write fails (finish meets it)', 1 << 20],
    ['this thread, the write fails while bytes are still pushed', 16 << 20],
  ])('%s: ENOSPC, no file left', async (_, total) => {
    for (let run = 0; run < 8; run++) {
      const path = join(mnt, `values-${run}.age`);
      const e = await sealInto(path, total);
      expect(e).toMatchObject({ code: 'ENOSPC' });
      expect(readdirSync(mnt)).toEqual([]);
    }
  });
});
