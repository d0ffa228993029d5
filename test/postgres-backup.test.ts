/**
 * The PostgreSQL store's backup inside a rotation: written from the rows the
 * re-encryption reads (one scan for both). A file system that fills up
 * half-way fails the re-encryption and the backup with DISK_FULL, the
 * transaction rolls back with every row as it was, and the connection
 * stays usable; the same when the backup is sealed to an age recipient
 * (the sealing thread's writes run behind age, and their failure still
 * fails the rotation, its partial sealed file removed).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { codecByName } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { Inventory, validateInventory } from '../src/inventory/inventory';
import { loadAge } from '../src/rotation/age';
import { BackupDirectory } from '../src/rotation/backup';
import { openStore } from '../src/store/open';
import { removeScratch, scratchDir } from '../scripts/scratch';
import { dropDatabase, freshDatabase, withTestClient } from './support/db';

const INVENTORY: Inventory = validateInventory({ name: 'tokens', entries: [{ kind: 'token', table: 'tokens', idColumn: 'id', column: 'token', codec: 'act' }] });
const ROWS = 3000;

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
});
