/**
 * Config formats (pure): reading one entry, replacing only its value, and the
 * errors for missing, duplicate and invalid files. Property tests check that
 * a replacement reads back and leaves every other character unchanged.
 */
import { caught } from './support/errors';
import fc from 'fast-check';
import { ConfigFormat, CONFIG_FORMATS, formatFromPath, readEntry, replaceEntry } from '../src/config/formats';
import { ErrorCode } from '../src/errors';

const OLD = 'a'.repeat(64);
const NEW = '0123456789abcdef'.repeat(4);
const LABEL = '/etc/app/server.conf';

/** Runs fn, expects a MasterKeyError with that code whose message names the file and leaks no key. */
function errorOf(fn: () => unknown, code: ErrorCode): string {
  const e = caught(fn);
  expect(e.code).toBe(code);
    expect(e.message).not.toContain(OLD);
    expect(e.message).not.toContain(NEW);
  return e.message;
}

/** Replaces OLD by NEW and checks that exactly that span changed. */
function expectSwap(text: string, format: ConfigFormat, entry: string, expected: string): void {
  expect(readEntry(text, format, entry, LABEL)).toBe(OLD);
  const out = replaceEntry(text, format, entry, NEW, LABEL);
  expect(out).toBe(expected);
  expect(readEntry(out, format, entry, LABEL)).toBe(NEW);
}

describe('formatFromPath', () => {
  it.each([
    ['/etc/app/settings.json', 'json'],
    ['/etc/app/SETTINGS.JSON', 'json'],
    ['/opt/octopus/OctopusServer.config', 'xml'],
    ['/opt/app/web.xml', 'xml'],
    ['/etc/act/act.env', 'dotenv'],
    ['/etc/default/act', 'dotenv'],
    ['.env', 'dotenv'],
  ])('%s is %s', (path, format) => {
    expect(formatFromPath(path)).toBe(format);
  });

  it('lists the three formats', () => {
    expect([...CONFIG_FORMATS].sort()).toEqual(['dotenv', 'json', 'xml']);
  });
});

describe('dotenv', () => {
  const E = 'ACT_MASTER_KEY';

  it('reads and replaces a plain assignment, keeping the other lines', () => {
    const text = `# ACT settings\nDATABASE_URL=postgres://act@db/act\n${E}=${OLD}\nPORT=8080\n`;
    expectSwap(text, 'dotenv', E, text.replace(OLD, NEW));
    expect(readEntry(text, 'dotenv', 'DATABASE_URL', LABEL)).toBe('postgres://act@db/act');
  });

  it.each([
    ['export prefix', `export ${E}=${OLD}\n`],
    ['spaces around =', `  ${E} =  ${OLD}  \n`],
    ['double quotes', `${E}="${OLD}"\n`],
    ['single quotes', `${E}='${OLD}'\n`],
    ['quotes and a comment', `export ${E} = "${OLD}"   # rotated by master-key\n`],
    ['an unquoted value with a comment', `${E}=${OLD} # rotated\n`],
    ['no final newline', `A=1\n${E}=${OLD}`],
    ['a byte-order mark', `\ufeff${E}=${OLD}\n`],
  ])('tolerates %s and keeps it', (_what, text) => {
    expectSwap(text, 'dotenv', E, text.replace(OLD, NEW));
  });

  it('preserves CRLF line endings', () => {
    const text = `A=1\r\n${E}=${OLD}\r\nB="two"\r\n`;
    const out = replaceEntry(text, 'dotenv', E, NEW, LABEL);
    expect(out).toBe(`A=1\r\n${E}=${NEW}\r\nB="two"\r\n`);
    expect(readEntry(text, 'dotenv', E, LABEL)).toBe(OLD);
  });

  it('ignores commented-out assignments', () => {
    const text = `# ${E}=${'b'.repeat(64)}\n#${E}=${'c'.repeat(64)}\n${E}=${OLD}\n  # ${E}=x\n`;
    expectSwap(text, 'dotenv', E, text.replace(`${E}=${OLD}`, `${E}=${NEW}`));
  });

  it('does not mistake a longer or prefixed name for the entry', () => {
    const text = `${E}_OLD=${'b'.repeat(64)}\nX${E}=1\n${E}=${OLD}\n`;
    expectSwap(text, 'dotenv', E, text.replace(`\n${E}=${OLD}`, `\n${E}=${NEW}`));
  });

  it('reads an empty value as empty and can fill it', () => {
    expect(readEntry(`${E}=\n`, 'dotenv', E, LABEL)).toBe('');
    expect(readEntry(`${E}= # none yet\n`, 'dotenv', E, LABEL)).toBe('');
    expect(replaceEntry(`${E}=\nB=2\n`, 'dotenv', E, NEW, LABEL)).toBe(`${E}=${NEW}\nB=2\n`);
    expect(replaceEntry(`${E}=""\n`, 'dotenv', E, NEW, LABEL)).toBe(`${E}="${NEW}"\n`);
  });

  it('reports a missing entry, naming file and entry', () => {
    const msg = errorOf(() => readEntry(`# ${E}=${OLD}\nOTHER=1\n`, 'dotenv', E, LABEL), 'CONFIG_KEY_MISSING');
    expect(msg).toContain(LABEL);
    expect(msg).toContain(E);
  });

  it('reports a duplicate entry with its lines', () => {
    const msg = errorOf(() => replaceEntry(`${E}=${OLD}\nA=1\nexport ${E}="${OLD}"\n`, 'dotenv', E, NEW, LABEL), 'CONFIG_KEY_DUPLICATE');
    expect(msg).toContain('lines 1, 3');
  });

  it('reports an unterminated quote or text after the quote as invalid, without echoing the value', () => {
    const msg = errorOf(() => readEntry(`${E}="${OLD}\n`, 'dotenv', E, LABEL), 'CONFIG_INVALID');
    expect(msg).toContain('line 1');
    errorOf(() => readEntry(`${E}='${OLD}' trailing\n`, 'dotenv', E, LABEL), 'CONFIG_INVALID');
  });

  it('refuses an entry name that is not a variable name', () => {
    errorOf(() => readEntry(`A=1\n`, 'dotenv', 'NOT VALID', LABEL), 'USAGE');
  });

  it('refuses to write a value that would change the meaning of the line', () => {
    errorOf(() => replaceEntry(`${E}="x"\n`, 'dotenv', E, 'a"b', LABEL), 'INTERNAL');
    errorOf(() => replaceEntry(`${E}=x\n`, 'dotenv', E, 'a #b', LABEL), 'INTERNAL');
    errorOf(() => replaceEntry(`${E}='x'\n`, 'dotenv', E, 'a\nb', LABEL), 'INTERNAL');
  });
});

describe('json', () => {
  const E = 'security.masterKey';

  it('replaces only the string token, keeping formatting, order and other members', () => {
    const text = `{\n  "name" : "act",\n  "security": {"masterKey":"${OLD}",   "other": [1, 2.5e3, true, null]},\n\t"z": "${OLD}"\n}\n`;
    const expected = text.replace(`"masterKey":"${OLD}"`, `"masterKey":"${NEW}"`);
    expectSwap(text, 'json', E, expected);
    expect(readEntry(text, 'json', 'z', LABEL)).toBe(OLD);
  });

  it('keeps CRLF, a byte-order mark and escapes in other strings', () => {
    const text = `\ufeff{\r\n  "note": "tab\\t\\u00e9\\"q\\"",\r\n  "security": { "masterKey": "${OLD}" }\r\n}\r\n`;
    expectSwap(text, 'json', E, text.replace(OLD, NEW));
  });

  it('reads a value written with escapes', () => {
    const escaped = [...OLD].map((c) => `\\u00${c.charCodeAt(0).toString(16)}`).join('');
    const text = `{"security":{"masterKey":"${escaped}"}}`;
    expect(readEntry(text, 'json', E, LABEL)).toBe(OLD);
    expect(replaceEntry(text, 'json', E, NEW, LABEL)).toBe(`{"security":{"masterKey":"${NEW}"}}`);
  });

  it('finds members with escaped names and array elements by index', () => {
    expect(readEntry(`{"sec\\u0075rity":{"masterKey":"${OLD}"}}`, 'json', E, LABEL)).toBe(OLD);
    const text = `{"nodes":[{"key":"x"},{"key":"${OLD}"}]}`;
    expectSwap(text, 'json', 'nodes.1.key', text.replace(OLD, NEW));
  });

  it('does not match a member of the same name elsewhere', () => {
    errorOf(() => readEntry(`{"masterKey":"${OLD}","other":{"security":{}}}`, 'json', E, LABEL), 'CONFIG_KEY_MISSING');
  });

  it('reports a missing entry', () => {
    const msg = errorOf(() => readEntry(`{"security":{"masterkey":"${OLD}"}}`, 'json', E, LABEL), 'CONFIG_KEY_MISSING');
    expect(msg).toContain(E);
    expect(msg).toContain(LABEL);
  });

  it('reports a duplicate member at the path, or at a parent on the path', () => {
    const msg = errorOf(() => readEntry(`{"security":{"masterKey":"${OLD}",\n"masterKey":"${OLD}"}}`, 'json', E, LABEL), 'CONFIG_KEY_DUPLICATE');
    expect(msg).toContain('lines 1, 2');
    errorOf(() => readEntry(`{"security":{"masterKey":"${OLD}"},\n"security":{}}`, 'json', E, LABEL), 'CONFIG_KEY_DUPLICATE');
  });

  it('allows duplicate members away from the path', () => {
    expect(readEntry(`{"a":1,"a":2,"security":{"masterKey":"${OLD}"}}`, 'json', E, LABEL)).toBe(OLD);
  });

  it('requires the value to be a string', () => {
    const msg = errorOf(() => readEntry(`{"security":{"masterKey":12}}`, 'json', E, LABEL), 'CONFIG_INVALID');
    expect(msg).toContain('number');
    errorOf(() => readEntry(`{"security":{"masterKey":{"v":"${OLD}"}}}`, 'json', E, LABEL), 'CONFIG_INVALID');
  });

  it.each([
    ['a trailing comma', `{"security":{"masterKey":"${OLD}",}}`],
    ['a comment', `// c\n{"security":{"masterKey":"${OLD}"}}`],
    ['an unterminated string', `{"security":{"masterKey":"${OLD}}}`],
    ['single quotes', `{'security':{'masterKey':'${OLD}'}}`],
    ['two documents', `{"security":{"masterKey":"${OLD}"}} {}`],
    ['nothing', ''],
  ])('reports invalid JSON with %s, without quoting the file', (_what, text) => {
    const msg = errorOf(() => readEntry(text, 'json', E, LABEL), 'CONFIG_INVALID');
    expect(msg).toContain('not valid JSON');
  });

  it('names the line of a syntax error', () => {
    expect(errorOf(() => readEntry(`{\n"a": 1,\n"b": tru\n}`, 'json', E, LABEL), 'CONFIG_INVALID')).toContain('line 3');
  });

  it('refuses an empty path segment', () => {
    errorOf(() => readEntry('{}', 'json', 'security..masterKey', LABEL), 'USAGE');
  });
});

describe('xml', () => {
  const E = 'Octopus.Storage.MasterKey';

  it('replaces a <set key> value, keeping everything else', () => {
    const text = `<?xml version="1.0" encoding="utf-8"?>\n<octopus-settings xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n  <set key="Octopus.Home">C:\\Octopus</set>\n  <set key="${E}">${OLD}</set>\n</octopus-settings>\n`;
    expectSwap(text, 'xml', E, text.replace(`>${OLD}<`, `>${NEW}<`));
    expect(readEntry(text, 'xml', 'Octopus.Home', LABEL)).toBe('C:\\Octopus');
  });

  it.each([
    ['key then value, double quotes', `<configuration><appSettings><add key="${E}" value="${OLD}" /></appSettings></configuration>`],
    ['value then key, single quotes', `<configuration><appSettings><add value='${OLD}' key='${E}'/></appSettings></configuration>`],
    ['spaces around =', `<configuration><add  key = "${E}"\n   value = "${OLD}"/></configuration>`],
    ['an element named after the entry', `<config><${E}>${OLD}</${E}></config>`],
    ['surrounding whitespace', `<config>\r\n  <set key="${E}">\r\n    ${OLD}\r\n  </set>\r\n</config>\r\n`],
    ['a CDATA value', `<config><set key="${E}"><![CDATA[${OLD}]]></set></config>`],
    ['an entity in the key attribute', `<config><set key="${E.replace('.', '&#46;')}">${OLD}</set></config>`],
    ['a DOCTYPE and processing instructions', `<?xml version="1.0"?>\n<!DOCTYPE config [<!ELEMENT config ANY>]>\n<?app x="1"?>\n<config><set key="${E}">${OLD}</set></config>`],
  ])('handles %s', (_what, text) => {
    expectSwap(text, 'xml', E, text.replace(OLD, NEW));
  });

  it('ignores entries inside comments', () => {
    const text = `<!-- <set key="${E}">${'b'.repeat(64)}</set> -->\n<config>\n  <!-- <add key="${E}" value="${'c'.repeat(64)}"/> --><set key="${E}">${OLD}</set>\n</config>`;
    expectSwap(text, 'xml', E, text.replace(`>${OLD}<`, `>${NEW}<`));
  });

  it('escapes and unescapes values', () => {
    const text = `<c><add key="K" value="a&amp;b&quot;&#x41;&#66;" /><set key="T">x &lt; y</set></c>`;
    expect(readEntry(text, 'xml', 'K', LABEL)).toBe('a&b"AB');
    expect(readEntry(text, 'xml', 'T', LABEL)).toBe('x < y');
    const out = replaceEntry(text, 'xml', 'K', `<"&'>`, LABEL);
    expect(out).toBe(`<c><add key="K" value="&lt;&quot;&amp;'&gt;" /><set key="T">x &lt; y</set></c>`);
    expect(readEntry(out, 'xml', 'K', LABEL)).toBe(`<"&'>`);
  });

  it('reads values as an XML parser reports them: line ends as LF, literal tabs and line ends in attributes as spaces', () => {
    expect(readEntry(`<c><add key="K" value="a\tb\r\nc\nd&#9;e&#10;f&#13;"/></c>`, 'xml', 'K', LABEL)).toBe('a b c d\te\nf\r');
    expect(readEntry(`<c><set key="K">a\r\nb\rc&#13;d</set></c>`, 'xml', 'K', LABEL)).toBe('a\nb\nc\rd');
    expect(readEntry(`<c><set key="K"><![CDATA[a\r\nb]]></set></c>`, 'xml', 'K', LABEL)).toBe('a\nb');
    expect(readEntry(`<c><set key="K">x<![CDATA[a\r\nb]]></set></c>`, 'xml', 'K', LABEL)).toBe('xa\nb');
  });

  it('fills an empty or self-closing element', () => {
    expect(readEntry(`<c><set key="${E}"></set></c>`, 'xml', E, LABEL)).toBe('');
    expect(replaceEntry(`<c><set key="${E}"></set></c>`, 'xml', E, NEW, LABEL)).toBe(`<c><set key="${E}">${NEW}</set></c>`);
    expect(replaceEntry(`<c><set key="${E}" /></c>`, 'xml', E, NEW, LABEL)).toBe(`<c><set key="${E}" >${NEW}</set></c>`);
  });

  it('reports a missing entry', () => {
    const msg = errorOf(() => readEntry(`<c><set key="Other">${OLD}</set><!-- <${E}>${OLD}</${E}> --></c>`, 'xml', E, LABEL), 'CONFIG_KEY_MISSING');
    expect(msg).toContain(E);
  });

  it('reports duplicates across shapes', () => {
    const msg = errorOf(() => readEntry(`<c>\n<set key="${E}">${OLD}</set>\n<add key="${E}" value="${OLD}"/>\n</c>`, 'xml', E, LABEL), 'CONFIG_KEY_DUPLICATE');
    expect(msg).toContain('lines 2, 3');
    errorOf(() => readEntry(`<c><${E}>${OLD}</${E}><x><${E}>${OLD}</${E}></x></c>`, 'xml', E, LABEL), 'CONFIG_KEY_DUPLICATE');
  });

  it('refuses markup inside the value element', () => {
    errorOf(() => readEntry(`<c><set key="${E}"><v>${OLD}</v></set></c>`, 'xml', E, LABEL), 'CONFIG_INVALID');
    errorOf(() => readEntry(`<c><set key="${E}"><!-- old -->${OLD}</set></c>`, 'xml', E, LABEL), 'CONFIG_INVALID');
  });

  it.each([
    ['an unclosed element', `<c><set key="${E}">${OLD}</set>`],
    ['mismatched tags', `<c><set key="${E}">${OLD}</add></c>`],
    ['two roots', `<c/><d><set key="${E}">${OLD}</set></d>`],
    ['an unquoted attribute', `<c><set key=${E}>${OLD}</set></c>`],
    ['a repeated attribute', `<c><set key="${E}" key="x">${OLD}</set></c>`],
    ['a bare ampersand', `<c><set key="${E}">${OLD}&</set></c>`],
    ['an unterminated comment', `<c><!-- <set key="${E}">${OLD}</set></c>`],
    ['text outside the root', `<c><set key="${E}">${OLD}</set></c>junk`],
    ['no root at all', `<!-- ${OLD} -->`],
    ['an undefined entity in the value', `<c><set key="${E}">&custom;${OLD}</set></c>`],
    ['a character reference beyond Unicode', `<c><set key="${E}">${OLD}&#99999999999;</set></c>`],
    ['a character reference beyond Unicode in an attribute', `<c><add key="${E}" value="${OLD}&#x110000;"/></c>`],
    ['a character reference to NUL', `<c><set key="${E}">&#0;${OLD}</set></c>`],
    ['a character reference to a lone surrogate', `<c><set key="${E}">&#xD800;${OLD}</set></c>`],
  ])('reports %s as invalid XML, without quoting the file', (_what, text) => {
    errorOf(() => readEntry(text, 'xml', E, LABEL), 'CONFIG_INVALID');
  });

  it('names no tag from a file that is not well-formed: a < in a value makes the rest of it look like one', () => {
    const password = 'Sup3rSecretPassw0rd';
    for (const text of [
      `<c>\n<set key="DATABASE_URL">postgres://act:p<${password}@db/act</set>\n</c>`,
      `<c>\n<set key="${E}">0<${OLD.slice(1)} x</set>\n</c>`,
      `<c>\n<set key="${E}">&${password};</set>\n</c>`,
    ]) {
      const msg = errorOf(() => readEntry(text, 'xml', E, LABEL), 'CONFIG_INVALID');
      expect(msg).not.toContain(password);
      expect(msg).not.toContain(OLD.slice(1, 20));
      expect(msg).toMatch(/\(line 2\)/);
    }
  });
});

// ---------------------------------------------------------------------------
// Properties: a template holds PLACEHOLDER where the value goes; after a
// replacement only that spot differs and the new value reads back.

const PLACEHOLDER = '@@VALUE@@';
const SAFE_VALUE = fc.stringMatching(/^[0-9A-Za-z_.:/@-]{0,80}$/);
const EOL = fc.constantFrom('\n', '\r\n');

interface Case {
  readonly format: ConfigFormat;
  readonly entry: string;
  readonly template: string;
  /** New values that this spot can hold. */
  readonly values: fc.Arbitrary<string>;
  /** Old values for the template (default SAFE_VALUE). */
  readonly olds?: fc.Arbitrary<string>;
  /** How the template's old value is written at the placeholder. */
  readonly write?: (value: string) => string;
}

function checkCase(c: Case, oldValue: string, newValue: string): void {
  const at = c.template.indexOf(PLACEHOLDER);
  const before = c.template.slice(0, at);
  const after = c.template.slice(at + PLACEHOLDER.length);
  const text = before + (c.write ?? String)(oldValue) + after;
  expect(readEntry(text, c.format, c.entry, LABEL)).toBe(oldValue);
  const out = replaceEntry(text, c.format, c.entry, newValue, LABEL);
  expect(readEntry(out, c.format, c.entry, LABEL)).toBe(newValue);
  expect(out.startsWith(before)).toBe(true);
  expect(out.endsWith(after)).toBe(true);
  expect(out.length - before.length - after.length).toBeGreaterThanOrEqual(newValue === '' ? 0 : 1);
}

function property(cases: fc.Arbitrary<Case>): void {
  fc.assert(
    fc.property(
      cases.chain((c) => fc.tuple(fc.constant(c), c.olds ?? SAFE_VALUE, c.values)),
      ([c, oldValue, newValue]) => checkCase(c, oldValue, newValue),
    ),
    { numRuns: 300 },
  );
}

const NAME = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,12}$/);
const LINE_TEXT = fc.stringMatching(/^[^\r\n]{0,30}$/);

const dotenvCases: fc.Arbitrary<Case> = fc
  .record({
    entry: NAME,
    eol: EOL,
    others: fc.array(
      fc.oneof(
        LINE_TEXT.map((t) => `#${t}`),
        fc.tuple(NAME, LINE_TEXT).map(([n, t]) => `${n.toLowerCase()}=${t.replace(/["']/g, '')}`),
        fc.constant(''),
      ),
      { maxLength: 6 },
    ),
    at: fc.nat(),
    commented: fc.boolean(),
    prefix: fc.constantFrom('', 'export ', '  ', 'export\t'),
    eq: fc.constantFrom('=', ' = ', '=  ', '\t=\t'),
    quote: fc.constantFrom('', '"', "'"),
    comment: fc.constantFrom('', ' # rotated', '\t#x'),
  })
  .map((r) => {
    const target = `${r.prefix}${r.entry}${r.eq}${r.quote}${PLACEHOLDER}${r.quote}${r.comment}`;
    const lines = [...r.others];
    if (r.commented) lines.push(`# ${r.entry}=${'f'.repeat(64)}`);
    lines.splice(r.at % (lines.length + 1), 0, target);
    const values =
      r.quote === ''
        ? fc.stringMatching(/^[^\s'"#\\]{0,40}$/)
        : fc.string({ maxLength: 40 }).filter((v) => !v.includes(r.quote) && !/[\r\n]/.test(v));
    return { format: 'dotenv' as const, entry: r.entry, template: lines.join(r.eol) + r.eol, values };
  });

/** A JSON object on the path to the value, with other members around it. */
function jsonTemplate(path: readonly string[], siblings: ReadonlyArray<ReadonlyArray<[string, unknown]>>, ws: string, eol: string): string {
  const level = (d: number): string => {
    if (d === path.length) return PLACEHOLDER;
    const members = siblings[d]!.filter(([k]) => k !== path[d]).map(([k, v]) => `${JSON.stringify(k)}:${ws}${JSON.stringify(v)}`);
    members.splice(members.length >> 1, 0, `${JSON.stringify(path[d])}${ws}:${ws}${level(d + 1)}`);
    return `{${eol}${members.join(`,${eol}`)}${eol}}`;
  };
  return level(0) + eol;
}

const jsonCases: fc.Arbitrary<Case> = fc
  .record({
    path: fc.array(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_$-]{0,8}$/), { minLength: 1, maxLength: 4 }),
    siblings: fc.array(fc.uniqueArray(fc.tuple(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })), { selector: ([k]) => k, maxLength: 4 }), {
      minLength: 4,
      maxLength: 4,
    }),
    ws: fc.constantFrom('', ' ', '\t', '  '),
    eol: fc.constantFrom('', '\n', '\r\n', '\n    '),
  })
  .map((r) => ({
    format: 'json' as const,
    entry: r.path.join('.'),
    template: jsonTemplate(r.path, r.siblings, r.ws, r.eol),
    values: fc.string({ unit: 'binary', maxLength: 40 }),
    write: (v: string) => JSON.stringify(v),
  }));

const XML_NAME = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,12}$/);
const XML_TEXT = fc.string({ maxLength: 40, unit: 'grapheme' }).filter((v) => !/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(v));

const xmlCases: fc.Arbitrary<Case> = fc
  .record({
    entry: XML_NAME.filter((n) => !['set', 'add', 'settings'].includes(n)),
    eol: EOL,
    others: fc.array(
      fc.tuple(XML_NAME, SAFE_VALUE).map(([n, v]) => [`<set key="${n}:x">${v}</set>`, `<add value='${v}' key="${n}:x"/>`, `<!-- <set key="${n}">${v}</set> -->`]),
      { maxLength: 3 },
    ),
    shape: fc.constantFrom('set', 'add', 'add-reversed', 'element'),
    quote: fc.constantFrom('"', "'"),
    pad: fc.constantFrom('', ' ', '\n    '),
  })
  .map((r) => {
    const q = r.quote;
    const target = {
      set: `<set key=${q}${r.entry}${q}>${r.pad}${PLACEHOLDER}${r.pad}</set>`,
      add: `<add key=${q}${r.entry}${q} value=${q}${PLACEHOLDER}${q} />`,
      'add-reversed': `<add  value = ${q}${PLACEHOLDER}${q}${r.eol}  key=${q}${r.entry}${q}/>`,
      element: `<${r.entry}>${r.pad}${PLACEHOLDER}${r.pad}</${r.entry}>`,
    }[r.shape];
    const body = [...r.others.flat(), target].map((l) => `  ${l}`);
    body.splice(r.others.length, 0, '  <!-- the key -->');
    const template = [`<?xml version="1.0" encoding="utf-8"?>`, '<settings>', ...body, '</settings>', ''].join(r.eol);
    // Element content is read trimmed (and empty content has no position
    // inside the padding); attribute values keep their whitespace.
    const content = r.shape === 'set' || r.shape === 'element';
    const values = content ? XML_TEXT.map((v) => v.trim()) : XML_TEXT;
    const olds = content && r.pad !== '' ? SAFE_VALUE.filter((v) => v !== '') : SAFE_VALUE;
    return { format: 'xml' as const, entry: r.entry, template, values, olds };
  });

describe('properties: replaceEntry then readEntry returns the new value and only the value changed', () => {
  it('dotenv', () => property(dotenvCases));
  it('json', () => property(jsonCases));
  it('xml', () => property(xmlCases));
});

describe('dotenv values keep a byte-order mark for parseKey to refuse', () => {
  it('trims only spaces and tabs around a value', () => {
    expect(readEntry('ACT_MASTER_KEY= \uFEFFabc \t\n', 'dotenv', 'ACT_MASTER_KEY', LABEL)).toBe('\uFEFFabc');
    expect(readEntry('ACT_MASTER_KEY=\t abc\uFEFF # note\n', 'dotenv', 'ACT_MASTER_KEY', LABEL)).toBe('abc\uFEFF');
  });
});
