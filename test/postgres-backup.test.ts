/**
 * The PostgreSQL store's backup inside a rotation: written from the rows the
 * re-encryption reads (one scan for both). A file system that fills up
 * half-way fails the re-encryption and the backup with DISK_FULL, the
 * transaction rolls back with every row as it was, and the connection
 * stays usable; the same when the backup is sealed to an age recipient
 * (the sealing thread's writes run behind age, and their failure still
 * fails the rotation, its partial sealed file removed). Seal-ahead writes
 * the backup's bulk (secrets-ahead.jsonl) from its snapshot, and the window
 * only changes.jsonl: a value set to NULL, one changed, a row deleted and
 * one added; restore applies them; an incomplete such backup is refused.
 * Without a bulk made ahead, the swap hands back the old texts it replaces.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { codecByName } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { Inventory, validateInventory } from '../src/inventory/inventory';
import { loadAge } from '../src/rotation/age';
import { BackupDirectory } from '../src/rotation/backup';
import type { BackupToRestore } from '../src/store/store';
import { openStore } from '../src/store/open';
import { removeScratch, scratchDir } from '../scripts/scratch';
import { dropDatabase, freshDatabase, withTestClient } from './support/db';
import { backupToRestore } from './support/store-contract';

const INVENTORY: Inventory = validateInventory({ name: 'tokens', entries: [{ kind: 'token', table: 'tokens', idColumn: 'id', column: 'token', codec: 'act' }] });
const ROWS = 3000;
/** A canary for restoring in these tests, which check values, not the canary. */
const NO_CANARY = { fingerprint: 'mk:000000000000', generation: 1, sealed: '', keyCreatedAt: new Date() };

/** The lines of a backup's changes.jsonl: each place's id and its value at the lock (null: none). */
function changesIn(backupDir: string): Array<{ id: string; v: string | null }> {
  return readFileSync(join(backupDir, 'changes.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { id: string; v: string | null });
}

// Mounts a small tmpfs, as the hostile-input tests do (the suite runs as root).
describe('PostgreSQL backup written by the re-encryption', () => {
  let url: string;
  let dir: string;
  let mnt: string;
  const key = MasterKey.generate();

  beforeAll(async () => {
    url = await freshDatabase('pg_backup');
    await withTestClient(url, async (c) => {
      await c.query('CREATE TABLE tokens (id bigint PRIMARY KEY, token text)');
      // Where seal-ahead stages (the tool's schema, as initialise makes it).
      await c.query('CREATE SCHEMA master_key');
      const sealed = Array.from({ length: ROWS }, (_, i) => codecByName('act').seal(key, Buffer.from(`token-${i}-${'x'.repeat(200)}`)));
      await c.query('INSERT INTO tokens SELECT i, t FROM unnest($1::text[]) WITH ORDINALITY AS x(t, i)', [sealed]);
    });
    dir = scratchDir('mk-pg-backup-');
    // Room for about a quarter of the backup's 1 MB of lines.
    mnt = join(dir, 'small');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt]);
  });
  afterAll(async () => {
    if (mnt) execFileSync('umount', ['-l', mnt]);
    removeScratch(dir);
    await dropDatabase(url);
  });

  it.each([
    ['stored as it is', false],
    ['sealed to an age recipient', true],
  ])('a disk that fills up during the rotation, backup %s: DISK_FULL, rolled back, every row as it was, the backup file removed', async (_, sealed) => {
    const { generateIdentity, identityToRecipient } = await loadAge();
    const recipients = sealed ? [await identityToRecipient(await generateIdentity())] : [];
    const before = await withTestClient(url, (c) => c.query<{ id: string; token: string }>('SELECT id::text, token FROM tokens ORDER BY id'));
    const s = await openStore(url);
    try {
      const backupDir = join(mnt, 'b');
      mkdirSync(backupDir, { mode: 0o700 });
      const failed = await s
        .write(async (tx) => {
          await tx.lockSecretTables(INVENTORY);
          await tx.rotate({ inventory: INVENTORY, from: new Keyring([key]), to: MasterKey.generate(), backup: new BackupDirectory(backupDir, recipients), batchSize: 200 });
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(failed).toMatchObject({ code: 'DISK_FULL' });
      // The rotation gave its backup file up.
      expect(readdirSync(backupDir)).toEqual([]);
      // The store's connection is usable and nothing changed.
      expect(await s.count(INVENTORY)).toMatchObject({ rows: ROWS });
      const after = await withTestClient(url, (c) => c.query<{ id: string; token: string }>('SELECT id::text, token FROM tokens ORDER BY id'));
      expect(after.rows).toEqual(before.rows);
    } finally {
      await s.close();
      rmSync(join(mnt, 'b'), { recursive: true, force: true });
    }
  });
  const sealText = (text: string) => codecByName('act').seal(key, Buffer.from(text));
  const liveTokens = async () => new Map((await withTestClient(url, (c) => c.query<{ id: string; token: string }>('SELECT id::text, token FROM tokens WHERE token IS NOT NULL'))).rows.map((r) => [r.id, r.token]));

  it('seal-ahead on a disk that fills up as it writes the backup\'s bulk: DISK_FULL before any live row changes, no staging left, the file removed', async () => {
    const before = await liveTokens();
    const s = await openStore(url);
    const backupDir = join(mnt, 'ahead');
    mkdirSync(backupDir, { mode: 0o700 });
    try {
      const sink = new BackupDirectory(backupDir);
      await expect(s.sealAhead({ inventory: INVENTORY, from: new Keyring([key]), to: MasterKey.generate(), rotationId: randomUUID(), batchSize: 200, backup: async () => sink })).rejects.toMatchObject({ code: 'DISK_FULL' });
      expect(readdirSync(backupDir)).toEqual([]);
      expect(await s.stagingAreas()).toEqual([]);
      expect(await liveTokens()).toEqual(before);
    } finally {
      await s.close();
      rmSync(backupDir, { recursive: true, force: true });
    }
  });

  it('seal-ahead writes the bulk; a value set to NULL, one changed, one rewritten with its own text, a row deleted and one added before the lock: changes.jsonl holds exactly those at the lock, restore applies them, and a bulk without its changes is refused', async () => {
    const s = await openStore(url);
    const backupDir = join(dir, 'ahead');
    mkdirSync(backupDir, { mode: 0o700 });
    const newKey = MasterKey.generate();
    try {
      const sink = new BackupDirectory(backupDir);
      const staged = await s.sealAhead({ inventory: INVENTORY, from: new Keyring([key]), to: newKey, rotationId: randomUUID(), batchSize: 500, backup: async () => sink });
      expect(staged.backedUp?.values).toBe(ROWS);
      expect(readFileSync(join(backupDir, 'secrets-ahead.jsonl'), 'utf8').split('\n').filter(Boolean)).toHaveLength(ROWS);
      const added = String(ROWS + 100);
      await withTestClient(url, async (c) => {
        await c.query('UPDATE tokens SET token = NULL WHERE id = 1');
        await c.query('UPDATE tokens SET token = $1 WHERE id = 2', [sealText('changed after seal-ahead')]);
        await c.query('DELETE FROM tokens WHERE id = 3');
        await c.query('INSERT INTO tokens VALUES ($1, $2)', [added, sealText('added after seal-ahead')]);
        // Written since, its text as staged: a new row version, so re-sealed in the window (and backed up in the changes).
        await c.query('UPDATE tokens SET token = token WHERE id = 4');
      });
      const atLock = await liveTokens();
      const part = await s.write(async (tx) => {
        await tx.lockSecretTables(INVENTORY);
        const r = await tx.rotate({ inventory: INVENTORY, from: new Keyring([key]), to: newKey, backup: sink, staged, batchSize: 500 });
        expect(r.sealAhead).toMatchObject({ used: true, swappedRows: ROWS - 4, resealedRows: 3 });
        return r.backup;
      });
      expect(part.values).toBe(atLock.size);
      expect(part.files.map((f) => f.name).sort()).toEqual(['changes.jsonl', 'secrets-ahead.jsonl']);
      expect(new Map(changesIn(backupDir).map((o) => [o.id, o.v]))).toEqual(new Map([['1', null], ['2', atLock.get('2')], ['3', null], ['4', atLock.get('4')], [added, atLock.get(added)]]));
      const backup = backupToRestore(backupDir, part, NO_CANARY);
      // Without its changes, the bulk is not the values at the lock: refused, nothing written.
      const restoreWith = (b: BackupToRestore) => s.write((tx) => tx.restore({ backup: b, inventory: INVENTORY, decide: (_loc, pairs) => pairs.map((p) => p.backup) }));
      await expect(restoreWith({ ...backup, storeFiles: ['secrets-ahead.jsonl'] })).rejects.toMatchObject({ code: 'BACKUP_CORRUPT' });
      const counts = await restoreWith(backup);
      expect(counts.backupValues).toBe(atLock.size);
      // Every place the backup holds is back as it stood at the lock; the NULL and the deleted row hold nothing.
      expect(await liveTokens()).toEqual(atLock);
    } finally {
      await s.dropStaging();
      await s.close();
      rmSync(backupDir, { recursive: true, force: true });
    }
  });
  it('seal-ahead stages every document read, one with nothing sealed in it too: such a document deleted or changed before the lock is in changes.jsonl, and the backup restores exactly the documents at the lock', async () => {
    const docs: Inventory = validateInventory({ name: 'documents', entries: [{ kind: 'setting', table: 'docs', idColumn: 'id', column: 'doc', codec: 'v1', jsonPath: ['secret'] }] });
    const sealed = codecByName('v1').seal(key, Buffer.from('a secret'));
    await withTestClient(url, async (c) => {
      await c.query('CREATE TABLE docs (id bigint PRIMARY KEY, doc jsonb)');
      await c.query(`INSERT INTO docs VALUES (1, jsonb_build_object('secret', $1::text)), (2, '{"other": "x"}'), (3, '{"other": "y"}')`, [sealed]);
    });
    const docsAt = async () => new Map((await withTestClient(url, (c) => c.query<{ id: string; doc: string }>('SELECT id::text, doc::text FROM docs WHERE doc IS NOT NULL'))).rows.map((r) => [r.id, r.doc]));
    const s = await openStore(url);
    const backupDir = join(dir, 'ahead-docs');
    mkdirSync(backupDir, { mode: 0o700 });
    const newKey = MasterKey.generate();
    try {
      const sink = new BackupDirectory(backupDir);
      const staged = await s.sealAhead({ inventory: docs, from: new Keyring([key]), to: newKey, rotationId: randomUUID(), backup: async () => sink });
      expect(staged).toMatchObject({ rows: 3, values: 1, backedUp: { values: 3 } });
      await withTestClient(url, async (c) => {
        await c.query('DELETE FROM docs WHERE id = 2');
        await c.query(`UPDATE docs SET doc = '{"other": "z"}' WHERE id = 3`);
      });
      const atLock = await docsAt();
      const part = await s.write(async (tx) => {
        await tx.lockSecretTables(docs);
        return (await tx.rotate({ inventory: docs, from: new Keyring([key]), to: newKey, backup: sink, staged })).backup;
      });
      expect(part.values).toBe(2);
      expect(new Map(changesIn(backupDir).map((o) => [o.id, o.v === null ? null : JSON.parse(o.v)]))).toEqual(new Map([['2', null], ['3', { other: 'z' }]]));
      const backup = backupToRestore(backupDir, part, NO_CANARY);
      expect(await s.drill({ backup, inventory: docs }, async (_tx, copy) => copy.values)).toBe(2);
      await s.write((tx) => tx.restore({ backup, inventory: docs, decide: (_loc, pairs) => pairs.map((p) => p.backup) }));
      const back = await docsAt();
      expect(new Map([...back].map(([id, d]) => [id, JSON.parse(d)]))).toEqual(new Map([...atLock].map(([id, d]) => [id, JSON.parse(d)])));
      expect(JSON.parse(back.get('1')!)).toEqual({ secret: sealed });
    } finally {
      await s.dropStaging();
      await s.close();
      rmSync(backupDir, { recursive: true, force: true });
      await withTestClient(url, (c) => c.query('DROP TABLE docs'));
    }
  });
  it('seal-ahead without a backup made ahead: the swap hands back the old texts of exactly the rows it swaps (the staging holds none of them), so secrets.jsonl holds exactly the values at the lock', async () => {
    const s = await openStore(url);
    const backupDir = join(dir, 'not-ahead');
    mkdirSync(backupDir, { mode: 0o700 });
    const newKey = MasterKey.generate();
    try {
      const before = await liveTokens();
      const staged = await s.sealAhead({ inventory: INVENTORY, from: new Keyring([key]), to: newKey, rotationId: randomUUID(), batchSize: 500 });
      expect(staged.backedUp).toBeUndefined();
      await withTestClient(url, async (c) => {
        await c.query('UPDATE tokens SET token = $1 WHERE id = 5', [sealText('changed after seal-ahead, no bulk')]);
        await c.query('UPDATE tokens SET token = token WHERE id = 6');
        await c.query('DELETE FROM tokens WHERE id = 7');
      });
      const atLock = await liveTokens();
      expect(atLock.size).toBe(before.size - 1);
      const sink = new BackupDirectory(backupDir);
      const part = await s.write(async (tx) => {
        await tx.lockSecretTables(INVENTORY);
        const r = await tx.rotate({ inventory: INVENTORY, from: new Keyring([key]), to: newKey, backup: sink, staged, batchSize: 500 });
        // Every staged row but the changed, the rewritten (a new row version, its own text) and the deleted one.
        expect(r.sealAhead).toMatchObject({ used: true, swappedRows: before.size - 3, resealedRows: 2 });
        return r.backup;
      });
      expect(part.files.map((f) => f.name)).toEqual(['secrets.jsonl']);
      expect(part.values).toBe(atLock.size);
      const lines = readFileSync(join(backupDir, 'secrets.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; v: string });
      expect(new Map(lines.map((o) => [o.id, o.v]))).toEqual(atLock);
      // Every live value is sealed under the new key now; restoring the backup puts the values at the lock back.
      expect((await s.read((tx) => tx.scan(INVENTORY, new Keyring([newKey])))).failureCount).toBe(0);
      await s.write((tx) => tx.restore({ backup: backupToRestore(backupDir, part, NO_CANARY), inventory: INVENTORY, decide: (_loc, pairs) => pairs.map((p) => p.backup) }));
      expect(await liveTokens()).toEqual(atLock);
    } finally {
      await s.dropStaging();
      await s.close();
      rmSync(backupDir, { recursive: true, force: true });
    }
  });
});
