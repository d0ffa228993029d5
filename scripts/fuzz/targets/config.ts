/**
 * Config files (dotenv, JSON, XML) through their parser's entry points,
 * `readEntry` and `replaceEntry` (src/config/formats.ts: what
 * `readConfigKey`/`writeConfigKey` run on a file's text).
 *
 * For every input: reading an entry returns a value or rejects with a
 * typed config error that quotes nothing of the file. For every accepted
 * input, the round trip: writing a fresh key and reading it back gives that
 * key; writing it again changes nothing; every other entry reads as before;
 * only the value's own characters changed (dotenv: the changed characters
 * are part of the old value; JSON: `JSON.parse` sees the same document with
 * only that member changed).
 */
import { DOMParser, type Document as XmlDocument, type Element as XmlElement } from '@xmldom/xmldom';
import fc from 'fast-check';
import { ConfigFormat, readEntry, replaceEntry } from '../../../src/config/formats';
import { ErrorCode } from '../../../src/errors';
import { FuzzDefect, FuzzTarget, invariant, typed } from '../harness';
import { anyText, applyEdits, edits, hexKey } from '../mutate';

export interface ConfigInput {
  readonly text: string;
  readonly entry: string;
  /** The key the round trip writes. */
  readonly key: string;
}

const LABEL = '/etc/act/config';
const READ_CODES: readonly ErrorCode[] = ['CONFIG_INVALID', 'CONFIG_KEY_MISSING', 'CONFIG_KEY_DUPLICATE', 'USAGE'];

/** Runs of hex digits in a text: keys the file holds, which no message may quote. */
function secretsOf(text: string): string[] {
  return text.match(/[0-9a-fA-F]{16,}/g) ?? [];
}

/** The outcome of reading an entry, comparable between two texts. */
function outcome(text: string, format: ConfigFormat, entry: string): string {
  const r = typed(`readEntry(${format})`, () => readEntry(text, format, entry, LABEL), READ_CODES, secretsOf(text));
  return r.ok ? `value ${JSON.stringify(r.value)}` : `rejected ${r.rejection.code}`;
}

/** Lengths of the common prefix and (not overlapping it) common suffix of two strings. */
function commonEnds(a: string, b: string): [number, number] {
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  let s = 0;
  while (s < a.length - p && s < b.length - p && a[a.length - 1 - s] === b[b.length - 1 - s]) s++;
  return [p, s];
}

/** Walks a parsed JSON value along a dotted path (numeric segments index arrays). */
function jsonAt(v: unknown, path: readonly string[]): unknown {
  return path.reduce<unknown>((x, seg) => (x !== null && typeof x === 'object' && Object.prototype.hasOwnProperty.call(x, seg) ? (x as Record<string, unknown>)[seg] : undefined), v);
}

function jsonWith(v: unknown, path: readonly string[], leaf: string): unknown {
  if (path.length === 0) return leaf;
  const [seg, ...rest] = path;
  const copy = Array.isArray(v) ? [...v] : { ...(v as Record<string, unknown>) };
  Object.defineProperty(copy, seg, { value: jsonWith((v as Record<string, unknown>)[seg], rest, leaf), enumerable: true, writable: true, configurable: true });
  return copy;
}

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

/**
 * What a conforming XML parser (xmldom, when it reports no error at all)
 * reads for an entry, in the three shapes the reader knows: undefined when
 * it finds no single one, or reports anything.
 */
function xmlOracle(text: string, entry: string): string | undefined {
  // xmldom ends lines at NEL and the Unicode line and paragraph separators too, as XML 1.1 does; XML 1.0 (and .NET's reader) does not.
  if (/[\u0085\u2028\u2029]/.test(text)) return undefined;
  let errors = 0;
  let doc: XmlDocument;
  try {
    doc = new DOMParser({ onError: () => void errors++ }).parseFromString(stripBom(text), 'text/xml');
  } catch {
    return undefined;
  }
  if (errors > 0 || !doc.documentElement) return undefined;
  const found: string[] = [];
  const walk = (el: XmlElement): void => {
    const keyed = el.hasAttribute('key') && el.getAttribute('key') === entry;
    if (keyed && el.hasAttribute('value')) found.push(el.getAttribute('value')!);
    else if (keyed || el.tagName === entry) found.push((el.textContent ?? '').trim());
    for (let i = 0; i < el.childNodes.length; i++) {
      const c = el.childNodes[i];
      if (c.nodeType === c.ELEMENT_NODE) walk(c as XmlElement);
    }
  };
  walk(doc.documentElement);
  return found.length === 1 ? found[0] : undefined;
}

/** The round trip and the format's own checks on an input. */
function checkConfig(format: ConfigFormat, otherEntries: readonly string[], input: ConfigInput): void {
  const { text, entry, key } = input;
  const read = typed(`readEntry(${format})`, () => readEntry(text, format, entry, LABEL), READ_CODES, secretsOf(text));
  if (format === 'json' && read.ok) {
    // An independent reader: JSON.parse must accept what we accept, and read the same value.
    let parsed: unknown;
    try {
      parsed = JSON.parse(stripBom(text));
    } catch {
      throw new FuzzDefect(`the JSON reader accepted a text JSON.parse refuses and read ${JSON.stringify(read.value)} from it`);
    }
    invariant(jsonAt(parsed, entry.split('.')) === read.value, `the JSON reader read ${JSON.stringify(read.value)} where JSON.parse reads ${JSON.stringify(jsonAt(parsed, entry.split('.')))}`);
  }
  if (format === 'json' && !read.ok && / is not valid JSON/.test(read.rejection.message)) {
    let valid = true;
    try {
      JSON.parse(stripBom(text));
    } catch {
      valid = false;
    }
    invariant(!valid, 'the JSON reader refused as not valid JSON a text JSON.parse accepts');
  }
  if (format === 'xml' && read.ok) {
    const theirs = xmlOracle(text, entry);
    invariant(theirs === undefined || theirs === read.value, `the XML reader read ${JSON.stringify(read.value)} where a conforming XML parser reads ${JSON.stringify(theirs)}`);
  }
  if (!read.ok) return;
  const written = typed(`replaceEntry(${format})`, () => replaceEntry(text, format, entry, key, LABEL), [], secretsOf(text));
  if (!written.ok) throw new FuzzDefect(`an accepted ${format} file could not take a key`);
  const out = written.value;
  const back = typed(`readEntry(${format}) after writing`, () => readEntry(out, format, entry, LABEL), [], secretsOf(out));
  invariant(back.ok && back.value === key, `after writing a key into ${entry}, reading it back gives ${back.ok ? JSON.stringify(back.value) : `a rejection (${back.rejection.code}: ${back.rejection.message})`}`);
  invariant(replaceEntry(out, format, entry, key, LABEL) === out, 'writing the same key a second time changed the file again');
  for (const other of otherEntries) {
    if (other === entry) continue;
    const before = outcome(text, format, other);
    const after = outcome(out, format, other);
    invariant(before === after, `writing ${entry} changed how ${other} reads: ${before} before, ${after} after`);
  }
  const [p, s] = commonEnds(text, out);
  const removed = text.slice(p, text.length - s);
  if (format === 'dotenv') {
    invariant(read.value.includes(removed), `writing ${entry} changed characters outside its value: ${JSON.stringify(removed)} is not part of ${JSON.stringify(read.value)}`);
  }
  if (format === 'json') {
    const expected = JSON.stringify(jsonWith(JSON.parse(stripBom(text)), entry.split('.'), key));
    invariant(JSON.stringify(JSON.parse(stripBom(out))) === expected, `writing ${entry} changed the JSON document elsewhere`);
  }
}

/**
 * A target of one format. `docs` gives a document and the entry it was
 * built around: most inputs ask for that entry (the round trip needs
 * accepted files), some for another of `entries` or a random name.
 */
function configTarget(format: ConfigFormat, entries: readonly string[], docs: fc.Arbitrary<[string, string]>, tokens: readonly string[]): FuzzTarget<ConfigInput> {
  const entry = fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 6, arbitrary: fc.constantFrom(...entries) }, { weight: 1, arbitrary: anyText(8) });
  return {
    name: `config-${format}`,
    entry: `${format} config files: readEntry/replaceEntry (src/config/formats.ts), as readConfigKey/writeConfigKey use them`,
    arbitrary: fc
      .tuple(fc.oneof({ weight: 20, arbitrary: docs }, { weight: 1, arbitrary: anyText(64).map((t): [string, string] => [t, entries[0]]) }), edits(tokens), entry, hexKey)
      .map(([[text, built], es, name, key]): ConfigInput => ({ text: applyEdits(text, es), entry: name ?? built, key })),
    check: (input) => checkConfig(format, entries, input),
    toJson: (i) => i,
    fromJson: (j) => j as ConfigInput,
  };
}

// ---- dotenv ----

const DOTENV_NAMES = ['ACT_MASTER_KEY', 'DATABASE_URL', 'A', 'x.y', '_K1'];
const dotenvValue = fc.oneof(hexKey, fc.constantFrom('', 'postgres://u:p@db/act', 'a b', '#x', "it's", 'say "hi"', 'a\\b', 'tab\there'), anyText(10));
/** An assignment line for a name. */
const dotenvAssignment = fc
  .record({
    indent: fc.constantFrom('', '', ' ', '\t'),
    exp: fc.constantFrom('', '', 'export ', 'export\t'),
    before: fc.constantFrom('', '', ' ', '\t '),
    after: fc.constantFrom('', '', ' ', '  '),
    quote: fc.constantFrom('', '', '"', "'"),
    value: dotenvValue,
    tail: fc.constantFrom('', '', ' ', ' # comment', '\t#c', '#glued', ' #'),
  })
  .map((l) => (name: string) => `${l.indent}${l.exp}${name}${l.before}=${l.after}${l.quote}${l.value}${l.quote}${l.tail}`);
const dotenvLine = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(dotenvAssignment, fc.constantFrom(...DOTENV_NAMES)).map(([line, name]) => line(name)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('#', '# ', ' #', '#export '), fc.constantFrom(...DOTENV_NAMES), dotenvValue).map(([c, n, v]) => `${c}${n}=${v}`) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t') },
  { weight: 1, arbitrary: anyText(16) },
);
const dotenvDocs = fc
  .record({
    bom: fc.constantFrom(false, false, false, true),
    lines: fc.array(dotenvLine, { maxLength: 8 }),
    name: fc.constantFrom(...DOTENV_NAMES),
    forced: dotenvAssignment,
    at: fc.nat(),
    eol: fc.constantFrom('\n', '\n', '\r\n'),
    final: fc.boolean(),
  })
  .map((d): [string, string] => {
    const lines = [...d.lines];
    lines.splice(d.at % (lines.length + 1), 0, d.forced(d.name));
    return [`${d.bom ? '\ufeff' : ''}${lines.join(d.eol)}${d.final ? d.eol : ''}`, d.name];
  });

export const DOTENV_TARGET = configTarget('dotenv', DOTENV_NAMES, dotenvDocs, ['=', '"', "'", '#', ' ', '\t', '\n', '\r\n', '\r', 'export ', 'ACT_MASTER_KEY=', '\\', '\ufeff', '\u0000']);

// ---- JSON ----

/** A JSON document as a tree, printed with chosen whitespace and escapes. */
type JsonNode = { t: 's'; v: string } | { t: 'lit'; raw: string } | { t: 'o'; m: Array<[string, JsonNode]> } | { t: 'a'; items: JsonNode[] };

const JSON_KEYS = ['ACT_MASTER_KEY', 'security', 'masterKey', 'a', 'b', '0', '1', 'nodes', '__proto__', 'x.y', ''];
const JSON_PATHS = ['ACT_MASTER_KEY', 'security.masterKey', 'a.0.b', 'nodes.1', 'x'];

const jsonString = fc.oneof(hexKey, anyText(8), fc.constantFrom('', 'plain', 'é', '\u2028'));
const jsonTree = fc.letrec<{ node: JsonNode }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    jsonString.map((v): JsonNode => ({ t: 's', v })),
    fc.constantFrom('0', '-1', '1.5e3', '12345678901234567890.5', 'true', 'false', 'null', '-0.0').map((raw): JsonNode => ({ t: 'lit', raw })),
    fc.array(fc.tuple(fc.constantFrom(...JSON_KEYS), tie('node')), { maxLength: 4 }).map((m): JsonNode => ({ t: 'o', m })),
    fc.array(tie('node'), { maxLength: 4 }).map((items): JsonNode => ({ t: 'a', items })),
  ),
})).node;

/** The member chain to a path, ending in a string. */
function pathNode(path: readonly string[], leaf: JsonNode, filler: JsonNode): JsonNode {
  if (path.length === 0) return leaf;
  const [seg, ...rest] = path;
  const child = pathNode(rest, leaf, filler);
  return /^\d+$/.test(seg) ? { t: 'a', items: [...Array<JsonNode>(Number(seg)).fill(filler), child] } : { t: 'o', m: [[seg, child]] };
}

function printJson(n: JsonNode, ws: readonly string[], escapes: number): string {
  let i = 0;
  const w = () => ws[i++ % ws.length];
  const str = (s: string) => {
    const plain = JSON.stringify(s);
    if (escapes === 0) return plain;
    // Escape some characters the long way: \u00XX, \/ (both valid JSON).
    return plain.replace(/[/a-f\u0080-\uffff]/g, (c, at: number) => ((at + escapes) % 3 === 0 ? (c === '/' ? '\\/' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : c));
  };
  const go = (x: JsonNode): string => {
    switch (x.t) {
      case 's':
        return str(x.v);
      case 'lit':
        return x.raw;
      case 'o':
        return `{${w()}${x.m.map(([k, v]) => `${str(k)}${w()}:${w()}${go(v)}`).join(`,${w()}`)}${w()}}`;
      case 'a':
        return `[${w()}${x.items.map(go).join(`,${w()}`)}${w()}]`;
    }
  };
  return `${w()}${go(n)}${w()}`;
}

const jsonDocs = fc
  .record({
    members: fc.array(fc.tuple(fc.constantFrom(...JSON_KEYS), jsonTree), { maxLength: 4 }),
    path: fc.constantFrom(...JSON_PATHS),
    leaf: jsonString,
    at: fc.nat(),
    ws: fc.array(fc.constantFrom('', '', ' ', '\n  ', '\t', '\r\n'), { minLength: 1, maxLength: 6 }),
    escapes: fc.nat({ max: 3 }),
    bom: fc.constantFrom(false, false, false, true),
    root: fc.constantFrom('object', 'object', 'object', 'other'),
    other: jsonTree,
  })
  .map((d) => {
    const forced = pathNode(d.path.split('.'), { t: 's', v: d.leaf }, { t: 'lit', raw: 'null' });
    const members = [...d.members];
    if (forced.t === 'o') members.splice(d.at % (members.length + 1), 0, forced.m[0]);
    const root: JsonNode = d.root === 'object' ? { t: 'o', m: members } : d.other;
    return [`${d.bom ? '\ufeff' : ''}${printJson(root, d.ws, d.escapes)}`, d.path] as [string, string];
  });

export const JSON_TARGET = configTarget('json', JSON_PATHS, jsonDocs, ['{', '}', '[', ']', '"', ':', ',', '\\', '\\u', '\\ud800', ' ', '\n', '0', '-', 'e', '.', 'true', 'null', '\ufeff', '\u0000', '"ACT_MASTER_KEY":']);

// ---- XML ----

const XML_KEYS = ['ACT_MASTER_KEY', 'Octopus.Server.MasterKey', 'MasterKey', 'a:b'];
const XML_REFS = ['&amp;', '&#x41;', '&#66;', '&lt;', '&gt;', '&quot;', '&apos;', '&nbsp;', '&#0;', '&#x0;', '&#xD800;', '&#x110000;', '&#99999999999;', '&#x1F600;', '&#13;', '&#x;', '&#;', '&;'];
const xmlValue = fc.oneof(
  hexKey,
  anyText(8),
  fc.constantFrom('', ' padded ', '\n'),
  fc.array(fc.oneof(fc.constantFrom(...XML_REFS), hexKey, anyText(3)), { maxLength: 4 }).map((parts) => parts.join('')),
);
const attr = (name: string, value: string, q: string) => `${name}=${q}${value}${q}`;
/** An element holding a key's value, in one of the three shapes (or empty). */
const xmlEntry = fc.oneof(
  fc
    .record({ v: xmlValue, q: fc.constantFrom('"', "'"), order: fc.boolean(), sp: fc.constantFrom(' ', '  ', '\n    '), close: fc.constantFrom('/>', ' />', '></add>') })
    .map((a) => (k: string) => `<add${a.sp}${(a.order ? [attr('key', k, a.q), attr('value', a.v, a.q)] : [attr('value', a.v, a.q), attr('key', k, a.q)]).join(a.sp)}${a.close}`),
  fc.record({ v: xmlValue, q: fc.constantFrom('"', "'") }).map((a) => (k: string) => `<set key=${a.q}${k}${a.q}>${a.v}</set>`),
  fc.record({ v: xmlValue, cdata: fc.constantFrom(false, false, true), ws: fc.constantFrom('', '\n  ') }).map((a) => (k: string) => `<${k}>${a.ws}${a.cdata ? `<![CDATA[${a.v}]]>` : a.v}${a.ws}</${k}>`),
  fc.constant((k: string) => `<${k}/>`),
);
const xmlItem = fc.letrec<{ item: string }>((tie) => ({
  item: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(xmlEntry, fc.constantFrom(...XML_KEYS)).map(([e, k]) => e(k)),
    fc.constantFrom('<!-- note -->', '<!-- <add key="ACT_MASTER_KEY" value="x"/> -->', '<?pi data?>', '\n  ', 'text'),
    fc.tuple(fc.constantFrom('section', 'appSettings', 'ACT_MASTER_KEY'), fc.array(tie('item'), { maxLength: 3 })).map(([n, kids]) => `<${n}>${kids.join('\n  ')}</${n}>`),
  ),
})).item;
const xmlDocs = fc
  .record({
    bom: fc.constantFrom(false, false, false, true),
    decl: fc.constantFrom('', '<?xml version="1.0" encoding="utf-8"?>\n'),
    doctype: fc.constantFrom('', '', '<!DOCTYPE configuration [ <!ENTITY e "x"> ]>\n'),
    root: fc.constantFrom('configuration', 'Octopus', 'appSettings'),
    items: fc.array(xmlItem, { maxLength: 6 }),
    key: fc.constantFrom(...XML_KEYS),
    forced: xmlEntry,
    at: fc.nat(),
    sep: fc.constantFrom('', '\n  ', '\r\n\t'),
  })
  .map((d): [string, string] => {
    const items = [...d.items];
    items.splice(d.at % (items.length + 1), 0, d.forced(d.key));
    return [`${d.bom ? '\ufeff' : ''}${d.decl}${d.doctype}<${d.root}>${d.sep}${items.join(d.sep)}${d.sep}</${d.root}>\n`, d.key];
  });

export const XML_TARGET = configTarget(
  'xml',
  XML_KEYS,
  xmlDocs,
  ['<', '>', '/>', '</', '"', "'", '=', '&', ...XML_REFS, '&#', ';', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>', ' ', '\n', 'key=', 'value=', '\ufeff', '\u0000'],
);
