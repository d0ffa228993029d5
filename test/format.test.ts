/** Human-readable numbers: `count` groups digits exactly as `toLocaleString('en-US')` does, without loading ICU's locale data for the usual integers. */
import { count } from '../src/format';

describe('count', () => {
  it.each([0, 1, 12, 999, 1000, 9999, 12345, 100000, 999999, 1000000, 1234567, -1, -1000, -1234567, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER])('groups %d as toLocaleString does', (x) => {
    expect(count(x)).toBe(x.toLocaleString('en-US'));
  });

  it.each([1234.5, 0.25, -0.5, 1e21, Number.NaN, Infinity])('leaves %d, not a safe integer, to toLocaleString', (x) => {
    expect(count(x)).toBe(x.toLocaleString('en-US'));
  });

  it('groups every integer up to a million as toLocaleString does', () => {
    for (let x = 0; x <= 1_000_000; x += 997) expect(count(x)).toBe(x.toLocaleString('en-US'));
  });
});
