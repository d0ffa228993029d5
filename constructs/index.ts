/**
 * cdktf-master-key's CDKTF construct library: the `MasterKey` construct, its
 * inventory helper and the `MasterKeyPolicy` Aspect with its pure rules.
 */
export { MasterKey, ROTATION_RESOURCE_ID, defaultCliCommand, rotationLogicalId } from './master-key';
export { MasterKeyInventory } from './inventory-source';
export { ensureMasterkeyProvider, masterkeyKey, masterkeyProvider, masterkeyStatus } from './provider-binding';
export type { DataMasterkeyStatus, DataMasterkeyStatusConfig, MasterkeyInstallationConfig, MasterkeyKey, MasterkeyKeyConfig, MasterkeyProvider, MasterkeyProviderConfig } from './provider-binding';
export {
  CONFIG_FORMATS,
  DEFAULT_DATABASE_URL_ENV,
  DEFAULT_KEY_NAME,
  ROTATION_RESOURCE_TYPES,
  resolveSettings,
  rotationArgv,
  rotationTriggers,
} from './settings';
export type {
  ConfigFormat,
  MasterKeyChecksOptions,
  MasterKeyProps,
  MasterKeySettings,
  PolicySuppression,
  ResolveContext,
  RotationPolicyProps,
  RotationResourceType,
} from './settings';
export {
  DEFAULT_MAX_ROTATION_DAYS,
  MasterKeyPolicy,
  POLICY_RULES,
  absolutePathsRule,
  backupDirRule,
  checkSuppressions,
  evaluatePolicy,
  formatFinding,
  healthCheckRule,
  maxRotationPeriodRule,
  noCredentialsRule,
  nonEmptyInventoryRule,
  rotationPolicyRule,
} from './policy';
export type { FindingLevel, PolicyFinding, PolicyInput, PolicyRule } from './policy';
export { DEFAULT_EPOCH, describeWindow, rotationWindow, windowStartIso } from './window';
export type { RotationWindow } from './window';
export { credentialKinds, findCredentials, looksLikeCredential } from './credentials';
export { escapeTerraformTemplate, localExecCommand, shellQuote } from './shell';
