/**
 * The ACT preset's tables (`src/inventory/act-preset.ts`) in SQLite, as
 * `master-key init --create-act-schema` creates them on an act.db:
 * integer primary keys (rowid aliases), JSON documents in text columns
 * checked with `json_valid`.
 */
export const ACT_SCHEMA_SQLITE = `
CREATE TABLE IF NOT EXISTS servers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  host TEXT NOT NULL,
  ssh_private_key TEXT,
  ssh_passphrase TEXT
);
CREATE TABLE IF NOT EXISTS services (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  spec TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(spec))
);
CREATE TABLE IF NOT EXISTS service_env_vars (
  id INTEGER PRIMARY KEY,
  service_id INTEGER NOT NULL REFERENCES services(id),
  name TEXT NOT NULL,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environments (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS environment_variables (
  id INTEGER PRIMARY KEY,
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  name TEXT NOT NULL,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS git_credentials (
  id INTEGER PRIMARY KEY,
  provider TEXT NOT NULL,
  access_token TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_credentials (
  id INTEGER PRIMARY KEY,
  registry TEXT NOT NULL,
  username TEXT NOT NULL,
  password TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS storage_providers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  secret_access_key TEXT,
  settings TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings))
);
`;
