/**
 * One consistent pass (issue 9, item 3): a server keeps inserting and
 * updating secrets until apply's stop hook fires. Afterwards the backup
 * holds exactly the values the transaction re-encrypted (same places, same
 * plaintexts: counts and checksums), and a restore of it verifies.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { actCodec } from '../src/crypto/codec';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { backupCells, checksum, liveCells, plaintextsOf } from './support/cells';
import { Scenario, startCli } from './support/scenario';
import { scenarioForBlock } from './support/block';

let s: Scenario;
scenarioForBlock({ perKind: 4 }, (made) => {
  s = made;
});

/**
 * A running server: until `stopFlag` appears, stores a new git access
 * token and changes an environment variable, both sealed under the
 * configured key, one statement each; then writes `ack` and stops.
 */
async function server(stopFlag: string, ack: string): Promise<{ inserted: string[]; updates: number }> {
  const c = new Client({ connectionString: s.url });
  await c.connect();
  const codec = actCodec();
  const seal = (p: string) => codec.seal(s.key, Buffer.from(p, 'utf8'));
  const inserted: string[] = [];
  let updates = 0;
  try {
    for (let i = 0; !existsSync(stopFlag); i++) {
      const r = await c.query<{ id: string }>("INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1) RETURNING id::text AS id", [seal(`written while running ${i}`)]);
      inserted.push(r.rows[0].id);
      await c.query('UPDATE environment_variables SET value = $1 WHERE id = (SELECT min(id) FROM environment_variables)', [seal(`changed while running ${i}`)]);
      updates++;
      await new Promise((res) => setTimeout(res, 5));
    }
  } finally {
    writeFileSync(ack, 'stopped\n');
    await c.end();
  }
  return { inserted, updates };
}

it('a server writing until the stop hook: the backup holds exactly the rotated values, and restoring it verifies', async () => {
  const stopFlag = join(s.dir, 'stop-requested');
  const ack = join(s.dir, 'server-stopped');
  const running = server(stopFlag, ack);
  // The stop hook asks the server to stop and waits (up to a minute) until it has.
  const stop = `touch '${stopFlag}'; i=0; while [ ! -f '${ack}' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done`;
  const child = startCli(['apply', '--json', '--config', s.configPath, '--stop-command', stop], s.env);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((res) => child.on('close', res));
  const written = await running;
  expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
  expect(written.inserted.length).toBeGreaterThan(0);

  const { report } = JSON.parse(stdout) as { report: { backup: { path: string; values: number }; processed: number; updated: number; rowsUpdated: number; newFingerprint: string } };
  const newKey = s.configKey();
  expect(newKey.fingerprint).toBe(report.newFingerprint);

  // Same places, same count: what the backup holds is what the database holds now (and the server's last writes are in both).
  const backed = backupCells(report.backup.path);
  const live = await liveCells(s.url, ACT_PRESET);
  expect(backed.size).toBe(report.backup.values);
  expect([...backed.keys()].sort()).toEqual([...live.keys()].sort());
  expect(backed.has(`git_credentials.access_token:${written.inserted[written.inserted.length - 1]}`)).toBe(true);

  // Same plaintexts: the backup under the old key, the database under the new one.
  const before = plaintextsOf(backed, ACT_PRESET, s.key);
  const after = plaintextsOf(live, ACT_PRESET, newKey);
  expect([...before.values()].filter((v) => v.startsWith('!'))).toEqual([]);
  expect([...after.values()].filter((v) => v.startsWith('!'))).toEqual([]);
  expect(checksum(before)).toBe(checksum(after));
  expect(before.get(`environment_variables.value:1`)).toBe(`changed while running ${written.updates - 1}`);
  // Every sealed value the transaction re-encrypted is one the backup holds (a document holds several).
  expect(report.updated).toBe(report.processed);
  expect(report.rowsUpdated).toBeLessThanOrEqual(backed.size);

  const restore = s.cli(['restore', '--json', '--backup', report.backup.path]);
  expect(restore.code).toBe(0);
  const r = JSON.parse(restore.stdout) as { values: Record<string, number>; verification: { ok: boolean; checked: number } };
  expect(r.values).toEqual({ inBackup: backed.size, unchanged: backed.size, changed: 0, added: 0, putBack: 0, removed: 0 });
  expect(r.verification).toMatchObject({ ok: true, checked: report.processed });
  expect(s.configKey().equals(s.key)).toBe(true);
  expect(checksum(plaintextsOf(await liveCells(s.url, ACT_PRESET), ACT_PRESET, s.key))).toBe(checksum(before));
  expect(readFileSync(s.configPath, 'utf8')).toContain(s.key.toHex());
});
