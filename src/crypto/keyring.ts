/**
 * A keyring holds several master keys by id, so a reader can open secrets
 * sealed under the old or the new key.
 */
import { KeySource, Opened, SecretCodec } from './codec';
import { MasterKey } from './key';

export class Keyring implements KeySource {
  private readonly keys = new Map<string, MasterKey>();

  constructor(keys: Iterable<MasterKey> = []) {
    for (const k of keys) this.add(k);
  }

  add(key: MasterKey): this {
    this.keys.set(key.id, key);
    return this;
  }

  byId(id: string): MasterKey | undefined {
    return this.keys.get(id);
  }

  all(): readonly MasterKey[] {
    return [...this.keys.values()];
  }

  get size(): number {
    return this.keys.size;
  }

  /** Opens a sealed value with the codec (and the value's own additional data, if it has any); throws a typed SEALED_* error. */
  open(codec: SecretCodec, sealed: string, aad?: Uint8Array): Opened {
    return codec.open(this, sealed, aad);
  }

  /** Opens a sealed value and decodes the plaintext as UTF-8. */
  openText(codec: SecretCodec, sealed: string, aad?: Uint8Array): string {
    return Buffer.from(codec.open(this, sealed, aad).plaintext).toString('utf8');
  }

  toJSON(): string[] {
    return this.all().map((k) => k.fingerprint);
  }
}
