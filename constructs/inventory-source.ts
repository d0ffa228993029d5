/**
 * Which secrets a master key protects, as the construct sees it: the built-in
 * ACT preset or a custom inventory JSON file. Either way the inventory is
 * loaded at synth so its digest can go into the rotation trigger (a changed
 * inventory shows up in `terraform plan`).
 */
import { isAbsolute } from 'node:path';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { Inventory, inventoryDigest, inventoryKinds, loadInventory, validateInventory } from '../src/inventory/inventory';

const IS_INVENTORY = Symbol.for('cdktf-master-key.MasterKeyInventory');

/** A secret inventory handed to a `MasterKey` construct. */
export class MasterKeyInventory {
  /**
   * True for a `MasterKeyInventory` of any copy of this library (two
   * versions installed side by side each have their own class, so
   * `instanceof` would say no).
   */
  static isMasterKeyInventory(x: unknown): x is MasterKeyInventory {
    return x !== null && typeof x === 'object' && IS_INVENTORY in x;
  }

  /** The built-in inventory for ACT's schema (`--inventory act`). */
  static act(): MasterKeyInventory {
    return new MasterKeyInventory('act', ACT_PRESET);
  }

  /**
   * A custom inventory from a JSON file (`{ "name": ..., "entries": [...] }`),
   * read and validated now. The path must be absolute: the rotation script
   * reads the same file at apply time.
   */
  static fromFile(path: string): MasterKeyInventory {
    return new MasterKeyInventory(path, loadInventory(path));
  }

  /**
   * An inventory given as data, for tests and for checking a file's content
   * before writing it; `spec` is what the rotation script is given
   * (`act` or the absolute path of a file with this content).
   */
  static fromData(spec: string, inventory: unknown): MasterKeyInventory {
    return new MasterKeyInventory(spec, validateInventory(inventory, `The inventory for ${spec}`));
  }

  private constructor(
    /** What `--inventory` is given: `act` or the path of the inventory file. */
    readonly spec: string,
    /** The inventory itself (validated). */
    readonly inventory: Inventory,
  ) {
    Object.defineProperty(this, IS_INVENTORY, { value: true });
  }

  /** A stable digest of what the inventory covers, e.g. `sha256:0123456789abcdef`. */
  get digest(): string {
    return inventoryDigest(this.inventory);
  }

  /** True for a file inventory whose path is relative. */
  get isRelativeFile(): boolean {
    return this.spec !== 'act' && !isAbsolute(this.spec);
  }

  /** How a reviewer reads it in the plan: `act sha256:… (9 locations, 6 kinds)`. */
  describe(): string {
    const n = this.inventory.entries.length;
    const kinds = inventoryKinds(this.inventory).length;
    const label = this.spec === 'act' ? 'act' : `${this.inventory.name} (${this.spec})`;
    return `${label} ${this.digest} (${n} location${n === 1 ? '' : 's'}, ${kinds} kind${kinds === 1 ? '' : 's'})`;
  }
}
