/**
 * Real OpenSSH servers for the tests of nodes on other hosts: the harness is
 * scripts/sshd-hosts.ts (the benchmark starts them too); here, the tests'
 * `describe` that skips saying what to install when sshd cannot run.
 */
import { sshdMissing } from '../../scripts/sshd-hosts';
export * from '../../scripts/sshd-hosts';

/** `describe`, or `describe.skip` with the reason as its title when sshd cannot run here. */
export function describeWithSshd(title: string, fn: () => void): void {
  const missing = sshdMissing();
  if (missing) describe.skip(`${title} (SKIPPED: ${missing})`, fn);
  else describe(title, fn);
}
