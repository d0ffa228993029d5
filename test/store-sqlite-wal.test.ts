/** The store contract kit (./support/store-contract.ts) on SQLite in WAL mode. */
import { storeContract } from './support/store-contract';
import { SQLITE_WAL } from './support/stores';

storeContract(SQLITE_WAL);
