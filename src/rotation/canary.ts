/**
 * What the integrity canary means, whatever store keeps it: a known text
 * sealed (v1 codec) under the current key. A key that opens it is the
 * database's key (ACT's "Old master key incorrect" check).
 */
import { v1Codec } from '../crypto/codec';
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { MasterKeyError, isMasterKeyError } from '../errors';
import { CanaryRow, CanaryUpdate, canaryNotFound } from '../store/store';

/** The known plaintext sealed in the canary. */
export const CANARY_PLAINTEXT = 'cdktf-master-key integrity canary v1';

export function sealCanary(key: MasterKey): string {
  return v1Codec().seal(key, Buffer.from(CANARY_PLAINTEXT, 'utf8'));
}

/** A canary for `key`, set `at`: its fingerprint, generation and the sealed known text. */
export function canaryFor(key: MasterKey, generation: number, at: Date): CanaryUpdate {
  return { fingerprint: key.fingerprint, generation, sealed: sealCanary(key), keyCreatedAt: at, updatedAt: at };
}

/** True when the key opens the canary to the known plaintext. */
export function canaryOpensWith(canary: Pick<CanaryRow, 'sealed'>, key: MasterKey): boolean {
  try {
    return new Keyring([key]).openText(v1Codec(), canary.sealed) === CANARY_PLAINTEXT;
  } catch (e) {
    if (isMasterKeyError(e)) return false;
    throw e;
  }
}

/** The canary, or CANARY_NOT_FOUND with what to do. */
export function requireCanary(canary: CanaryRow | undefined): CanaryRow {
  if (!canary) throw canaryNotFound();
  return canary;
}

/** Proves that `key` is the database's current key (ACT's "Old master key incorrect"). */
export function assertKeyOpensCanary(canary: CanaryRow, key: MasterKey, source: string): void {
  if (!canaryOpensWith(canary, key)) {
    throw new MasterKeyError(
      'OLD_KEY_INCORRECT',
      `Old master key incorrect: ${source} (${key.fingerprint}) does not open the integrity canary, which is sealed under ${canary.fingerprint} (generation ${canary.generation}); put the database's current key in the config file (see \`master-key recover\` if a rotation was interrupted).`,
      { configured: key.fingerprint, database: canary.fingerprint },
    );
  }
}
