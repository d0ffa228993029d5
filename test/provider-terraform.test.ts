/**
 * terraform-provider-masterkey on real terraform and PostgreSQL: the
 * provider's suite (test/support/provider-suite.ts); the same suite runs on
 * SQLite in test/provider-terraform-sqlite.test.ts.
 */
import { providerTerraformSuite } from './support/provider-suite';
import { POSTGRES } from './support/stores';

// Every step runs terraform several times, and a loaded machine makes each run slow.
jest.setTimeout(600_000);

providerTerraformSuite(POSTGRES);
