/** The store contract kit (./support/store-contract.ts) on PostgreSQL. */
import { storeContract } from './support/store-contract';
import { POSTGRES } from './support/stores';

storeContract(POSTGRES);
