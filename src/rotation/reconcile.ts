/**
 * What a restore writes for each stored value, decided in pure code from
 * the live value and the backed-up one at the same place (`ValuePair`).
 * The rule (README, "Restore"): after a restore every value opens with the
 * backup's key, and no newer value is thrown away.
 *
 * - unchanged since the backup (it opens, to the same plaintext as the
 *   backed-up value): the backed-up text is put back;
 * - changed or added after the backup (it opens with a key on disk: the
 *   live key, which must open the live canary, or the backup's key): the
 *   live plaintext is re-sealed under the backup's key and kept;
 * - opens with no key on disk but the backup has a value there that opens
 *   with the backup's key: the backed-up text is put back (the live value
 *   was damaged, or sealed under a key that is lost);
 * - opens with no key on disk and the backup has nothing usable there: the
 *   restore is refused, naming it, and nothing is changed;
 * - only in the backup (the row or value was removed since): left as it is.
 *
 * A JSON document is one stored value: it is unchanged when its non-secret
 * parts and the plaintexts of its sealed members are. Values whose entry
 * names an additional-data column are opened and sealed with the live
 * row's text of that column.
 */
import { codecByName } from '../crypto/codec';
import { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { ErrorCode, MasterKeyError } from '../errors';
import { InventoryEntry, Inventory } from '../inventory/inventory';
import { findEntrySlots, parseJsonLossless, stringifyJsonLossless } from '../engine/json-document';
import type { Location, SecretFailure, ValuePair } from '../store/store';

/** How many stored values fell under each rule. */
export interface ReconcileTally {
  /** Opened to the same plaintext as the backup's: the backed-up text is put back. */
  unchanged: number;
  /** Changed after the backup: the live plaintext, re-sealed under the backup's key. */
  changed: number;
  /** Added after the backup: the live plaintext, re-sealed under the backup's key. */
  added: number;
  /** Opened with no key on disk: the backed-up text is put back. */
  putBack: number;
  /** In the backup but no longer live: left as it is. */
  removed: number;
}

export const MAX_LISTED = 1000;

/** One column of one table and how its values are read. */
interface ColumnRule {
  readonly json: boolean;
  readonly entries: readonly InventoryEntry[];
}

/** A stored value opened: a canonical view of its plaintext(s), and how to seal it under another key. */
type Opened = { readonly ok: true; readonly plain: string; reseal(key: MasterKey): string } | { readonly ok: false; readonly kind: string; readonly path?: string; readonly code: ErrorCode };

function codeOf(e: unknown): ErrorCode {
  if (e instanceof MasterKeyError) return e.code;
  throw e;
}

/** A value's additional authenticated data: the text of its entry's AAD column in the live row (none when the entry names none, or it is NULL). */
function aadFor(entry: InventoryEntry, aad: ValuePair['aad']): Uint8Array | undefined {
  if (!entry.aad) return undefined;
  const v = aad?.[entry.aad.column];
  return v === null || v === undefined ? undefined : Buffer.from(v, 'utf8');
}

/**
 * Opens every sealed value of a stored text with `ring`, each with its
 * entry's additional data from the live row (`aad`; a backed-up value was
 * sealed with the same, unless that column changed since: then it does not
 * open, and counts as changed or put back like any other).
 */
function openStored(text: string, rule: ColumnRule, ring: Keyring, aad: ValuePair['aad']): Opened {
  if (!rule.json) {
    const entry = rule.entries[0];
    const codec = codecByName(entry.codec);
    const ad = aadFor(entry, aad);
    try {
      const pt = ring.open(codec, text, ad).plaintext;
      return { ok: true, plain: Buffer.from(pt).toString('base64'), reseal: (key) => codec.seal(key, pt, { aad: ad }) };
    } catch (e) {
      return { ok: false, kind: entry.kind, code: codeOf(e) };
    }
  }
  let doc;
  try {
    doc = parseJsonLossless(text);
  } catch (e) {
    return { ok: false, kind: rule.entries[0].kind, code: codeOf(e) };
  }
  const slots = findEntrySlots(doc, rule.entries);
  const opened: Array<{ pt: Uint8Array; set: (v: string) => void; codec: ReturnType<typeof codecByName>; ad?: Uint8Array }> = [];
  for (const { entry, slot } of slots) {
    const codec = codecByName(entry.codec);
    const ad = aadFor(entry, aad);
    try {
      opened.push({ pt: ring.open(codec, slot.value, ad).plaintext, set: (v) => slot.set(v), codec, ad });
    } catch (e) {
      return { ok: false, kind: entry.kind, path: slot.path, code: codeOf(e) };
    }
  }
  // The document with each sealed member replaced by its plaintext: equal views, equal content.
  for (const o of opened) o.set(`\u0000${Buffer.from(o.pt).toString('base64')}`);
  const plain = stringifyJsonLossless(doc);
  return {
    ok: true,
    plain,
    reseal(key) {
      for (const o of opened) o.set(o.codec.seal(key, o.pt, { aad: o.ad }));
      return stringifyJsonLossless(doc);
    },
  };
}

/**
 * Decides a restore batch by batch (`decide`, a `RestoreDecision`),
 * counting what it did and listing what it must refuse.
 */
export class Reconciler {
  readonly tally: ReconcileTally = { unchanged: 0, changed: 0, added: 0, putBack: 0, removed: 0 };
  readonly refused: SecretFailure[] = [];
  refusedCount = 0;
  private readonly rules = new Map<string, ColumnRule>();
  private readonly live: Keyring;
  private readonly backup: Keyring;

  /**
   * @param liveKeys keys that may open live values (the live key when it opens the live canary, and the backup's key)
   * @param backupKey the key the restore puts back: every value ends up sealed under it
   */
  constructor(
    private readonly inv: Inventory,
    liveKeys: readonly MasterKey[],
    private readonly backupKey: MasterKey,
  ) {
    this.live = new Keyring([...liveKeys, backupKey]);
    this.backup = new Keyring([backupKey]);
  }

  private rule(loc: Location): ColumnRule {
    const k = `${loc.table}\u0000${loc.column}`;
    let r = this.rules.get(k);
    if (!r) {
      const entries = this.inv.entries.filter((e) => e.table === loc.table && e.column === loc.column);
      if (entries.length === 0) throw new MasterKeyError('INVENTORY_INVALID', `The backup holds ${loc.table}.${loc.column}, which the inventory does not list; pass the --inventory the rotation used.`);
      this.rules.set(k, (r = { json: entries.some((e) => e.jsonPath !== undefined), entries }));
    }
    return r;
  }

  /** The text to store for each pair (undefined: leave the row as it is). */
  decide = (loc: Location, pairs: readonly ValuePair[]): Array<string | undefined> => pairs.map((p) => this.one(loc, p));

  private one(loc: Location, p: ValuePair): string | undefined {
    const rule = this.rule(loc);
    if (p.live === undefined) {
      this.tally.removed++;
      return undefined;
    }
    if (p.backup !== undefined && p.live === p.backup) {
      this.tally.unchanged++;
      return undefined;
    }
    const live = openStored(p.live, rule, this.live, p.aad);
    const saved = p.backup !== undefined ? openStored(p.backup, rule, this.backup, p.aad) : undefined;
    if (live.ok) {
      if (saved?.ok && saved.plain === live.plain) {
        this.tally.unchanged++;
        return p.backup;
      }
      if (p.backup !== undefined) this.tally.changed++;
      else this.tally.added++;
      return live.reseal(this.backupKey);
    }
    if (saved?.ok) {
      this.tally.putBack++;
      return p.backup;
    }
    this.refusedCount++;
    if (this.refused.length < MAX_LISTED) {
      this.refused.push({ table: loc.table, column: loc.column, id: p.id, kind: live.kind, ...(live.path !== undefined ? { path: live.path } : {}), code: live.code });
    }
    return undefined;
  }
}
