/**
 * The provider's terraform suite (run by test/provider-terraform.test.ts on
 * PostgreSQL and test/provider-terraform-sqlite.test.ts on SQLite, so jest
 * runs them side by side): terraform-provider-masterkey driven by the real
 * terraform binary (offline init from the stack's implicit local mirror)
 * against a real installation with two nodes on the given store, one test
 * per scenario of test/support/provider-scenarios.ts, in their order.
 */
import { ProviderInstallation } from './provider-installation';
import { PROVIDER_SCENARIOS } from './provider-scenarios';
import { StoreFixture } from './stores';
import { describeTerraform } from './terraform';

/** The scenarios on one store. */
export function providerTerraformSuite(store: StoreFixture): void {
  describeTerraform(`terraform-provider-masterkey on real terraform and ${store.name}`, () => {
    const installation = new ProviderInstallation(store);
    beforeAll(() => installation.setUp());
    afterAll(() => installation.tearDown());
    for (const s of PROVIDER_SCENARIOS) it(s.title, async () => s.run(installation));
  });
}
