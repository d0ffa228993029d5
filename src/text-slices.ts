/**
 * A long text a slice at a time, so it is converted (to UTF-8, to JSON)
 * piece by piece rather than whole: slices of at most `size` UTF-16 code
 * units (one more where a slice would end inside a surrogate pair, which
 * is never split, so each slice converts exactly as it would inside the
 * whole text).
 */
export function* textSlices(text: string, size: number): Generator<string> {
  for (let i = 0; i < text.length; ) {
    let end = Math.min(text.length, i + size);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end++;
    yield text.slice(i, end);
    i = end;
  }
}
