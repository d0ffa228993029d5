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
 * Parses JSON text (as PostgreSQL prints jsonb) without losing number
 * precision. Refuses text that is not JSON or nests too deep
 * (INVENTORY_INVALID), and an object with a member name twice
 * (SEALED_MALFORMED, `details.path` naming that member).
 */
export function parseJsonLossless(text: string): JsonValue {
  let pos = 0;
  let depth = 0;
  /** The members and indices down to the value being read (for the duplicate's path). */
  const trail: string[] = [];
  /**
   * A member name twice in one object: JSON.parse, PostgreSQL's jsonb and this
   * reader keep only the last, so a rewrite would drop the other one. Refused.
   */
  const duplicate = (key: string): never => {
    const path = [...trail, key].join('.');
    throw new MasterKeyError(
      'SEALED_MALFORMED',
      `A JSON document holds the member ${JSON.stringify(key)} twice${trail.length ? ` (in ${JSON.stringify(trail.join('.'))})` : ''}; rewriting it would keep only one: remove or rename the other and run the command again.`,
      { path },
    );
  };
  const fail = (): never => {
    throw new MasterKeyError('INVENTORY_INVALID', `A jsonb document could not be read at offset ${pos}; check that the inventory's jsonPath column is a json or jsonb column.`);
  };
  const skip = () => {
    SPACE_RE.lastIndex = pos;
    SPACE_RE.exec(text);
    pos = SPACE_RE.lastIndex;
  };
  const token = (re: RegExp): string => {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return fail();
    pos = re.lastIndex;
    return m[0];
  };
  const expect = (ch: string) => {
    skip();
    if (text[pos] !== ch) fail();
    pos++;
  };
  const value = (): JsonValue => {
    skip();
    const c = text[pos];
    if (c === '"') return JSON.parse(token(STRING_RE)) as string;
    if ((c === '{' || c === '[') && ++depth > MAX_JSON_DEPTH) {
      throw new MasterKeyError('INVENTORY_INVALID', `A JSON document nests deeper than ${MAX_JSON_DEPTH} levels (at offset ${pos}); such a document cannot be read.`);
    }
    const v = container(c);
    if (c === '{' || c === '[') depth--;
    return v;
  };
  const container = (c: string | undefined): JsonValue => {
    if (c === '{') {
      pos++;
      const obj: JsonObject = new Map();
      skip();
      if (text[pos] === '}') return pos++, obj;
      for (;;) {
        skip();
        const key = JSON.parse(token(STRING_RE)) as string;
        if (obj.has(key)) duplicate(key);
        expect(':');
        trail.push(key);
        obj.set(key, value());
        trail.pop();
        skip();
        if (text[pos] === ',') pos++;
        else return expect('}'), obj;
      }
    }
    if (c === '[') {
      pos++;
      const arr: JsonValue[] = [];
      skip();
      if (text[pos] === ']') return pos++, arr;
      for (;;) {
        trail.push(String(arr.length));
        arr.push(value());
        trail.pop();
        skip();
        if (text[pos] === ',') pos++;
        else return expect(']'), arr;
      }
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, pos)) return (pos += word.length), v;
    }
    return new JsonNumber(token(NUMBER_RE));
  };
  const v = value();
  skip();
  if (pos !== text.length) fail();
  return v;
}

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
