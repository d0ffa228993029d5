/**
 * The stores the contract tests run against, each with what a test needs
 * to set one up: a fresh database, the ACT preset's tables seeded with
 * secrets, and cleanup. A new store adds one entry here.
 */
import { MasterKey } from '../../src/crypto/key';
import { dropDatabase, freshDatabase, withTestClient } from './db';
import { seedAct } from './scenario';

export interface StoreFixture {
  readonly name: string;
  /** A new, empty database; its URL. */
  create(): Promise<string>;
  /** Creates the ACT preset's tables with `perKind` rows of every kind sealed under `key`; the plaintexts by location. */
  seed(url: string, key: MasterKey, perKind: number): Promise<Map<string, string>>;
  /** Removes the database. */
  drop(url: string): Promise<void>;
}

export const STORES: readonly StoreFixture[] = [
  {
    name: 'PostgreSQL',
    create: () => freshDatabase('store'),
    seed: (url, key, perKind) => withTestClient(url, (c) => seedAct(c, key, { perKind })),
    drop: dropDatabase,
  },
];
