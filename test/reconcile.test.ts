/**
 * What a restore writes for each stored value (`src/rotation/reconcile.ts`),
 * in pure code: plain columns and JSON documents, each rule of the README's
 * "Restore" section.
 */
import { actCodec, codecByName } from '../src/crypto/codec';
import { MasterKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { Reconciler } from '../src/rotation/reconcile';
import type { Location } from '../src/store/store';

const backupKey = MasterKey.generate();
const liveKey = MasterKey.generate();
const lostKey = MasterKey.generate();
const codec = actCodec();
const seal = (k: MasterKey, p: string) => codec.seal(k, Buffer.from(p, 'utf8'));
const open = (k: MasterKey, v: string) => new Keyring([k]).openText(codec, v);

const TEXT: Location = { table: 'git_credentials', idColumn: 'id', column: 'access_token' };
const DOC: Location = { table: 'services', idColumn: 'id', column: 'spec' };

/** A services.spec document with one secret and one plain variable. */
function spec(k: MasterKey, secret: string, image = 'app:1'): string {
  return JSON.stringify({ image, env: [{ name: 'DB_PASSWORD', secret: true, value: seal(k, secret) }, { name: 'LOG_LEVEL', secret: false, value: 'info' }] });
}
const secretOf = (k: MasterKey, doc: string) => open(k, (JSON.parse(doc) as { env: Array<{ value: string }> }).env[0].value);

describe('a restore decides each stored value', () => {
  const rec = () => new Reconciler(ACT_PRESET, [liveKey], backupKey);

  it('plain column: unchanged since the backup puts the backed-up text back; changed and added are re-sealed under the backup key; removed is left', () => {
    const r = rec();
    const saved = seal(backupKey, 'token');
    const out = r.decide(TEXT, [
      { id: '1', live: seal(liveKey, 'token'), backup: saved },
      { id: '2', live: seal(liveKey, 'new token'), backup: seal(backupKey, 'old token') },
      { id: '3', live: seal(liveKey, 'added') },
      { id: '4', backup: seal(backupKey, 'removed') },
      { id: '5', live: saved, backup: saved },
    ]);
    expect(out[0]).toBe(saved);
    expect(open(backupKey, out[1]!)).toBe('new token');
    expect(open(backupKey, out[2]!)).toBe('added');
    expect(out[3]).toBeUndefined();
    expect(out[4]).toBeUndefined();
    expect(r.tally).toEqual({ unchanged: 2, changed: 1, added: 1, putBack: 0, removed: 1 });
    expect(r.refusedCount).toBe(0);
  });

  it('a value no key on disk opens: put back from the backup when it has one there, else refused (named, never shown)', () => {
    const r = rec();
    const saved = seal(backupKey, 'kept safe');
    const out = r.decide(TEXT, [
      { id: '7', live: seal(lostKey, 'changed under a lost key'), backup: saved },
      { id: '8', live: seal(lostKey, 'added under a lost key') },
      { id: '9', live: 'not sealed at all', backup: 'not sealed either' },
    ]);
    expect(out).toEqual([saved, undefined, undefined]);
    expect(r.tally.putBack).toBe(1);
    expect(r.refusedCount).toBe(2);
    expect(r.refused).toEqual([
      { table: 'git_credentials', column: 'access_token', id: '8', kind: 'git access token', code: 'SEALED_WRONG_KEY' },
      { table: 'git_credentials', column: 'access_token', id: '9', kind: 'git access token', code: 'SEALED_MALFORMED' },
    ]);
    expect(JSON.stringify(r.refused)).not.toContain('lost key');
  });

  it('JSON document: unchanged when its plain parts and secrets are; a change in either is re-sealed; a member no key opens puts the document back', () => {
    const r = rec();
    const saved = spec(backupKey, 'pw');
    const out = r.decide(DOC, [
      { id: '1', live: spec(liveKey, 'pw'), backup: saved },
      { id: '2', live: spec(liveKey, 'pw', 'app:2'), backup: saved },
      { id: '3', live: spec(liveKey, 'new pw'), backup: saved },
      { id: '4', live: spec(lostKey, 'pw'), backup: saved },
      { id: '5', live: spec(liveKey, 'added pw') },
    ]);
    expect(out[0]).toBe(saved);
    expect(JSON.parse(out[1]!)).toMatchObject({ image: 'app:2', env: [{ name: 'DB_PASSWORD' }, { name: 'LOG_LEVEL', value: 'info' }] });
    expect(secretOf(backupKey, out[1]!)).toBe('pw');
    expect(secretOf(backupKey, out[2]!)).toBe('new pw');
    expect(out[3]).toBe(saved);
    expect(secretOf(backupKey, out[4]!)).toBe('added pw');
    expect(r.tally).toEqual({ unchanged: 1, changed: 2, added: 1, putBack: 1, removed: 0 });
  });

  it('without a usable live key, values under the backup key still open (and count as unchanged or changed)', () => {
    const r = new Reconciler(ACT_PRESET, [], backupKey);
    const out = r.decide(TEXT, [
      { id: '1', live: seal(backupKey, 'same'), backup: seal(backupKey, 'same') },
      { id: '2', live: seal(liveKey, 'under the live key') },
    ]);
    expect(open(backupKey, out[0]!)).toBe('same');
    expect(out[1]).toBeUndefined();
    expect(r.tally.unchanged).toBe(1);
    expect(r.refused[0]).toMatchObject({ id: '2', code: 'SEALED_WRONG_KEY' });
  });

  it('a location the inventory does not list is refused (INVENTORY_INVALID)', () => {
    expect(() => rec().decide({ table: 'elsewhere', idColumn: 'id', column: 'v' }, [{ id: '1', live: 'x' }])).toThrow(expect.objectContaining({ code: 'INVENTORY_INVALID' }));
  });

  it("values bound to a row column (additional data) are opened and re-sealed with the live row's text of it", () => {
    const inv = { name: 'tokens', entries: [{ kind: 'api token', table: 'tokens', idColumn: 'id', column: 'secret', codec: 'v1' as const, aad: { column: 'user_id' } }] };
    const loc: Location = { table: 'tokens', idColumn: 'id', column: 'secret' };
    const v1 = codecByName('v1');
    const ad = (t: string) => Buffer.from(t, 'utf8');
    const sealAd = (k: MasterKey, p: string, a: string) => v1.seal(k, Buffer.from(p, 'utf8'), { aad: ad(a) });
    const r = new Reconciler(inv, [liveKey], backupKey);
    const saved = sealAd(backupKey, 'same', 'user-7');
    const out = r.decide(loc, [
      { id: '1', live: sealAd(liveKey, 'same', 'user-7'), backup: saved, aad: { user_id: 'user-7' } },
      { id: '2', live: sealAd(liveKey, 'added', 'user-8'), aad: { user_id: 'user-8' } },
    ]);
    expect(out[0]).toBe(saved);
    expect(new Keyring([backupKey]).openText(v1, out[1]!, ad('user-8'))).toBe('added');
    expect(() => new Keyring([backupKey]).openText(v1, out[1]!)).toThrow();
    expect(r.tally).toMatchObject({ unchanged: 1, added: 1 });
  });
});
