/**
 * The provider's schemas: resource `masterkey_key`, data source
 * `masterkey_status` and the (empty) provider block, declared once as data
 * and turned into tfplugin6 `Schema` messages, and into the TypeScript types
 * of the objects terraform sends and receives (`Obj<typeof KEY_RESOURCE>`):
 * renaming, retyping or removing an attribute here breaks the compilation of
 * every line that uses it. Nothing here is secret: the key itself is never
 * an attribute, only its fingerprint.
 */
import { CtyType, ObjectValue, Unknown, Value, decodeDynamic, encodeDynamic, objectOrNull } from './cty';
import type { DynamicValue, SchemaMessage } from './protocol';

/** required: set in configuration; optional: may be; computed: set by the provider. */
export type Use = 'required' | 'optional' | 'computed';

export interface AttributeSpec<N extends string = string, T extends CtyType = CtyType, U extends Use = Use> {
  readonly name: N;
  readonly type: T;
  readonly description: string;
  readonly use: U;
}

export interface BlockSpec<A extends readonly AttributeSpec[] = readonly AttributeSpec[]> {
  readonly description: string;
  readonly attributes: A;
}

function arg<const N extends string, const T extends CtyType>(name: N, type: T, description: string): AttributeSpec<N, T, 'optional'>;
function arg<const N extends string, const T extends CtyType>(name: N, type: T, description: string, use: 'required'): AttributeSpec<N, T, 'required'>;
function arg(name: string, type: CtyType, description: string, use: 'required' | 'optional' = 'optional'): AttributeSpec {
  return { name, type, description, use };
}
const out = <const N extends string, const T extends CtyType>(name: N, type: T, description: string): AttributeSpec<N, T, 'computed'> => ({ name, type, description, use: 'computed' });
const block = <const A extends readonly AttributeSpec[]>(description: string, attributes: A): BlockSpec<A> => ({ description, attributes });

/** The JavaScript value of a cty type as it arrives: unknown (only in plans) or known, with unknowns possible inside collections. */
type WireOf<T> =
  | Unknown
  | (T extends 'string'
      ? string
      : T extends 'number'
        ? number
        : T extends 'bool'
          ? boolean
          : T extends readonly ['list' | 'set', infer E]
            ? WireOf<E>[]
            : T extends readonly ['map', infer E]
              ? { [key: string]: WireOf<E> }
              : never);

type Attributes<B extends BlockSpec> = B['attributes'][number];

/** An object of block B as terraform sends and receives it: every attribute present, null when unset, unknown while only apply can tell. */
export type Obj<B extends BlockSpec> = { [A in Attributes<B> as A['name']]: WireOf<A['type']> | null };

/** The names of block B's attributes of one use. */
export type NamesOf<B extends BlockSpec, U extends Use> = Extract<Attributes<B>, { use: U }>['name'];

/** The computed attributes of block B: what the provider fills in. */
export type Computed<B extends BlockSpec> = Pick<Obj<B>, NamesOf<B, 'computed'>>;

/** Where an installation is: shared by the resource and the data source. */
const INSTALLATION = [
  arg('config_files', ['list', 'string'], 'Absolute paths of the server config file(s) holding the key; the first is the primary, one more per node of a highly available server.', 'required'),
  arg('config_format', 'string', 'Format of the config files: dotenv, json or xml (default: from the file extension, else dotenv).'),
  arg('key_name', 'string', 'The config entry holding the key (default ACT_MASTER_KEY).'),
  arg(
    'database_url_env',
    'string',
    "The name of the environment variable of terraform's process holding the database URL; never the URL itself (default: with the ACT inventory, the ACT_DATABASE_URL entry of the primary config file when it has one, else DATABASE_URL).",
  ),
  arg('database_url_entry', 'string', 'Instead of database_url_env: the entry of the primary config file holding the database URL.'),
  arg('inventory', 'string', 'Which secrets the key protects: "act" (the built-in ACT preset, default) or the absolute path of an inventory JSON file.'),
  arg(
    'ssh',
    ['map', 'string'],
    "How the hosts of config files on other hosts (ssh://[user@]host[:port]/path) are reached, with the names of terraform's connection block: user, port, private_key_file (a path; never the key), agent, host_key (SHA256:… as ssh-keygen -lf prints it, or the public key line), known_hosts, bastion_host, bastion_user, bastion_port, bastion_host_key, timeout, remote_command. Defaults are OpenSSH's: ~/.ssh/known_hosts, the agent at SSH_AUTH_SOCK, then ~/.ssh/id_ed25519 and ~/.ssh/id_rsa.",
  ),
  arg('ssh_nodes', ['map', ['map', 'string']], 'SSH settings of single nodes, by their address as written in config_files, over those of ssh (e.g. a host_key per host).'),
] as const;

const KEY_STATE = [
  out('id', 'string', 'The key\'s name.'),
  out('fingerprint', 'string', "Fingerprint of the database's current key (mk:xxxxxxxxxxxx); never the key."),
  out('key_set_at', 'string', 'When the current key was set (RFC 3339).'),
  out('key_age_days', 'number', 'Whole days since the current key was set.'),
  out('secrets', 'number', 'Sealed values the inventory finds in the database (counted, not decrypted).'),
  out('secrets_by_kind', ['map', 'number'], 'The sealed values per kind of secret.'),
  out('nodes_in_sync', 'bool', "Whether every config file holds the database's key."),
] as const;

export const KEY_RESOURCE = block(
  "A server's master key as managed infrastructure. Read refreshes the key's real state from the database and config files; plan is the data-level dry run; apply rotates the key (re-encrypting every secret in one transaction); destroy only forgets.",
  [
    arg('name', 'string', "The key's name as shown in plans (a label, not the config entry).", 'required'),
    arg('generation', 'number', "The key generation the database must be at: raising it rotates the key once. Refresh reads the database's generation back, so a key rotated outside Terraform plans a change.", 'required'),
    ...INSTALLATION,
    arg('rotation_period_days', 'number', 'A scheduled rotation: a key set before the start of the current window of this many days is rotated.'),
    arg('rotation_epoch', 'string', 'The instant policy windows are counted from (ISO-8601 UTC; default 1970-01-01T00:00:00Z).'),
    arg('rotation_evaluated_at', 'string', 'Evaluate the policy window at this instant instead of now (ISO-8601 UTC); for previews and tests.'),
    arg('backup_dir', 'string', 'Absolute path of the directory for backups taken before each rotation (default: master-key-backups beside the primary config).'),
    arg('report_dir', 'string', "Absolute path of the directory for the auditor's reports (default: the backup directory, else master-key-reports beside the primary config)."),
    arg('backup_recipients', ['list', 'string'], 'age recipients (X25519 age1…, post-quantum hybrid age1pq1…) every backup file is sealed to; restore then needs the identity of one of them. Without any, the backup holds the old key in cleartext (the plan warns).'),
    arg('backup_retention', 'string', 'Retire the backups beyond this after a verified rotation: "keep N" (the newest N) or an age such as "30d"; each retirement is recorded in the rotation history.'),
    arg('local_report_dir', 'string', "Nodes on other hosts: absolute path of the directory on terraform's machine that receives a copy of each rotation's report (the report itself is written on the primary node's host; default: master-key-reports in terraform's working directory)."),
    arg('stop_command', 'string', 'Shell command that stops the server before the rotation.'),
    arg('start_command', 'string', 'Shell command that starts the server after the rotation.'),
    arg('health_command', 'string', 'Shell command that checks the server after it started.'),
    arg('new_key_file', 'string', 'Absolute path of a file (created 0600) that receives a copy of each new key.'),
    arg(
      'lock_timeout',
      'string',
      'How long the rotation waits for a lock another session holds on the secret tables (or the SQLite file) before it refuses with TABLES_BUSY, having changed nothing and started the server again: a duration such as 30s, 500ms or 2min (default 30s).',
    ),
    arg('seal_ahead', 'bool', 'Seal every secret under the new key while the server runs, and stop it only to swap them in (true), or keep the single pass with the server stopped (false); default: where it pays off (from 10,000 secrets; on SQLite in WAL mode only).'),
    arg('verify_secrets', 'bool', 'Open every secret during refresh and plan (slow on large databases), not just count them (apply always does); values that do not open are an error at plan.'),
    ...KEY_STATE,
    out('database_generation', 'number', "The database's key generation."),
    out('undecryptable', 'number', 'Stored values that did not open at the last full check (apply, or refresh with verify_secrets); null before any.'),
    out('last_report', 'string', "Path of the last rotation's report (Markdown), when it is in report_dir."),
  ],
);

export const STATUS_DATA_SOURCE = block(
  "The master key's status, for pipelines: fail a plan with a check block or a postcondition when the key is overdue or a node is out of step.",
  [
    ...INSTALLATION,
    arg('max_age_days', 'number', 'The policy: the key is overdue when it is older than this many days.'),
    ...KEY_STATE,
    out('generation', 'number', "The database's key generation."),
    out('overdue', 'bool', 'Whether the key is older than max_age_days (false without max_age_days).'),
    out('interrupted_rotation', 'bool', 'Whether an interrupted rotation waits for `master-key recover`.'),
    out('last_rotation_at', 'string', 'When the last rotation committed (RFC 3339), null when none is recorded.'),
  ],
);

export const PROVIDER_BLOCK = block('cdktf-master-key: master-key rotation as infrastructure. The provider block takes no arguments.', []);

/** What masterkey_key's objects are: its arguments and the key's real state. */
export type KeyObject = Obj<typeof KEY_RESOURCE>;
/** What masterkey_status's objects are. */
export type StatusObject = Obj<typeof STATUS_DATA_SOURCE>;

/** The tfplugin6 `Schema` message of a block. */
export function schemaMessage(b: BlockSpec, version = 0): SchemaMessage {
  return {
    version,
    block: {
      version,
      description: b.description,
      description_kind: 'PLAIN',
      attributes: b.attributes.map((a) => ({
        name: a.name,
        type: Buffer.from(JSON.stringify(a.type)),
        description: a.description,
        description_kind: 'PLAIN',
        required: a.use === 'required',
        optional: a.use === 'optional',
        computed: a.use === 'computed',
      })),
    },
  };
}

/** An object of the block's shape: every attribute present, null unless given. */
export function objectOf<B extends BlockSpec>(b: B, values: Readonly<Partial<Obj<B>>> | Readonly<Record<string, Value>>): Obj<B> {
  const given = values as Readonly<Record<string, Value | undefined>>;
  const o: ObjectValue = {};
  for (const a of b.attributes) o[a.name] = given[a.name] ?? null;
  return o as Obj<B>;
}

/** A number as cty may send it: msgpack int or float, or a decimal string when float64 cannot hold it exactly. */
function asNumber(v: Value): Value {
  return typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
}

/**
 * Decoded values as the schema types them: numbers sent as decimal strings
 * become numbers. This is where a value from the wire becomes an `Obj<B>`:
 * terraform sends only objects it has checked against the schema we gave it.
 */
export function typed<B extends BlockSpec>(b: B, o: ObjectValue | null): Obj<B> | null {
  if (!o) return o;
  const out: ObjectValue = { ...o };
  for (const a of b.attributes) {
    const v = out[a.name];
    if (a.type === 'number') out[a.name] = asNumber(v);
    else if (Array.isArray(a.type) && a.type[1] === 'number' && v !== null && typeof v === 'object') {
      out[a.name] = Array.isArray(v) ? v.map(asNumber) : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asNumber(x)]));
    }
  }
  return out as Obj<B>;
}

/**
 * A DynamicValue from terraform as an object of block B (null: no object,
 * e.g. the prior state of a create). Bytes that do not decode, or a value
 * that is not an object (`what` names it), are USAGE.
 */
export function decodeObject<B extends BlockSpec>(b: B, dv: DynamicValue | null | undefined, what: string): Obj<B> | null {
  return typed(b, objectOrNull(decodeDynamic(dv), what));
}

/** An object of block B (or null: none) as a DynamicValue for terraform. */
export function encodeObject<B extends BlockSpec>(_b: B, o: Obj<B> | null): DynamicValue {
  return encodeDynamic(o as ObjectValue | null);
}

/** The names of the block's computed attributes. */
export function computedNames<B extends BlockSpec>(b: B): Array<NamesOf<B, 'computed'>> {
  return b.attributes.filter((a) => a.use === 'computed').map((a) => a.name as NamesOf<B, 'computed'>);
}
