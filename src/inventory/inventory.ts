/**
 * The secret inventory: where sealed secrets live in the database and what
 * kind of secret each is. Plain data, validated once, digested for the
 * CDKTF trigger (a change of inventory shows up in `terraform plan`).
 */
import type { ErrorObject } from 'ajv/dist/2020';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import inventorySchema from '../../docs/schemas/inventory.schema.json';
import { CodecName } from '../crypto/codec';
import { MasterKeyError } from '../errors';
import { lazyValidator } from '../json-schema';
import { ACT_PRESET } from './act-preset';

export interface JsonWhere {
  /** Member of the object holding the value that must equal `equals`. */
  readonly key: string;
  readonly equals: string | number | boolean;
}

export interface InventoryEntry {
  /** Human label used in plans and reports, e.g. "git access token". */
  readonly kind: string;
  /** Table name, optionally schema-qualified ("public.servers"). */
  readonly table: string;
  /** Primary-key column (unique, not null). */
  readonly idColumn: string;
  /** Column holding the sealed value (text) or, with jsonPath, a jsonb document. */
  readonly column: string;
  /** How values are sealed. */
  readonly codec: CodecName;
  /**
   * For jsonb columns: path to sealed string values inside the document.
   * A `*` segment matches every element of an array or member of an object.
   */
  readonly jsonPath?: readonly string[];
  /** For jsonb columns: only values whose parent object has `key` equal to `equals`. */
  readonly where?: JsonWhere;
  /**
   * Additional authenticated data: each value is sealed with the text
   * (UTF-8) of this column of its own row as AAD (e.g. `user_id`); a NULL
   * column means none. Opening and re-sealing use the same bytes.
   */
  readonly aad?: { readonly column: string };
}

export interface Inventory {
  readonly name: string;
  readonly entries: readonly InventoryEntry[];
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Quotes a (possibly schema-qualified) identifier after validating it. */
export function quoteIdent(name: string): string {
  return name
    .split('.')
    .map((p) => {
      if (!IDENT.test(p)) throw new MasterKeyError('INVENTORY_INVALID', `"${p}" is not a plain SQL identifier; use letters, digits and underscores in inventory table and column names.`);
      return `"${p}"`;
    })
    .join('.');
}

/** The JSON Schema every inventory file is validated against (docs/schemas/inventory.schema.json). */
export const INVENTORY_SCHEMA = inventorySchema;

/** The compiled schema; ajv is loaded on first use only (the ACT preset needs no validation, and the CLI starts faster). */
const schemaValidator = lazyValidator(inventorySchema);

/** `entry 2 "table"`, `"name"`, `the inventory` : where in the document a schema error is. */
function where(instancePath: string): string {
  const parts = instancePath.split('/').slice(1);
  if (parts.length === 0) return 'it';
  const [top, index, ...rest] = parts;
  if (top === 'entries' && index !== undefined) {
    const field = rest.length ? ` "${rest.join('.')}"` : '';
    return `entry ${index}${field}`;
  }
  return `"${parts.join('.')}"`;
}

const TYPE_WORDS: Record<string, string> = { object: 'an object', array: 'an array', string: 'a string', number: 'a number', integer: 'a whole number', boolean: 'true or false' };

/** One schema error as the clause of a sentence, naming where and what (inventory values are not secret). */
export function schemaErrorText(e: ErrorObject): string {
  const at = where(e.instancePath);
  const p = e.params as Record<string, unknown>;
  // As JSON, cut to 60 characters: a control character or a huge value would break the one-line sentence.
  const got = (v: unknown) => {
    const text = JSON.stringify(typeof v === 'string' && v.length > 60 ? `${v.slice(0, 60)}…` : v) ?? String(v);
    return text.length > 64 ? `${text.slice(0, 60)}…` : text;
  };
  switch (e.keyword) {
    case 'required':
      return `${at} needs "${String(p.missingProperty)}"`;
    case 'additionalProperties':
      return `${at} has an unknown member ${got(p.additionalProperty)} (check its spelling)`;
    case 'dependentRequired':
      return `${at} "${String(p.property)}" only applies with "${String(p.missingProperty)}"`;
    case 'type':
      return `${at} must be ${String(p.type).split(',').map((t) => TYPE_WORDS[t] ?? t).join(' or ')}, got ${got(e.data)}`;
    case 'minLength':
    case 'minItems':
      return `${at} must not be empty`;
    case 'pattern':
      return `${at} must be a plain SQL identifier (letters, digits, underscores), got ${got(e.data)}`;
    case 'enum':
      return `${at} must be one of ${(p.allowedValues as unknown[]).join(', ')}, got ${got(e.data)}`;
    default:
      return `${at} ${e.message ?? 'is not valid'}`;
  }
}

/**
 * Validates an inventory against docs/schemas/inventory.schema.json (and that
 * no location is listed twice, which a schema cannot say). Throws
 * INVENTORY_INVALID with one sentence naming the first problem.
 */
export function validateInventory(inv: unknown, source = 'the inventory'): Inventory {
  const bad = (what: string): never => {
    throw new MasterKeyError('INVENTORY_INVALID', `${source} is invalid: ${what}; fix it (docs/schemas/inventory.schema.json describes the format).`);
  };
  const validate = schemaValidator();
  if (!validate(inv)) {
    // A misspelt member explains a "missing" one: report it first.
    const errors = [...(validate.errors ?? [])].sort((a, b) => Number(b.keyword === 'additionalProperties') - Number(a.keyword === 'additionalProperties'));
    const e = errors[0];
    bad(e ? schemaErrorText({ ...e, data: e.data ?? valueAt(inv, e.instancePath) }) : 'it does not match the inventory schema');
  }
  const o = inv as { name: string; entries: InventoryEntry[] };
  const entries = o.entries.map(
    (r): InventoryEntry => ({
      kind: r.kind,
      table: r.table,
      idColumn: r.idColumn,
      column: r.column,
      codec: r.codec,
      ...(r.jsonPath ? { jsonPath: [...r.jsonPath] } : {}),
      ...(r.where ? { where: { key: r.where.key, equals: r.where.equals } } : {}),
      ...(r.aad ? { aad: { column: r.aad.column } } : {}),
    }),
  );
  const seen = new Set<string>();
  for (const e of entries) {
    const k = `${e.table}.${e.column}${e.jsonPath ? `#${e.jsonPath.join('.')}` : ''}`;
    if (seen.has(k)) bad(`the location ${JSON.stringify(k)} is listed twice`);
    seen.add(k);
  }
  return { name: o.name, entries };
}

/** The value at a JSON pointer (for error messages). */
function valueAt(doc: unknown, pointer: string): unknown {
  return pointer
    .split('/')
    .slice(1)
    .reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
}

/** `act` for the built-in ACT preset, otherwise a path to an inventory JSON file. */
export function loadInventory(spec: string): Inventory {
  if (spec === 'act') return ACT_PRESET;
  let text: string;
  try {
    text = readFileSync(spec, 'utf8');
  } catch (e) {
    throw new MasterKeyError('INVENTORY_INVALID', `Cannot read the inventory file ${spec} (${(e as NodeJS.ErrnoException).code ?? 'error'}); pass --inventory act or the path of an inventory JSON file.`);
  }
  return parseInventory(text, spec);
}

/** An inventory file's text, parsed and validated (`file` names it in messages). */
export function parseInventory(text: string, file: string): Inventory {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MasterKeyError('INVENTORY_INVALID', `The inventory file ${file} is not valid JSON; fix its syntax.`);
  }
  return validateInventory(parsed, `The inventory file ${file}`);
}

/** Stable digest of an inventory (what it covers, not its name), for triggers. */
export function inventoryDigest(inv: Inventory): string {
  const canon = inv.entries
    .map((e) => JSON.stringify([e.table, e.idColumn, e.column, e.codec, e.jsonPath ?? null, e.where ?? null, e.kind, ...(e.aad ? [{ aad: e.aad.column }] : [])]))
    .sort()
    .join('\n');
  return `sha256:${createHash('sha256').update(canon).digest('hex').slice(0, 16)}`;
}

/** Kinds in inventory order, without repeats. */
export function inventoryKinds(inv: Inventory): string[] {
  return [...new Set(inv.entries.map((e) => e.kind))];
}
