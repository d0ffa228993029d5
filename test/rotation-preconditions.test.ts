/**
 * What can be known before the stop hook is found before it (issue 20):
 * `plan` (the CLI's and terraform's through the provider) and apply's
 * preflight check every precondition of the rotation's transaction: UPDATE
 * on each secret table and column, the right to lock it, the writes in
 * schema master_key, a writable database, and SQLite's file and directory.
 * A missing one is a plan blocker; apply refuses it before the stop hook
 * (its marker file never appears) with one sentence naming the table and
 * the grant to add. Real PostgreSQL roles, a real read-only database, a
 * real unprivileged user on SQLite, real terraform.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { ExitCode } from '../src/errors';
import { openStore } from '../src/store/open';
import { sqliteFile } from '../src/store/sqlite/url';
import { loadInventory } from '../src/inventory/inventory';
import { adminUrl, withTestClient } from './support/db';
import { ADDRESS, ProviderInstallation } from './support/provider-installation';
import { CLI, CliResult, Scenario, actScenario, dbSnapshot, keyLine } from './support/scenario';
import { POSTGRES, SQLITE_ROLLBACK } from './support/stores';
import { describeTerraform } from './support/terraform';

/** A login role on the run's server, made for this file and dropped after it. */
class Role {
  readonly name = `mk_role_${randomBytes(4).toString('hex')}`;
  private readonly password = randomBytes(12).toString('hex');

  async create(): Promise<void> {
    await withTestClient(adminUrl(), (c) => c.query(`CREATE ROLE ${this.name} LOGIN PASSWORD '${this.password}'`));
  }

  /** Runs `sql` (with `ROLE` standing for this role's name) as the admin on the database at `url`. */
  async grant(url: string, sql: string): Promise<void> {
    await withTestClient(url, (c) => c.query(sql.replaceAll('ROLE', this.name)));
  }

  /** `url` logging in as this role. */
  url(url: string): string {
    const u = new URL(url);
    u.username = this.name;
    u.password = this.password;
    return u.toString();
  }

  /** Drops it (its databases dropped first: nothing of it is left). */
  async drop(): Promise<void> {
    await withTestClient(adminUrl(), (c) => c.query(`DROP ROLE IF EXISTS ${this.name}`));
  }
}

/** What an application role of ACT gets: it reads and writes every ACT table but `git_credentials`, which it may only read; and the tool's metadata. */
const READS_GIT_CREDENTIALS_ONLY = `
  GRANT USAGE ON SCHEMA public TO ROLE;
  GRANT SELECT ON ALL TABLES IN SCHEMA public TO ROLE;
  DO $$ DECLARE t text; BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'git_credentials' LOOP
      EXECUTE format('GRANT UPDATE ON public.%I TO ROLE', t);
    END LOOP;
  END $$;
  GRANT USAGE ON SCHEMA master_key TO ROLE;
  GRANT SELECT, UPDATE ON master_key.canary TO ROLE;
  GRANT SELECT, INSERT, UPDATE ON master_key.history TO ROLE;
  GRANT USAGE ON ALL SEQUENCES IN SCHEMA master_key TO ROLE;`;

/** An ACT scenario on PostgreSQL with `role` granted `grants` before the describe's tests (`ready` gets the scenario and the role's env), both dropped after. */
function withRoleOnAct(role: Role, grants: string, ready: (s: Scenario, env: NodeJS.ProcessEnv) => void): void {
  let s: Scenario | undefined;
  beforeAll(async () => {
    s = await actScenario({ perKind: 3, store: POSTGRES });
    await role.create();
    await role.grant(s.url, grants);
    ready(s, { DATABASE_URL: role.url(s.url) });
  });
  afterAll(async () => {
    if (s) await POSTGRES.drop(s.url);
    await role.drop();
  });
}

/** apply with a stop hook that leaves a marker file. */
function applyWithStopHook(s: Scenario, env: NodeJS.ProcessEnv): { r: CliResult; stopped: () => boolean } {
  const marker = join(s.dir, 'stopped.marker');
  const r = s.cli(['apply', '--stop-command', `touch '${marker}'`, '--start-command', 'true'], { env });
  return { r, stopped: () => existsSync(marker) };
}

function oneLine(r: CliResult, exit: number, code: string): string {
  expect({ code: r.code, last: r.stderr.trim().split('\n').pop() }).toEqual({ code: exit, last: expect.stringMatching(new RegExp(`^master-key: .+ \\[${code}\\]$`)) });
  return r.stderr.trim().split('\n').pop()!;
}

describe('PostgreSQL: a role that may read a secret table but not update it', () => {
  const role = new Role();
  let s: Scenario;
  let env: NodeJS.ProcessEnv;
  withRoleOnAct(role, READS_GIT_CREDENTIALS_ONLY, (scenario, roleEnv) => ([s, env] = [scenario, roleEnv]));

  it('plan shows the blocker naming the table and the GRANT (exit 7); apply refuses it before the stop hook and changes nothing; after the GRANT both go through', async () => {
    const grant = `GRANT UPDATE ON public.git_credentials TO ${role.name}`;
    const plan = s.cli(['plan'], { env });
    expect(plan.code).toBe(ExitCode.DATABASE);
    expect(plan.stdout).toContain('Blocked: apply would refuse to run:');
    expect(plan.stdout).toContain(
      `  - The database role ${role.name} may not update public.git_credentials, whose column access_token holds secrets the rotation re-encrypts: grant it with ${grant} (as the table's owner), then run the command again.`,
    );
    expect(plan.stdout).not.toContain('Plan: 1 key to rotate');
    const json = JSON.parse(s.cli(['plan', '--json'], { env }).stdout);
    expect(json.blockerCodes).toEqual(['DB_PRIVILEGE_MISSING']);

    const db = await dbSnapshot(s.url);
    const config = readFileSync(s.configPath, 'utf8');
    const { r, stopped } = applyWithStopHook(s, env);
    expect(oneLine(r, ExitCode.DATABASE, 'DB_PRIVILEGE_MISSING')).toContain(`${grant} (as the table's owner), then run the command again. Nothing was changed.`);
    expect(stopped()).toBe(false);
    expect(await dbSnapshot(s.url)).toBe(db);
    expect(readFileSync(s.configPath, 'utf8')).toBe(config);
    expect(existsSync(join(s.dir, '.act.env.mk-pending'))).toBe(false);

    await role.grant(s.url, 'GRANT UPDATE ON public.git_credentials TO ROLE');
    expect(s.cli(['plan', '--detailed-exitcode'], { env }).code).toBe(ExitCode.CHANGES);
    const ok = applyWithStopHook(s, env);
    expect(ok.r.code).toBe(0);
    expect(ok.stopped()).toBe(true);
    await role.grant(s.url, 'REVOKE UPDATE ON public.git_credentials FROM ROLE');
  });

  it('UPDATE on the secret column alone is not enough to lock the table: named as such, and PostgreSQL agrees', async () => {
    await role.grant(s.url, 'GRANT UPDATE (access_token) ON public.git_credentials TO ROLE');
    try {
      const plan = s.cli(['plan', '--json'], { env });
      expect(plan.code).toBe(ExitCode.DATABASE);
      expect(JSON.parse(plan.stdout).blockers).toEqual([
        `The database role ${role.name} may update the secret columns of public.git_credentials but not lock the table against writers for the rotation (that needs UPDATE, DELETE or TRUNCATE on the whole table): grant it with GRANT UPDATE ON public.git_credentials TO ${role.name} (as the table's owner), then run the command again.`,
      ]);
      // What the transaction would meet after the stop hook.
      const c = new Client({ connectionString: env.DATABASE_URL });
      await c.connect();
      try {
        await c.query('BEGIN');
        await expect(c.query('LOCK TABLE git_credentials IN SHARE ROW EXCLUSIVE MODE')).rejects.toThrow(/permission denied/);
      } finally {
        await c.end();
      }
    } finally {
      await role.grant(s.url, 'REVOKE UPDATE (access_token) ON public.git_credentials FROM ROLE');
    }
  });

  it("the writes in schema master_key: a role that may not add to the history is named with the GRANT (the store's own check)", async () => {
    await role.grant(s.url, 'GRANT UPDATE ON public.git_credentials TO ROLE; REVOKE INSERT ON master_key.history FROM ROLE');
    const store = await openStore(env.DATABASE_URL!);
    try {
      expect(await store.rotationBlockers(loadInventory('act'))).toEqual([
        {
          code: 'DB_PRIVILEGE_MISSING',
          problem: `The database role ${role.name} may not add to master_key.history (the rotation history), which every rotation writes: grant it with GRANT SELECT, INSERT, UPDATE ON master_key.history TO ${role.name} (as its owner), then run the command again.`,
        },
      ]);
    } finally {
      await store.close();
      await role.grant(s.url, 'REVOKE UPDATE ON public.git_credentials FROM ROLE; GRANT INSERT ON master_key.history TO ROLE');
    }
  });
});

describe("PostgreSQL: a role that may rotate but not create seal-ahead's staging tables in schema master_key", () => {
  const role = new Role();
  let s: Scenario;
  let env: NodeJS.ProcessEnv;
  withRoleOnAct(role, `${READS_GIT_CREDENTIALS_ONLY} GRANT UPDATE ON public.git_credentials TO ROLE;`, (scenario, roleEnv) => ([s, env] = [scenario, roleEnv]));

  it('plan says seal-ahead cannot run and names the GRANT (not a blocker), and yes once granted; apply --seal-ahead without it rotates in one pass, saying so', async () => {
    const grant = `GRANT CREATE ON SCHEMA master_key TO ${role.name}`;
    const plan = s.cli(['plan', '--seal-ahead'], { env });
    expect(plan.code).toBe(0);
    expect(plan.stdout.replace(/seal-ahead +no/, 'seal-ahead no')).toContain(
      `seal-ahead no: one pass with the server stopped: seal-ahead cannot run here (the database role ${role.name} may not create the staging tables in the schema master_key: to seal ahead, grant it with ${grant})`,
    );
    expect(plan.stdout).not.toContain('Blocked');
    const json = JSON.parse(s.cli(['plan', '--seal-ahead', '--json'], { env }).stdout);
    expect(json.blockerCodes ?? []).toEqual([]);
    expect(json.sealAhead).toMatchObject({ run: false, reason: expect.stringContaining(grant) });

    await role.grant(s.url, 'GRANT CREATE ON SCHEMA master_key TO ROLE');
    expect(s.cli(['plan', '--seal-ahead'], { env }).stdout).toMatch(/seal-ahead +yes: /);
    await role.grant(s.url, 'REVOKE CREATE ON SCHEMA master_key FROM ROLE');

    const r = s.cli(['apply', '--seal-ahead', '--stop-command', 'true', '--start-command', 'true'], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Seal-ahead: no; one pass with the server stopped: seal-ahead cannot run here (the database role ${role.name} may not create the staging tables in the schema master_key: to seal ahead, grant it with ${grant}).`);
    expect(await withTestClient(s.url, (c) => c.query("SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'stage\\_%'"))).toMatchObject({ rows: [{ n: 0 }] });
    expect(s.cli(['verify'], { env }).code).toBe(0);
  });
});

describe('PostgreSQL: a secret table rewritten by a rule ON UPDATE (an audit trail kept by a DO ALSO rule)', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 3, store: POSTGRES });
    await withTestClient(s.url, (c) =>
      c.query(`CREATE TABLE public.credential_audit (id bigint, at timestamptz DEFAULT now());
               CREATE RULE audit_update AS ON UPDATE TO public.git_credentials DO ALSO INSERT INTO public.credential_audit (id) VALUES (old.id)`),
    );
  });
  afterAll(() => POSTGRES.drop(s.url));

  it("plan says seal-ahead cannot run (PostgreSQL refuses COPY of an UPDATE through a rule) and names the rule, not a blocker; apply rotates in one pass, the rule's audit rows written", async () => {
    const why = "public.git_credentials (rule audit_update) is rewritten by a rule ON UPDATE, and the cut-over's swap (COPY (UPDATE … RETURNING) TO STDOUT) cannot run through a rule";
    const plan = s.cli(['plan', '--seal-ahead']);
    expect(plan.code).toBe(0);
    expect(plan.stdout.replace(/seal-ahead +no/, 'seal-ahead no')).toContain(`seal-ahead no: one pass with the server stopped: seal-ahead cannot run here (${why})`);
    expect(plan.stdout).not.toContain('Blocked');
    expect(JSON.parse(s.cli(['plan', '--seal-ahead', '--json']).stdout).sealAhead).toMatchObject({ run: false, reason: expect.stringContaining(why) });

    const r = s.cli(['apply', '--seal-ahead', '--stop-command', 'true', '--start-command', 'true']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Seal-ahead: no; one pass with the server stopped: seal-ahead cannot run here (${why}).`);
    expect(s.cli(['verify']).code).toBe(0);
    const audited = await withTestClient(s.url, (c) => c.query<{ n: number }>('SELECT count(*)::int AS n FROM public.credential_audit'));
    const rows = await withTestClient(s.url, (c) => c.query<{ n: number }>('SELECT count(*)::int AS n FROM public.git_credentials WHERE access_token IS NOT NULL'));
    expect(audited.rows[0].n).toBeGreaterThanOrEqual(rows.rows[0].n);
    expect(rows.rows[0].n).toBeGreaterThan(0);
  });

  it('a rule ON UPDATE that runs INSTEAD of the update is a plan blocker naming it and how to drop it (exit 7); apply refuses before the stop hook, nothing changed', async () => {
    await withTestClient(s.url, (c) => c.query('CREATE RULE keep_tokens AS ON UPDATE TO public.git_credentials DO INSTEAD NOTHING'));
    try {
      const sentence =
        "public.git_credentials has a rule ON UPDATE that runs instead of the update (keep_tokens), so the rotation's UPDATE would not rewrite its secrets: drop the rule (DROP RULE keep_tokens ON public.git_credentials) or take the table out of the inventory, then run the command again.";
      const plan = s.cli(['plan']);
      expect(plan.code).toBe(ExitCode.DATABASE);
      expect(plan.stdout).toContain(`  - ${sentence}`);
      expect(JSON.parse(s.cli(['plan', '--json']).stdout).blockerCodes).toEqual(['INVENTORY_INVALID']);
      const before = await dbSnapshot(s.url);
      const { r, stopped } = applyWithStopHook(s, {});
      expect(oneLine(r, ExitCode.DATABASE, 'INVENTORY_INVALID')).toContain(sentence);
      expect(stopped()).toBe(false);
      expect(await dbSnapshot(s.url)).toBe(before);
    } finally {
      await withTestClient(s.url, (c) => c.query('DROP RULE keep_tokens ON public.git_credentials'));
    }
  });
});

describe('PostgreSQL: a read-only database (default_transaction_read_only)', () => {
  let s: Scenario;
  let name: string;
  beforeAll(async () => {
    s = await actScenario({ perKind: 2, store: POSTGRES });
    name = new URL(s.url).pathname.slice(1);
    await withTestClient(s.url, (c) => c.query(`ALTER DATABASE "${name}" SET default_transaction_read_only = on`));
  });
  afterAll(() => POSTGRES.drop(s.url));

  it('plan shows the blocker DB_READ_ONLY (exit 7) instead of promising a rotation; apply refuses before the stop hook', async () => {
    const plan = s.cli(['plan', '--json']);
    expect(plan.code).toBe(ExitCode.DATABASE);
    const p = JSON.parse(plan.stdout);
    expect(p.blockerCodes).toEqual(['DB_READ_ONLY']);
    expect(p.blockers[0]).toMatch(/^The database .* is read-only for this session \(default_transaction_read_only is on for the database, the role or the connection\); run against the primary, writable server/);
    const db = await dbSnapshot(s.url);
    const { r, stopped } = applyWithStopHook(s, {});
    oneLine(r, ExitCode.DATABASE, 'DB_READ_ONLY');
    expect(stopped()).toBe(false);
    expect(await dbSnapshot(s.url)).toBe(db);
  });
});

describe('SQLite: a database file this user cannot write', () => {
  let s: Scenario;
  beforeAll(async () => {
    s = await actScenario({ perKind: 1, store: SQLITE_ROLLBACK });
  });
  afterAll(() => SQLITE_ROLLBACK.drop(s.url));

  it('plan (as that user) shows the blocker DB_READ_ONLY (exit 7) instead of promising a rotation', () => {
    const path = sqliteFile(s.url);
    // The file is root's (0644) in root's directory; the config is the other user's.
    const home = join(s.dir, 'nobody');
    mkdirSync(home, { recursive: true });
    const config = join(home, 'act.env');
    writeFileSync(config, `${keyLine(s.key)}\n`, { mode: 0o600 });
    chmodSync(s.dir, 0o755);
    chmodSync(dirname(path), 0o755);
    chmodSync(path, 0o644);
    chownSync(home, 65534, 65534);
    chownSync(config, 65534, 65534);
    const r = spawnSync(process.execPath, [CLI, 'plan', '--json', '--config', config], { env: { PATH: process.env.PATH, DATABASE_URL: s.url }, encoding: 'utf8', uid: 65534, gid: 65534 });
    expect(r.status).toBe(ExitCode.DATABASE);
    const p = JSON.parse(r.stdout);
    expect(p.blockerCodes).toEqual(['DB_READ_ONLY']);
    expect(p.blockers[0]).toMatch(/^The SQLite database .*act\.db cannot be written by this user \(permission denied\): run as the user that owns it, or make it writable\.$/);
  });
});

describeTerraform('terraform plan through the provider: a role that may not update a secret table', () => {
  const role = new Role();
  const installation = new ProviderInstallation(POSTGRES);
  beforeAll(async () => {
    await installation.setUp();
    await role.create();
    await role.grant(installation.url, READS_GIT_CREDENTIALS_ONLY);
  }, 180_000);
  afterAll(async () => {
    await installation.tearDown();
    await role.drop();
  });

  it('terraform plan fails with an error diagnostic naming the table and the GRANT; apply refuses before the stop hook; nothing changes', async () => {
    const marker = join(installation.dir, 'stopped.marker');
    installation.declare(2, { stopCommand: `touch '${marker}'`, startCommand: 'true', healthCommand: 'true' });
    installation.terraform(['init']);
    const env = { DATABASE_URL: role.url(installation.url) };
    const before = await installation.everythingOnTheServer();
    const plan = installation.try(['plan'], env);
    expect(plan.code).toBe(1);
    expect(plan.out.replace(/\s+/g, ' ')).toContain(`Error: The database role ${role.name} may not update public.git_credentials, whose column access_token holds secrets the rotation re-encrypts: grant it with GRANT UPDATE ON public.git_credentials TO ${role.name}`);
    expect(plan.out).toContain('DB_PRIVILEGE_MISSING');
    const apply = installation.try(['apply', '-auto-approve'], env);
    expect(apply.code).toBe(1);
    expect(apply.out).toContain('DB_PRIVILEGE_MISSING');
    expect(existsSync(marker)).toBe(false);
    expect(await installation.everythingOnTheServer()).toEqual(before);
    expect(installation.try(['state', 'list']).out).not.toContain(ADDRESS);
  }, 300_000);
});
