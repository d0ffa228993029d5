/**
 * Jest helpers for a describe block (kept apart from scenario.ts, which the
 * soak and bench scripts compile without jest's globals).
 */
import { removeScratch } from '../../scripts/scratch';
import { Scenario, ScenarioOptions, actScenario } from './scenario';
import { POSTGRES } from './stores';

/**
 * A fresh installation for the enclosing `describe` block (`setup` runs
 * once it exists), removed with its database after the block (on the
 * store `opts.store` names, PostgreSQL by default); the getter
 * gives it to the tests.
 */
export function scenarioForBlock(opts: ScenarioOptions = {}, setup?: (s: Scenario) => Promise<void> | void): () => Scenario {
  let s: Scenario | undefined;
  beforeAll(async () => {
    s = await actScenario(opts);
    await setup?.(s);
  });
  afterAll(async () => {
    if (!s) return;
    removeScratch(s.dir);
    await (opts.store ?? POSTGRES).drop(s.url);
  });
  return () => s!;
}

