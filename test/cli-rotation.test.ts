/**
 * The rotation through the public surface: the real CLI as a child process,
 * on each store (the embedded PostgreSQL, a SQLite file), real files.
 * Checks database contents and files, not only exit codes.
 */
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKey } from '../src/crypto/key';
import { ExitCode } from '../src/errors';
import { actScenario, dbSnapshot, keyLeaks, keyLine, readPlaintexts, Scenario } from './support/scenario';
import { metaTables, sqlQuery as query } from './support/sql';
import { CLI_STORES, StoreFixture } from './support/stores';

/** What each store writes into a backup besides the manifest and the config copies. */
const STORE_FILE: Record<StoreFixture['kind'], string> = { postgres: 'secrets.jsonl', sqlite: 'database.sqlite' };

/** A URL of each store that names no reachable database, and what the error says. */
const UNREACHABLE: Record<StoreFixture['kind'], { url: string; message: string; hidden?: string }> = {
  postgres: { url: 'postgresql://nobody:secretpw@127.0.0.1:9/none', message: 'Cannot reach the database on nobody@127.0.0.1:9/none', hidden: 'secretpw' },
  sqlite: { url: 'sqlite:/nonexistent-mk-dir/act.db', message: 'The SQLite database /nonexistent-mk-dir/act.db does not exist' },
};

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath ?? (d as unknown as { path: string }).path, d.name));
}

describe('show and --help (no database work)', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 1 });
  });

  it('show prints the fingerprint only; --reveal prints the key', () => {
    const r = s.cli(['show']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(s.key.fingerprint);
    expect(keyLeaks(r.stdout + r.stderr, [s.key])).toEqual([]);
    const rev = s.cli(['show', '--reveal']);
    expect(rev.stdout.trim()).toBe(s.key.toHex());
  });

  it('a malformed key file gives one sentence and a non-zero exit, never echoing it', () => {
    const bad = join(s.dir, 'bad.env');
    const near = s.key.toHex().slice(0, 63);
    writeFileSync(bad, `ACT_MASTER_KEY=${near}\n`);
    const r = s.cli(['show', '--config', bad]);
    expect(r.code).toBe(ExitCode.BAD_KEY);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/is 63 characters long, not 64/);
    expect(r.stderr).not.toContain(near.slice(0, 16));
  });

  it('--help works on every command', () => {
    for (const cmd of ['init', 'plan', 'apply', 'status', 'verify', 'show', 'set', 'recover', 'restore']) {
      const r = s.cli([cmd, '--help'], { noConfig: true });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: master-key ${cmd}`);
    }
  });
});

describe.each(CLI_STORES)('on $name', (store) => {
  describe('init', () => {
    let s: Scenario;
    beforeAll(async () => {
      s = await actScenario({ perKind: 2, store });
    });

    it('a second init is refused and changes nothing', async () => {
      const before = await dbSnapshot(s.url);
      const r = s.cli(['init']);
      expect(r.code).toBe(ExitCode.KEY_MISMATCH);
      expect(r.stderr).toMatch(/already initialised \(key mk:[0-9a-f]{12}, generation 1\); nothing was changed/);
      expect(await dbSnapshot(s.url)).toBe(before);
    });

  });

  describe('plan, apply, idempotent re-apply, status, verify, restore', () => {
    let s: Scenario;
    let newKey: MasterKey;
    let applyOut = '';
    let backupPath = '';
    beforeAll(async () => {
      s = await actScenario({ perKind: 4, store });
    });

    it('plan is read-only and shows counts per kind, config change, backup and the generation', async () => {
      const before = await dbSnapshot(s.url);
      const cfgBefore = readFileSync(s.configPath, 'utf8');
      const r = s.cli(['plan', '--generation', '2']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`old key         ${s.key.fingerprint}`);
      expect(r.stdout).toContain('new key         generated at apply');
      expect(r.stdout).toContain('generation      1 -> 2');
      expect(r.stdout).toMatch(/server SSH private key\s+4/);
      expect(r.stdout).toMatch(/service environment variable\s+12/); // 4 column values + 8 jsonb values
      expect(r.stdout).toMatch(/storage provider secret\s+12/); // 4 column values + 8 jsonb values
      expect(r.stdout).toContain(`ACT_MASTER_KEY=<${s.key.fingerprint}…> -> <new key…>`);
      expect(r.stdout).toContain('Plan: 1 key to rotate');
      expect(await dbSnapshot(s.url)).toBe(before);
      expect(readFileSync(s.configPath, 'utf8')).toBe(cfgBefore);
      expect(keyLeaks(r.stdout + r.stderr, [s.key])).toEqual([]);

      const j = s.cli(['plan', '--generation', '2', '--json', '--detailed-exitcode']);
      expect(j.code).toBe(ExitCode.CHANGES);
      const plan = JSON.parse(j.stdout);
      expect(plan).toMatchObject({ format: 'cdktf-master-key/plan/v1', action: 'rotate', oldFingerprint: s.key.fingerprint, fromGeneration: 1, toGeneration: 2, blockers: [] });
      expect(plan.secrets.total).toBe(s.plaintexts.size);
      expect(plan.undecryptable.count).toBe(0);
    });

    it('apply rotates everything: secrets, canary, config (mode and other lines kept), history, backup, report', async () => {
      chmodSync(s.configPath, 0o640);
      const cfgBefore = readFileSync(s.configPath, 'utf8');
      const r = s.cli(['apply', '--generation', '2']);
      applyOut = r.stdout + r.stderr;
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      newKey = s.configKey();
      expect(newKey.equals(s.key)).toBe(false);
      expect(statSync(s.configPath).mode & 0o777).toBe(0o640);
      expect(readFileSync(s.configPath, 'utf8')).toBe(cfgBefore.replace(keyLine(s.key), keyLine(newKey)));

      const total = s.plaintexts.size;
      expect(r.stdout).toContain(`Processed ${total} secrets, ${total} updated, 0 left unchanged due to errors.`);
      expect(r.stdout).toContain(`Verification: The database stores exactly the ${total} values the re-encryption wrote, each at the place it was written`);
      expect(r.stdout).toContain(`All ${total} values open with ${newKey.fingerprint}.`);
      expect(r.stdout).toMatch(/^Server down: [\d,]+ ms of [\d,]+ ms \(stop hook to start hooks\)\.$/m);

      const withNew = await readPlaintexts(s.url, newKey, s.plaintexts.keys());
      expect(withNew).toEqual(s.plaintexts);
      const withOld = await readPlaintexts(s.url, s.key, s.plaintexts.keys());
      expect([...withOld.values()].every((v) => v.startsWith('!SEALED_'))).toBe(true);

      const canary = await query<{ fingerprint: string; generation: number }>(s.url, `SELECT fingerprint, generation FROM ${metaTables(s.url).canary}`);
      expect(canary).toEqual([{ fingerprint: newKey.fingerprint, generation: 2 }]);
      const hist = await query<Record<string, unknown>>(s.url, `SELECT * FROM ${metaTables(s.url).history}`);
      expect(hist).toHaveLength(1);
      expect(hist[0]).toMatchObject({ from_generation: 1, to_generation: 2, old_fingerprint: s.key.fingerprint, new_fingerprint: newKey.fingerprint, processed: total, updated: total, unchanged_due_to_errors: 0, outcome: 'verified' });

      backupPath = /^Backup: (\S+) \(manifest/m.exec(r.stdout)![1];
      expect(statSync(backupPath).mode & 0o777).toBe(0o700);
      for (const f of readdirSync(backupPath)) expect(statSync(join(backupPath, f)).mode & 0o777).toBe(0o600);
      expect(readdirSync(backupPath).sort()).toEqual(['config-1-act.env', 'manifest.json', STORE_FILE[store.kind]].sort());
      expect(readFileSync(join(backupPath, 'config-1-act.env'), 'utf8')).toBe(cfgBefore);

      const reports = filesUnder(join(s.dir, 'master-key-reports'));
      expect(reports.map((p) => p.slice(-3)).sort()).toEqual(['.md', 'son']);
      const rep = JSON.parse(readFileSync(reports.find((p) => p.endsWith('.json'))!, 'utf8'));
      expect(rep).toMatchObject({ processed: total, updated: total, unchangedDueToErrors: 0, oldFingerprint: s.key.fingerprint, newFingerprint: newKey.fingerprint, outcome: 'verified' });
      expect(rep.verification).toEqual({ ok: true, checked: total, digestMatches: true, sampled: total, failures: 0, proved: expect.stringContaining(`open with ${newKey.fingerprint}`) });
      // The phases' shares and the server-down window: the phases from the stop hook to the start hooks.
      const down = ['stop hook', 'transaction: back up and re-encrypt', 'config files', 'start hooks'];
      expect(Object.keys(rep.phases)).toEqual(['preflight', 'pending key', ...down, 'verify']);
      const sum = (ks: string[]) => ks.reduce((a, k) => a + (rep.phases as Record<string, number>)[k], 0);
      // Too few secrets for seal-ahead to pay off: one pass, and the report says so.
      expect(rep.timing).toEqual({ totalMs: sum(Object.keys(rep.phases)), serverDownMs: sum(down), serverDownPhases: down, serverUpSealAheadMs: 0 });
      expect(rep.sealAhead).toMatchObject({ ran: false, reason: expect.stringMatching(/^one pass with the server stopped: /) });
      expect(Object.values(rep.byKind as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(total);
      const md = readFileSync(reports.find((p) => p.endsWith('.md'))!, 'utf8');
      expect(md).toContain(`Processed ${total} secrets, ${total} updated, 0 left unchanged due to errors.`);
      expect(md).toContain(backupPath);
      expect(md).toMatch(/^\| transaction: back up and re-encrypt \| [\d,]+ \| \d+\.\d% \|$/m);
      expect(md).toMatch(/^Server down \(from the stop hook to the start hooks: stop hook, transaction: back up and re-encrypt, .*\): \*\*[\d,]+ ms\*\*, \d+\.\d% of the run\.$/m);
      expect(md).toMatch(/^- taken inside the rotation's transaction, in its snapshot, alongside the re-encryption: [\d,]+ ms$/m);
      expect(existsSync(join(s.dir, '.act.env.mk-pending'))).toBe(false);
    });

    it('nothing in stdout, stderr, reports or backup names contains either key', () => {
      const texts = [applyOut, ...filesUnder(join(s.dir, 'master-key-reports')).map((p) => readFileSync(p, 'utf8')), filesUnder(join(s.dir, 'master-key-backups')).join('\n')];
      expect(keyLeaks(texts.join('\n'), [s.key, newKey])).toEqual([]);
    });

    it('re-applying the same generation does nothing and exits 0', async () => {
      const before = await dbSnapshot(s.url);
      const r = s.cli(['apply', '--generation', '2']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Nothing to do: the database is already at generation 2');
      expect(await dbSnapshot(s.url)).toBe(before);
      expect(s.configKey().equals(newKey)).toBe(true);
      const p = s.cli(['plan', '--generation', '2', '--detailed-exitcode']);
      expect(p.code).toBe(0);
      expect(p.stdout).toContain('No changes.');
    });

    it('status reports fingerprint, generation, last rotation; --max-age exits 11 when overdue', async () => {
      const r = s.cli(['status', '--json']);
      expect(r.code).toBe(0);
      const st = JSON.parse(r.stdout);
      expect(st).toMatchObject({ fingerprint: newKey.fingerprint, generation: 2, overdue: false, mismatchedNodes: 0 });
      expect(st.lastRotation).toMatchObject({ oldFingerprint: s.key.fingerprint, newFingerprint: newKey.fingerprint, outcome: 'verified' });
      await query(s.url, `UPDATE ${metaTables(s.url).canary} SET key_created_at = $1`, [new Date(Date.now() - 400 * 86_400_000)]);
      const old = s.cli(['status', '--max-age', '365d']);
      expect(old.code).toBe(ExitCode.OVERDUE);
      expect(old.stdout).toMatch(/\(400 days ago\); policy allows 365 days: OVERDUE/);
      expect(s.cli(['status', '--max-age', '500d']).code).toBe(0);
      expect(s.cli(['status', '--max-age', 'soon']).code).toBe(ExitCode.USAGE);
    });

    it('verify opens everything, and lists a tampered row without its value', async () => {
      const ok = s.cli(['verify']);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain(`OK: ${s.plaintexts.size} of ${s.plaintexts.size} secrets open with ${newKey.fingerprint}`);
      const [row] = (await query<{ id: unknown; v: string }>(s.url, 'SELECT id, access_token AS v FROM git_credentials ORDER BY id LIMIT 1')).map((r) => ({ ...r, id: String(r.id) }));
      const tampered = row.v.slice(0, 20) + (row.v[20] === 'A' ? 'B' : 'A') + row.v.slice(21);
      await query(s.url, 'UPDATE git_credentials SET access_token = $2 WHERE id = $1', [row.id, tampered]);
      const bad = s.cli(['verify']);
      expect(bad.code).toBe(ExitCode.UNDECRYPTABLE);
      expect(bad.stdout).toContain(`git_credentials.access_token id=${row.id} (git access token): SEALED_`);
      expect(bad.stdout).not.toContain(tampered);
      await query(s.url, 'UPDATE git_credentials SET access_token = $2 WHERE id = $1', [row.id, row.v]);
    });

    it('restore puts the backup back (secrets, canary, config) and refuses a tampered backup', async () => {
      const manifest = join(backupPath, STORE_FILE[store.kind]);
      const original = readFileSync(manifest);
      const tampered = Buffer.from(original);
      tampered[tampered.length >> 1] ^= 0x01;
      writeFileSync(manifest, tampered);
      const before = await dbSnapshot(s.url);
      const refused = s.cli(['restore', '--backup', backupPath]);
      expect(refused.code).toBe(ExitCode.FILES);
      expect(refused.stderr).toContain('fails its SHA-256 checksum');
      expect(await dbSnapshot(s.url)).toBe(before);
      writeFileSync(manifest, original);
      chmodSync(manifest, 0o600);

      const r = s.cli(['restore', '--backup', backupPath]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(s.configKey().equals(s.key)).toBe(true);
      expect(statSync(s.configPath).mode & 0o777).toBe(0o640);
      expect(await readPlaintexts(s.url, s.key, s.plaintexts.keys())).toEqual(s.plaintexts);
      const canary = await query<{ fingerprint: string; generation: number }>(s.url, `SELECT fingerprint, generation FROM ${metaTables(s.url).canary}`);
      expect(canary).toEqual([{ fingerprint: s.key.fingerprint, generation: 1 }]);
      expect(s.cli(['verify']).code).toBe(0);
    });
  });

  describe('errors leave database and files exactly as they were', () => {
    let s: Scenario;
    let cfg: string;
    let snap: string;
    beforeAll(async () => {
      s = await actScenario({ perKind: 2, store });
      cfg = readFileSync(s.configPath, 'utf8');
      snap = await dbSnapshot(s.url);
    });
    afterEach(async () => {
      expect(readFileSync(s.configPath, 'utf8')).toBe(cfg);
      expect(await dbSnapshot(s.url)).toBe(snap);
      expect(existsSync(join(s.dir, '.act.env.mk-pending'))).toBe(false);
    });

    const expectOneSentence = (stderr: string, code: string) => {
      const lines = stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`^master-key: .+\\[${code}\\]$`));
    };

    it('wrong old key: "Old master key incorrect"', () => {
      const other = join(s.dir, 'other.env');
      writeFileSync(other, keyLine(MasterKey.generate()) + '\n');
      const r = s.cli(['apply', '--config', other]);
      expect(r.code).toBe(ExitCode.KEY_MISMATCH);
      expect(r.stderr).toContain('Old master key incorrect');
      expectOneSentence(r.stderr, 'OLD_KEY_INCORRECT');
    });

    it('missing canary: "Integrity canary not found"', async () => {
      const blank = await actScenario({ perKind: 1, init: false, store });
      const r = s.cli(['apply'], { env: { DATABASE_URL: blank.url } });
      expect(r.code).toBe(ExitCode.KEY_MISMATCH);
      expect(r.stderr).toContain('Integrity canary not found');
      expectOneSentence(r.stderr, 'CANARY_NOT_FOUND');
    });

    it('undecryptable rows block the rotation and are named (table, id, kind)', async () => {
      const [row] = (await query<{ id: unknown }>(s.url, 'SELECT id FROM registry_credentials ORDER BY id LIMIT 1')).map((r) => ({ id: String(r.id) }));
      const original = (await query<{ v: string }>(s.url, 'SELECT password AS v FROM registry_credentials WHERE id = $1', [row.id]))[0].v;
      await query(s.url, 'UPDATE registry_credentials SET password = $2 WHERE id = $1', [row.id, 'bm90IGEgc2VhbGVkIHZhbHVlIGF0IGFsbCwgc29ycnkh']);
      try {
        const p = s.cli(['plan']);
        expect(p.code).toBe(ExitCode.UNDECRYPTABLE);
        expect(p.stdout).toContain(`registry_credentials.password id=${row.id} (registry credential)`);
        // Apply finds it inside its transaction (after the stop hook): it rolls back, removes its backup, and starts the server again.
        const hooksLog = join(s.dir, 'hooks.log');
        const r = s.cli(['apply', '--stop-command', `echo stopped >> '${hooksLog}'`, '--start-command', `echo started >> '${hooksLog}'`]);
        expect(r.code).toBe(ExitCode.UNDECRYPTABLE);
        expect(r.stderr).toMatch(new RegExp(`^master-key: 1 stored value\\(s\\) do not open with the old key mk:[0-9a-f]{12} \\(registry_credentials\\.password id=${row.id} \\(registry credential, SEALED_\\w+\\)\\); nothing was changed`));
        expectOneSentence(r.stderr, 'UNDECRYPTABLE_ROWS');
        expect(r.stdout).toContain('Nothing was changed; starting the server again.');
        expect(readFileSync(hooksLog, 'utf8')).toBe('stopped\nstarted\n');
        rmSync(hooksLog);
        expect(existsSync(join(s.dir, 'master-key-backups'))).toBe(false);
        expect(existsSync(join(s.dir, 'master-key-reports'))).toBe(false);
      } finally {
        await query(s.url, 'UPDATE registry_credentials SET password = $2 WHERE id = $1', [row.id, original]);
      }
    });

    it('unreachable database', () => {
      const u = UNREACHABLE[store.kind];
      const r = s.cli(['apply'], { env: { DATABASE_URL: u.url } });
      expect(r.code).toBe(ExitCode.DATABASE);
      expect(r.stderr).toContain(u.message);
      if (u.hidden) expect(r.stderr).not.toContain(u.hidden);
      expectOneSentence(r.stderr, 'DB_UNREACHABLE');
    });

    it('a new key that fails to parse, and the same key as old and new', () => {
      const r = s.cli(['apply', '--new-key-stdin'], { input: 'abc123\n' });
      expect(r.code).toBe(ExitCode.BAD_KEY);
      expectOneSentence(r.stderr, 'KEY_MALFORMED');
      const same = s.cli(['apply', '--new-key-env', 'NEWKEY'], { env: { NEWKEY: s.key.toHex() } });
      expect(same.code).toBe(ExitCode.BAD_KEY);
      expect(same.stderr).toContain('The new key is the same as the old key');
      expectOneSentence(same.stderr, 'KEY_SAME');
      expect(keyLeaks(same.stdout + same.stderr, [s.key])).toEqual([]);
    });

    it('no database URL: one sentence naming the variable', () => {
      const r = s.cli(['plan'], { env: { DATABASE_URL: '' } });
      expect(r.code).toBe(ExitCode.USAGE);
      expect(r.stderr).toContain('The environment variable DATABASE_URL is not set');
    });
  });

  describe('a new HA node declared with a placeholder entry', () => {
    it('plan shows the node to set; apply without a rotation writes the database key into it; then nothing is left to do', async () => {
      const s = await actScenario({ perKind: 1, store });
      const node2 = join(s.dir, 'node2.env');
      writeFileSync(node2, '# node 2\nACT_MASTER_KEY=\n');
      chmodSync(node2, 0o600);
      const args = ['--config', s.configPath, '--config', node2, '--generation', '1'];
      const before = await dbSnapshot(s.url);
      const p = s.cli(['plan', ...args, '--detailed-exitcode']);
      expect(p.code).toBe(ExitCode.CHANGES);
      expect(p.stdout).toContain(`${node2} (dotenv): ACT_MASTER_KEY=<no key…> -> <${s.key.fingerprint}…>`);
      expect(p.stdout).toContain("Plan: 0 keys to rotate, 1 config file to set to the database's key.");
      const a = s.cli(['apply', ...args]);
      expect(a.code).toBe(0);
      expect(s.configKey(node2).equals(s.key)).toBe(true);
      expect(readFileSync(node2, 'utf8')).toBe(`# node 2\n${keyLine(s.key)}\n`);
      expect(statSync(node2).mode & 0o777).toBe(0o600);
      expect(keyLeaks(a.stdout + a.stderr, [s.key])).toEqual([]);
      expect(await dbSnapshot(s.url)).toBe(before);
      expect(s.cli(['plan', ...args, '--detailed-exitcode']).code).toBe(0);
    });
  });

  describe('recover after a kill between the config update and the verification', () => {
    it('verifies the never-verified rotation, records it, and runs the start command', async () => {
      const s = await actScenario({ perKind: 2, store });
      const killed = s.cli(['apply'], { env: { MASTER_KEY_TEST_KILL_AT: 'pending-removed' } });
      expect(killed.code).toBe(-1); // SIGKILL
      const newKey = s.configKey();
      expect(newKey.equals(s.key)).toBe(false);
      expect(await query<{ outcome: string }>(s.url, `SELECT outcome FROM ${metaTables(s.url).history}`)).toEqual([{ outcome: 'committed' }]);
      const marker = join(s.dir, 'started');
      const r = s.cli(['recover', '--start-command', `touch ${marker}`]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Verified the last rotation, which was never verified: all ${s.plaintexts.size} secrets open with ${newKey.fingerprint}.`);
      expect(await query<{ outcome: string }>(s.url, `SELECT outcome FROM ${metaTables(s.url).history}`)).toEqual([{ outcome: 'verified (by recover)' }]);
      expect(existsSync(marker)).toBe(false); // nothing was interrupted: no restart needed
      expect(await readPlaintexts(s.url, newKey, s.plaintexts.keys())).toEqual(s.plaintexts);
    });

    it('starts the server again after undoing a rotation killed after its stop command', async () => {
      const s = await actScenario({ perKind: 1, store });
      const stopped = join(s.dir, 'stopped');
      const started = join(s.dir, 'started');
      const killed = s.cli(['apply', '--stop-command', `touch ${stopped}`], { env: { MASTER_KEY_TEST_KILL_AT: 'stop-hook-done' } });
      expect(killed.code).toBe(-1);
      expect(existsSync(stopped)).toBe(true);
      const r = s.cli(['recover', '--start-command', `touch ${started}`]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Undid the interrupted rotation');
      expect(existsSync(started)).toBe(true);
      expect(s.configKey().equals(s.key)).toBe(true);
    });
  });
});
