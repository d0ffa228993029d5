/**
 * Letting go of a large batch. V8 collects garbage when its heap, or the
 * memory its buffers and external strings hold, has grown enough since the
 * last collection; after a value of tens of megabytes that comes late, and
 * the copies of it a walk already let go of (the text read, the decoded
 * bytes, the new text) stay resident meanwhile, so peak memory would grow
 * with several times the largest value. After the work on a batch of at
 * least `LARGE_BATCH` characters, a walk asks V8 for a full collection (its
 * own `gc`, which its `--expose-gc` flag exposes); on smaller batches it
 * never does, so the usual walk over many small values pays nothing.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Characters of stored text from which a batch counts as large. */
export const LARGE_BATCH = 8 << 20;

let gc: (() => void) | undefined;

/** Collects garbage now when `chars` (the text a batch held) is at least `LARGE_BATCH`. */
export function releaseLarge(chars: number): void {
  if (chars < LARGE_BATCH) return;
  if (!gc) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (exposed) gc = exposed;
    else {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    }
  }
  gc();
}

/** The characters of text in the cells of a batch of rows (what `releaseLarge` weighs). */
export function textIn(rows: ReadonlyArray<ReadonlyArray<unknown>>): number {
  let n = 0;
  for (const row of rows) for (const cell of row) if (typeof cell === 'string') n += cell.length;
  return n;
}
