/**
 * Uniform random samples drawn from the CSPRNG: a reservoir over a stream
 * of unknown length (what verification opens), and the merge of two
 * samples of a scan split in parts.
 */
import { randomBytes } from 'node:crypto';

/** CSPRNG bytes fetched at a time for `uniform` (a call per draw costs far more than the bytes). */
const RANDOM_POOL = 7 * 1024;
let randomPool = Buffer.alloc(0);
let randomAt = 0;

/** A uniform double in [0, 1) from the CSPRNG (53 bits). */
function uniform(): number {
  if (randomAt + 7 > randomPool.length) {
    randomPool = randomBytes(RANDOM_POOL);
    randomAt = 0;
  }
  const b = randomPool;
  const at = randomAt;
  randomAt += 7;
  return (b.readUIntBE(at, 6) * 32 + (b[at + 6] >> 3)) / 2 ** 53;
}

/**
 * A uniform random sample of at most k items of a stream of unknown length
 * (reservoir sampling, Li's algorithm L: a few random draws per kept item,
 * not one per item seen), drawn from the CSPRNG.
 */
export class Reservoir<T> {
  items: T[] = [];
  /** Items offered so far. */
  seen = 0;
  private w = 0;
  private skip = 0;
  constructor(private readonly k: number) {
    this.next();
  }

  /**
   * Makes this a uniform sample of both populations, given another
   * reservoir's sample of `seen` other items: how many come from each side
   * is drawn as from the union (hypergeometric), then that many are chosen
   * at random from each side's own uniform sample. For the end of a scan
   * split in parts (no item is offered afterwards).
   */
  absorb(other: readonly T[], seen: number): void {
    const k = Math.min(this.k, this.seen + seen);
    let mine = 0;
    for (let left = this.seen, right = seen, i = 0; i < k; i++) {
      if (uniform() * (left + right) < left) {
        mine++;
        left--;
      } else right--;
    }
    this.items = [...pick(this.items, mine), ...pick(other, k - mine)];
    this.seen += seen;
  }
  private next(): void {
    if (this.k === 0) return;
    this.w = (this.w || 1) * Math.exp(Math.log(uniform() || Number.MIN_VALUE) / this.k);
    this.skip = Math.floor(Math.log(uniform() || Number.MIN_VALUE) / Math.log(1 - this.w));
  }
  /** Offers the next item; `make` builds it only when it is kept. */
  offer(make: () => T): void {
    this.seen++;
    if (this.items.length < this.k) {
      this.items.push(make());
      return;
    }
    if (this.k === 0) return;
    if (this.skip > 0) {
      this.skip--;
      return;
    }
    this.items[Math.floor(uniform() * this.k)] = make();
    this.next();
  }
}

/** `n` items of `items` chosen uniformly at random (CSPRNG), without repetition. */
function pick<T>(items: readonly T[], n: number): T[] {
  const a = [...items];
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(uniform() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}
