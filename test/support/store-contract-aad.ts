/**
 * Part of the store contract kit (./store-contract.ts): inventory entries
 * whose values carry their row's additional authenticated data (`"aad":
 * {"column": "user_id"}`), with both codecs and in a JSON document: scan
 * opens them only with their own row's bytes (a value moved to another
 * user's row is listed), and a re-encryption re-seals each with the same
 * bytes under the new key; backup, drill and restore keep the binding.
 */
import { actCodec, codecByName } from '../../src/crypto/codec';
import { MasterKey } from '../../src/crypto/key';
import { Keyring } from '../../src/crypto/keyring';
import { Inventory, validateInventory } from '../../src/inventory/inventory';
import { BackupDirectory, BackupDirectorySource } from '../../src/rotation/backup';
import { canaryFor } from '../../src/rotation/canary';
import { openStore } from '../../src/store/open';
import { Reconciler } from '../../src/rotation/reconcile';
import { removeScratch, scratchDir } from '../../scripts/scratch';
import { StoreFixture } from './stores';

const INVENTORY: Inventory = validateInventory({
  name: 'backend tokens',
  entries: [
    { kind: 'backend token', table: 'api_tokens', idColumn: 'id', column: 'token', codec: 'act', aad: { column: 'user_id' } },
    { kind: 'backend token (v1)', table: 'api_tokens', idColumn: 'id', column: 'token_v1', codec: 'v1', aad: { column: 'user_id' } },
    { kind: 'backend setting', table: 'api_tokens', idColumn: 'id', column: 'doc', codec: 'act', jsonPath: ['secret'], aad: { column: 'user_id' } },
  ],
});

const ROWS = 4;

/** The additional-data guarantees, on the store `fixture` makes databases of. */
export function aadContract(fixture: StoreFixture): void {
  describe('additional data from the row', () => {
    let url: string;
    const key = MasterKey.generate();
    const aad = (user: number) => Buffer.from(String(user), 'utf8');
    const seal = (codec: 'act' | 'v1', k: MasterKey, text: string, user: number) => codecByName(codec).seal(k, Buffer.from(text, 'utf8'), { aad: aad(user) });
    const open = (codec: 'act' | 'v1', k: MasterKey, sealed: string, user: number) => new Keyring([k]).openText(codecByName(codec), sealed, aad(user));

    /** The key the values are sealed under now (each test that rotates moves it on). */
    let current = key;

    beforeAll(async () => {
      url = await fixture.create();
      await fixture.withSql(url, async (db) => {
        const { integerKey, json } = fixture.sqlTypes;
        await db.exec(`CREATE TABLE api_tokens (id ${integerKey}, user_id bigint NOT NULL, token text, token_v1 text, doc ${json[0]})`);
        for (let i = 1; i <= ROWS; i++) {
          const user = 40 + i;
          await db.query('INSERT INTO api_tokens (id, user_id, token, token_v1, doc) VALUES ($1, $2, $3, $4, $5)', [
            i,
            user,
            seal('act', key, `token-${i}`, user),
            seal('v1', key, `token-v1-${i}`, user),
            JSON.stringify({ name: `setting-${i}`, secret: seal('act', key, `setting-${i}`, user) }),
          ]);
        }
      });
      const s = await openStore(url);
      try {
        await s.initialise({ keyEntry: 'ACT_MASTER_KEY', ...canaryFor(key, 1, new Date()) });
      } finally {
        await s.close();
      }
    });
    afterAll(() => fixture.drop(url));

    it('opens every value only with its own row; a token moved to another user is listed, never opened', async () => {
      const s = await openStore(url);
      try {
        const ok = await s.read((tx) => tx.scan(INVENTORY, new Keyring([key])));
        expect(ok).toMatchObject({ total: 3 * ROWS, failureCount: 0 });
        const [first] = await fixture.withSql(url, (db) => db.query<{ token: string }>('SELECT token FROM api_tokens WHERE id = 1'));
        await fixture.withSql(url, (db) => db.query('UPDATE api_tokens SET token = $1 WHERE id = 2', [first.token]));
        const moved = await s.read((tx) => tx.scan(INVENTORY, new Keyring([key])));
        expect(moved.failureCount).toBe(1);
        expect(moved.failures[0]).toMatchObject({ table: 'api_tokens', column: 'token', id: '2', code: 'SEALED_WRONG_KEY' });
        await fixture.withSql(url, (db) => db.query('UPDATE api_tokens SET token = $1 WHERE id = 2', [seal('act', key, 'token-2', 42)]));
      } finally {
        await s.close();
      }
    });

    it('re-encrypts every value with its own row bytes under the new key, in one transaction', async () => {
      const s = await openStore(url);
      const newKey = MasterKey.generate();
      const dir = scratchDir('mk-aad-backup-');
      try {
        const r = await s.write(async (tx) => {
          await tx.lockSecretTables(INVENTORY);
          return tx.rotate({ inventory: INVENTORY, from: new Keyring([key]), to: newKey, backup: new BackupDirectory(dir), batchSize: 3 });
        });
        expect(r.reencrypted.total).toBe(3 * ROWS);
        expect(r.backup.values).toBe(3 * ROWS);
      } finally {
        await s.close();
        removeScratch(dir);
      }
      const rows = await fixture.withSql(url, (db) =>
        db.query<{ id: unknown; user_id: unknown; token: string; token_v1: string; doc: unknown }>('SELECT id, user_id, token, token_v1, doc FROM api_tokens ORDER BY id')
      );
      for (const row of rows) {
        const i = Number(row.id);
        const user = Number(row.user_id);
        const doc = (typeof row.doc === 'string' ? JSON.parse(row.doc) : row.doc) as { name: string; secret: string };
        expect(open('act', newKey, row.token, user)).toBe(`token-${i}`);
        expect(open('v1', newKey, row.token_v1, user)).toBe(`token-v1-${i}`);
        expect(open('act', newKey, doc.secret, user)).toBe(`setting-${i}`);
        expect(doc.name).toBe(`setting-${i}`);
        expect(() => open('act', newKey, row.token, user + 1)).toThrow();
        expect(() => new Keyring([newKey]).openText(actCodec(), row.token)).toThrow();
      }
      current = newKey;
    });

    it("backs up with the rotation, drills the backup and restores it: values bound to their rows open and are re-sealed with their own row's data", async () => {
      const s = await openStore(url);
      const dir = scratchDir('mk-aad-backup-');
      const backupKey = current;
      const liveKey = MasterKey.generate();
      try {
        const canary = (await s.readCanary())!;
        // As apply does: the rotation backs up what it re-encrypts.
        const part = await s.write(async (tx) => {
          await tx.lockSecretTables(INVENTORY);
          const r = await tx.rotate({ inventory: INVENTORY, from: new Keyring([backupKey]), to: liveKey, backup: new BackupDirectory(dir) });
          await tx.replaceCanary(canaryFor(liveKey, canary.generation + 1, new Date()));
          return r.backup;
        });
        const backup = { dir, files: new BackupDirectorySource(dir), part, canary };
        const drilled = await s.drill({ backup, inventory: INVENTORY }, (tx, copy) => tx.scan(copy.inventory, new Keyring([backupKey])));
        expect(drilled).toMatchObject({ total: 3 * ROWS, failureCount: 0 });
        // The server adds a row under the live key, bound to its user.
        await fixture.withSql(url, (db) =>
          db.query('INSERT INTO api_tokens (id, user_id, token, token_v1, doc) VALUES ($1, $2, $3, $4, $5)', [
            99,
            77,
            seal('act', liveKey, 'token-99', 77),
            seal('v1', liveKey, 'token-v1-99', 77),
            JSON.stringify({ name: 'setting-99', secret: seal('act', liveKey, 'setting-99', 77) }),
          ])
        );
        const rec = new Reconciler(INVENTORY, [liveKey], backupKey);
        await s.write(async (tx) => {
          await tx.lockSecretTables(INVENTORY);
          await tx.restore({ backup, inventory: INVENTORY, decide: rec.decide });
          await tx.replaceCanary({ ...canary, updatedAt: new Date() });
        });
        expect(rec.refusedCount).toBe(0);
        expect(rec.tally).toEqual({ unchanged: 3 * ROWS, changed: 0, added: 3, putBack: 0, removed: 0 });
        expect(await s.read((tx) => tx.scan(INVENTORY, new Keyring([backupKey])))).toMatchObject({ total: 3 * ROWS + 3, failureCount: 0 });
        const [row] = await fixture.withSql(url, (db) => db.query<{ token: string }>('SELECT token FROM api_tokens WHERE id = 99'));
        expect(open('act', backupKey, row.token, 77)).toBe('token-99');
        expect(() => open('act', backupKey, row.token, 78)).toThrow();
        current = backupKey;
      } finally {
        await s.close();
        removeScratch(dir);
      }
    });
  });
}
