/**
 * Validation of the JSON files the tool reads (inventories, backup
 * manifests, pending-key files) against their schemas in docs/schemas/,
 * with ajv loaded and each schema compiled on first use only: most commands
 * never need one, and the CLI starts faster without.
 */
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020';

/** A validator for `schema`, compiled the first time it is called. */
export function lazyValidator(schema: object): () => ValidateFunction {
  let validate: ValidateFunction | undefined;
  return () => {
    if (!validate) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { default: Ajv2020 } = require('ajv/dist/2020') as typeof import('ajv/dist/2020');
      validate = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true }).compile(schema);
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
