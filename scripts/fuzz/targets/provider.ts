/**
 * The provider's decoding of what terraform sends: DynamicValues (msgpack,
 * or JSON as the protocol's fallback) through `decodeDynamic` and `typed`
 * (src/provider/cty.ts, schema.ts), through the gRPC handlers that need no
 * database (ValidateResourceConfig, ValidateDataResourceConfig,
 * UpgradeResourceState), then what planning does with a valid
 * configuration before it reaches the database (`settingsOf`, `declaredOf`,
 * the context builder with no database URL), and import ids
 * (`parseImportId`).
 *
 * Inputs are objects of the schemas' attributes with values of every cty
 * shape (unknowns, refined unknowns, numbers as decimal strings, big
 * integers, binary strings, nested lists and maps), encoded, then edited
 * byte by byte; or random bytes. For every input: a handler answers with
 * diagnostics, never an INTERNAL one (an untyped exception inside); every
 * decoding error is typed.
 */
import { ExtData, ExtensionCodec, encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { ErrorCode } from '../../../src/errors';
import { buildContext } from '../../../src/context/build';
import { declaredOf, providerSurface, settingsOf, validateKey, validateStatus } from '../../../src/provider/arguments';
import { CtyType, UNKNOWN } from '../../../src/provider/cty';
import { lookable, parseImportId } from '../../../src/provider/key-resource';
import { DATA_SOURCE_TYPE, RESOURCE_TYPE, providerService } from '../../../src/provider/provider';
import { BlockSpec, KEY_RESOURCE, KeyObject, STATUS_DATA_SOURCE, decodeObject } from '../../../src/provider/schema';
import { FuzzDefect, FuzzTarget, invariant, typed } from '../harness';
import { anyText, bytesJson } from '../mutate';

const CODES: readonly ErrorCode[] = ['USAGE'];
const CONTEXT_CODES: readonly ErrorCode[] = ['USAGE', 'CONFIG_MISSING', 'CONFIG_UNREADABLE', 'CONFIG_INVALID', 'CONFIG_KEY_MISSING', 'CONFIG_KEY_DUPLICATE', 'CONFIG_SYMLINK', 'INVENTORY_INVALID'];
const AT = new Date('2026-11-23T12:00:00Z');

export interface ProviderInput {
  readonly rpc: 'ValidateResourceConfig' | 'ValidateDataResourceConfig' | 'UpgradeResourceState' | 'ImportResourceState';
  /** The DynamicValue's bytes (base64 in the corpus), as msgpack or as JSON. */
  readonly bytes: Uint8Array;
  readonly json: boolean;
  /** ImportResourceState's id. */
  readonly id: string;
}

const leaf: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('/etc/act/act.env', 'act', 'ACT_MASTER_KEY', 'DATABASE_URL', 'dotenv', 'json', 'yaml', 'relative.env', '', '90', '1e400', ' 7 ', '2026-01-01', '2026-13-01T00:00:00Z', '/nonexistent/inventory.json') },
  { weight: 2, arbitrary: anyText(10) },
  { weight: 3, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, -1, 1.5, 2 ** 53, -0, Number.NaN, Infinity)) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }) },
  { weight: 2, arbitrary: fc.boolean() },
  { weight: 2, arbitrary: fc.constant(null) },
  { weight: 2, arbitrary: fc.constant(UNKNOWN) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }).map((b) => new ExtData(12, b)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }) },
);
const cty = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('a', 'b', 'kind', '__proto__', 'constructor', ''), tie('v'), { maxKeys: 3 }),
  ),
})).v;
/** A plausible value of an attribute of a cty type: mostly of that type (or unknown), sometimes anything. */
function plausible(type: CtyType): fc.Arbitrary<unknown> {
  const good: fc.Arbitrary<unknown> =
    type === 'string'
      ? fc.constantFrom('/etc/act/act.env', '/nonexistent/act.env', 'act', 'ACT_MASTER_KEY', 'DATABASE_URL', 'dotenv', 'xml', 'relative.env', '', '2026-01-01', '2026-01-01T00:00:00Z', '1970-13-01')
      : type === 'number'
        ? fc.oneof(fc.constantFrom(0, 1, 2, 90, -1, 1.5, 2 ** 53), fc.constantFrom('3', '90', '1e400', ' 7 '), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
        : type === 'bool'
          ? fc.boolean()
          : type[0] === 'map'
            ? fc.dictionary(fc.constantFrom('a', 'git access token'), plausible(type[1]), { maxKeys: 2 })
            : fc.array(plausible(type[1]), { maxLength: 3 });
  return fc.oneof({ weight: 10, arbitrary: good }, { weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constant(UNKNOWN) }, { weight: 1, arbitrary: cty });
}

/** An object as terraform sends it: every attribute of a schema (null when unset), rarely one missing or one too many; sometimes not an object at all. */
function wireObject(schema: BlockSpec): fc.Arbitrary<unknown> {
  const attrs = Object.fromEntries(schema.attributes.map((a) => [a.name, fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 2, arbitrary: plausible(a.type) })]));
  return fc
    .tuple(fc.record(attrs), fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(...schema.attributes.map((a) => a.name), 'bogus') }))
    .map(([o, odd]) => {
      if (odd === null) return o;
      const copy: Record<string, unknown> = { ...o };
      if (odd in copy) delete copy[odd];
      else copy[odd] = 1;
      return copy;
    });
}

const wireValue = (schema: BlockSpec) => fc.oneof({ weight: 12, arbitrary: wireObject(schema) }, { weight: 1, arbitrary: cty });

/** Unknowns as cty writes them: extension 0 with a zero byte. */
const extensions = new ExtensionCodec();
extensions.register({ type: 0, encode: (v: unknown) => (v === UNKNOWN ? new Uint8Array([0]) : null), decode: () => UNKNOWN });

/** msgpack as terraform sends it (big integers as 64-bit ones). */
function toMsgpack(v: unknown): Uint8Array {
  return encode(v, { extensionCodec: extensions, useBigInt64: true });
}

const byteEdit = fc.record({ at: fc.nat(), kind: fc.constantFrom('flip', 'cut', 'insert', 'drop'), byte: fc.integer({ min: 0, max: 255 }) });
function applyByteEdits(b: Uint8Array, es: ReadonlyArray<{ at: number; kind: string; byte: number }>): Uint8Array {
  let out = Buffer.from(b);
  for (const e of es) {
    const at = e.at % (out.length + 1);
    if (e.kind === 'flip' && at < out.length) out[at] ^= e.byte || 1;
    else if (e.kind === 'cut') out = out.subarray(0, at);
    else if (e.kind === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from([e.byte]), out.subarray(at)]);
    else if (e.kind === 'drop') out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
  }
  return new Uint8Array(out);
}

const jsonSafe = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? Number(x) : x === UNKNOWN ? null : x instanceof ExtData || x instanceof Uint8Array ? null : x)) ?? 'null');

const input: fc.Arbitrary<ProviderInput> = fc
  .record({
    rpc: fc.constantFrom<ProviderInput['rpc']>('ValidateResourceConfig', 'ValidateResourceConfig', 'ValidateDataResourceConfig', 'UpgradeResourceState', 'ImportResourceState'),
    value: fc.oneof(wireValue(KEY_RESOURCE), wireValue(STATUS_DATA_SOURCE)),
    json: fc.constantFrom(false, false, false, true),
    edits: fc.oneof(fc.constant([]), fc.array(byteEdit, { minLength: 1, maxLength: 3 })),
    raw: fc.oneof({ weight: 20, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }) }),
    id: fc.oneof(fc.constantFrom('act:/etc/act/act.env', 'act:', ':x', '{', '{"name":"act","config_files":["/etc/act/act.env"]}', '{"bogus":1}', '[1]', 'null', '{"name":7}', '{"__proto__":{"x":1}}'), anyText(20)),
  })
  .map((r) => {
    const json = r.json || r.rpc === 'UpgradeResourceState';
    const encoded = json ? new TextEncoder().encode(JSON.stringify(jsonSafe(r.value))) : toMsgpack(r.value);
    return { rpc: r.rpc, bytes: r.raw ?? applyByteEdits(encoded, r.edits), json, id: r.id };
  });

/** Calls a handler of the provider service as gRPC would, with a request object. */
function callRpc(name: string, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  const handler = providerService()[name] as (call: { request: unknown }, cb: (err: unknown, res: Record<string, unknown>) => void) => void;
  return new Promise((resolve, reject) => handler({ request }, (err, res) => (err ? reject(err as Error) : resolve(res))));
}

interface Diagnostic {
  readonly severity: string;
  readonly summary: string;
  readonly detail: string;
}

function checkDiagnostics(rpc: string, res: Record<string, unknown>): void {
  for (const d of (res.diagnostics ?? []) as Diagnostic[]) {
    invariant(!/Error code INTERNAL/.test(d.detail), `${rpc} answered with an internal error: ${d.summary}`);
    invariant(!/[\r\n]/.test(d.summary), `${rpc} answered with a diagnostic summary of several lines: ${JSON.stringify(d.summary)}`);
  }
}

/** What planning does with a configuration the validation accepts, before the database. */
function checkPlanning(o: KeyObject): void {
  if (validateKey(o).length > 0 || !lookable(o)) return;
  const inv = o.inventory;
  if (typeof inv === 'string' && /^\/(dev|proc|sys)\//.test(inv)) return; // a device would be read as a file
  // No environment: the database URL is missing, so the builder stops before any database.
  typed('settingsOf/buildContext', () => buildContext(settingsOf(o), providerSurface(() => undefined, {})), CONTEXT_CODES);
  typed('declaredOf', () => declaredOf(o, AT), CODES);
}

async function checkProvider(i: ProviderInput): Promise<void> {
  const dv = i.json ? { json: i.bytes } : { msgpack: i.bytes };
  if (i.rpc === 'ImportResourceState') {
    const r = typed('parseImportId', () => parseImportId(i.id), CODES);
    if (r.ok) validateKey(r.value);
    return;
  }
  if (i.rpc === 'UpgradeResourceState') {
    for (const type of [RESOURCE_TYPE, DATA_SOURCE_TYPE]) checkDiagnostics(i.rpc, await callRpc(i.rpc, { type_name: type, version: 0, raw_state: { json: Buffer.from(i.bytes) } }));
    return;
  }
  const resource = i.rpc === 'ValidateResourceConfig';
  checkDiagnostics(i.rpc, await callRpc(i.rpc, { type_name: resource ? RESOURCE_TYPE : DATA_SOURCE_TYPE, config: dv }));
  const isObject = (o: unknown) => {
    if (typeof o !== 'object' || Array.isArray(o)) throw new FuzzDefect('a configuration that is not an object was decoded without a rejection');
  };
  if (resource) {
    const decoded = typed('decodeObject', () => decodeObject(KEY_RESOURCE, dv, 'a configuration'), CODES);
    if (!decoded.ok || decoded.value === null) return;
    isObject(decoded.value);
    checkPlanning(decoded.value);
  } else {
    const decoded = typed('decodeObject', () => decodeObject(STATUS_DATA_SOURCE, dv, 'a configuration'), CODES);
    if (!decoded.ok || decoded.value === null) return;
    isObject(decoded.value);
    validateStatus(decoded.value);
  }
}

/** The provider logs every RPC as an hclog line on stderr: silenced during a campaign (its other output passes). */
let stderrWrite: typeof process.stderr.write | undefined;

export const PROVIDER_TARGET: FuzzTarget<ProviderInput> = {
  name: 'provider-wire',
  entry: 'terraform values: decodeDynamic + typed (src/provider/cty.ts, schema.ts), the Validate*/UpgradeResourceState RPC handlers, planning before the database (settingsOf, buildContext, declaredOf), parseImportId',
  arbitrary: input,
  check: checkProvider,
  async: true,
  setup() {
    const write = (stderrWrite = process.stderr.write.bind(process.stderr));
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => (String(chunk).startsWith('{"@level"') ? true : write(chunk, ...rest))) as typeof process.stderr.write;
  },
  teardown() {
    if (stderrWrite) process.stderr.write = stderrWrite;
    stderrWrite = undefined;
  },
  toJson: (i) => ({ ...i, bytes: bytesJson.to(i.bytes) }),
  fromJson: (j) => {
    const o = j as Omit<ProviderInput, 'bytes'> & { bytes: string };
    return { ...o, bytes: bytesJson.from(o.bytes) };
  },
};
