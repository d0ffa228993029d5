/**
 * Verification after a re-encryption, whatever store reads the rows: the
 * digest of every stored value and its place, counts per kind, and a
 * uniform random sample opened with the new key (`VerifyScan`), and what
 * that proves, in words for the report.
 */
import type { CodecName } from '../crypto/codec';
import type { MasterKey } from '../crypto/key';
import { Keyring } from '../crypto/keyring';
import { MasterKeyError } from '../errors';
import { count } from '../format';
import { Inventory } from '../inventory/inventory';
import { DIGEST_GROUPS, InventoryDigest, ValueDigest, differingGroups, placeGroup, sameDigest } from './digest';
import { RawRows, rawText } from './raw-rows';
import { BatchRow, FoundValue, RowShape, aadOf, eachValue, rowId } from './rows';
import { Reservoir } from './sample';
import { valueCrypto } from './value-crypto';
import { KindCounter, MAX_LISTED_FAILURES, ScanResult, SecretFailure, WalkOptions } from './walk';

/** Options of `verifyInventory`. */
export interface VerifyOptions extends WalkOptions {
  /** The digest `reencryptInventory` returned; the stored values are compared with it. */
  readonly expected?: InventoryDigest;
  /** Values chosen at random (CSPRNG) and opened with the key. @default DEFAULT_SAMPLE_SIZE */
  readonly sampleSize?: number;
}

/** What a verification found, and what that proves. */
export interface VerifyResult {
  /** Sealed values stored now. */
  readonly total: number;
  readonly byKind: Readonly<Record<string, number>>;
  /** The digest of the stored values. */
  readonly digest: InventoryDigest;
  /** Whether it equals `expected` (absent when none was given). */
  readonly digestMatches?: boolean;
  /** Values opened with the key (all of them when the sample size is at least the total). */
  readonly sampled: number;
  /** Sampled values that do not open with the key (at most `MAX_LISTED_FAILURES`). */
  readonly sampleFailures: readonly SecretFailure[];
  /**
   * Where the stored values differ from what was written (a server
   * started again wrote since): the groups of places whose sums differ,
   * and every value stored in them, opened with the key.
   */
  readonly changedSince?: ChangedSince;
  /** Every sampled value opens, and the stored values are what was written (when expected), or else every value where they differ opens. */
  readonly ok: boolean;
  /** What was proved, as a sentence or two for the report (names only the key's fingerprint). */
  readonly proved: string;
}

export const DEFAULT_SAMPLE_SIZE = 1000;

/** The values where stored and written differ, each opened with the key (`VerifyResult.changedSince`). */
export interface ChangedSince {
  /** Groups of places (of `DIGEST_GROUPS`) whose stored values differ from the written ones. */
  readonly groups: number;
  /** Values the rotation wrote in the other groups: stored exactly as written. */
  readonly asWritten: number;
  /** Values stored now in those groups, each opened with the key. */
  readonly opened: number;
  /** Those that do not open (at most `MAX_LISTED_FAILURES` listed), and how many. */
  readonly failures: readonly SecretFailure[];
  readonly failureCount: number;
}

/** Which places a second look opens: those of these digest groups. */
export type PlaceFilter = (table: string, column: string, id: string) => boolean;

/** The filter of the places in `groups` (`placeGroup`). */
export function inGroups(groups: readonly number[]): PlaceFilter {
  const set = new Set(groups);
  return (table, column, id) => set.has(placeGroup(table, column, id));
}

/** A value kept for the sample. */
export interface Sampled extends Omit<FoundValue, 'row'> {
  readonly table: string;
  readonly id: string;
}

/** What one part of a verification scan split by rows gathered (`VerifyScan.part`), to be absorbed by the scan of another part. */
export interface VerifyPart {
  readonly digest: InventoryDigest;
  readonly byKind: Readonly<Record<string, number>>;
  /** Values offered to the sample, and the sample kept. */
  readonly seen: number;
  readonly sample: readonly Sampled[];
}

/**
 * What verification gathers as a store reads the stored rows, whatever
 * reads them (PostgreSQL's COPY, SQLite's batches): the digest of every
 * value and its place, counts per kind, and a uniform random sample.
 * `finish` opens the sample with the key and says what was proved. A scan
 * split by rows (several readers) gathers each part apart and `absorb`s
 * the others' parts before `finish`.
 */
export class VerifyScan {
  private readonly digest = new ValueDigest();
  private readonly counter: KindCounter;
  private readonly sample: Reservoir<Sampled>;

  constructor(
    inv: Inventory,
    private readonly opts: VerifyOptions = {},
  ) {
    const sampleSize = opts.sampleSize ?? DEFAULT_SAMPLE_SIZE;
    if (!Number.isInteger(sampleSize) || sampleSize < 0) throw new MasterKeyError('USAGE', `The sample size must be a non-negative integer, got ${sampleSize}.`);
    this.counter = new KindCounter(inv);
    this.sample = new Reservoir<Sampled>(sampleSize);
  }

  /** One batch of a table's rows, laid out as `shape` says. */
  add(rows: readonly BatchRow[], shape: RowShape): void {
    const { table } = shape;
    const byKind = new Map<string, number>();
    eachValue(rows, shape, (v) => {
      const id = rowId(rows, v.row, shape);
      this.digest.add(table, v.column, v.path, id, v.sealed);
      byKind.set(v.entry.kind, (byKind.get(v.entry.kind) ?? 0) + 1);
      this.sample.offer(() => ({ table, id, column: v.column, entry: v.entry, sealed: v.sealed, ...(v.path !== undefined ? { path: v.path } : {}), ...(v.aad ? { aad: v.aad } : {}) }));
    });
    this.counter.add(byKind);
    this.opts.onProgress?.(this.counter.total);
  }

  /**
   * The same as `add` for rows read undecoded (`RawRows`) of a table whose
   * columns are all plain text (no JSON documents): hashes the bytes where
   * they are, and decodes only the values the sample keeps.
   */
  addRaw(rows: RawRows, shape: RowShape): void {
    const { table, first, idAt } = shape;
    const { buf, at, fields } = rows;
    const byKind = new Map<string, number>();
    shape.columns.forEach((c, k) => {
      if (c.json) throw new MasterKeyError('INTERNAL', `${table}.${c.column} holds JSON documents, which verification cannot read undecoded; this is a bug.`);
      const entry = c.entries[0];
      const head = Buffer.from(`${table}\u0000${c.column}\u0000\u0000`, 'utf8');
      let n = 0;
      for (let r = 0; r < rows.count; r++) {
        const v = 2 * (r * fields + first + k);
        if (at[v + 1] < 0) continue;
        const id = 2 * (r * fields + idAt);
        // A NULL id hashes as the empty text, as `add` has it.
        this.digest.addBytes(head, buf, at[id], Math.max(at[id + 1], 0), at[v], at[v + 1]);
        n++;
        this.sample.offer(() => {
          const row = Array.from({ length: fields }, (_, f) => rawText(rows, r, f));
          const aad = aadOf(entry, row, shape.aad);
          return { table, id: row[idAt] ?? '', column: c.column, entry, sealed: row[first + k]!, ...(aad ? { aad } : {}) };
        });
      }
      if (n > 0) byKind.set(entry.kind, (byKind.get(entry.kind) ?? 0) + n);
    });
    this.counter.add(byKind);
    this.opts.onProgress?.(this.counter.total);
  }

  /** What this part gathered, for another part's scan to absorb. */
  part(): VerifyPart {
    return { digest: this.digest.result(), byKind: this.counter.byKind, seen: this.sample.seen, sample: this.sample.items };
  }

  /** Adds another part of the same scan (call before `finish`, once every value was added). */
  absorb(p: VerifyPart): void {
    this.digest.merge(p.digest);
    this.counter.add(new Map(Object.entries(p.byKind)));
    this.sample.absorb(p.sample, p.seen);
  }

  /**
   * The groups of places whose stored values differ from `opts.expected`
   * (call once every value was added): the store opens every value stored
   * in them with the key (`inGroups`) and hands that scan to `finish`.
   */
  differingGroups(): number[] {
    return this.opts.expected ? differingGroups(this.stored(), this.opts.expected) : [];
  }

  private storedDigest?: InventoryDigest;
  private stored(): InventoryDigest {
    return (this.storedDigest ??= this.digest.result());
  }

  /** Opens the sample with `key`, compares the digest with `opts.expected`, and, where they differ, takes `reopened` (every value of the differing groups opened with `key`). */
  async finish(key: MasterKey, reopened?: ScanResult): Promise<VerifyResult> {
    const { opts } = this;
    const sampleFailures = await openSample(this.sample.items, key, opts);
    const stored = this.stored();
    const digestMatches = opts.expected ? sameDigest(stored, opts.expected) : undefined;
    const sampled = this.sample.items.length;
    let changedSince: ChangedSince | undefined;
    if (opts.expected && digestMatches === false && reopened) {
      const groups = differingGroups(stored, opts.expected);
      const inThem = groups.reduce((n, g) => n + (opts.expected!.groups?.counts[g] ?? 0), 0);
      changedSince = { groups: groups.length, asWritten: opts.expected.count - inThem, opened: reopened.total, failures: reopened.failures, failureCount: reopened.failureCount };
    }
    const ok = sampleFailures.length === 0 && (digestMatches !== false || (changedSince !== undefined && changedSince.failureCount === 0));
    return {
      total: this.counter.total,
      byKind: this.counter.byKind,
      digest: stored,
      ...(digestMatches !== undefined ? { digestMatches } : {}),
      sampled,
      sampleFailures,
      ...(changedSince ? { changedSince } : {}),
      ok,
      proved: provedText(stored, opts.expected, sampled, sampleFailures.length, key, changedSince),
    };
  }
}

/** Opens the sampled values with `key`; returns those that do not open. */
async function openSample(items: readonly Sampled[], key: MasterKey, opts: WalkOptions): Promise<SecretFailure[]> {
  const crypto = valueCrypto({ from: new Keyring([key]) }, opts);
  const failures: SecretFailure[] = [];
  try {
    for (const codec of new Set<CodecName>(items.map((s) => s.entry.codec))) {
      const group = items.filter((s) => s.entry.codec === codec);
      const results = await crypto.process(
        codec,
        group.map((s) => s.sealed),
        group.some((s) => s.aad) ? group.map((s) => s.aad) : undefined,
      );
      results.forEach((r, i) => {
        const s = group[i];
        if (r.code && failures.length < MAX_LISTED_FAILURES) failures.push({ table: s.table, column: s.column, id: s.id, kind: s.entry.kind, ...(s.path !== undefined ? { path: s.path } : {}), code: r.code });
      });
    }
  } finally {
    await crypto.close();
  }
  return failures;
}

function provedText(stored: InventoryDigest, expected: InventoryDigest | undefined, sampled: number, failed: number, key: MasterKey, changed?: ChangedSince): string {
  const parts: string[] = [];
  if (expected && sameDigest(stored, expected)) {
    parts.push(`The database stores exactly the ${count(expected.count)} values the re-encryption wrote, each at the place it was written (equal order-independent SHA-256 sums over table, column, row id, path and text).`);
  } else if (expected && changed) {
    parts.push(
      `Values were added, changed or removed since the re-encryption (${count(stored.count)} values stored, ${count(expected.count)} written): ` +
        `${count(changed.asWritten)} of the values it wrote are stored exactly as written (equal SHA-256 sums in ${count(DIGEST_GROUPS - changed.groups)} of ${count(DIGEST_GROUPS)} groups of places); ` +
        `in the ${count(changed.groups)} other group(s), ${changed.failureCount === 0 ? `all ${count(changed.opened)} values stored now open` : `${count(changed.failureCount)} of the ${count(changed.opened)} values stored now do not open`} with ${key.fingerprint}.`,
    );
  } else if (expected) {
    parts.push(`The stored values differ from what the re-encryption wrote (${count(stored.count)} values stored, ${count(expected.count)} written; the sums ${stored.sum === expected.sum ? 'are equal' : 'differ'}).`);
  } else {
    parts.push(`Read ${count(stored.count)} stored values (digest ${stored.sum.slice(0, 16)}…); no digest of a re-encryption was given to compare with.`);
  }
  const all = sampled === stored.count;
  if (sampled === 0) parts.push('No value was decrypted.');
  else if (failed === 0) parts.push(`${all ? `All ${count(sampled)} values` : `${count(sampled)} values chosen at random`} open with ${key.fingerprint}.`);
  else parts.push(`${count(failed)} of ${count(sampled)} ${all ? '' : 'randomly chosen '}values do not open with ${key.fingerprint}.`);
  return parts.join(' ');
}
