/**
 * One large value on PostgreSQL, sealed ahead and in one pass, through the
 * real CLI: seal-ahead stages it by COPY a slice at a time (as array
 * parameters it would be copied whole into several buffers), with the row
 * version read; the stop hook rewrites the small row beside it with its own
 * text (a new row version, so it is re-sealed in the window); the swap puts
 * the large one in, and the backup holds exactly the values at the lock,
 * which restore puts back.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { actCodec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { scratchDir } from '../scripts/scratch';
import { dropDatabase, freshDatabase, withTestClient } from './support/db';
import { childEnv, keyLine, runCli } from './support/scenario';
import { sameTexts } from './support/stores';

const INVENTORY = { name: 'one large value', entries: [{ kind: 'large value', table: 'big_secrets', idColumn: 'id', column: 'value', codec: 'act' }] };

describe.each(['--seal-ahead', '--no-seal-ahead'])('a PostgreSQL table with one large value (apply %s)', (mode) => {
  const dir = scratchDir('mk-pg-large-');
  const config = join(dir, 'act.env');
  const inventory = join(dir, 'inventory.json');
  const oldKey = MasterKey.generate();
  // 6 MiB of plaintext (8 MiB of text, past the batch crypto's large-value size, LARGE_VALUE, and many COPY chunks), with a small value beside it.
  const plain = new Map([
    [1, randomBytes(6 << 20)],
    [2, randomBytes(40)],
  ]);
  let url: string;
  let env: NodeJS.ProcessEnv;
  let before: Map<number, string>;
  const cli = (args: readonly string[]) => runCli([...args, '--config', config, '--inventory', inventory], env);
  const texts = () =>
    withTestClient(url, async (c) => new Map((await c.query<{ id: number; value: string }>('SELECT id, value FROM big_secrets ORDER BY id')).rows.map((r) => [r.id, r.value])));
  // Compared here, not by toEqual (which walks megabytes element by element).
  const opensTo = (key: MasterKey, values: Map<number, string>) => [...values].map(([id, v]) => [id, Buffer.from(actCodec().open(new Keyring([key]), v).plaintext).equals(plain.get(id)!)]);

  beforeAll(async () => {
    url = await freshDatabase('large');
    env = childEnv({ DATABASE_URL: url });
    writeFileSync(config, `${keyLine(oldKey)}\n`);
    chmodSync(config, 0o600);
    writeFileSync(inventory, JSON.stringify(INVENTORY));
    await withTestClient(url, async (c) => {
      await c.query('CREATE TABLE big_secrets (id integer PRIMARY KEY, value text)');
      for (const [id, p] of plain) await c.query('INSERT INTO big_secrets (id, value) VALUES ($1, $2)', [id, actCodec().seal(oldKey, p)]);
    });
    before = await texts();
    const init = cli(['init']);
    if (init.code !== 0) throw new Error(`master-key init failed (${init.code}): ${init.stderr}`);
  });

  afterAll(async () => {
    if (url) await dropDatabase(url);
  });

  it('rotates it, verified, with a backup holding exactly the values at the lock, which restore puts back', async () => {
    const backups = join(dir, 'backups');
    // The server's last write, in the stop hook: the small row rewritten with its own text.
    const stop = join(dir, 'stop.js');
    writeFileSync(
      stop,
      `const { Client } = require(${JSON.stringify(require.resolve('pg'))});
       const c = new Client({ connectionString: process.env.DATABASE_URL });
       c.connect().then(() => c.query('UPDATE big_secrets SET value = value WHERE id = 2')).then(() => c.end());`,
    );
    const r = cli(['apply', mode, '--stop-command', `node '${stop}'`, '--backup-dir', backups, '--report-dir', join(dir, 'reports'), '--json']);
    expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
    const { report } = JSON.parse(r.stdout) as {
      report: { verification: { ok: boolean; digestMatches: boolean; checked: number }; backup: { values: number }; sealAhead?: { ran: boolean; stagedRows?: number; swappedRows?: number } };
    };
    expect(report.verification).toMatchObject({ ok: true, digestMatches: true, checked: 2 });
    expect(report.backup.values).toBe(2);
    // The large row swapped in, still the version staged; the rewritten one re-sealed in the window.
    if (mode === '--seal-ahead') expect(report.sealAhead).toMatchObject({ ran: true, stagedRows: 2, swappedRows: 1, resealedRows: 1 });
    else expect(report.sealAhead?.ran ?? false).toBe(false);

    const newKey = parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(config, 'utf8'))![1]);
    expect(newKey.equals(oldKey)).toBe(false);
    const after = await texts();
    expect(opensTo(newKey, after)).toEqual([[1, true], [2, true]]);
    expect(after.get(1)!.length).toBe(before.get(1)!.length);

    const [backup] = readdirSync(backups).map((d) => join(backups, d));
    const restored = runCli(['restore', '--backup', backup, '--config', config, '--inventory', inventory], env);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(sameTexts(await texts(), before)).toBe(true);
    expect(opensTo(oldKey, await texts())).toEqual([[1, true], [2, true]]);
    expect(cli(['verify']).code).toBe(0);
  });
});
