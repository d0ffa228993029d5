/**
 * The built-in policy rules, after cdk-nag: each is one small pure predicate
 * over a key's declaration (its settings and raw props) that returns findings
 * naming the prop and the fix. `MasterKeyPolicy` (policy.ts) runs them. A new
 * rule is one more entry here and in `POLICY_RULES`.
 */
import { isAbsolute } from 'node:path';
import { isLocalAddress } from '../src/config/nodes';
import { findCredentials, quotable } from './credentials';
import { FindingLevel, IPolicyRule, PolicyInput } from './types';

/** The longest rotation period allowed unless the checks say otherwise. */
export const DEFAULT_MAX_ROTATION_DAYS = 365;

/** A built-in rule: every finding it returns has its id and level. */
function rule(id: string, level: FindingLevel, description: string, check: (input: PolicyInput) => Array<{ problem: string; fix: string }>): IPolicyRule {
  return { id, description, check: (input) => check(input).map((f) => ({ ruleId: id, level, ...f })) };
}

/** The rotation period must not exceed the allowed maximum. */
export const maxRotationPeriodRule = rule('MasterKey-MaxRotationPeriod', FindingLevel.ERROR, 'The rotation period is at most the allowed maximum (365 days unless configured).', ({ settings, maxRotationDays }) =>
  settings.window && settings.window.periodDays > maxRotationDays
    ? [{ problem: `rotationPolicy.periodDays is ${settings.window.periodDays} days, longer than the ${maxRotationDays} days the policy allows`, fix: `set rotationPolicy.periodDays to ${maxRotationDays} or less` }]
    : [],
);

/** A key without a rotation schedule only rotates when someone remembers to. */
export const rotationPolicyRule = rule('MasterKey-RotationPolicy', FindingLevel.WARNING, 'The key has a rotation schedule.', ({ settings, maxRotationDays }) =>
  settings.window ? [] : [{ problem: 'no rotationPolicy is set, so the key rotates only when generation is raised by hand', fix: `set rotationPolicy: { periodDays: 90 } (at most ${maxRotationDays})` }],
);

/** Every path the rotation script is given must be absolute. */
export const absolutePathsRule = rule('MasterKey-AbsolutePaths', FindingLevel.ERROR, 'Config files, inventory, backup, report and new-key paths are absolute.', ({ settings: s }) => {
  const paths: Array<[string, string | undefined]> = [
    // A node on another host (ssh://host/path) is absolute by its address's rules (parseSshAddress).
    ...s.configFiles.map((f, i): [string, string | undefined] => [`configFiles[${i}]`, isLocalAddress(f) ? f : undefined]),
    ['backupDir', s.backupDir],
    ['reportDir', s.reportDir],
    ['newKeyFile', s.newKeyFile],
  ];
  const found = paths
    .filter((p): p is [string, string] => p[1] !== undefined && !isAbsolute(p[1]))
    .map(([prop, p]) => ({ problem: `${prop} ${quotable(p)} is a relative path, which the rotation would resolve against terraform's working directory`, fix: `give an absolute path (starting with /)` }));
  if (s.inventory.isRelativeFile) {
    found.push({ problem: `the inventory file ${quotable(s.inventory.spec)} is a relative path`, fix: 'load it with MasterKeyInventory.fromFile(<absolute path>)' });
  }
  return found;
});

/** An inventory without entries would rotate the canary and nothing else. */
export const nonEmptyInventoryRule = rule('MasterKey-NonEmptyInventory', FindingLevel.ERROR, 'The secret inventory lists at least one location.', ({ settings }) =>
  settings.inventory.inventory.entries.length === 0
    ? [{ problem: `the inventory "${settings.inventory.inventory.name}" lists no secret locations, so a rotation would leave every secret sealed under the old key`, fix: 'list the tables and columns holding sealed secrets, or use MasterKeyInventory.act()' }]
    : [],
);

/** No prop may hold something that looks like a credential. */
export const noCredentialsRule = rule('MasterKey-NoCredentials', FindingLevel.ERROR, 'No prop holds a credential (URL with a password, 64-hex key, private key, password setting, token).', ({ props }) =>
  findCredentials(props).map((f) => ({
    problem: `${f.path} looks like it contains ${f.kinds.join(' and ')} (value not shown), which would be written to cdk.tf.json and the terraform state`,
    fix: 'remove it: the database URL comes from the environment variable named by databaseUrlEnv, keys live only in the config files',
  })),
);

/** A rotation without a backup directory cannot take its safety backup. */
export const backupDirRule = rule('MasterKey-BackupDir', FindingLevel.ERROR, 'A backup directory is set.', ({ settings }) =>
  settings.backupDir === undefined ? [{ problem: 'backupDir is not set, so the rotation would have nowhere to back up secrets and config first', fix: 'set backupDir to an absolute directory, e.g. "/var/backups/act-master-key"' }] : [],
);

/** A backup without recipients keeps the old key readable next to every value it sealed (issue 19). */
export const backupRecipientsRule = rule('MasterKey-BackupRecipients', FindingLevel.WARNING, 'Backups are sealed to age recipients.', ({ settings }) =>
  settings.backupRecipients.length === 0
    ? [
        {
          problem: 'backupRecipients is not set, so every backup holds the old key in cleartext next to the values it sealed: anyone who can read the backup directory can open every secret as it stood at rotation time',
          fix: 'set backupRecipients to the age recipient of an escrow holder (age-keygen -y prints it), or suppress MasterKey-BackupRecipients with the reason the backup directory is protected otherwise',
        },
      ]
    : [],
);

/** Starting the server again without a health check hides a failed start. */
export const healthCheckRule = rule('MasterKey-HealthCheck', FindingLevel.WARNING, 'A server that is restarted is health-checked.', ({ settings }) =>
  settings.startCommand !== undefined && settings.healthCommand === undefined
    ? [{ problem: 'startCommand is set without healthCommand, so a server that fails to come back after the rotation goes unnoticed', fix: 'set healthCommand, e.g. "curl -fsS http://127.0.0.1:8080/health"' }]
    : [],
);

/** Every rule, in the order findings are reported. */
export const POLICY_RULES: readonly IPolicyRule[] = [
  maxRotationPeriodRule,
  rotationPolicyRule,
  absolutePathsRule,
  nonEmptyInventoryRule,
  noCredentialsRule,
  backupDirRule,
  backupRecipientsRule,
  healthCheckRule,
];
