/**
 * The secret inventory: where sealed secrets live in the database and what
 * kind of secret each is. Plain data, validated once, digested for the
 * CDKTF trigger (a change of inventory shows up in `terraform plan`).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CODEC_NAMES, CodecName } from '../crypto/codec';
import { MasterKeyError } from '../errors';
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

export function validateInventory(inv: unknown, source = 'the inventory'): Inventory {
  const bad = (what: string): never => {
    throw new MasterKeyError('INVENTORY_INVALID', `${source} is invalid: ${what}.`);
  };
  if (!inv || typeof inv !== 'object') bad('it must be an object with "name" and "entries"');
  const o = inv as Record<string, unknown>;
  if (typeof o.name !== 'string' || o.name.length === 0) bad('"name" must be a non-empty string');
  if (!Array.isArray(o.entries)) bad('"entries" must be an array');
  const entries = (o.entries as unknown[]).map((e, i): InventoryEntry => {
    if (!e || typeof e !== 'object') bad(`entry ${i} must be an object`);
    const r = e as Record<string, unknown>;
    for (const f of ['kind', 'table', 'idColumn', 'column', 'codec']) {
      if (typeof r[f] !== 'string' || (r[f] as string).length === 0) bad(`entry ${i} needs a non-empty string "${f}"`);
    }
    for (const f of ['table', 'idColumn', 'column']) {
      for (const part of (r[f] as string).split('.')) if (!IDENT.test(part)) bad(`entry ${i} "${f}" must be a plain SQL identifier (letters, digits, underscores), got "${r[f] as string}"`);
    }
    if (!CODEC_NAMES.includes(r.codec as CodecName)) bad(`entry ${i} "codec" must be one of ${CODEC_NAMES.join(', ')}, got "${String(r.codec)}"`);
    let jsonPath: string[] | undefined;
    if (r.jsonPath !== undefined) {
      if (!Array.isArray(r.jsonPath) || r.jsonPath.length === 0 || !r.jsonPath.every((s) => typeof s === 'string' && s.length > 0)) {
        bad(`entry ${i} "jsonPath" must be a non-empty array of non-empty strings`);
      }
      jsonPath = [...(r.jsonPath as string[])];
    }
    let where: JsonWhere | undefined;
    if (r.where !== undefined) {
      const w = r.where as Record<string, unknown>;
      if (!jsonPath) bad(`entry ${i} "where" only applies with "jsonPath"`);
      if (!w || typeof w.key !== 'string' || !['string', 'number', 'boolean'].includes(typeof w.equals)) bad(`entry ${i} "where" must be { "key": string, "equals": string | number | boolean }`);
      where = { key: w.key as string, equals: w.equals as string | number | boolean };
    }
    return {
      kind: r.kind as string,
      table: r.table as string,
      idColumn: r.idColumn as string,
      column: r.column as string,
      codec: r.codec as CodecName,
      ...(jsonPath ? { jsonPath } : {}),
      ...(where ? { where } : {}),
    };
  });
  const seen = new Set<string>();
  for (const e of entries) {
    const k = `${e.table}.${e.column}${e.jsonPath ? `#${e.jsonPath.join('.')}` : ''}`;
    if (seen.has(k)) bad(`the location ${k} is listed twice`);
    seen.add(k);
  }
  return { name: o.name as string, entries };
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
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new MasterKeyError('INVENTORY_INVALID', `The inventory file ${spec} is not valid JSON; fix its syntax.`);
  }
  return validateInventory(parsed, `The inventory file ${spec}`);
}

/** Stable digest of an inventory (what it covers, not its name), for triggers. */
export function inventoryDigest(inv: Inventory): string {
  const canon = inv.entries
    .map((e) => JSON.stringify([e.table, e.idColumn, e.column, e.codec, e.jsonPath ?? null, e.where ?? null, e.kind]))
    .sort()
    .join('\n');
  return `sha256:${createHash('sha256').update(canon).digest('hex').slice(0, 16)}`;
}

/** Kinds in inventory order, without repeats. */
export function inventoryKinds(inv: Inventory): string[] {
  return [...new Set(inv.entries.map((e) => e.kind))];
}
