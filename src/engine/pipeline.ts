/**
 * Keeping work in flight along a walk over stored values: `mapAhead` runs
 * the next calls (the crypto of the next batches) while the caller goes on
 * with the results of the earlier ones.
 */

/**
 * Yields fn(item) for each item of `source`, in order, with up to `ahead`
 * calls running at once (the source is read that far ahead). A consumer
 * that stops early ends the source; calls still running are awaited.
 */
export async function* mapAhead<T, U>(source: AsyncIterable<T>, fn: (item: T) => Promise<U>, ahead: number): AsyncGenerator<U> {
  const it = source[Symbol.asyncIterator]();
  const queue: Array<Promise<U>> = [];
  let done = false;
  try {
    for (;;) {
      while (!done && queue.length < ahead) {
        const r = await it.next();
        if (r.done) done = true;
        else {
          const p = fn(r.value);
          // Seen when awaited below; keep one never awaited (early exit) from being unhandled.
          p.catch(() => undefined);
          queue.push(p);
        }
      }
      const next = queue.shift();
      if (!next) return;
      yield await next;
    }
  } finally {
    await Promise.allSettled(queue);
    if (!done) await it.return?.();
  }
}
