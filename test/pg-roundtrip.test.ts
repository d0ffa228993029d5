import { randomBytes } from 'node:crypto';
import { actCodec, v1Codec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { dropDatabase, freshDatabase, withTestClient } from './support/db';

describe('real PostgreSQL round trip', () => {
  let url: string;
  beforeAll(async () => {
    url = await freshDatabase();
  });
  afterAll(async () => {
    await dropDatabase(url);
  });

  it('stores sealed values through pg and opens them after reading them back', async () => {
    const key = MasterKey.generate();
    const ring = new Keyring([key]);
    const plain = ['hunter2', 'ssh-rsa AAAA…\nline two', '', 'ünïcødé ✓', randomBytes(300).toString('base64')];
    await withTestClient(url, async (c) => {
      const ver = await c.query<{ server_version_num: string }>('SHOW server_version_num');
      expect(Number(ver.rows[0].server_version_num)).toBeGreaterThanOrEqual(150000);
      await c.query('CREATE TABLE s (id serial primary key, v1 text not null, act text not null)');
      for (const p of plain) {
        const b = Buffer.from(p, 'utf8');
        await c.query('INSERT INTO s (v1, act) VALUES ($1, $2)', [v1Codec().seal(key, b), actCodec().seal(key, b)]);
      }
      const rows = await c.query<{ v1: string; act: string }>('SELECT v1, act FROM s ORDER BY id');
      expect(rows.rows.map((r) => ring.openText(v1Codec(), r.v1))).toEqual(plain);
      expect(rows.rows.map((r) => ring.openText(actCodec(), r.act))).toEqual(plain);
    });
  });
});
