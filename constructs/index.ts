/**
 * cdktf-master-key's CDKTF construct library: the `MasterKey` construct, its
 * inventory helper and the `MasterKeyPolicy` Aspect with its pure rules.
 */
export { MasterKey, ROTATION_RESOURCE_ID, defaultCliCommand, rotationLogicalId } from './master-key';
export type { IRotationResource } from './master-key';
export { MasterKeyInventory } from './inventory-source';
export { ensureMasterkeyProvider, masterkeyKey, masterkeyProvider, masterkeyStatus } from './provider-binding';
export type { DataMasterkeyStatus, DataMasterkeyStatusConfig, MasterkeyInstallationConfig, MasterkeyKey, MasterkeyKeyConfig, MasterkeyProvider, MasterkeyProviderConfig } from './provider-binding';
export { CONFIG_FORMATS, ConfigFormat, DEFAULT_DATABASE_URL_ENV, DEFAULT_KEY_NAME, FindingLevel, ROTATION_RESOURCE_TYPES, RotationResourceType } from './types';
export type {
  IPolicyRule,
  KeyDeclaration,
  MasterKeyChecksOptions,
  MasterKeyConnection,
  MasterKeyPolicyProps,
  MasterKeyProps,
  MasterKeySettings,
  PolicyFinding,
  PolicyInput,
  PolicyRule,
  PolicySuppression,
  RotationPolicyProps,
} from './types';
export { resolveSettings, rotationArgv, rotationTriggers } from './settings';
export type { ResolveContext } from './settings';
export {
  DEFAULT_MAX_ROTATION_DAYS,
  POLICY_RULES,
  absolutePathsRule,
  backupDirRule,
  backupRecipientsRule,
  healthCheckRule,
  maxRotationPeriodRule,
  noCredentialsRule,
  nonEmptyInventoryRule,
  rotationPolicyRule,
} from './policy-rules';
export { MasterKeyPolicy, RULE_FAILED_ID, checkSuppressions, evaluatePolicy, formatFinding } from './policy';
export { DEFAULT_EPOCH, describeWindow, rotationWindow, windowStartIso } from './window';
export type { RotationWindow } from './window';
export { credentialKinds, findCredentials, looksLikeCredential } from './credentials';
export { escapeTerraformTemplate, localExecCommand, shellQuote } from './shell';
