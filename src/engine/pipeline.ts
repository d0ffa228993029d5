/**
 * Keeping work in flight along a walk over stored values, within bounds:
 * `mapAhead` runs the next calls (the crypto of the next batches) while the
 * caller goes on with the results of the earlier ones; a `TextBudget`
 * bounds, by the text their rows hold, the batches read and not yet done
 * with (written back), whatever the size of a row; `BATCH_TEXT` bounds a
 * batch itself (a store cuts a batch at its row count or at that much
 * text, whichever comes first).
 */

/** Characters of stored text a store puts in one batch at most (a single larger row is a batch of its own). */
export const BATCH_TEXT = 4 << 20;
/** Characters of stored text in batches read and not yet done with, past which a walk reads no further. */
export const IN_FLIGHT_TEXT = 16 << 20;

/**
 * The text held by batches read and not yet done with. A walk waits for
 * `room()` before it reads a batch, `take`s its size once read and `give`s
 * it back once done with it (written, or counted): at most the limit plus
 * one batch is held, and a batch larger than the limit alone.
 */
export class TextBudget {
  private held = 0;
  private waiting: Array<() => void> = [];

  constructor(readonly limit = IN_FLIGHT_TEXT) {}

  /** Resolves once less than the limit is held (at once when nothing is), or once `stopped()` holds (checked whenever woken). */
  async room(stopped: () => boolean = () => false): Promise<void> {
    while (this.held > 0 && this.held >= this.limit && !stopped()) await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  take(chars: number): void {
    this.held += chars;
  }

  give(chars: number): void {
    this.held -= chars;
    this.wake();
  }

  /** Wakes whoever waits for room, to look again. */
  wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const w of waiting) w();
  }
}

/**
 * Passes the items of `source` on, reading the next only when `budget` has
 * room, and taking each one's `size` from it (the consumer gives it back).
 * Ended early (`return`), it stops waiting for room at once: a consumer
 * that stops (a value did not open) gives nothing back.
 */
export function withinBudget<T>(source: AsyncIterable<T>, budget: TextBudget, size: (item: T) => number): AsyncIterableIterator<T> {
  const it = source[Symbol.asyncIterator]();
  let stopped = false;
  const self: AsyncIterableIterator<T> = {
    [Symbol.asyncIterator]: () => self,
    async next() {
      await budget.room(() => stopped);
      if (stopped) return { done: true, value: undefined };
      const r = await it.next();
      if (!r.done) budget.take(size(r.value));
      return r;
    },
    async return() {
      stopped = true;
      budget.wake();
      await it.return?.();
      return { done: true, value: undefined };
    },
  };
  return self;
}

/**
 * Yields fn(item) for each item of `source`, in order, with up to `ahead`
 * calls running at once (the source is read that far ahead). Reading ahead
 * never holds back a result that is ready: a source that waits (for a
 * budget the consumer gives back) waits while the results before it are
 * yielded. A consumer that stops early ends the source; calls still
 * running are awaited.
 */
export async function* mapAhead<T, U>(source: AsyncIterable<T>, fn: (item: T) => Promise<U>, ahead: number): AsyncGenerator<U> {
  const it = source[Symbol.asyncIterator]();
  const queue: Array<Promise<U>> = [];
  let done = false;
  // One read at a time, started as soon as there is room ahead; it starts the next itself while there is.
  let reading: Promise<void> | undefined;
  const read = (): void => {
    reading = it.next().then((r) => {
      reading = undefined;
      if (r.done) {
        done = true;
        return;
      }
      const p = fn(r.value);
      // Seen when awaited below; keep one never awaited (early exit) from being unhandled.
      p.catch(() => undefined);
      queue.push(p);
      if (queue.length < ahead) read();
    });
    // A failed read is thrown where it is awaited below.
    reading.catch(() => undefined);
  };
  try {
    for (;;) {
      if (!done && !reading && queue.length < ahead) read();
      const next = queue.shift();
      if (next) yield await next;
      else if (reading) await reading;
      else return;
    }
  } finally {
    await Promise.allSettled(queue);
    if (!done) {
      // Asked first, so a source waiting (for room in a budget) stops waiting; then its read in flight settles.
      const closing = it.return?.();
      await reading?.catch(() => undefined);
      await closing;
    }
  }
}

/**
 * Writes started in order with at most `depth` outstanding, so the next
 * one is prepared (and, with a database client, queued to be sent the
 * moment the server is ready) while the one before it runs. `add` waits
 * for room, then starts a write; `drain` waits for every write. A failed
 * write is thrown by the `add` or `drain` that waits for it; `settle`
 * (in a `finally`) lets the rest finish without throwing.
 */
export class WritesInFlight {
  private readonly queue: Array<Promise<void>> = [];

  constructor(private readonly depth: number) {}

  async add(write: () => Promise<void>): Promise<void> {
    while (this.queue.length >= this.depth) await this.queue.shift();
    const w = write();
    // Seen when waited for; keep one never waited for (an early exit) from being unhandled.
    w.catch(() => undefined);
    this.queue.push(w);
  }

  async drain(): Promise<void> {
    while (this.queue.length > 0) await this.queue.shift();
  }

  async settle(): Promise<void> {
    await Promise.all(this.queue.splice(0).map((w) => w.catch(() => undefined)));
  }
}
