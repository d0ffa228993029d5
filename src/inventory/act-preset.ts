/**
 * The built-in inventory for ACT's schema: every kind of secret ACT's master
 * key rotation guide lists. The tables are ours to define (ACT's own schema
 * is not public); `ACT_SCHEMA_SQL` creates them for the demo, the tests and
 * new installations.
 */
import type { Inventory } from './inventory';

export const ACT_PRESET: Inventory = {
  name: 'act',
  entries: [
    { kind: 'server SSH private key', table: 'servers', idColumn: 'id', column: 'ssh_private_key', codec: 'act' },
    { kind: 'server SSH passphrase', table: 'servers', idColumn: 'id', column: 'ssh_passphrase', codec: 'act' },
    { kind: 'service environment variable', table: 'service_env_vars', idColumn: 'id', column: 'value', codec: 'act' },
    { kind: 'service environment variable', table: 'services', idColumn: 'id', column: 'spec', codec: 'act', jsonPath: ['env', '*', 'value'], where: { key: 'secret', equals: true } },
    { kind: 'environment variable', table: 'environment_variables', idColumn: 'id', column: 'value', codec: 'act' },
    { kind: 'git access token', table: 'git_credentials', idColumn: 'id', column: 'access_token', codec: 'act' },
    { kind: 'registry credential', table: 'registry_credentials', idColumn: 'id', column: 'password', codec: 'act' },
    { kind: 'storage provider secret', table: 'storage_providers', idColumn: 'id', column: 'secret_access_key', codec: 'act' },
    { kind: 'storage provider secret', table: 'storage_providers', idColumn: 'id', column: 'settings', codec: 'act', jsonPath: ['credentials', '*'] },
  ],
};

/** Creates the tables the ACT preset expects (idempotent). */
export const ACT_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS servers (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  host text NOT NULL,
  ssh_private_key text,
  ssh_passphrase text
);
CREATE TABLE IF NOT EXISTS services (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  spec jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE IF NOT EXISTS service_env_vars (
  id bigserial PRIMARY KEY,
  service_id bigint NOT NULL REFERENCES services(id),
  name text NOT NULL,
  value text NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
  id bigserial PRIMARY KEY,
  name text NOT NULL
);
CREATE TABLE IF NOT EXISTS environment_variables (
  id bigserial PRIMARY KEY,
  environment_id bigint NOT NULL REFERENCES environments(id),
  name text NOT NULL,
  value text NOT NULL
);
CREATE TABLE IF NOT EXISTS git_credentials (
  id bigserial PRIMARY KEY,
  provider text NOT NULL,
  access_token text NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_credentials (
  id bigserial PRIMARY KEY,
  registry text NOT NULL,
  username text NOT NULL,
  password text NOT NULL
);
CREATE TABLE IF NOT EXISTS storage_providers (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  secret_access_key text,
  settings jsonb NOT NULL DEFAULT '{}'::jsonb
);
`;
