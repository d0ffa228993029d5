/**
 * Numbers in human-readable output, one way everywhere: counts with
 * thousands separators (`10,000`), sizes in binary units. JSON output keeps
 * plain numbers.
 */

/**
 * `10000` -> `10,000`. A safe integer is grouped here: the first
 * `toLocaleString` of a process loads ICU's locale data (about 20 ms of
 * CPU, on every command); anything else is left to it.
 */
export function count(x: number): string {
  if (!Number.isSafeInteger(x)) return x.toLocaleString('en-US');
  const digits = String(Math.abs(x));
  let out = digits.slice(0, digits.length % 3 || 3);
  for (let i = out.length; i < digits.length; i += 3) out += `,${digits.slice(i, i + 3)}`;
  return x < 0 ? `-${out}` : out;
}

/** `1536` -> `1.5 KiB`. */
export function bytes(x: number): string {
  if (x < 1024) return `${x} B`;
  if (x < 1024 ** 2) return `${(x / 1024).toFixed(1)} KiB`;
  if (x < 1024 ** 3) return `${(x / 1024 ** 2).toFixed(1)} MiB`;
  return `${(x / 1024 ** 3).toFixed(1)} GiB`;
}

/** A share of a whole as a percentage with one decimal (`12.5%`); `0%` of nothing. */
export function share(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '0%';
}
