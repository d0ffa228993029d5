/**
 * Whether the tests that need a `terraform` binary run: they run when one is
 * on PATH; without one they are skipped (saying so) on a developer's
 * machine, but fail under CI, where a missing binary is a broken setup and
 * must not pass as a green run.
 */
import { spawnSync } from 'node:child_process';

/** True when `terraform version` runs. */
export const HAS_TERRAFORM = spawnSync('terraform', ['version'], { stdio: 'ignore' }).status === 0;

/** What to do with the terraform tests. Pure. */
export function terraformGate(hasTerraform: boolean, ci: boolean): 'run' | 'fail' | 'skip' {
  if (hasTerraform) return 'run';
  return ci ? 'fail' : 'skip';
}

const MISSING = 'no `terraform` binary on PATH (install Terraform >= 1.4 to run them)';

/**
 * `describe` for tests that need terraform: runs them, skips them with a
 * warning, or (under CI) replaces them with one failing test that says why.
 */
export function describeTerraform(name: string, fn: () => void): void {
  const gate = terraformGate(HAS_TERRAFORM, !!process.env.CI);
  if (gate === 'run') describe(name, fn);
  else if (gate === 'skip') {
    console.warn(`Skipping "${name}": ${MISSING}.`);
    describe.skip(name, fn);
  } else {
    describe(name, () => {
      it('has a terraform binary (CI never skips the terraform tests)', () => {
        throw new Error(`CI is set and there is ${MISSING}; install terraform in CI instead of skipping "${name}".`);
      });
    });
  }
}
