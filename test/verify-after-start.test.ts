/**
 * Verification after the server has started again: the start hooks run
 * before verification, and a server started by its hook may write secrets
 * under the new key at once. Apply must still prove what it claims (the
 * values the rotation wrote are stored as written, and every value added or
 * changed since opens with the new key) and exit 0, through the real CLI,
 * on either store; a value written since that does not open with the new
 * key still fails it (exit 6).
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ExitCode } from '../src/errors';
import { actScenario } from './support/scenario';
import { metaTables, sqlQuery } from './support/sql';
import { CLI_STORES } from './support/stores';

const ROOT = resolve(__dirname, '..');

/**
 * A server's writer, run by the start hook: adds a git access token and
 * changes an environment variable, both sealed under the key now in the
 * config file, or under a key of its own (`foreign`).
 */
function writerScript(configPath: string, foreign: boolean): string {
  const req = (m: string) => JSON.stringify(require.resolve(m, { paths: [ROOT] }));
  return `
const { readFileSync } = require('node:fs');
const { actCodec } = require(${JSON.stringify(join(ROOT, 'dist', 'src', 'crypto', 'codec.js'))});
const { MasterKey, parseKey } = require(${JSON.stringify(join(ROOT, 'dist', 'src', 'crypto', 'key.js'))});
const key = ${foreign ? 'MasterKey.generate()' : `parseKey(/^ACT_MASTER_KEY=(.*)$/m.exec(readFileSync(${JSON.stringify(configPath)}, 'utf8'))[1])`};
const seal = (text) => actCodec().seal(key, Buffer.from(text, 'utf8'));
const url = process.env.DATABASE_URL;
(async () => {
  if (url.startsWith('sqlite:')) {
    const Database = require(${req('better-sqlite3')});
    const db = new Database(url.slice('sqlite:'.length));
    db.prepare("INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', ?)").run(seal('written by the server after its start'));
    db.prepare('UPDATE environment_variables SET value = ? WHERE id = (SELECT min(id) FROM environment_variables)').run(seal('changed by the server after its start'));
    db.close();
  } else {
    const { Client } = require(${req('pg')});
    const c = new Client({ connectionString: url });
    await c.connect();
    await c.query("INSERT INTO git_credentials (provider, access_token) VALUES ('gitlab', $1)", [seal('written by the server after its start')]);
    await c.query('UPDATE environment_variables SET value = $1 WHERE id = (SELECT min(id) FROM environment_variables)', [seal('changed by the server after its start')]);
    await c.end();
  }
})().catch((e) => { console.error(e); process.exit(1); });
`;
}

describe.each(CLI_STORES)('verification after a start hook that writes secrets, on $name', (store) => {
  it('a server that adds and changes secrets under the new key as soon as it starts: apply proves both and exits 0', async () => {
    const s = await actScenario({ perKind: 3, store });
    const writer = join(s.dir, 'server-writer.js');
    writeFileSync(writer, writerScript(s.configPath, false));
    const reports = join(s.dir, 'reports');
    const r = s.cli(['apply', '--start-command', `node '${writer}'`, '--report-dir', reports]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Verification: Values were added, changed or removed since the re-encryption \([\d,]+ values stored, [\d,]+ written\): [\d,]+ of the values it wrote are stored exactly as written .*; in the [\d,]+ other group\(s\), all [\d,]+ values stored now open with mk:[0-9a-f]{12}\./);
    const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('.json'))!), 'utf8'));
    expect(report.outcome).toBe('verified');
    expect(report.verification).toMatchObject({ ok: true, digestMatches: false, failures: 0, checked: s.plaintexts.size + 1 });
    // The added token and the changed variable: one or two groups of places, every value in them opened.
    expect(report.verification.changedSince.groups).toBeGreaterThanOrEqual(1);
    expect(report.verification.changedSince.groups).toBeLessThanOrEqual(2);
    expect(report.verification.changedSince.opened).toBeGreaterThanOrEqual(2);
    expect(report.verification.changedSince.asWritten).toBeGreaterThanOrEqual(s.plaintexts.size - report.verification.changedSince.opened);
    const [h] = await sqlQuery<{ outcome: string }>(s.url, `SELECT outcome FROM ${metaTables(s.url).history}`);
    expect(h.outcome).toBe('verified');
    // And every stored value does open with the new key.
    expect(s.cli(['verify']).code).toBe(0);
  });

  it('a value written since that does not open with the new key still fails verification (exit 6), naming it in the report', async () => {
    const s = await actScenario({ perKind: 2, store });
    const writer = join(s.dir, 'foreign-writer.js');
    writeFileSync(writer, writerScript(s.configPath, true));
    const reports = join(s.dir, 'reports');
    const r = s.cli(['apply', '--start-command', `node '${writer}'`, '--report-dir', reports]);
    expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
    expect(r.stderr).toMatch(/VERIFY_FAILED|verification after the rotation failed/i);
    const report = JSON.parse(readFileSync(join(reports, readdirSync(reports).find((f) => f.endsWith('.json'))!), 'utf8'));
    expect(report).toMatchObject({ outcome: 'verify-failed', verification: { ok: false, digestMatches: false, changedSince: { failures: 2 } } });
    expect(report.verification.proved).toMatch(/2 of the [\d,]+ values stored now do not open with mk:/);
  });
});
