/**
 * What every config-format scanner returns: where an entry's value sits in
 * the text (so a replacement changes only those characters), its decoded
 * value, and how a new value is written at that spot. Plus the shared errors,
 * which name the file, the entry and line numbers, never file contents.
 */
import { MasterKeyError } from '../errors';

/** One entry's value found in a config text. */
export interface Located {
  /** Offset of the first character replaced. */
  readonly start: number;
  /** Offset after the last character replaced. */
  readonly end: number;
  /** The value as the server reads it (quotes, escapes and entities removed). */
  readonly value: string;
  /** The characters to put between start and end for a new value; throws if it cannot be written there. */
  readonly encode: (value: string) => string;
}

/** A found entry with the line it starts on (for duplicate messages). */
export interface Candidate {
  readonly line: number;
  readonly located: () => Located;
}

/** 1-based line number of an offset. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** CONFIG_INVALID: `problem` completes "<label> ...", e.g. "is not valid JSON (line 3)". */
export function invalidConfig(label: string, problem: string, details: Record<string, unknown> = {}): MasterKeyError {
  return new MasterKeyError('CONFIG_INVALID', `${label} ${problem}; fix the file and try again.`, { path: label, ...details });
}

/** CONFIG_KEY_MISSING for an entry absent from a file. */
export function missingEntry(label: string, entry: string, format: string): MasterKeyError {
  return new MasterKeyError(
    'CONFIG_KEY_MISSING',
    `${label} has no ${entry} entry (read as ${format}); check the entry name and format, or add the entry to the file.`,
    { path: label, entry, format },
  );
}

/** CONFIG_KEY_DUPLICATE for an entry set on several lines. */
export function duplicateEntry(label: string, entry: string, format: string, lines: readonly number[]): MasterKeyError {
  return new MasterKeyError(
    'CONFIG_KEY_DUPLICATE',
    `${label} sets ${entry} more than once (lines ${lines.join(', ')}); keep exactly one and try again.`,
    { path: label, entry, format, lines },
  );
}

/**
 * The single candidate, or CONFIG_KEY_MISSING / CONFIG_KEY_DUPLICATE.
 *
 * @param format words for the messages, e.g. "dotenv"
 */
export function single(candidates: readonly Candidate[], label: string, entry: string, format: string): Located {
  if (candidates.length === 0) throw missingEntry(label, entry, format);
  if (candidates.length > 1) throw duplicateEntry(label, entry, format, candidates.map((c) => c.line));
  return candidates[0]!.located();
}

/** Thrown by an encoder when a new value cannot be written at that spot (never the case for a hex key). */
export function unwritableValue(label: string, entry: string, why: string): MasterKeyError {
  return new MasterKeyError('INTERNAL', `The new value for ${entry} in ${label} cannot be written there: ${why}.`, { path: label, entry });
}
