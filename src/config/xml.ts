/**
 * XML config files (e.g. Octopus's `OctopusServer.config`). The entry is a
 * key name, found in any of these shapes:
 *   <set key="NAME">VALUE</set>           (any element with key="NAME" and no value attribute)
 *   <add key="NAME" value="VALUE" />      (either attribute order, ' or " quotes)
 *   <NAME>VALUE</NAME>
 * Comments are skipped. A small well-formedness scanner (tags balanced, one
 * root, attributes quoted and unique, entity references well formed) finds
 * the exact span of VALUE, so a replacement keeps every other byte. Its
 * messages give line numbers, never names or text from the file: in a file
 * that is not well-formed, what looks like a tag name may be part of a value
 * (a key, a password in a database URL).
 */
import { MasterKeyError } from '../errors';
import { Candidate, invalidConfig, lineAt, Located, single, unwritableValue } from './located';

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const WS = /[ \t\r\n]*/y;
const ENTITY = /&(?:[A-Za-z_:][-A-Za-z0-9_:.]*|#[0-9]+|#x[0-9a-fA-F]+);/y;
const PREDEFINED: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

interface Attr {
  readonly name: string;
  /** Span of the raw value between the quotes. */
  readonly start: number;
  readonly end: number;
  readonly quote: string;
}

/** A piece of element content: character data or the inside of a CDATA section. */
interface Part {
  readonly cdata: boolean;
  readonly start: number;
  readonly end: number;
}

interface Open {
  readonly name: string;
  readonly line: number;
  /** This element's content is the entry's value. */
  readonly isEntry: boolean;
  /** Offset just after the start tag. */
  readonly contentStart: number;
  readonly parts: Part[];
  /** Child elements, comments or processing instructions inside. */
  markup: boolean;
}

class XmlScanner {
  private pos = 0;
  private readonly stack: Open[] = [];
  private rootSeen = false;
  readonly candidates: Candidate[] = [];

  constructor(
    private readonly text: string,
    private readonly entry: string,
    private readonly label: string,
  ) {
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1;
  }

  run(): void {
    const t = this.text;
    while (this.pos < t.length) {
      if (t.startsWith('<!--', this.pos)) this.skipPast('-->', 'comment');
      else if (t.startsWith('<![CDATA[', this.pos)) this.cdata();
      else if (t.startsWith('<?', this.pos)) this.skipPast('?>', 'processing instruction');
      else if (t.startsWith('<!DOCTYPE', this.pos)) this.doctype();
      else if (t.startsWith('</', this.pos)) this.endTag();
      else if (t[this.pos] === '<') this.startTag();
      else this.chars();
    }
    const open = this.stack.at(-1);
    if (open) this.fail(`never closes the element opened on line ${open.line}`);
    if (!this.rootSeen) this.fail('has no root element');
  }

  private fail(problem: string, at = this.pos): never {
    throw invalidConfig(this.label, `is not well-formed XML: it ${problem} (line ${lineAt(this.text, at)})`);
  }

  private markInside(): void {
    const top = this.stack.at(-1);
    if (top) top.markup = true;
  }

  private skipPast(close: string, what: string): void {
    const end = this.text.indexOf(close, this.pos + 2);
    if (end === -1) this.fail(`has an unterminated ${what}`);
    this.markInside();
    this.pos = end + close.length;
  }

  private cdata(): void {
    const top = this.stack.at(-1);
    if (!top) this.fail('has a CDATA section outside the root element');
    const start = this.pos + '<![CDATA['.length;
    const end = this.text.indexOf(']]>', start);
    if (end === -1) this.fail('has an unterminated CDATA section');
    top.parts.push({ cdata: true, start, end });
    this.pos = end + 3;
  }

  private doctype(): void {
    if (this.rootSeen || this.stack.length > 0) this.fail('has a DOCTYPE after the root element started');
    let depth = 0;
    let quote = '';
    for (let i = this.pos + 2; i < this.text.length; i++) {
      const c = this.text[i]!;
      if (quote) quote = c === quote ? '' : quote;
      else if (c === '"' || c === "'") quote = c;
      else if (c === '[') depth++;
      else if (c === ']') depth--;
      else if (c === '>' && depth === 0) {
        this.pos = i + 1;
        return;
      }
    }
    this.fail('has an unterminated DOCTYPE');
  }

  private name(): string {
    NAME.lastIndex = this.pos;
    const m = NAME.exec(this.text);
    if (!m) this.fail('has a malformed tag or attribute name');
    this.pos = NAME.lastIndex;
    return m[0];
  }

  private ws(): boolean {
    WS.lastIndex = this.pos;
    WS.exec(this.text);
    const moved = WS.lastIndex > this.pos;
    this.pos = WS.lastIndex;
    return moved;
  }

  private checkEntities(start: number, end: number): void {
    for (let i = this.text.indexOf('&', start); i !== -1 && i < end; i = this.text.indexOf('&', i + 1)) {
      ENTITY.lastIndex = i;
      if (!ENTITY.test(this.text) || ENTITY.lastIndex > end) this.fail('has an & that does not start an entity reference such as &amp;', i);
      if (this.text[i + 1] === '#' && !isXmlChar(charRef(this.text.slice(i + 2, ENTITY.lastIndex - 1)))) {
        this.fail('has a character reference to a character XML does not allow (such as &#0; or beyond &#x10FFFF;)', i);
      }
    }
  }

  private attribute(attrs: Attr[]): void {
    const at = this.pos;
    const name = this.name();
    this.ws();
    if (this.text[this.pos] !== '=') this.fail('has an attribute without a value', at);
    this.pos++;
    this.ws();
    const quote = this.text[this.pos] ?? '';
    if (quote !== '"' && quote !== "'") this.fail('has an attribute value without quotes', at);
    const start = this.pos + 1;
    const end = this.text.indexOf(quote, start);
    if (end === -1) this.fail('has an unterminated attribute value', at);
    if (this.text.slice(start, end).includes('<')) this.fail('has a < inside an attribute value', at);
    this.checkEntities(start, end);
    if (attrs.some((a) => a.name === name)) this.fail('repeats an attribute in one tag', at);
    attrs.push({ name, start, end, quote });
    this.pos = end + 1;
  }

  private startTag(): void {
    const at = this.pos;
    if (this.stack.length === 0 && this.rootSeen) this.fail('has more than one root element');
    this.markInside();
    this.pos++;
    const name = this.name();
    const attrs: Attr[] = [];
    for (;;) {
      const spaced = this.ws();
      if (this.text.startsWith('/>', this.pos) || this.text[this.pos] === '>') break;
      if (this.pos >= this.text.length) this.fail('has an unterminated tag', at);
      if (!spaced) this.fail('needs a space between the attributes of a tag', at);
      this.attribute(attrs);
    }
    const slash = this.text[this.pos] === '/' ? this.pos : -1;
    this.pos += slash === -1 ? 1 : 2;
    this.rootSeen = true;
    const isEntry = this.match(name, attrs, at, slash);
    if (slash === -1) this.stack.push({ name, line: lineAt(this.text, at), isEntry, contentStart: this.pos, parts: [], markup: false });
  }

  /**
   * Records an attribute or empty-element candidate, or says whether the
   * element's content is the value. `slash` is the offset of `/>`, or -1.
   */
  private match(name: string, attrs: readonly Attr[], at: number, slash: number): boolean {
    const key = attrs.find((a) => a.name === 'key');
    const keyed = key !== undefined && this.decode(key.start, key.end, true) === this.entry;
    const valueAttr = keyed ? attrs.find((a) => a.name === 'value') : undefined;
    const line = lineAt(this.text, at);
    if (valueAttr) {
      this.candidates.push({ line, located: () => this.attrValue(valueAttr) });
      return false;
    }
    const isEntry = keyed || name === this.entry;
    if (isEntry && slash !== -1) this.candidates.push({ line, located: () => emptyElement(name, slash) });
    return isEntry;
  }

  private endTag(): void {
    const at = this.pos;
    this.pos += 2;
    const name = this.name();
    this.ws();
    if (this.text[this.pos] !== '>') this.fail('has a malformed closing tag', at);
    this.pos++;
    const open = this.stack.pop();
    if (!open) this.fail('has a closing tag without an opening tag', at);
    if (open.name !== name) this.fail(`has a closing tag that does not match the element opened on line ${open.line}`, at);
    if (open.isEntry) this.candidates.push({ line: open.line, located: () => this.content(open, at) });
  }

  private chars(): void {
    const start = this.pos;
    const next = this.text.indexOf('<', start);
    const end = next === -1 ? this.text.length : next;
    const top = this.stack.at(-1);
    if (!top && this.text.slice(start, end).trim() !== '') this.fail('has text outside the root element', start);
    this.checkEntities(start, end);
    top?.parts.push({ cdata: false, start, end });
    this.pos = end;
  }

  /**
   * The characters an XML parser reports for a span: line ends normalized
   * to LF, in an attribute (`attr`) every literal tab and line end a space
   * (XML 1.0 sections 2.11 and 3.3.3), then references expanded.
   */
  private decode(start: number, end: number, attr = false): string {
    const lines = normalizeLineEnds(this.text.slice(start, end));
    return (attr ? lines.replace(/[\t\n]/g, ' ') : lines).replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[^;]+);/g, (_ref, body: string) => {
      if (body.startsWith('#')) return String.fromCodePoint(charRef(body.slice(1)));
      const c = PREDEFINED[body];
      if (c === undefined) throw invalidConfig(this.label, `uses an entity reference other than &amp; &lt; &gt; &quot; &apos; or a character reference in the ${this.entry} value (line ${lineAt(this.text, start)}), which this tool cannot expand; write the value literally`);
      return c;
    });
  }

  private attrValue(a: Attr): Located {
    const quoteRef = a.quote === '"' ? '&quot;' : '&apos;';
    return {
      start: a.start,
      end: a.end,
      value: this.decode(a.start, a.end, true),
      encode: (v) => escapeText(v).replaceAll(a.quote, quoteRef).replace(/[\t\n]/g, (c) => `&#${c.charCodeAt(0)};`),
    };
  }

  private content(open: Open, endTagAt: number): Located {
    if (open.markup) throw invalidConfig(this.label, `holds markup (elements, comments) inside the ${this.entry} element on line ${open.line} instead of a plain value`, { entry: this.entry });
    const cdata = open.parts.filter((p) => p.cdata);
    const text = open.parts.filter((p) => !p.cdata);
    if (cdata.length === 1 && text.every((p) => this.text.slice(p.start, p.end).trim() === '')) {
      const p = cdata[0]!;
      const raw = this.text.slice(p.start, p.end);
      const lead = raw.length - raw.trimStart().length;
      const value = raw.trim();
      return {
        start: p.start + lead,
        end: p.start + lead + value.length,
        value: normalizeLineEnds(value),
        encode: (v) => {
          if (v.includes(']]>')) throw unwritableValue(this.label, this.entry, 'it contains ]]>');
          return v;
        },
      };
    }
    const raw = this.text.slice(open.contentStart, endTagAt);
    const start = raw.trim() === '' ? open.contentStart : open.contentStart + raw.length - raw.trimStart().length;
    const end = Math.max(start, open.contentStart + raw.trimEnd().length);
    const value = open.parts.map((p) => (p.cdata ? normalizeLineEnds(this.text.slice(p.start, p.end)) : this.decode(p.start, p.end))).join('').trim();
    return { start, end, value, encode: escapeText };
  }
}

/** CR LF and a lone CR as LF, as an XML parser reads them before anything else. */
function normalizeLineEnds(s: string): string {
  return s.includes('\r') ? s.replace(/\r\n?/g, '\n') : s;
}

/** The code point of a character reference's body: `x41` or `65`. */
function charRef(body: string): number {
  return body.startsWith('x') ? parseInt(body.slice(1), 16) : parseInt(body, 10);
}

/** XML 1.0's Char production: what a character reference may name. */
function isXmlChar(c: number): boolean {
  return c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}

/** `<NAME/>` with an empty value: a new value turns it into `<NAME>value</NAME>`. */
function emptyElement(name: string, slash: number): Located {
  return { start: slash, end: slash + 2, value: '', encode: (v) => `>${escapeText(v)}</${name}>` };
}

/** Escapes character data for XML text (and, with the quote, for attributes). */
function escapeText(v: string): string {
  return v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
}

/** Finds the one value of key `entry` in an XML text. */
export function locateXml(text: string, entry: string, label: string): Located {
  if (entry.length === 0 || /[\s<>&"'\u0000-\u001f\u007f-\u009f]/.test(entry)) {
    throw new MasterKeyError('USAGE', `${JSON.stringify(entry)} is not a valid XML entry name; give the key attribute's value or the element name.`, { entry });
  }
  const scanner = new XmlScanner(text, entry, label);
  scanner.run();
  return single(scanner.candidates, label, entry, 'XML');
}
