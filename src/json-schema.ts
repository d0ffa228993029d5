/**
 * Validation of the JSON files the tool reads (inventories, backup
 * manifests, pending-key files) against their schemas in docs/schemas/.
 * The build compiles each schema into a module beside this one
 * (`scripts/compile-schemas`: `schemas/<name>.js`), so a command loads that
 * code instead of loading ajv and compiling the schema at every start
 * (0.1 s to 1 s, the more on a loaded machine). Without one (tests run from
 * the sources), or when it was compiled from another text of the schema,
 * ajv compiles the schema on first use.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ErrorObject, Options, ValidateFunction } from 'ajv/dist/2020';

/**
 * The schemas the build compiles: those of the files the tool reads and
 * validates (`lazyValidator`'s callers). The others describe its outputs
 * and are never loaded at run time (compiled, they would add 270 KB to the
 * package). A schema not listed here is still validated, compiled by ajv.
 */
export const COMPILED_SCHEMAS = ['inventory', 'pending', 'backup-manifest'] as const;

/** ajv's options, the same whether a schema is compiled at build time or at first use. */
export const AJV_OPTIONS: Options = { allErrors: true, strict: true, allowUnionTypes: true };

/** A schema as the tool's schemas are: its `$id` is `urn:cdktf-master-key:schema:<name>`. */
export interface NamedSchema {
  readonly $id?: string;
}

/** The file name a schema's compiled module has (`schemas/<name>.js`), from its `$id`. */
export function compiledName(schema: NamedSchema): string | undefined {
  const m = /^urn:cdktf-master-key:schema:([a-z0-9-]+)$/.exec(schema.$id ?? '');
  return m ? m[1] : undefined;
}

/** The SHA-256 of a schema's JSON text, which its compiled module records (a stale module is not used). */
export function schemaSha256(schema: object): string {
  return createHash('sha256').update(JSON.stringify(schema)).digest('hex');
}

/** The module the build compiled `schema` into, when there is one made from this very schema. */
function precompiled(schema: NamedSchema): ValidateFunction | undefined {
  const name = compiledName(schema);
  const file = name ? join(__dirname, 'schemas', `${name}.js`) : undefined;
  if (!file || !existsSync(file)) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const validate = require(file) as ValidateFunction & { schemaSha256?: string };
  return validate.schemaSha256 === schemaSha256(schema) ? validate : undefined;
}

/** A validator for `schema`: the build's compiled module, else compiled by ajv the first time it is called. */
export function lazyValidator(schema: NamedSchema): () => ValidateFunction {
  let validate: ValidateFunction | undefined;
  return () => {
    if (!validate) {
      validate = precompiled(schema);
      if (!validate) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { default: Ajv2020 } = require('ajv/dist/2020') as typeof import('ajv/dist/2020');
        validate = new Ajv2020(AJV_OPTIONS).compile(schema);
      }
    }
    return validate;
  };
}

/**
 * The first of a validator's errors as a clause naming where and what, in
 * ajv's words, which never quote the data (a pending file holds a key):
 * `at /files/0/sha256: must match pattern "^[0-9a-f]{64}$"`.
 */
export function firstSchemaError(errors: readonly ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'it does not match its schema';
  const at = e.instancePath || 'the top level';
  const what = e.keyword === 'additionalProperties' ? 'has a member the format does not know' : (e.message ?? 'is not valid');
  return `at ${at}: ${what}`;
}
