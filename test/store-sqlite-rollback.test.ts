/** The store contract kit (./support/store-contract.ts) on SQLite with a rollback journal. */
import { storeContract } from './support/store-contract';
import { SQLITE_ROLLBACK } from './support/stores';

storeContract(SQLITE_ROLLBACK);
