/**
 * Keeps docs/sealed-secret-format.md honest: the worked example is parsed out
 * of the markdown, reproduced exactly by our codecs with the documented nonce,
 * and decrypted by an independent implementation written here directly on
 * node:crypto (no code from src/ on that path).
 */
import { createDecipheriv, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeAead } from '../src/crypto/aead';
import { nobleAead } from './support/noble-aead';
import { actCodec, v1Codec } from '../src/crypto/codec';
import { parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';

const DOC = readFileSync(join(__dirname, '..', 'docs', 'sealed-secret-format.md'), 'utf8');

/** The markdown between a `## ` heading starting with `title` and the next `## ` heading. */
function section(title: string): string {
  const start = DOC.indexOf(`\n## ${title}`);
  if (start < 0) throw new Error(`docs/sealed-secret-format.md has no section "${title}"`);
  const end = DOC.indexOf('\n## ', start + 1);
  return DOC.slice(start, end < 0 ? undefined : end);
}

/** The rows `| name | `value` |` of the worked example's table. */
function exampleRows(): Map<string, string> {
  const rows = new Map<string, string>();
  for (const m of section('4. Worked example').matchAll(/^\| ([^|`]+?) \| `([^`]+)` \|$/gm)) rows.set(m[1], m[2]);
  return rows;
}

const rows = exampleRows();
function row(name: string): string {
  const v = rows.get(name);
  if (v === undefined) throw new Error(`the worked example has no row "${name}" (rows: ${[...rows.keys()].join(', ')})`);
  return v;
}
const fromHex = (name: string) => Buffer.from(row(name), 'hex');

/** AES-256-GCM decryption straight on node:crypto, as another language would do it. */
function gcmDecrypt(key: Buffer, nonce: Buffer, ct: Buffer, tag: Buffer, aad: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAAD(aad);
  d.setAuthTag(tag);
  return Buffer.concat([d.update(ct), d.final()]);
}

/** Splits nonce(12) || ct || tag(16). */
function split(raw: Buffer): { nonce: Buffer; ct: Buffer; tag: Buffer } {
  return { nonce: raw.subarray(0, 12), ct: raw.subarray(12, raw.length - 16), tag: raw.subarray(raw.length - 16) };
}

describe('docs/sealed-secret-format.md worked example', () => {
  const key = fromHex('key (hex)');
  const nonce = fromHex('nonce (hex)');
  const plaintext = row('plaintext');

  it('has every value the test needs, in the expected shapes', () => {
    expect(key).toHaveLength(32);
    expect(nonce).toHaveLength(12);
    expect(row('key id')).toMatch(/^[0-9a-f]{12}$/);
    expect(row('v1 sealed value')).toMatch(/^mk1:[0-9a-f]{12}:[A-Za-z0-9_-]+$/);
    expect(row('act sealed value')).toMatch(/^[A-Za-z0-9+/]+={0,2}$/);
    expect(rows.size).toBe(15);
  });

  it('key id and fingerprint follow the documented derivation', () => {
    const digest = createHash('sha256').update(Buffer.concat([Buffer.from('cdktf-master-key/fingerprint/v1', 'ascii'), Buffer.from([0]), key])).digest();
    expect(digest.toString('hex')).toBe(row('SHA-256 of label, 0x00, key (hex)'));
    expect(digest.subarray(0, 6).toString('hex')).toBe(row('key id'));
    const mk = parseKey(key.toString('hex'));
    expect(mk.id).toBe(row('key id'));
    expect(mk.fingerprint).toBe(row('fingerprint'));
    expect(row('fingerprint')).toBe(`mk:${row('key id')}`);
  });

  it('plaintext bytes and AAD are as documented', () => {
    expect(Buffer.from(plaintext, 'utf8').toString('hex')).toBe(row('plaintext UTF-8 (hex)'));
    expect(row('v1 header = AAD (ASCII)')).toBe(`mk1:${row('key id')}:`);
    expect(Buffer.from(row('v1 header = AAD (ASCII)'), 'ascii').toString('hex')).toBe(row('v1 AAD (hex)'));
  });

  it.each([
    ['node', nodeAead],
    ['noble', nobleAead],
  ])('our codecs (%s AES-GCM) produce exactly the documented strings with the documented nonce', (_, aead) => {
    const mk = parseKey(row('key (hex)'));
    const pt = new Uint8Array(Buffer.from(plaintext, 'utf8'));
    expect(v1Codec(aead).seal(mk, pt, { nonce })).toBe(row('v1 sealed value'));
    expect(actCodec(aead).seal(mk, pt, { nonce })).toBe(row('act sealed value'));
    const ring = new Keyring([mk]);
    expect(ring.openText(v1Codec(aead), row('v1 sealed value'))).toBe(plaintext);
    expect(ring.openText(actCodec(aead), row('act sealed value'))).toBe(plaintext);
  });

  it('an independent node:crypto reader decrypts the v1 example', () => {
    const value = row('v1 sealed value');
    const header = value.slice(0, 17);
    expect(header).toBe(row('v1 header = AAD (ASCII)'));
    const parts = split(Buffer.from(value.slice(17), 'base64url'));
    expect(parts.nonce.toString('hex')).toBe(row('nonce (hex)'));
    expect(parts.ct.toString('hex')).toBe(row('v1 ciphertext (hex)'));
    expect(parts.tag.toString('hex')).toBe(row('v1 tag (hex)'));
    const pt = gcmDecrypt(key, parts.nonce, parts.ct, parts.tag, Buffer.from(header, 'ascii'));
    expect(pt.toString('utf8')).toBe(plaintext);
    // The header really is authenticated: without it the tag fails.
    expect(() => gcmDecrypt(key, parts.nonce, parts.ct, parts.tag, Buffer.alloc(0))).toThrow();
  });

  it('an independent node:crypto reader decrypts the act example', () => {
    const parts = split(Buffer.from(row('act sealed value'), 'base64'));
    expect(parts.nonce.toString('hex')).toBe(row('nonce (hex)'));
    expect(parts.ct.toString('hex')).toBe(row('act ciphertext (hex)'));
    expect(parts.tag.toString('hex')).toBe(row('act tag (hex)'));
    expect(gcmDecrypt(key, parts.nonce, parts.ct, parts.tag, Buffer.alloc(0)).toString('utf8')).toBe(plaintext);
  });

  it('the layout diagram and the fingerprint example elsewhere in the document show the same value', () => {
    const layout = section('2. The `v1` format');
    expect(layout).toContain(`\`\`\`\n${row('v1 sealed value')}\n`);
    expect(section('1. Master keys')).toContain(`\`${row('fingerprint')}\``);
  });
});

describe('docs/sealed-secret-format.md constants', () => {
  it('states the label, the sizes and the v1 shape the code uses', () => {
    expect(DOC).toContain('"cdktf-master-key/fingerprint/v1"');
    expect(DOC).toContain('`^mk1:[0-9a-f]{12}:[A-Za-z0-9_-]*$`');
    expect(DOC).toMatch(/\| 0 \| 12 \| nonce/);
    expect(DOC).toMatch(/\| 16 \| AES-256-GCM authentication tag/);
    const key = parseKey('ab'.repeat(32));
    expect(v1Codec().seal(key, new Uint8Array())).toMatch(/^mk1:[0-9a-f]{12}:[A-Za-z0-9_-]*$/);
  });
});

describe('docs/sealed-secret-format.md additional data from the row (section 8)', () => {
  const aadRows = new Map<string, string>();
  for (const m of section('8. Additional authenticated data').matchAll(/^\| ([^|`]+?) \| `([^`]+)` \|$/gm)) aadRows.set(m[1], m[2]);
  const aadRow = (name: string) => {
    const v = aadRows.get(name);
    if (v === undefined) throw new Error(`section 8 has no row "${name}"`);
    return v;
  };
  const key = fromHex('key (hex)');
  const nonce = fromHex('nonce (hex)');
  const plaintext = row('plaintext');
  const user = Buffer.from(aadRow('row AAD (text)'), 'utf8');

  it('states the row bytes and the v1 AAD as header then row bytes', () => {
    expect(user.toString('hex')).toBe(aadRow('row AAD (hex)'));
    expect(Buffer.concat([Buffer.from(row('v1 header = AAD (ASCII)'), 'ascii'), user]).toString('hex')).toBe(aadRow('v1 AAD with row (hex)'));
  });

  it.each([
    ['node', nodeAead],
    ['noble', nobleAead],
  ])('our codecs (%s AES-GCM) produce exactly the documented strings with the row AAD, and open them only with it', (_, aead) => {
    const mk = parseKey(row('key (hex)'));
    const pt = new Uint8Array(Buffer.from(plaintext, 'utf8'));
    expect(v1Codec(aead).seal(mk, pt, { nonce, aad: user })).toBe(aadRow('v1 sealed value with row AAD'));
    expect(actCodec(aead).seal(mk, pt, { nonce, aad: user })).toBe(aadRow('act sealed value with row AAD'));
    const ring = new Keyring([mk]);
    expect(ring.openText(v1Codec(aead), aadRow('v1 sealed value with row AAD'), user)).toBe(plaintext);
    expect(ring.openText(actCodec(aead), aadRow('act sealed value with row AAD'), user)).toBe(plaintext);
    expect(() => ring.openText(v1Codec(aead), aadRow('v1 sealed value with row AAD'))).toThrow(expect.objectContaining({ code: 'SEALED_TAMPERED' }));
    expect(() => ring.openText(actCodec(aead), aadRow('act sealed value with row AAD'), Buffer.from('43'))).toThrow(expect.objectContaining({ code: 'SEALED_WRONG_KEY' }));
  });

  it('an independent node:crypto reader decrypts both with the documented AAD', () => {
    const v1 = aadRow('v1 sealed value with row AAD');
    const p1 = split(Buffer.from(v1.slice(17), 'base64url'));
    expect(p1.ct.toString('hex')).toBe(aadRow('v1 ciphertext with row AAD (hex)'));
    expect(p1.tag.toString('hex')).toBe(aadRow('v1 tag with row AAD (hex)'));
    expect(gcmDecrypt(key, p1.nonce, p1.ct, p1.tag, Buffer.from(aadRow('v1 AAD with row (hex)'), 'hex')).toString('utf8')).toBe(plaintext);
    const pa = split(Buffer.from(aadRow('act sealed value with row AAD'), 'base64'));
    expect(pa.tag.toString('hex')).toBe(aadRow('act tag with row AAD (hex)'));
    expect(gcmDecrypt(key, pa.nonce, pa.ct, pa.tag, user).toString('utf8')).toBe(plaintext);
    expect(() => gcmDecrypt(key, pa.nonce, pa.ct, pa.tag, Buffer.alloc(0))).toThrow();
  });
});
