/**
 * terraform-provider-masterkey on real terraform and SQLite (WAL, as ACT
 * runs act.db): the provider's suite (test/support/provider-suite.ts), as
 * test/provider-terraform.test.ts runs it on PostgreSQL.
 */
import { providerTerraformSuite } from './support/provider-suite';
import { SQLITE_WAL } from './support/stores';

// Every step runs terraform several times, and a loaded machine makes each run slow.
jest.setTimeout(600_000);

providerTerraformSuite(SQLITE_WAL);
