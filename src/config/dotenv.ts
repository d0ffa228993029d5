/**
 * dotenv files (e.g. ACT's `act.env`): `NAME=value` lines. Tolerates an
 * `export ` prefix, spaces around `=`, "double" or 'single' quoted values,
 * CRLF line endings, `#` comment lines and ` # comment` after an unquoted
 * value. A commented-out assignment does not count.
 */
import { MasterKeyError } from '../errors';
import { Candidate, invalidConfig, Located, single, unwritableValue } from './located';

const NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;
/** Indentation, optional `export`, the name, `=`: up to the raw value. */
const ASSIGNMENT = /^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=/;
const AFTER_QUOTE = /^[ \t]*(?:#.*)?$/;
const UNQUOTED_SAFE = /^[^\s'"#\\]*$/;

interface Line {
  readonly no: number;
  readonly start: number;
  /** The line without its CR/LF ending. */
  readonly content: string;
}

function splitLines(text: string): Line[] {
  const out: Line[] = [];
  let start = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (let no = 1; start <= text.length; no++) {
    const nl = text.indexOf('\n', start);
    const stop = nl === -1 ? text.length : nl;
    const content = text.slice(start, stop).replace(/\r$/, '');
    out.push({ no, start, content });
    if (nl === -1) break;
    start = nl + 1;
  }
  return out;
}

function quoted(line: Line, at: number, label: string, entry: string): Located {
  const q = line.content[at]!;
  const close = line.content.indexOf(q, at + 1);
  if (close === -1) throw invalidConfig(label, `has an unterminated quoted value for ${entry} on line ${line.no}`, { entry, line: line.no });
  if (!AFTER_QUOTE.test(line.content.slice(close + 1))) {
    throw invalidConfig(label, `has text after the closing quote of ${entry} on line ${line.no}`, { entry, line: line.no });
  }
  return {
    start: line.start + at + 1,
    end: line.start + close,
    value: line.content.slice(at + 1, close),
    encode: (v) => {
      if (v.includes(q) || /[\r\n]/.test(v)) throw unwritableValue(label, entry, `it contains a ${q} quote or a line break`);
      return v;
    },
  };
}

/**
 * Length of the leading spaces and tabs. Only these surround a value: JavaScript's
 * trim() would also drop a byte-order mark (U+FEFF), silently accepting a key
 * that parseKey must refuse.
 */
function blanks(s: string): number {
  return s.length - s.replace(/^[ \t]+/, '').length;
}

function unquoted(line: Line, at: number, label: string, entry: string): Located {
  const raw = line.content.slice(at);
  const comment = raw.search(/[ \t]#/);
  const body = comment === -1 ? raw : raw.slice(0, comment);
  const lead = blanks(body);
  const value = body.slice(lead).replace(/[ \t]+$/, '');
  const start = line.start + at + lead;
  return {
    start,
    end: start + value.length,
    value,
    encode: (v) => {
      if (!UNQUOTED_SAFE.test(v)) throw unwritableValue(label, entry, 'an unquoted dotenv value cannot hold spaces, quotes, # or backslashes');
      return v;
    },
  };
}

function valueOf(line: Line, afterEquals: number, label: string, entry: string): Located {
  const at = afterEquals + blanks(line.content.slice(afterEquals));
  const c = line.content[at];
  return c === '"' || c === "'" ? quoted(line, at, label, entry) : unquoted(line, afterEquals, label, entry);
}

/** Finds the one assignment of `entry` in a dotenv text. */
export function locateDotenv(text: string, entry: string, label: string): Located {
  if (!NAME.test(entry)) {
    throw new MasterKeyError('USAGE', `${JSON.stringify(entry)} is not a valid dotenv variable name; use letters, digits and underscores, starting with a letter.`, { entry });
  }
  const candidates: Candidate[] = [];
  for (const line of splitLines(text)) {
    const m = ASSIGNMENT.exec(line.content);
    if (m?.[1] === entry) candidates.push({ line: line.no, located: () => valueOf(line, m[0].length, label, entry) });
  }
  return single(candidates, label, entry, 'dotenv');
}
