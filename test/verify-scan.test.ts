/**
 * A verification scan split by rows between readers (src/engine/verify
 * `VerifyScan.part` / `absorb`, as the SQLite store splits it between its
 * connection and a reader thread): the parts together give exactly the
 * digest and counts of one scan of all rows, and a sample that is a uniform
 * random sample of all of them, opened with the key at the end.
 */
import { actCodec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { rowShape } from '../src/engine/rows';
import { VerifyScan } from '../src/engine/verify';
import type { Inventory } from '../src/inventory/inventory';

const INV: Inventory = { name: 'test', entries: [{ kind: 'secret', table: 't', idColumn: 'id', column: 'c', codec: 'act' }] };
const SHAPE = rowShape({ table: 't', columns: [{ column: 'c', json: false, entries: INV.entries }], aadColumns: [] }, 0, 1);

/** Rows [id, sealed value] with ids from..below-1 (sealed once, shared by all tests). */
const key = MasterKey.generate();
const ALL = Array.from({ length: 1000 }, (_, i) => [String(i), actCodec().seal(key, Buffer.from(`value ${i}`))]);

/** A scan of the rows in [from, below), added a few at a time. */
function scanOf(from: number, below: number, sampleSize: number): VerifyScan {
  const scan = new VerifyScan(INV, { sampleSize });
  for (let i = from; i < below; i += 37) scan.add(ALL.slice(i, Math.min(i + 37, below)), SHAPE);
  return scan;
}

/** The scan of all rows split at `at`: the first part absorbs the second. */
function split(at: number, sampleSize: number): VerifyScan {
  const low = scanOf(0, at, sampleSize);
  low.absorb(scanOf(at, ALL.length, sampleSize).part());
  return low;
}

describe('a verification scan split by rows', () => {
  it('gives the digest, counts and sample size of one scan of every row, wherever it is split', async () => {
    const whole = await scanOf(0, ALL.length, 50).finish(key);
    for (const at of [0, 1, 10, 500, 999, 1000]) {
      const r = await split(at, 50).finish(key);
      expect(r).toMatchObject({ total: 1000, byKind: { secret: 1000 }, digest: whole.digest, sampled: 50, sampleFailures: [], ok: true });
    }
    // More sample than values: all of them, each once.
    const all = split(300, 5000);
    expect(all.part().sample.map((s) => s.id).sort()).toEqual(ALL.map(([id]) => id).sort());
    expect((await all.finish(key)).sampled).toBe(1000);
  });

  it('samples uniformly from the whole: each part contributes in proportion to its rows', () => {
    for (const [at, expected] of [
      [10, 1],
      [500, 50],
    ] as const) {
      let fromLow = 0;
      const runs = 300;
      for (let r = 0; r < runs; r++) {
        const ids = split(at, 100).part().sample.map((s) => Number(s.id));
        expect(new Set(ids).size).toBe(100);
        fromLow += ids.filter((id) => id < at).length;
      }
      // Hypergeometric mean 100 * at / 1000; the bounds are more than 5 standard deviations of the mean of 300 draws.
      const mean = fromLow / runs;
      expect(Math.abs(mean - expected)).toBeLessThan(expected === 1 ? 0.3 : 1.5);
    }
  });

  it('finds a value that does not open when it is sampled from the other part', async () => {
    const scan = scanOf(0, 500, 1000);
    const other = new VerifyScan(INV, { sampleSize: 1000 });
    other.add([['bad', actCodec().seal(MasterKey.generate(), Buffer.from('x'))]], SHAPE);
    scan.absorb(other.part());
    const r = await scan.finish(key);
    expect(r).toMatchObject({ total: 501, sampled: 501, ok: false });
    expect(r.sampleFailures).toEqual([expect.objectContaining({ id: 'bad', code: 'SEALED_WRONG_KEY' })]);
  });
});
