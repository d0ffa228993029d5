/**
 * The stores the contract tests and the CLI suites run against, each with
 * what a test needs to set one up: a fresh database, the ACT preset's
 * tables seeded with secrets, a direct SQL line, and cleanup. A new store
 * adds one fixture here and runs the store contract kit with it
 * (`storeContract(FIXTURE)` in a test file of its own, ./store-contract.ts).
 *
 * SQLite runs in both of its journal modes: the store contract in each;
 * the CLI suites in one each (rotation and hostile input in WAL, which
 * ACT-like servers use; kill -9 in the rollback journal, whose hot-journal
 * recovery is the path a crash takes there). The soak runs both at length
 * (`npm run soak -- --store sqlite --journal wal|delete`).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { actCodec } from '../../src/crypto/codec';
import { MasterKey } from '../../src/crypto/key';
import { scratchDir } from '../../scripts/scratch';
import { sqliteModule } from '../../src/store/sqlite/driver';
import { sqliteFile } from '../../src/store/sqlite/url';
import { seedAct } from './act-data';
import { dropDatabase, freshDatabase } from './db';
import type { WalkOptions } from '../../src/store/store';
import { TestSql, sqlQuery, withTestSql } from './sql';

export interface StoreFixture {
  readonly name: string;
  readonly kind: 'postgres' | 'sqlite';
  /** A new, empty database; its URL. A file store creates its file in `dir` (made if missing), else in a directory of its own. */
  create(dir?: string): Promise<string>;
  /** Creates the ACT preset's tables with `perKind` rows of every kind sealed under `key`; the plaintexts by location. */
  seed(url: string, key: MasterKey, perKind: number): Promise<Map<string, string>>;
  /** Stores one more secret (a git access token) sealed under `key`, as a running server would; its place, `table.column:id`. */
  addSecret(url: string, key: MasterKey, plaintext: string): Promise<string>;
  /** Deletes one secret's row (a git access token), as a running server would; its place, `table.column:id`. */
  removeSecret(url: string): Promise<string>;
  /** Deletes the row of a secret `addSecret` stored (its place). */
  removeSecretAt(url: string, place: string): Promise<void>;
  /** Removes the database (a SQLite file: with the directory it is in). */
  drop(url: string): Promise<void>;
  /** A direct SQL line to the database, for tests that make tables of their own (parameters `$1`, `$2`, …). */
  withSql<T>(url: string, fn: (db: TestSql) => Promise<T>): Promise<T>;
  /** SQL types for such tables. */
  readonly sqlTypes: {
    /** An integer primary key column's type and constraint. */
    readonly integerKey: string;
    /** Two types of column holding JSON documents (PostgreSQL: jsonb and json). */
    readonly json: readonly [string, string];
  };
  /** Rotation options under which this store runs its crypto in a worker thread (where a test makes a worker stop). */
  readonly threadedCrypto: Pick<WalkOptions, 'crypto' | 'workers'>;
}

const seed = (url: string, key: MasterKey, perKind: number) => withTestSql(url, (db) => seedAct(db, key, { perKind }));

/** What a running server does to the data, the same SQL on either store. */
const serverWrites = {
  addSecret: async (url: string, key: MasterKey, plaintext: string) => {
    const sealed = actCodec().seal(key, Buffer.from(plaintext, 'utf8'));
    const [row] = await sqlQuery<{ id: unknown }>(url, "INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1) RETURNING id", [sealed]);
    return `git_credentials.access_token:${String(row.id)}`;
  },
  removeSecretAt: async (url: string, place: string) => {
    await sqlQuery(url, 'DELETE FROM git_credentials WHERE id = $1', [Number(place.split(':')[1])]);
  },
  removeSecret: async (url: string) => {
    const [row] = await sqlQuery<{ id: unknown }>(url, 'DELETE FROM git_credentials WHERE id = (SELECT min(id) FROM git_credentials) RETURNING id');
    return `git_credentials.access_token:${String(row.id)}`;
  },
};

export const POSTGRES: StoreFixture = {
  name: 'PostgreSQL',
  kind: 'postgres',
  create: () => freshDatabase('store'),
  seed,
  ...serverWrites,
  drop: dropDatabase,
  withSql: withTestSql,
  sqlTypes: { integerKey: 'bigint PRIMARY KEY', json: ['jsonb', 'json'] },
  // It re-seals on its own thread unless asked.
  threadedCrypto: { crypto: 'workers', workers: 1 },
};

export type SqliteJournal = 'wal' | 'delete';

/** An empty SQLite database file `act.db` in `dir` (or a new temp directory) in the given journal mode; its URL. */
export function createSqliteDatabase(journal: SqliteJournal, dir?: string): string {
  const where = dir ?? scratchDir('mk-sqlite-');
  mkdirSync(where, { recursive: true, mode: 0o700 });
  const path = join(where, 'act.db');
  const Database = sqliteModule();
  const db = new Database(path);
  db.pragma(`journal_mode = ${journal}`);
  db.close();
  return `sqlite:${path}`;
}

function sqlite(journal: SqliteJournal): StoreFixture {
  return {
    name: journal === 'wal' ? 'SQLite (WAL)' : 'SQLite (rollback journal)',
    kind: 'sqlite',
    create: async (dir) => createSqliteDatabase(journal, dir),
    seed,
    ...serverWrites,
    drop: async (url) => rmSync(dirname(sqliteFile(url)), { recursive: true, force: true }),
    withSql: withTestSql,
    sqlTypes: { integerKey: 'INTEGER PRIMARY KEY', json: ['text', 'text'] },
    // Beside its connection by default (a reader thread in WAL mode, a crypto thread in a rollback journal).
    threadedCrypto: {},
  };
}

export const SQLITE_WAL = sqlite('wal');
export const SQLITE_ROLLBACK = sqlite('delete');


/** The stores the CLI rotation and hostile-input suites run on. */
export const CLI_STORES: readonly StoreFixture[] = [POSTGRES, SQLITE_WAL];

/** The stores the kill -9 suite runs on. */
export const KILL_STORES: readonly StoreFixture[] = [POSTGRES, SQLITE_ROLLBACK];

/** A SQLite table's texts by row id (`SELECT id, <column> FROM <table>`), read on a connection of its own. */
export function sqliteTexts(file: string, table: string, column: string): Map<number, string> {
  const db = new (sqliteModule())(file, { readonly: true });
  try {
    return new Map((db.prepare(`SELECT id, "${column}" AS v FROM "${table}" ORDER BY id`).all() as Array<{ id: number; v: string }>).map((r) => [r.id, r.v]));
  } finally {
    db.close();
  }
}

/** Two maps of texts by id hold the same texts (compared here, not by toEqual, which would print megabytes on a difference). */
export const sameTexts = (a: ReadonlyMap<number, string>, b: ReadonlyMap<number, string>): boolean => a.size === b.size && [...a].every(([id, v]) => b.get(id) === v);
