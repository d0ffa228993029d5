/**
 * Every fuzz target, one per parser of outside input. A new parser adds its
 * target here (and gets a corpus directory test/fuzz-corpus/<name>/ as soon
 * as an input finds a bug in it).
 */
import type { AnyTarget } from './harness';
import { AGE_HEADER_TARGET } from './targets/age-header';
import { CODEC_TARGET } from './targets/codec';
import { DOTENV_TARGET, JSON_TARGET, XML_TARGET } from './targets/config';
import { DOCUMENTS_TARGET } from './targets/documents';
import { BACKUP_TARGET, BACKUP_VALUES_TARGET, PENDING_TARGET, SAVED_PLAN_TARGET } from './targets/files';
import { INVENTORY_TARGET } from './targets/inventory';
import { PROVIDER_TARGET } from './targets/provider';
import { SSH_ADDRESS_TARGET } from './targets/ssh-address';
import { URL_TARGET } from './targets/urls';

export const TARGETS: readonly AnyTarget[] = [DOTENV_TARGET, JSON_TARGET, XML_TARGET, INVENTORY_TARGET, CODEC_TARGET, URL_TARGET, BACKUP_TARGET, BACKUP_VALUES_TARGET, PENDING_TARGET, SAVED_PLAN_TARGET, PROVIDER_TARGET, DOCUMENTS_TARGET, SSH_ADDRESS_TARGET, AGE_HEADER_TARGET];
