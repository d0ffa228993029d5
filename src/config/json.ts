/**
 * JSON config files: the entry is a dotted path (`security.masterKey`; a
 * numeric segment indexes an array) to a JSON string. JSON.parse checks
 * validity first; then a small scanner finds the exact source span of that
 * string token, so a replacement keeps every other byte of the file.
 */
import { MasterKeyError } from '../errors';
import { Candidate, duplicateEntry, invalidConfig, lineAt, Located, single } from './located';

const WS = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const LITERAL = /true|false|null/y;

class ScanError extends Error {
  constructor(readonly pos: number) {
    super(`JSON syntax error at offset ${pos}`);
  }
}

/** A value whose path is a prefix of the target path. */
interface Visit {
  /** How many target segments the value's path covers. */
  readonly depth: number;
  readonly start: number;
  readonly end: number;
  readonly kind: string;
}

/**
 * Recursive-descent scan of a JSON text that reports every value lying on
 * the target path (the root, each ancestor, the target itself), so duplicate
 * members anywhere along the path are seen.
 */
class Scanner {
  private pos = 0;
  readonly visits: Visit[] = [];

  constructor(
    private readonly text: string,
    private readonly target: readonly string[],
  ) {
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1;
  }

  run(): void {
    this.value(0);
    this.ws();
    if (this.pos !== this.text.length) throw new ScanError(this.pos);
  }

  private ws(): void {
    WS.lastIndex = this.pos;
    WS.exec(this.text);
    this.pos = WS.lastIndex;
  }

  private token(re: RegExp): string {
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) throw new ScanError(this.pos);
    this.pos = re.lastIndex;
    return m[0];
  }

  private expect(c: string): void {
    this.ws();
    if (this.text[this.pos] !== c) throw new ScanError(this.pos);
    this.pos++;
  }

  /** Scans one value; depth is -1 off the target path. */
  private value(depth: number): void {
    this.ws();
    const start = this.pos;
    const c = this.text[this.pos];
    let kind: string;
    if (c === '{') kind = this.object(depth);
    else if (c === '[') kind = this.array(depth);
    else if (c === '"') kind = (this.token(STRING), 'string');
    else if (c === 't' || c === 'f' || c === 'n') kind = this.token(LITERAL) === 'null' ? 'null' : 'boolean';
    else kind = (this.token(NUMBER), 'number');
    if (depth >= 0) this.visits.push({ depth, start, end: this.pos, kind });
  }

  private child(depth: number, segment: string): number {
    return depth >= 0 && depth < this.target.length && this.target[depth] === segment ? depth + 1 : -1;
  }

  private object(depth: number): string {
    this.pos++;
    this.ws();
    if (this.text[this.pos] === '}') return (this.pos++, 'object');
    for (;;) {
      this.ws();
      const key = JSON.parse(this.token(STRING)) as string;
      this.expect(':');
      this.value(this.child(depth, key));
      this.ws();
      if (this.text[this.pos] === '}') return (this.pos++, 'object');
      this.expect(',');
    }
  }

  private array(depth: number): string {
    this.pos++;
    this.ws();
    if (this.text[this.pos] === ']') return (this.pos++, 'array');
    for (let i = 0; ; i++) {
      this.value(this.child(depth, String(i)));
      this.ws();
      if (this.text[this.pos] === ']') return (this.pos++, 'array');
      this.expect(',');
    }
  }
}

function parsePath(entry: string): string[] {
  const path = entry.split('.');
  // Control characters: no config names a member so, and a message naming the entry would break across lines.
  if (path.some((s) => s.length === 0) || /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(entry)) {
    throw new MasterKeyError('USAGE', `${JSON.stringify(entry)} is not a valid JSON entry path; write member names separated by dots, e.g. security.masterKey.`, { entry });
  }
  return path;
}

function scan(text: string, path: readonly string[], label: string): Visit[] {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const scanner = new Scanner(text, path);
  try {
    JSON.parse(body);
    scanner.run();
  } catch (e) {
    // Never quote the parser's message: it may contain a snippet of the file (and so the key).
    const where = e instanceof ScanError ? ` (line ${lineAt(text, e.pos)})` : syntaxLine(text, path);
    throw invalidConfig(label, `is not valid JSON${where}`);
  }
  return scanner.visits;
}

/** Finds the position of a syntax error with our own scanner, for the message. */
function syntaxLine(text: string, path: readonly string[]): string {
  try {
    new Scanner(text, path).run();
    return '';
  } catch (e) {
    return e instanceof ScanError ? ` (line ${lineAt(text, e.pos)})` : '';
  }
}

/** Finds the one string at dotted path `entry` in a JSON text. */
export function locateJson(text: string, entry: string, label: string): Located {
  const path = parsePath(entry);
  const visits = scan(text, path, label);
  for (let d = 1; d < path.length; d++) {
    const lines = visits.filter((v) => v.depth === d).map((v) => lineAt(text, v.start));
    if (lines.length > 1) throw duplicateEntry(label, path.slice(0, d).join('.'), 'JSON', lines);
  }
  const candidates: Candidate[] = visits
    .filter((v) => v.depth === path.length)
    .map((v) => ({ line: lineAt(text, v.start), located: () => stringAt(text, v, label, entry) }));
  return single(candidates, label, entry, 'JSON');
}

function stringAt(text: string, v: Visit, label: string, entry: string): Located {
  if (v.kind !== 'string') {
    throw invalidConfig(label, `holds a JSON ${v.kind} at ${entry} (line ${lineAt(text, v.start)}), not a string; write the value in double quotes`, { entry });
  }
  return locatedString(text, v);
}

function locatedString(text: string, v: Visit): Located {
  return {
    start: v.start,
    end: v.end,
    value: JSON.parse(text.slice(v.start, v.end)) as string,
    encode: (s) => JSON.stringify(s),
  };
}
