/**
 * Sealed values inside jsonb documents: a lossless JSON reader/writer and the
 * walk that finds the string values an inventory entry's `jsonPath` (with its
 * optional `where`) designates.
 *
 * The reader keeps numbers as their source text, so rewriting a document
 * never changes a non-secret value (jsonb numbers are arbitrary precision,
 * JavaScript numbers are not). Objects are `Map`s (order kept, no prototype
 * keys).
 */
import { MasterKeyError } from '../errors';
import type { InventoryEntry, JsonWhere } from '../inventory/inventory';

/** A JSON number kept as written. */
export class JsonNumber {
  constructor(readonly raw: string) {}
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** A JSON string token exactly as JSON allows it (no raw control characters, only its escapes), so JSON.parse of a match cannot fail. */
const STRING_RE = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const SPACE_RE = /[ \t\n\r]*/y;

/** How deep a document may nest (SQLite's JSON functions stop at the same depth): deeper, the reader would run out of stack. */
export const MAX_JSON_DEPTH = 1000;

/**
 * Reading JSON text a token at a time (what `parseJsonLossless` and
 * `documentSlots` share): where it is, the members and indices down to the
 * value being read, how deep it nests, and the errors of a text it refuses.
 */
class JsonCursor {
  pos = 0;
  private depth = 0;
  /** The members and indices down to the value being read (for the duplicate's path). */
  readonly trail: string[] = [];

  constructor(readonly text: string) {}

  /**
   * A member name twice in one object: JSON.parse, PostgreSQL's jsonb and this
   * reader keep only the last, so a rewrite would drop the other one. Refused.
   */
  duplicate(key: string): never {
    const { trail } = this;
    const path = [...trail, key].join('.');
    throw new MasterKeyError(
      'SEALED_MALFORMED',
      `A JSON document holds the member ${JSON.stringify(key)} twice${trail.length ? ` (in ${JSON.stringify(trail.join('.'))})` : ''}; rewriting it would keep only one: remove or rename the other and run the command again.`,
      { path },
    );
  }

  fail(): never {
    throw new MasterKeyError('INVENTORY_INVALID', `A jsonb document could not be read at offset ${this.pos}; check that the inventory's jsonPath column is a json or jsonb column.`);
  }

  /** Skips white space; the character there. */
  peek(): string | undefined {
    SPACE_RE.lastIndex = this.pos;
    SPACE_RE.exec(this.text);
    this.pos = SPACE_RE.lastIndex;
    return this.text[this.pos];
  }

  token(re: RegExp): string {
    re.lastIndex = this.pos;
    const m = re.exec(this.text);
    if (!m) return this.fail();
    this.pos = re.lastIndex;
    return m[0];
  }

  /** Skips a string token (its quotes included); where it started. */
  skipString(): number {
    const at = this.pos;
    STRING_RE.lastIndex = at;
    if (!STRING_RE.test(this.text)) this.fail();
    this.pos = STRING_RE.lastIndex;
    return at;
  }

  expect(ch: string): void {
    if (this.peek() !== ch) this.fail();
    this.pos++;
  }

  /** Enters the container opening at `pos` (`{` or `[`, not yet read), refusing one nested too deep. */
  enter(): void {
    if (++this.depth > MAX_JSON_DEPTH) {
      throw new MasterKeyError('INVENTORY_INVALID', `A JSON document nests deeper than ${MAX_JSON_DEPTH} levels (at offset ${this.pos}); such a document cannot be read.`);
    }
    this.pos++;
  }

  leave(): void {
    this.depth--;
  }

  /** Whether the container just entered ends at once (`}` or `]`, then read). */
  empty(close: string): boolean {
    if (this.peek() !== close) return false;
    this.pos++;
    return true;
  }

  /** After a member or element: true when another follows (`,` read), false at the container's end (`close` read). */
  more(close: string): boolean {
    if (this.peek() === ',') {
      this.pos++;
      return true;
    }
    this.expect(close);
    return false;
  }

  /** A member's name and the colon after it, refusing a name `seen` already holds. */
  member(seen: { has(k: string): boolean }): string {
    this.peek();
    const key = stringAt(this.text, this.skipString(), this.pos);
    if (seen.has(key)) this.duplicate(key);
    this.expect(':');
    return key;
  }

  /** A literal or a number at `pos`. */
  scalar(): null | boolean | JsonNumber {
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (this.text.startsWith(word, this.pos)) return (this.pos += word.length), v;
    }
    return new JsonNumber(this.token(NUMBER_RE));
  }

  /** Checks that nothing but white space follows the document. */
  end(): void {
    this.peek();
    if (this.pos !== this.text.length) this.fail();
  }
}

/**
 * Parses JSON text (as PostgreSQL prints jsonb) without losing number
 * precision. Refuses text that is not JSON or nests too deep
 * (INVENTORY_INVALID), and an object with a member name twice
 * (SEALED_MALFORMED, `details.path` naming that member).
 */
export function parseJsonLossless(text: string): JsonValue {
  const cur = new JsonCursor(text);
  const { trail } = cur;
  const value = (): JsonValue => {
    const c = cur.peek();
    if (c === '"') return JSON.parse(cur.token(STRING_RE)) as string;
    if (c === '{') {
      cur.enter();
      const obj: JsonObject = new Map();
      if (!cur.empty('}')) {
        do {
          const key = cur.member(obj);
          trail.push(key);
          obj.set(key, value());
          trail.pop();
        } while (cur.more('}'));
      }
      cur.leave();
      return obj;
    }
    if (c === '[') {
      cur.enter();
      const arr: JsonValue[] = [];
      if (!cur.empty(']')) {
        do {
          trail.push(String(arr.length));
          arr.push(value());
          trail.pop();
        } while (cur.more(']'));
      }
      cur.leave();
      return arr;
    }
    return cur.scalar();
  };
  const v = value();
  cur.end();
  return v;
}

/**
 * A sealed value found in a document's text, without parsing it into a
 * tree: which entry, its path, and where its string token (quotes
 * included) starts and ends in the text.
 */
export interface TextSlot {
  readonly entry: InventoryEntry;
  /** Dotted path of concrete keys/indices, e.g. "env.2.value". */
  readonly path: string;
  readonly start: number;
  readonly end: number;
}

/** A member or element whose value is a string, waiting for its holder's end (where `where` is decided). */
interface Candidate {
  readonly entry: number;
  readonly path: string;
  readonly start: number;
  readonly end: number;
}

/** What a holder's member named by `where.key` was (undefined: absent); a container stands as a value equal to nothing. */
type WhereValue = null | boolean | string | JsonNumber | object | undefined;

const CONTAINER: object = Object.freeze({});
const NONE: readonly number[] = [];
const NO_KEYS: readonly string[] = [];

function whereMatches(v: WhereValue, where: JsonWhere | undefined): boolean {
  if (!where) return true;
  if (v instanceof JsonNumber) return typeof where.equals === 'number' && Number(v.raw) === where.equals;
  return v === where.equals;
}

const segmentMatches = (segment: string, key: string) => segment === '*' || segment === key;

/**
 * The slots `findEntrySlots` finds on `parseJsonLossless(text)`, in the same
 * order (by entry, each in document order; a place claimed by two entries
 * counts once, for the first), read from the text in one pass: no tree of
 * the document is built, nor a string of any value that is no slot's. It
 * refuses what `parseJsonLossless` refuses, with the same errors.
 */
export function documentSlots(text: string, entries: readonly InventoryEntry[]): TextSlot[] {
  const paths = entries.map((e) => e.jsonPath ?? []);
  const found: Candidate[][] = entries.map(() => []);
  const cur = new JsonCursor(text);
  const { trail } = cur;
  /** Reads the value at `pos`: a container at depth `d` (its path `prefix`) through which `alive`'s entries lead. */
  const value = (alive: readonly number[], d: number, prefix: string): WhereValue => {
    const c = cur.peek();
    if (c === '"') {
      cur.skipString();
      return undefined;
    }
    if (c !== '{' && c !== '[') return cur.scalar();
    const isObject = c === '{';
    const close = isObject ? '}' : ']';
    cur.enter();
    // Most containers of a large document lie on no entry's path: nothing is allocated for them but the set of their names.
    const holding = alive.length === 0 ? NONE : alive.filter((e) => paths[e].length - 1 === d);
    const passing = alive.length === 0 ? NONE : alive.filter((e) => paths[e].length - 1 > d);
    const pending: Candidate[] = [];
    const whereKeys = isObject && holding.length > 0 ? holding.map((e) => entries[e].where?.key).filter((k): k is string => k !== undefined) : NO_KEYS;
    const whereValues = new Map<string, WhereValue>();
    const seen = new Set<string>();
    if (!cur.empty(close)) {
      let index = 0;
      do {
        const key = isObject ? cur.member(seen) : String(index++);
        if (isObject) seen.add(key);
        trail.push(key);
        const next = cur.peek();
        let v: WhereValue;
        if (next === '"' && (holding.length > 0 || whereKeys.length > 0)) {
          const start = cur.skipString();
          for (const e of holding) if (segmentMatches(paths[e][d], key)) pending.push({ entry: e, path: prefix + key, start, end: cur.pos });
          v = whereKeys.includes(key) ? stringAt(text, start, cur.pos) : undefined;
        } else {
          const on = passing.length === 0 ? NONE : passing.filter((e) => segmentMatches(paths[e][d], key));
          v = value(on, d + 1, on.length > 0 ? `${prefix}${key}.` : '');
        }
        if (whereKeys.includes(key)) whereValues.set(key, v);
        trail.pop();
      } while (cur.more(close));
    }
    cur.leave();
    for (const p of pending) {
      const where = entries[p.entry].where;
      if (!where || (isObject && whereMatches(whereValues.get(where.key), where))) found[p.entry].push(p);
    }
    return CONTAINER;
  };
  value(paths.map((_, i) => i).filter((i) => paths[i].length > 0), 0, '');
  cur.end();
  const out: TextSlot[] = [];
  const seen = new Set<number>();
  for (const list of found) {
    for (const p of list) {
      // One entry finds each place once: only several can claim one twice.
      if (entries.length > 1) {
        if (seen.has(p.start)) continue;
        seen.add(p.start);
      }
      out.push({ entry: entries[p.entry], path: p.path, start: p.start, end: p.end });
    }
  }
  return out;
}

/** The string a slot of `text` holds. */
export function slotValue(text: string, slot: Pick<TextSlot, 'start' | 'end'>): string {
  return stringAt(text, slot.start, slot.end);
}

/**
 * The string of the string token from `start` to `end` (quotes included) of
 * `text`, as a string of its own: a slice would keep the whole document's
 * text alive for as long as it is (a value kept in verification's sample).
 */
function stringAt(text: string, start: number, end: number): string {
  return JSON.parse(text.slice(start, end)) as string;
}

/**
 * A document's text with the strings of some of its slots replaced, as
 * UTF-8 bytes written into one growing buffer as the replacements come (in
 * document order); everything else is kept as it was written.
 */
export class DocumentSplice {
  private readonly out: ByteWriter;
  private at = 0;

  /** `sizeHint`: re-sealing keeps lengths, so room for the old text and a little more. */
  constructor(
    private readonly text: string,
    sizeHint = text.length + 65536,
  ) {
    this.out = new ByteWriter(sizeHint);
  }

  /** Replaces the string of `slot` (after every slot replaced before it) with `value`. */
  replace(slot: Pick<TextSlot, 'start' | 'end'>, value: string): void {
    this.keep(this.text.slice(this.at, slot.start));
    this.out.quoted(value);
    this.at = slot.end;
  }

  /** The new text, once every replacement is made. */
  bytes(): Buffer {
    this.keep(this.text.slice(this.at));
    this.at = this.text.length;
    return this.out.bytes();
  }

  /**
   * Writes text kept as it was. A lone surrogate has no UTF-8 form (it would
   * be written as U+FFFD, another character): one can only stand inside a
   * string token of a document the reader accepted, so it is written as its
   * `\uXXXX` escape, the same string. Text read from a database never holds
   * one; a document given as a JS string might.
   */
  private keep(span: string): void {
    this.out.text(SURROGATE.test(span) ? span.replace(LONE_SURROGATE, (c) => `\\u${c.charCodeAt(0).toString(16)}`) : span);
  }
}

/** Any surrogate (most texts hold none: they skip the search for lone ones). */
const SURROGATE = /[\ud800-\udfff]/;
/** A high surrogate not followed by a low one, or a low one not after a high one. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Writes a value read by `parseJsonLossless` back as compact JSON text (the pieces of a large document joined once, not level by level). */
export function stringifyJsonLossless(v: JsonValue): string {
  const parts: string[] = [];
  writeJson(v, parts);
  return parts.join('');
}

function writeJson(v: JsonValue, parts: string[]): void {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') parts.push(JSON.stringify(v));
  else if (v instanceof JsonNumber) parts.push(v.raw);
  else if (Array.isArray(v)) {
    parts.push('[');
    v.forEach((x, i) => {
      if (i > 0) parts.push(',');
      writeJson(x, parts);
    });
    parts.push(']');
  } else {
    parts.push('{');
    let first = true;
    for (const [k, x] of v) {
      parts.push(first ? `${JSON.stringify(k)}:` : `,${JSON.stringify(k)}:`);
      first = false;
      writeJson(x, parts);
    }
    parts.push('}');
  }
}

/** Characters JSON.stringify escapes in a string (surrogates: a lone one is escaped), so such a string goes through it. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * The same text as `stringifyJsonLossless`, as UTF-8 bytes written into one
 * growing buffer (what the hot path stores): a document of many values is
 * never held as pieces plus their join, nor as one more string.
 */
export function documentBytes(v: JsonValue, sizeHint = 1024): Buffer {
  const out = new ByteWriter(sizeHint);
  writeBytes(v, out);
  return out.bytes();
}

class ByteWriter {
  private buf: Buffer;
  private at = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, size));
  }
  text(s: string): void {
    const most = s.length > 4096 ? Buffer.byteLength(s, 'utf8') : 3 * s.length;
    if (this.at + most > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.at + most));
      this.buf.copy(next, 0, 0, this.at);
      this.buf = next;
    }
    this.at += this.buf.write(s, this.at, 'utf8');
  }
  quoted(s: string): void {
    if (NEEDS_ESCAPE.test(s)) return this.text(JSON.stringify(s));
    this.text('"');
    this.text(s);
    this.text('"');
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

function writeBytes(v: JsonValue, out: ByteWriter): void {
  if (typeof v === 'string') out.quoted(v);
  else if (v === null || typeof v === 'boolean') out.text(String(v));
  else if (v instanceof JsonNumber) out.text(v.raw);
  else if (Array.isArray(v)) {
    out.text('[');
    v.forEach((x, i) => {
      if (i > 0) out.text(',');
      writeBytes(x, out);
    });
    out.text(']');
  } else {
    out.text('{');
    let first = true;
    for (const [k, x] of v) {
      if (!first) out.text(',');
      first = false;
      out.quoted(k);
      out.text(':');
      writeBytes(x, out);
    }
    out.text('}');
  }
}

/** One string value found in a document: where it is and how to replace it. */
export interface JsonSlot {
  /** Dotted path of concrete keys/indices, e.g. "env.2.value". */
  readonly path: string;
  /** The same path as segments (unambiguous when keys contain dots). */
  readonly segments: readonly string[];
  readonly value: string;
  /** Replaces the value in the parsed document. */
  set(next: string): void;
}

/** A slot as a small object (no closure, and its segments made only when asked: a document may hold many thousands). */
class Slot implements JsonSlot {
  constructor(
    private readonly holder: Container,
    private readonly key: string,
    private readonly trail: readonly string[],
    readonly path: string,
    readonly value: string,
  ) {}
  get segments(): readonly string[] {
    return [...this.trail, this.key];
  }
  set(next: string): void {
    setIn(this.holder, this.key, next);
  }
}

type Container = JsonValue[] | JsonObject;

function isContainer(v: JsonValue | undefined): v is Container {
  return Array.isArray(v) || v instanceof Map;
}

function children(c: Container, segment: string): Array<[string, JsonValue]> {
  if (Array.isArray(c)) {
    if (segment === '*') return c.map((v, i) => [String(i), v]);
    const i = /^(0|[1-9]\d*)$/.test(segment) ? Number(segment) : -1;
    return i >= 0 && i < c.length ? [[segment, c[i]]] : [];
  }
  if (segment === '*') return [...c.entries()];
  const v = c.get(segment);
  return v === undefined ? [] : [[segment, v]];
}

function whereHolds(holder: Container, where: JsonWhere | undefined): boolean {
  if (!where) return true;
  if (!(holder instanceof Map)) return false;
  const v = holder.get(where.key);
  if (v instanceof JsonNumber) return typeof where.equals === 'number' && Number(v.raw) === where.equals;
  return v === where.equals;
}

function setIn(holder: Container, key: string, next: string): void {
  if (Array.isArray(holder)) holder[Number(key)] = next;
  else holder.set(key, next);
}

/**
 * The string values at `path` in `doc` whose holding object satisfies `where`.
 * Absent members and non-string values are not secrets and are skipped.
 */
export function findSlots(doc: JsonValue, path: readonly string[], where?: JsonWhere): JsonSlot[] {
  const out: JsonSlot[] = [];
  const walk = (node: Container, depth: number, trail: readonly string[], prefix: string) => {
    for (const [key, child] of children(node, path[depth])) {
      if (depth === path.length - 1) {
        if (typeof child === 'string' && whereHolds(node, where)) out.push(new Slot(node, key, trail, prefix + key, child));
      } else if (isContainer(child)) {
        walk(child, depth + 1, [...trail, key], `${prefix}${key}.`);
      }
    }
  };
  if (isContainer(doc) && path.length > 0) walk(doc, 0, [], '');
  return out;
}

/** Slots of several entries on one document; a location claimed by two entries counts once (first entry wins). */
export function findEntrySlots(doc: JsonValue, entries: readonly InventoryEntry[]): Array<{ entry: InventoryEntry; slot: JsonSlot }> {
  // One entry finds each place once: nothing to tell apart.
  if (entries.length === 1) return findSlots(doc, entries[0].jsonPath ?? [], entries[0].where).map((slot) => ({ entry: entries[0], slot }));
  const seen = new Set<string>();
  const out: Array<{ entry: InventoryEntry; slot: JsonSlot }> = [];
  for (const entry of entries) {
    for (const slot of findSlots(doc, entry.jsonPath ?? [], entry.where)) {
      const id = JSON.stringify(slot.segments);
      if (seen.has(id)) continue;
      seen.add(id);
      out.push({ entry, slot });
    }
  }
  return out;
}
