/**
 * The engine's bounds on what a walk holds (src/engine/pipeline): a
 * `TextBudget` lets a walk read on only while the batches it read and has
 * not given back hold less text than its limit, whatever a batch's size;
 * `WritesInFlight` keeps at most so many writes outstanding, in order.
 */
import { TextBudget, WritesInFlight, mapAhead, withinBudget } from '../src/engine/pipeline';

async function* sized(sizes: readonly number[], read: number[]): AsyncGenerator<number> {
  for (const s of sizes) {
    read.push(s);
    yield s;
  }
}

describe('a walk bounded by the text it holds', () => {
  it('reads the next batch only while less than the limit is held, and a batch larger than the limit alone', async () => {
    const read: number[] = [];
    const budget = new TextBudget(100);
    const it = withinBudget(sized([60, 30, 500, 10], read), budget, (s) => s)[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(60);
    expect((await it.next()).value).toBe(30);
    // 90 held: room for one more, whatever its size.
    expect((await it.next()).value).toBe(500);
    let fourth: number | undefined;
    const waiting = it.next().then((r) => (fourth = r.value as number));
    await new Promise((r) => setImmediate(r));
    expect(read).toEqual([60, 30, 500]);
    budget.give(60);
    budget.give(30);
    await new Promise((r) => setImmediate(r));
    expect(fourth).toBeUndefined();
    // Only once the large one is given back is anything more read.
    budget.give(500);
    await waiting;
    expect(fourth).toBe(10);
    expect(read).toEqual([60, 30, 500, 10]);
    expect((await it.next()).done).toBe(true);
  });

  it('bounds work kept ahead (mapAhead) by the same budget', async () => {
    const read: number[] = [];
    const budget = new TextBudget(50);
    const seen: number[] = [];
    for await (const s of mapAhead(withinBudget(sized([40, 40, 40, 40], read), budget, (x) => x), async (x) => x, 4)) {
      // At most one batch past the limit is ever held.
      expect(read.length - seen.length).toBeLessThanOrEqual(2);
      seen.push(s);
      budget.give(s);
    }
    expect(seen).toEqual([40, 40, 40, 40]);
  });
});

describe('a walk that stops early', () => {
  it('while its source waits for room, ends at once (nothing given back) and ends the source', async () => {
    let ended = false;
    async function* source(): AsyncGenerator<number> {
      try {
        for (;;) yield 100;
      } finally {
        ended = true;
      }
    }
    const budget = new TextBudget(50);
    const stop = new Error('a value did not open');
    const run = (async () => {
      for await (const x of mapAhead(withinBudget(source(), budget, (n) => n), async (n) => n, 4)) {
        expect(x).toBe(100);
        throw stop;
      }
    })();
    await expect(run).rejects.toBe(stop);
    expect(ended).toBe(true);
  });
});

describe('writes kept in flight', () => {
  /** A write that ends when `end(i)` is called, logging when it starts and ends. */
  function writes() {
    const log: string[] = [];
    const ends = new Map<number, { ok: () => void; fail: (e: Error) => void }>();
    const write = (i: number) => () => {
      log.push(`start ${i}`);
      return new Promise<void>((ok, fail) => ends.set(i, { ok: () => (log.push(`end ${i}`), ok()), fail }));
    };
    const tick = () => new Promise((r) => setImmediate(r));
    return { log, ends, write, tick };
  }

  it('starts the next write while the one before runs, never more than `depth` at once, and drain waits for them all', async () => {
    const { log, ends, write, tick } = writes();
    const w = new WritesInFlight(2);
    await w.add(write(1));
    await w.add(write(2));
    let third = false;
    const adding = w.add(write(3)).then(() => (third = true));
    await tick();
    // Two outstanding: the third waits for the first.
    expect([log, third]).toEqual([['start 1', 'start 2'], false]);
    ends.get(1)!.ok();
    await adding;
    expect(log).toEqual(['start 1', 'start 2', 'end 1', 'start 3']);
    let drained = false;
    const draining = w.drain().then(() => (drained = true));
    ends.get(2)!.ok();
    await tick();
    expect(drained).toBe(false);
    ends.get(3)!.ok();
    await draining;
    expect(log).toEqual(['start 1', 'start 2', 'end 1', 'start 3', 'end 2', 'end 3']);
  });

  it('throws a failed write where it is waited for, and settle lets the rest end without throwing', async () => {
    const { ends, write, tick } = writes();
    const w = new WritesInFlight(2);
    await w.add(write(1));
    await w.add(write(2));
    const adding = w.add(write(3));
    const failure = new Error('write 1 failed');
    ends.get(1)!.fail(failure);
    await expect(adding).rejects.toBe(failure);
    let settled = false;
    const settling = w.settle().then(() => (settled = true));
    await tick();
    expect(settled).toBe(false);
    ends.get(2)!.fail(new Error('write 2 failed too'));
    await settling;
    expect(settled).toBe(true);
    await expect(w.drain()).resolves.toBeUndefined();
  });
});
