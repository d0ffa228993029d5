/**
 * PostgreSQL's cut-over with no connection to spare: the rotation's role
 * may hold two connections (`ALTER ROLE … CONNECTION LIMIT 2`), seal-ahead
 * uses both with the server up, and the stop hook leaves a session of the
 * server's connected through the window (as a server that keeps a pool
 * connection while it stops may). The cut-over's second connection (the
 * read of what changed since, beside the swap) cannot be had: it reads on
 * the transaction's own connection instead; the rotation completes, seal-ahead used, every value opens with
 * the new key. With the server's session kept past the start hook too, the
 * staging area cannot be dropped on a connection of its own beside
 * verification either: it is dropped after it, on the session's. Real
 * PostgreSQL, a real role, the real CLI.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { adminUrl, withTestClient } from './support/db';
import { Scenario, actScenario, readPlaintexts } from './support/scenario';
import { POSTGRES } from './support/stores';

const role = `mk_limit_${randomBytes(4).toString('hex')}`;
const password = randomBytes(12).toString('hex');
let s: Scenario;
let roleUrl: string;

beforeAll(async () => {
  s = await actScenario({ store: POSTGRES, perKind: 3 });
  await withTestClient(adminUrl(), (c) => c.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}' CONNECTION LIMIT 2`));
  await withTestClient(s.url, (c) =>
    c.query(`GRANT pg_read_all_data, pg_write_all_data TO ${role}; GRANT CREATE ON SCHEMA master_key TO ${role}; GRANT CREATE, TEMPORARY ON DATABASE "${new URL(s.url).pathname.slice(1)}" TO ${role}`),
  );
  const u = new URL(s.url);
  u.username = role;
  u.password = password;
  roleUrl = u.toString();
});

afterAll(async () => {
  // Every session of the role ends (the holder, if the apply stopped before its start hook, exits as its session does).
  await withTestClient(adminUrl(), async (c) => {
    await c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [role]);
    await c.query(`DROP OWNED BY ${role}`).catch(() => undefined);
  }).catch(() => undefined);
  await POSTGRES.drop(s.url);
  await withTestClient(adminUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${role}`));
});

it.each([
  ['its start hook', true],
  ['the apply, so the staging area is dropped after verification', false],
])('with no second connection to be had in the window, the cut-over reads what changed since on its own connection, and the rotation completes (the server session held until %s)', async (_, releaseAtStart) => {
  const ready = join(s.dir, 'holder.ready');
  rmSync(ready, { force: true });
  const release = join(s.dir, 'holder.release');
  rmSync(release, { force: true });
  const holder = join(s.dir, 'holder.js');
  // A session of the server's: connected as the role before the window, gone once the start hook says so (or after 60 s).
  writeFileSync(
    holder,
    `const { Client } = require(${JSON.stringify(require.resolve('pg'))});
const fs = require('fs');
(async () => {
  const c = new Client({ connectionString: process.env.HOLDER_URL });
  await c.connect();
  c.on('error', () => process.exit(0));
  c.on('end', () => process.exit(0));
  fs.writeFileSync(${JSON.stringify(ready)}, '');
  const end = Date.now() + 60000;
  while (!fs.existsSync(${JSON.stringify(release)}) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  await c.end();
})().catch((e) => { console.error(e); process.exit(1); });
`,
  );
  const stop = `node '${holder}' < /dev/null > /dev/null 2>&1 & for i in $(seq 1 200); do [ -f '${ready}' ] && exit 0; sleep 0.05; done; exit 1`;
  const start = releaseAtStart ? `touch '${release}'` : 'true';
  let r: ReturnType<typeof s.cli>;
  try {
    r = s.cli(['apply', '--json', '--seal-ahead', '--stop-command', stop, '--start-command', start], { env: { DATABASE_URL: roleUrl, HOLDER_URL: roleUrl } });
  } finally {
    writeFileSync(release, '');
  }
  expect(existsSync(ready)).toBe(true);
  expect(r.stderr).not.toMatch(/\[INTERNAL\]/);
  expect(r.code).toBe(0);
  const report = (JSON.parse(r.stdout) as { report: { sealAhead: { ran: boolean; used?: boolean; swappedRows?: number } } }).report;
  expect(report.sealAhead).toMatchObject({ ran: true, used: true });
  expect(report.sealAhead.swappedRows).toBeGreaterThan(0);
  const key = s.configKey();
  expect(key.equals(s.key)).toBe(false);
  expect(await readPlaintexts(s.url, key, s.plaintexts.keys())).toEqual(s.plaintexts);
  // The staging area went too.
  const left = await withTestClient(s.url, (c) => c.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'master_key' AND tablename LIKE 'stage\\_%'"));
  expect(left.rows[0].n).toBe(0);
});
