/**
 * `node dist/scripts/compile-schemas.js` (the last step of `npm run build`):
 * compiles each schema of docs/schemas/ that the tool validates files
 * against (`COMPILED_SCHEMAS`) with ajv into a standalone module,
 * `dist/src/schemas/<name>.js`, which `lazyValidator` (src/json-schema)
 * loads instead of compiling the schema at every start of the CLI. Each
 * module records the SHA-256 of the schema it was made from.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import standaloneCode from 'ajv/dist/standalone';
import { AJV_OPTIONS, COMPILED_SCHEMAS, compiledName, schemaSha256 } from '../src/json-schema';

const from = join(__dirname, '..', '..', 'docs', 'schemas');
const to = join(__dirname, '..', 'src', 'schemas');
mkdirSync(to, { recursive: true });
for (const name of COMPILED_SCHEMAS) {
  const file = `${name}.schema.json`;
  const schema = JSON.parse(readFileSync(join(from, file), 'utf8')) as { $id?: string };
  if (compiledName(schema) !== name) throw new Error(`${file}: its $id is not urn:cdktf-master-key:schema:${name}`);
  const ajv = new Ajv2020({ ...AJV_OPTIONS, code: { source: true } });
  const code = standaloneCode(ajv, ajv.compile(schema));
  writeFileSync(join(to, `${name}.js`), `${code}\nmodule.exports.schemaSha256 = ${JSON.stringify(schemaSha256(schema))};\n`);
}
