import { randomBytes } from 'node:crypto';
import { actCodec, v1Codec } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { binaryTextArray, binaryTidArray, binaryTrueArray, binaryXidArray } from '../src/store/postgres/arrays';
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

  it('takes our binary array parameters as the arrays they stand for (text, tid, bool, xid), and refuses a transaction id that is not one', async () => {
    await withTestClient(url, async (c) => {
      const r = await c.query<{ t: string; tid: string; b: string; x: string }>('SELECT $1::text[]::text AS t, $2::tid[]::text AS tid, $3::bool[]::text AS b, $4::xid[]::text AS x', [
        binaryTextArray(['a', null, 'ünï "q"', Buffer.from('bytes')]),
        binaryTidArray(['(0,1)', '(4294967295,65535)']),
        binaryTrueArray([true, false, true]),
        binaryXidArray(['0', '754', '4294967295']),
      ]);
      expect(r.rows[0]).toEqual({ t: '{a,NULL,"ünï \\"q\\"",bytes}', tid: '{"(0,1)","(4294967295,65535)"}', b: '{t,NULL,t}', x: '{0,754,4294967295}' });
      const empty = await c.query<{ b: string; x: string }>('SELECT $1::bool[]::text AS b, $2::xid[]::text AS x', [binaryTrueArray([]), binaryXidArray([])]);
      expect(empty.rows[0]).toEqual({ b: '{}', x: '{}' });
      // The staging's row versions, as the server reads them.
      const xmin = await c.query<{ v: string; same: boolean }>("SELECT x.xmin::text AS v, x.xmin = ($1::xid[])[1] AS same FROM (SELECT xmin FROM pg_class WHERE relname = 'pg_class') x", [
        binaryXidArray([(await c.query<{ v: string }>("SELECT xmin::text AS v FROM pg_class WHERE relname = 'pg_class'")).rows[0].v]),
      ]);
      expect(xmin.rows[0].same).toBe(true);
    });
    for (const bad of ['4294967296', '-1', '(0,1)', null]) expect(() => binaryXidArray([bad])).toThrow(/unexpected transaction id/);
  });
});
