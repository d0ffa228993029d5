/**
 * The store contract (`src/store/store.ts`) as a kit: what every store must
 * guarantee, checked on a real database of the store through the factory
 * that opens it from a URL. A store runs it with one line in a test file of
 * its own, `storeContract(FIXTURE)`, given a `StoreFixture` (./stores.ts)
 * that makes its databases. The CLI suites test the same behaviour end to
 * end. `docs/stores.md` says what a new store implements.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { removeScratch, scratchDir } from '../../scripts/scratch';
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec, v1Codec } from '../../src/crypto/codec';
import { MasterKey } from '../../src/crypto/key';
import { MasterKeyError } from '../../src/errors';
import { Keyring } from '../../src/crypto/keyring';
import { ACT_PRESET } from '../../src/inventory/act-preset';
import { Inventory } from '../../src/inventory/inventory';
import { BackupDirectory, BackupDirectorySource } from '../../src/rotation/backup';
import { canaryFor, canaryOpensWith } from '../../src/rotation/canary';
import { openStore, withStore } from '../../src/store/open';
import { BackupPart, BackupToRestore, CanaryRow, HistoryRow, RETIRED_OUTCOME, Store, sameDatabase } from '../../src/store/store';
import { aadContract } from './store-contract-aad';
import { StoreFixture } from './stores';

const PER_KIND = 3;
/** Rows holding a value: one per kind's table and row (servers, services, env vars, environment variables, git, registry, storage). */
const ROWS = 7 * PER_KIND;
/** Stored values: every non-NULL inventory column (servers hold a passphrase in odd rows only). */
const VALUES = 8 * PER_KIND + Math.ceil(PER_KIND / 2);

function history(rotationId: string, oldKey: MasterKey, newKey: MasterKey, backup: string): HistoryRow {
  const at = new Date();
  return {
    rotationId,
    startedAt: at,
    committedAt: at,
    fromGeneration: 1,
    toGeneration: 2,
    oldFingerprint: oldKey.fingerprint,
    newFingerprint: newKey.fingerprint,
    reason: 'store contract test',
    processed: 1,
    updated: 1,
    unchangedDueToErrors: 0,
    byKind: { 'git access token': 1 },
    backupPath: backup,
    actor: 'test@store',
    outcome: 'committed',
  };
}

/** Takes the lock, retrying while a closed session's lock is still being released (the server ends it just after the client). */
async function lockOnceReleased(s: Store): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await s.lockRotation();
    } catch (e) {
      if ((e as MasterKeyError).code !== 'LOCKED' || i >= 100) throw e;
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

/** A backup (in a new directory under `parent`) of what `s` stores under `key` now: the one a rotation writes, whose transaction is then rolled back, so nothing changes. */
export async function backUpAsItIs(s: Store, inv: Inventory, key: MasterKey, parent: string): Promise<BackupToRestore & { part: BackupPart; canary: CanaryRow }> {
  const dir = mkdtempSync(join(parent, 'backup-'));
  const canary = (await s.readCanary())!;
  const rollBack = new Error('roll the rotation back');
  let part: BackupPart | undefined;
  await expect(
    s.write(async (tx) => {
      await tx.lockSecretTables(inv);
      part = (await tx.rotate({ inventory: inv, from: new Keyring([key]), to: MasterKey.generate(), backup: new BackupDirectory(dir) })).backup;
      throw rollBack;
    })
  ).rejects.toBe(rollBack);
  return backupToRestore(dir, part!, canary);
}

/** The backup in `dir` that a rotation wrote as `part`, to restore or drill, with every file it listed. */
export function backupToRestore<C extends BackupToRestore['canary']>(dir: string, part: BackupPart, canary: C): BackupToRestore & { part: BackupPart; canary: C } {
  return { dir, files: new BackupDirectorySource(dir), part, canary, storeFiles: part.files.map((f) => f.name) };
}

/** Every guarantee of the store seam, on the store `fixture` makes databases of. */
export function storeContract(fixture: StoreFixture): void {
  describe(`the ${fixture.name} store`, () => {
    seam(fixture);
    aadContract(fixture);
  });
}

function seam(fixture: StoreFixture): void {
  let url: string;
  let dir: string;
  const key = MasterKey.generate();
  const sessions: Store[] = [];
  const open = async (label?: string) => {
    const s = await openStore(url, { label });
    sessions.push(s);
    return s;
  };
  const close = (s: Store) => {
    sessions.splice(sessions.indexOf(s), 1);
    return s.close();
  };

  beforeAll(async () => {
    url = await fixture.create();
    dir = scratchDir('mk-store-');
  });
  afterAll(async () => {
    await Promise.all(sessions.map((s) => s.close()));
    removeScratch(dir);
    await fixture.drop(url);
  });

  it('describes the database without credentials and has a stable identity', async () => {
    const a = await open();
    const b = await open();
    const pw = new URL(url).password;
    if (pw) expect(a.description).not.toContain(pw);
    const [ia, ib] = [await a.identity(), await b.identity()];
    expect(ia).toEqual(ib);
    expect(sameDatabase(ia, ib)).toBe(true);
    expect(sameDatabase(ia, { ...ia, name: `${ia.name}_other` })).toBe(false);
    await a.assertWritable();
  });

  it('has no canary and no history before initialise, then exactly the canary it was given; a second initialise is refused', async () => {
    const s = await open();
    expect(await s.readCanary()).toBeUndefined();
    expect(await s.lastHistory()).toBeUndefined();
    const canary = { keyEntry: 'ACT_MASTER_KEY', ...canaryFor(key, 1, new Date('2026-01-02T03:04:05Z')) };
    await s.initialise(canary);
    expect(await s.readCanary()).toEqual(canary);
    await expect(s.initialise({ ...canary, generation: 7 })).rejects.toMatchObject({ code: 'CANARY_EXISTS' });
    expect(await s.readCanary()).toEqual(canary);
  });

  it('holds the rotation lock for one session at a time, names its holder, and frees it on close', async () => {
    const a = await openStore(url, { label: 'master-key apply contract' });
    const b = await open();
    try {
      await a.lockRotation();
      expect((await b.lockHolder())?.label).toBe('master-key apply contract');
      const refused = await b.lockRotation().catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: 'LOCKED' });
      expect((refused as Error).message).toContain('master-key apply contract');
    } finally {
      await a.close();
    }
    await lockOnceReleased(b);
    expect((await (await open()).lockHolder())?.label).toBe('master-key');
    await close(b);
  });

  /** A backup of the values as they are now, as a rotation writes it (then rolled back). */
  const backUp = (s: Store) => backUpAsItIs(s, ACT_PRESET, key, dir);

  describe('with secrets', () => {
    let plaintexts: Map<string, string>;
    beforeAll(async () => {
      plaintexts = await fixture.seed(url, key, PER_KIND);
    });

    it('counts rows, values per kind and stored bytes without opening anything: what the scan finds', async () => {
      const s = await open();
      const counts = await s.count(ACT_PRESET);
      expect(counts.rows).toBe(ROWS);
      const sealedBytes = [...plaintexts.values()].reduce((a, p) => a + Buffer.byteLength(p), 0);
      expect(counts.storedBytes).toBeGreaterThan(sealedBytes);
      const scan = await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])));
      expect(counts).toMatchObject({ values: scan.total, byKind: scan.byKind });
      expect(counts.values).toBe(plaintexts.size);
    });

    it('scans every value in one snapshot, listing (never throwing for) values that do not open', async () => {
      const s = await open();
      const { canary, good, bad } = await s.read(async (tx) => ({
        canary: await tx.canary(),
        good: await tx.scan(ACT_PRESET, new Keyring([key])),
        bad: await tx.scan(ACT_PRESET, new Keyring([MasterKey.generate()])),
      }));
      expect(canary).toEqual(await s.readCanary());
      expect(good).toMatchObject({ total: plaintexts.size, failureCount: 0, failures: [] });
      expect(bad.failureCount).toBe(plaintexts.size);
      expect(bad.failures[0]).toMatchObject({ code: 'SEALED_WRONG_KEY' });
    });

    it('rolls the write transaction back when its function fails: nothing changes', async () => {
      const s = await open();
      const before = await s.readCanary();
      const boom = new Error('fail inside the transaction');
      await expect(
        s.write(async (tx) => {
          await tx.lockSecretTables(ACT_PRESET);
          await tx.rotate({ inventory: ACT_PRESET, from: new Keyring([key]), to: MasterKey.generate(), backup: new BackupDirectory(mkdtempSync(join(dir, 'backup-'))) });
          await tx.replaceCanary(canaryFor(MasterKey.generate(), 9, new Date()));
          throw boom;
        })
      ).rejects.toBe(boom);
      expect(await s.readCanary()).toEqual(before);
      expect((await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])))).failureCount).toBe(0);
    });

    it('a worker thread that stops mid-re-encryption fails it: the transaction rolls back, nothing changes', async () => {
      const s = await open();
      const before = await s.readCanary();
      const stored = () => s.read((tx) => tx.verify(ACT_PRESET, key, { sampleSize: 0 }));
      const digest = (await stored()).digest;
      process.env.MASTER_KEY_TEST_WORKER_EXIT_AT = '2';
      try {
        await expect(
          s.write(async (tx) => {
            await tx.lockSecretTables(ACT_PRESET);
            const backup = new BackupDirectory(mkdtempSync(join(dir, 'backup-')));
            await tx.rotate({ inventory: ACT_PRESET, from: new Keyring([key]), to: MasterKey.generate(), backup, batchSize: 2, ...fixture.threadedCrypto });
            await tx.replaceCanary(canaryFor(MasterKey.generate(), 9, new Date()));
          })
        ).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('stopped unexpectedly') });
      } finally {
        delete process.env.MASTER_KEY_TEST_WORKER_EXIT_AT;
      }
      expect(await s.readCanary()).toEqual(before);
      expect((await stored()).digest).toEqual(digest);
    });

    it.each([
      ['in one batch per table', undefined, '00000000-0000-4000-8000-000000000001'],
      ['in batches of 2 (SQLite: backup, re-encryption and verification beside the connection, in worker threads)', 2, '00000000-0000-4000-8000-000000000002'],
    ])('in one transaction: backs up exactly what it rewrites, re-encrypts, replaces the canary, adds history; restore puts it all back (%s)', async (_, batchSize, rotationId) => {
      const batch = batchSize ? { batchSize } : {};
      const s = await open();
      const newKey = MasterKey.generate();
      const backupDir = mkdtempSync(join(dir, 'backup-'));
      const old = (await s.readCanary())!;
      let part: BackupPart | undefined;
      const re = await s.write(async (tx) => {
        expect(await tx.canaryForUpdate()).toEqual(old);
        await tx.lockSecretTables(ACT_PRESET);
        // One call: the backup holds the values as they were, the re-encryption rewrites them.
        const r = await tx.rotate({ inventory: ACT_PRESET, from: new Keyring([key]), to: newKey, backup: new BackupDirectory(backupDir), ...batch });
        part = r.backup;
        await tx.replaceCanary(canaryFor(newKey, 2, new Date()));
        await tx.insertHistory(history(rotationId, key, newKey, backupDir));
        return r.reencrypted;
      });
      expect(re.total).toBe(plaintexts.size);
      expect(part!.values).toBe(VALUES);
      for (const f of part!.files) {
        const stored = readFileSync(join(backupDir, f.name));
        expect(statSync(join(backupDir, f.name)).mode & 0o777).toBe(0o600);
        expect(f).toEqual({ name: f.name, sha256: createHash('sha256').update(stored).digest('hex'), bytes: stored.length });
      }
      expect(part!.files.map((f) => readFileSync(join(backupDir, f.name), 'utf8')).join('')).not.toContain(plaintexts.values().next().value!);
      // Verification: the database stores exactly what the re-encryption wrote, and the (here: whole) sample opens with the new key only.
      const verified = await s.read((tx) => tx.verify(ACT_PRESET, newKey, { expected: re.digest, ...batch }));
      expect(verified).toMatchObject({ ok: true, total: plaintexts.size, digestMatches: true, sampled: plaintexts.size, sampleFailures: [] });
      const withOld = await s.read((tx) => tx.verify(ACT_PRESET, key, { expected: re.digest, sampleSize: 3, ...batch }));
      expect(withOld).toMatchObject({ ok: false, digestMatches: true, sampled: 3 });
      expect(withOld.sampleFailures).toHaveLength(3);
      // A server writes after the rotation: under the new key, the written values are proved stored as written where the groups of places agree, and every value where they differ opens.
      const added = await fixture.addSecret(url, newKey, 'written after the rotation');
      const since = await s.read((tx) => tx.verify(ACT_PRESET, newKey, { expected: re.digest, sampleSize: 0, ...batch }));
      expect(since).toMatchObject({ ok: true, digestMatches: false, total: plaintexts.size + 1, changedSince: { groups: 1, failureCount: 0 } });
      expect(since.changedSince!.asWritten + since.changedSince!.opened).toBe(plaintexts.size + 1);
      // Under another key: the value is found where the sums differ, and does not open.
      const foreign = await fixture.addSecret(url, MasterKey.generate(), 'written under another key');
      const bad = await s.read((tx) => tx.verify(ACT_PRESET, newKey, { expected: re.digest, sampleSize: 0, ...batch }));
      expect(bad).toMatchObject({ ok: false, digestMatches: false, changedSince: { failureCount: 1, failures: [{ table: 'git_credentials', id: foreign.split(':')[1], code: 'SEALED_WRONG_KEY' }] } });
      await fixture.removeSecretAt(url, foreign);
      await fixture.removeSecretAt(url, added);
      // The values as they were before the rewrite: every backed-up value opens with the old key, as many of each kind as the new key opens now.
      const live = await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([newKey]), batch));
      const backup = { dir: backupDir, files: new BackupDirectorySource(backupDir), part: part!, canary: old };
      const drilled = await s.drill({ backup, inventory: ACT_PRESET }, (dtx, copy) => dtx.scan(copy.inventory, new Keyring([key])));
      expect(drilled).toMatchObject({ total: live.total, byKind: live.byKind, failureCount: 0 });

      const now = (await s.readCanary({ waitForWriters: true }))!;
      expect(canaryOpensWith(now, newKey)).toBe(true);
      expect(now).toMatchObject({ keyEntry: old.keyEntry, fingerprint: newKey.fingerprint, generation: 2 });
      expect(await s.lastHistory()).toMatchObject({ rotationId, outcome: 'committed', backupPath: backupDir });
      await s.setHistoryOutcome(rotationId, 'verified', new Date());
      expect(await s.lastHistory()).toMatchObject({ outcome: 'verified', verifiedAt: expect.any(Date) });
      // Retirements (custody of old backups) are history rows of their own outcome: listed newest first, at most `limit`, never the latest rotation.
      const earlier = (await s.historyWith(RETIRED_OUTCOME, 1000)).length;
      // Later than any retirement an earlier case of this table recorded (each case's own year).
      const year = 2030 + Number(rotationId.slice(-1));
      const retired = (id: string, at: string): HistoryRow => ({ ...history(id, key, newKey, backupDir), startedAt: new Date(at), committedAt: new Date(at), outcome: RETIRED_OUTCOME });
      const retirements = [randomUUID(), randomUUID(), randomUUID()];
      for (const [k, id] of retirements.entries()) await s.write((tx) => tx.insertHistory(retired(id, `${year}-01-0${k + 1}T00:00:00Z`)));
      expect((await s.historyWith(RETIRED_OUTCOME, 2)).map((h) => h.rotationId)).toEqual([retirements[2], retirements[1]]);
      expect(await s.historyWith(RETIRED_OUTCOME, 1000)).toHaveLength(earlier + 3);
      expect(await s.lastHistory()).toMatchObject({ rotationId, outcome: 'verified' });
      expect((await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([newKey])))).failureCount).toBe(0);

      // Restore, store side: every backed-up value paired with the live one at its place; what the decision returns is written.
      const corrupt = await s
        .write((tx) => tx.restore({ backup: { ...backup, part: { ...part!, values: part!.values + 1 } }, inventory: ACT_PRESET, decide: (_l, pairs) => pairs.map((p) => p.backup) }))
        .catch((e: unknown) => e);
      expect(corrupt).toMatchObject({ code: 'BACKUP_CORRUPT' });
      expect((await s.readCanary())!.fingerprint).toBe(newKey.fingerprint);
      const seen: string[] = [];
      const counts = await s.write(async (tx) => {
        await tx.lockSecretTables(ACT_PRESET);
        const c = await tx.restore({
          backup,
          inventory: ACT_PRESET,
          decide: (loc, pairs) => {
            for (const p of pairs) {
              expect(p.live).toBeDefined();
              expect(p.backup).toBeDefined();
              expect(p.live).not.toBe(p.backup);
              seen.push(`${loc.table}.${loc.column}:${p.id}`);
            }
            return pairs.map((p) => p.backup);
          },
          ...batch,
        });
        await tx.replaceCanary({ ...old, updatedAt: new Date() });
        return c;
      });
      expect(counts).toEqual({ backupValues: VALUES, pairs: VALUES, written: VALUES });
      expect(new Set(seen).size).toBe(VALUES);
      expect(await s.readCanary()).toMatchObject({ fingerprint: old.fingerprint, generation: old.generation, sealed: old.sealed, keyCreatedAt: old.keyCreatedAt });
      expect((await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])))).failureCount).toBe(0);
    });

    it('pairs values added and removed since the backup (live or backup undefined), and a failed restore changes nothing', async () => {
      const s = await open();
      const backup = await backUp(s);
      const added = await fixture.addSecret(url, key, 'added after the backup');
      const removed = await fixture.removeSecret(url);
      const before = await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])));
      const pairs = new Map<string, { live?: string; backup?: string }>();
      const refused = new Error('decided not to restore');
      await expect(
        s.write(async (tx) => {
          await tx.lockSecretTables(ACT_PRESET);
          await tx.restore({
            backup,
            inventory: ACT_PRESET,
            decide: (loc, batch) => {
              for (const p of batch) pairs.set(`${loc.table}.${loc.column}:${p.id}`, { live: p.live, backup: p.backup });
              // Overwrites every live value (documents with a document); the rollback must undo all of it.
              return batch.map((p) => (p.live === undefined ? undefined : ACT_PRESET.entries.some((e) => e.column === loc.column && e.jsonPath) ? '{"overwritten": true}' : 'not a sealed value'));
            },
          });
          throw refused;
        })
      ).rejects.toBe(refused);
      expect(pairs.size).toBe(VALUES + 1);
      expect(pairs.get(added)).toEqual({ live: expect.any(String), backup: undefined });
      expect(pairs.get(removed)).toEqual({ live: undefined, backup: expect.any(String) });
      expect([...pairs.values()].filter((p) => p.live !== undefined && p.backup !== undefined).every((p) => p.live === p.backup)).toBe(true);
      expect(await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])))).toEqual(before);
    });

    it('drills a restore into a scratch copy that opens with the backup key, leaving the live rows untouched', async () => {
      const s = await open();
      const backup = await backUp(s);
      const { part, canary } = backup;
      const live = await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])));
      const { copy, scan, wrong } = await s.drill({ backup, inventory: ACT_PRESET }, async (tx, copy) => ({
        copy,
        scan: await tx.scan(copy.inventory, new Keyring([key])),
        wrong: await tx.scan(copy.inventory, new Keyring([MasterKey.generate()])),
      }));
      expect(copy.values).toBe(part.values);
      expect(copy.inventory.entries.map((e) => e.kind)).toEqual(ACT_PRESET.entries.map((e) => e.kind));
      expect(new Set(copy.inventory.entries.map((e) => copy.liveTable(e.table)))).toEqual(new Set(ACT_PRESET.entries.map((e) => e.table)));
      expect(scan).toMatchObject({ total: live.total, byKind: live.byKind, failureCount: 0 });
      expect(wrong.failureCount).toBe(live.total);
      // Nothing of the copy is left, and the live rows are as they were.
      expect(await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])))).toEqual(live);
      expect(await s.readCanary()).toEqual(canary);
      // A copy in tables of its own (PostgreSQL: temporary tables) is gone with the drill's transaction.
      if (copy.inventory.entries.some((e, i) => e.table !== ACT_PRESET.entries[i].table)) {
        await expect(s.read((tx) => tx.scan(copy.inventory, new Keyring([key])))).rejects.toMatchObject({ code: 'INVENTORY_INVALID' });
      }
      await expect(s.drill({ backup: { ...backup, part: { ...part, values: part.values - 1 } }, inventory: ACT_PRESET }, async () => 'ran')).rejects.toMatchObject({ code: 'BACKUP_CORRUPT' });
    });

    it('seal-ahead, then a row changed, one added and one deleted by a server before the lock: the backup holds exactly the values at the lock, the drill opens them all, restore puts them back', async () => {
      const s = await open();
      const newKey = MasterKey.generate();
      const backupDir = mkdtempSync(join(dir, 'backup-'));
      const sink = new BackupDirectory(backupDir);
      const steps: string[] = [];
      // Both stores write the bulk of the backup now, in seal-ahead's snapshot (SQLite: a copy of the database; PostgreSQL: its values).
      const staged = await s.sealAhead({ inventory: ACT_PRESET, from: new Keyring([key]), to: newKey, rotationId: randomUUID(), backup: async () => (steps.push('sink'), sink), onBackup: (step) => steps.push(step) });
      expect(steps).toEqual(['sink', 'copied', 'written']);
      expect(staged.backedUp?.values).toBe(VALUES);
      // The server's last writes, after staging.
      const added = await fixture.addSecret(url, key, 'added after seal-ahead');
      const removed = await fixture.removeSecret(url);
      const texts = () => fixture.withSql(url, async (db) => new Map((await db.query<{ id: unknown; v: string }>('SELECT id, access_token AS v FROM git_credentials WHERE access_token IS NOT NULL')).map((r) => [String(r.id), r.v])));
      const changedId = [...(await texts()).keys()].find((id) => `git_credentials.access_token:${id}` !== added)!;
      await fixture.withSql(url, (db) => db.query('UPDATE git_credentials SET access_token = $1 WHERE id = $2', [actCodec().seal(key, Buffer.from('changed after seal-ahead', 'utf8')), Number(changedId)]));
      const atLock = await texts();
      const old = (await s.readCanary())!;
      // The values changed since must go into the backup that holds the bulk: a rotation given another is refused before it writes anything.
      expect(staged.backedUp?.sink).toBe(sink);
      const otherDir = mkdtempSync(join(dir, 'other-backup-'));
      const other = s.write(async (tx) => {
        await tx.lockSecretTables(ACT_PRESET);
        return tx.rotate({ inventory: ACT_PRESET, from: new Keyring([key]), to: newKey, backup: new BackupDirectory(otherDir), staged });
      });
      await expect(other).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('seal-ahead wrote the bulk of the backup into') });
      expect(readdirSync(otherDir)).toEqual([]);
      expect(await texts()).toEqual(atLock);
      const { part, re } = await s.write(async (tx) => {
        await tx.lockSecretTables(ACT_PRESET);
        const r = await tx.rotate({ inventory: ACT_PRESET, from: new Keyring([key]), to: newKey, backup: sink, staged });
        await tx.replaceCanary(canaryFor(newKey, 2, new Date()));
        return { part: r.backup, re: r };
      });
      expect(re.sealAhead).toMatchObject({ used: true });
      expect(part.values).toBe(VALUES);
      expect(part.files.map((f) => f.name).sort()).toEqual(fixture.kind === 'sqlite' ? ['changes.sqlite', 'database.sqlite'] : ['changes.jsonl', 'secrets-ahead.jsonl']);
      for (const f of part.files) expect(statSync(join(backupDir, f.name)).mode & 0o777).toBe(0o600);
      const backup = backupToRestore(backupDir, part, old);
      // The drill: every value at the lock opens with the old key, the added and changed ones too.
      const live = await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([newKey])));
      const drilled = await s.drill({ backup, inventory: ACT_PRESET }, async (dtx, copy) => ({ copy, scan: await dtx.scan(copy.inventory, new Keyring([key])) }));
      expect(drilled.scan).toMatchObject({ total: live.total, byKind: live.byKind, failureCount: 0 });
      expect(drilled.copy.values).toBe(VALUES);
      // Restore: each place's backed-up value is its text at the lock; the removed row has none.
      const backedUp = new Map<string, string | undefined>();
      await s.write(async (tx) => {
        await tx.lockSecretTables(ACT_PRESET);
        const c = await tx.restore({
          backup,
          inventory: ACT_PRESET,
          decide: (loc, pairs) => {
            if (loc.table === 'git_credentials') for (const p of pairs) backedUp.set(p.id, p.backup);
            return pairs.map((p) => p.backup);
          },
        });
        expect(c).toMatchObject({ backupValues: VALUES, written: VALUES });
        await tx.replaceCanary({ ...old, updatedAt: new Date() });
      });
      expect(new Map([...backedUp].filter(([, v]) => v !== undefined))).toEqual(atLock);
      expect(backedUp.has(removed.split(':')[1])).toBe(false);
      expect(await texts()).toEqual(atLock);
      expect((await s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])))).failureCount).toBe(0);
      // The staging area is removed beside the session's next read (as beside verification), which it leaves alone.
      const [removedAreas, scanned] = await Promise.all([s.dropStagingBeside(), s.read((tx) => tx.scan(ACT_PRESET, new Keyring([key])))]);
      expect(removedAreas?.map((a) => a.fingerprint)).toEqual(expect.arrayContaining([newKey.fingerprint]));
      expect(scanned).toMatchObject({ total: live.total, failureCount: 0 });
      expect(await s.stagingAreas()).toEqual([]);
    });

    it('rotates, verifies, backs up, drills and restores values of several MiB (many COPY chunks; opened a slice at a time) exactly, in a column and in a JSON document', async () => {
      const inv: Inventory = {
        name: 'large values',
        entries: [
          { kind: 'large value', table: 'large_values', idColumn: 'id', column: 'value', codec: 'act' },
          { kind: 'large setting', table: 'large_values', idColumn: 'id', column: 'doc', codec: 'v1', jsonPath: ['settings', 'secret'] },
        ],
      };
      // Past the batch crypto's large-value size (LARGE_VALUE, 1 MiB of text), of every length modulo 3, and small ones beside them.
      const plain = [randomBytes((3 << 20) + 1), randomBytes(12), randomBytes((2 << 20) + 2)];
      const act = actCodec();
      await fixture.withSql(url, async (db) => {
        await db.exec(`CREATE TABLE large_values (id ${fixture.sqlTypes.integerKey}, value text, doc ${fixture.sqlTypes.json[0]})`);
        await db.query('INSERT INTO large_values (id, value, doc) VALUES ($1, $2, $3), ($4, $5, NULL)', [
          1,
          act.seal(key, plain[0]),
          JSON.stringify({ name: 'big', settings: { secret: v1Codec().seal(key, plain[2]) } }),
          2,
          act.seal(key, plain[1]),
        ]);
      });
      const stored = () =>
        fixture.withSql(url, (db) => db.query<{ id: unknown; value: string; doc: unknown }>('SELECT id, value, doc FROM large_values ORDER BY id'));
      const opened = async (k: MasterKey) => {
        const rows = await stored();
        const doc = JSON.parse(typeof rows[0].doc === 'string' ? rows[0].doc : JSON.stringify(rows[0].doc)) as { name: string; settings: { secret: string } };
        expect(doc.name).toBe('big');
        return [rows[0].value, rows[1].value, doc.settings.secret].map((v, i) => Buffer.from((i === 2 ? v1Codec() : act).open(new Keyring([k]), v).plaintext));
      };
      const s = await open();
      const newKey = MasterKey.generate();
      const backupDir = mkdtempSync(join(dir, 'backup-'));
      const canary = (await s.readCanary())!;
      const r = await s.write(async (tx) => {
        await tx.lockSecretTables(inv);
        return tx.rotate({ inventory: inv, from: new Keyring([key]), to: newKey, backup: new BackupDirectory(backupDir) });
      });
      expect(r.reencrypted).toMatchObject({ total: 3, updated: 2 });
      expect(r.backup.values).toBe(3);
      expect((await opened(newKey)).map((b, i) => b.equals(plain[i]))).toEqual([true, true, true]);
      expect(await s.read((tx) => tx.verify(inv, newKey, { expected: r.reencrypted.digest }))).toMatchObject({ ok: true, digestMatches: true, total: 3, sampled: 3 });
      const backup = { dir: backupDir, files: new BackupDirectorySource(backupDir), part: r.backup, canary };
      expect(await s.drill({ backup, inventory: inv }, (tx, copy) => tx.scan(copy.inventory, new Keyring([key])))).toMatchObject({ total: 3, failureCount: 0 });
      const restored = await s.write(async (tx) => {
        await tx.lockSecretTables(inv);
        return tx.restore({ backup, inventory: inv, decide: (_loc, pairs) => pairs.map((p) => p.backup) });
      });
      expect(restored).toMatchObject({ backupValues: 3, written: 3 });
      expect((await opened(key)).map((b, i) => b.equals(plain[i]))).toEqual([true, true, true]);
    });

    it('withStore always closes its session (releasing the lock) and passes typed errors through unchanged', async () => {
      const stop = new MasterKeyError('PLAN_STALE', 'stop here');
      const thrown = await withStore(url, { doing: 'testing the seam' }, async (s) => {
        await s.lockRotation();
        throw stop;
      }).catch((e: unknown) => e);
      expect(thrown).toBe(stop);
      await lockOnceReleased(await open());
    });
  });
  it('counts by query exactly what the scan finds: plain columns, JSON paths with *, indexes and where, places two entries name, NULLs and values that are not strings', async () => {
    const seal = (t: string) => actCodec().seal(key, Buffer.from(t));
    const S = () => seal(randomUUID());
    const inv: Inventory = {
      name: 'odd',
      entries: [
        { kind: 'token', table: 'count_a', idColumn: 'id', column: 'tok', codec: 'act' },
        { kind: 'token', table: 'count_a', idColumn: 'id', column: 'tok2', codec: 'act' },
        // The same column again: its values are the first entry's.
        { kind: 'token again', table: 'count_a', idColumn: 'id', column: 'tok', codec: 'act' },
        { kind: 'env', table: 'count_b', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['env', '*', 'value'], where: { key: 'secret', equals: true } },
        { kind: 'level', table: 'count_b', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['env', '*', 'value'], where: { key: 'level', equals: 2 } },
        { kind: 'any env', table: 'count_b', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['env', '*', 'value'] },
        { kind: 'creds', table: 'count_b', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['creds', '*'] },
        { kind: 'first', table: 'count_b', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['list', '0'] },
        { kind: 'named', table: 'count_c', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['a.b', 'x'], where: { key: 'k', equals: 'yes' } },
        { kind: 'numbered', table: 'count_c', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['n', '*'], where: { key: 'v', equals: 2 } },
      ],
    };
    const b = [
      // env: secret, not secret, secret and level 2, level 2 only, a number, "true" as a string
      {
        env: [
          { value: S(), secret: true },
          { value: S(), secret: false },
          { value: S(), secret: true, level: 2 },
          { value: S(), level: 2 },
          { value: 7, secret: true },
          { value: S(), secret: 'true' },
        ],
        creds: { x: S(), y: S(), n: 5 },
        list: [S(), S()],
      },
      // env an object, creds an array holding a null, list an object whose member is named "0"
      { env: { first: { value: S(), secret: true } }, creds: [S(), null], list: { '0': S(), '1': S() } },
      // env a string that reads as JSON, creds a string, an empty list: nothing to walk into
      { env: JSON.stringify([{ value: S(), secret: true }]), creds: 'not a container', list: [] },
      null,
      S(),
      5,
    ];
    const c = [{ 'a.b': { x: S(), k: 'yes' } }, { 'a.b': { x: S(), k: 'no' } }, { 'a.b': [{ x: S(), k: 'yes' }] }, { n: { v: 2, s: S() } }, { n: { v: '2', s: S() } }, { n: { v: 2.5, s: S() } }];
    const [json, otherJson] = fixture.sqlTypes.json;
    await fixture.withSql(url, async (db) => {
      await db.exec(`CREATE TABLE count_a (id int PRIMARY KEY, tok text, tok2 varchar(2000));
                     CREATE TABLE count_b (id int PRIMARY KEY, doc ${json});
                     CREATE TABLE count_c (id int PRIMARY KEY, doc ${otherJson})`);
      await db.query('INSERT INTO count_a VALUES (1, $1, NULL), (2, NULL, $2), (3, $3, $4), (4, NULL, NULL)', [S(), S(), S(), S()]);
      for (const [table, docs] of [
        ['count_b', b],
        ['count_c', c],
      ] as const) {
        for (let i = 0; i < docs.length; i++) await db.query(`INSERT INTO ${table} VALUES ($1, $2)`, [i + 1, docs[i] === null ? null : JSON.stringify(docs[i])]);
      }
    });
    const s = await open();
    const counts = await s.count(inv);
    const scan = await s.read((tx) => tx.scan(inv, new Keyring([key])));
    expect(scan.failureCount).toBe(0);
    expect(counts.byKind).toEqual(scan.byKind);
    expect(counts.values).toBe(scan.total);
    expect(counts.byKind).toEqual({ token: 4, 'token again': 0, env: 3, level: 1, 'any env': 2, creds: 3, first: 2, named: 1, numbered: 1 });
    // Rows with any non-NULL inventory column: 3 of count_a, 5 of count_b, 6 of count_c.
    expect(counts.rows).toBe(14);
    expect(counts.storedBytes).toBeGreaterThan(scan.storedBytes);
    const missing: Inventory = { name: 'missing', entries: [{ kind: 'x', table: 'count_nowhere', idColumn: 'id', column: 'v', codec: 'act' }] };
    await expect(s.count(missing)).rejects.toMatchObject({ code: 'INVENTORY_INVALID' });
  });
}
