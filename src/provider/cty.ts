/**
 * Terraform values on the wire: the msgpack encoding of `DynamicValue`
 * (terraform's docs/plugin-protocol/object-wire-format.md) and the type
 * constraints of a schema. A value is plain JS: null, a string, number or
 * boolean, an array (list), an object (object or map), or `UNKNOWN` (a value
 * known only after apply, msgpack extension 0; refined unknowns, extension
 * 12, and any other extension decode to `UNKNOWN` as the protocol asks).
 */
import { ExtData, ExtensionCodec, decode, encode } from '@msgpack/msgpack';
import { MasterKeyError } from '../errors';

/** A value terraform will only know after apply. */
export const UNKNOWN: unique symbol = Symbol('unknown');
export type Unknown = typeof UNKNOWN;

export type Value = null | Unknown | string | number | boolean | Value[] | { [k: string]: Value };
export type ObjectValue = { [k: string]: Value };

/** Terraform type constraints, serialized as JSON in `Schema.Attribute.type`. */
export type CtyType = 'string' | 'number' | 'bool' | readonly ['list' | 'set' | 'map', CtyType];

const codec = new ExtensionCodec();
codec.register({
  type: 0,
  // cty writes an unrefined unknown as fixext1 of type 0 with a zero byte.
  encode: (v: unknown) => (v === UNKNOWN ? new Uint8Array([0]) : null),
  decode: () => UNKNOWN,
});

function fromWire(v: unknown): Value {
  if (v === null || v === undefined) return null;
  if (v === UNKNOWN || v instanceof ExtData) return UNKNOWN;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(fromWire);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
  if (typeof v === 'object') {
    const out: ObjectValue = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = fromWire(x);
    return out;
  }
  throw undecodable(`it holds a value of type ${typeof v}`);
}

/** USAGE: terraform sent a value that does not decode (never quoting it: a value may be a secret). */
function undecodable(why: string): MasterKeyError {
  return new MasterKeyError('USAGE', `Terraform sent a value the provider cannot decode (${why}); use a terraform version this provider supports (1.x) and report it if it happens again.`);
}

/**
 * Decodes a DynamicValue (msgpack preferred; JSON, which cannot hold
 * unknowns, as the protocol's fallback). Bytes that do not decode are USAGE.
 */
export function decodeDynamic(dv: { msgpack?: Uint8Array | null; json?: Uint8Array | null } | null | undefined): Value {
  if (!dv) return null;
  if (dv.msgpack && dv.msgpack.length > 0) {
    let raw: unknown;
    try {
      raw = decode(dv.msgpack, { extensionCodec: codec });
    } catch {
      throw undecodable('it is not valid msgpack');
    }
    return fromWire(raw);
  }
  if (dv.json && dv.json.length > 0) {
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.from(dv.json).toString('utf8'));
    } catch {
      throw undecodable('it is not valid JSON');
    }
    return fromWire(raw);
  }
  return null;
}

/** A decoded value that must be an object (a resource's configuration or state) or null (none); anything else is USAGE. */
export function objectOrNull(v: Value, what: string): ObjectValue | null {
  if (v === null || (typeof v === 'object' && !Array.isArray(v))) return v;
  throw undecodable(`${what} is not an object`);
}

/** Encodes a value as a msgpack DynamicValue. */
export function encodeDynamic(v: Value): { msgpack: Buffer } {
  return { msgpack: Buffer.from(encode(v, { extensionCodec: codec, ignoreUndefined: false })) };
}

/** True when the value or anything inside it is unknown. */
export function hasUnknown(v: Value): boolean {
  if (v === UNKNOWN) return true;
  if (Array.isArray(v)) return v.some(hasUnknown);
  if (v !== null && typeof v === 'object') return Object.values(v).some(hasUnknown);
  return false;
}

/** Deep equality of two values (unknown equals only unknown). */
export function sameValue(a: Value, b: Value): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameValue(a[k], b[k]));
  }
  return false;
}
