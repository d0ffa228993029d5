/**
 * The one context builder the CLI and the provider share
 * (src/context/build.ts), on real files: the defaults beside the primary
 * config, where the database URL comes from (ACT_DATABASE_URL in the
 * primary config, a relative SQLite path resolved against the config's
 * directory, the environment), the sentences naming each surface's own
 * settings, an ssh:// node put on its host and any other scheme refused in
 * one sentence (by the real CLI as well).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../scripts/scratch';
import { ExitCode } from '../src/errors';
import { CLI_SPELLING } from '../src/cli/options';
import { InstallationSettings, Spelling, Surface, buildContext, nodesOf } from '../src/context/build';
import { LOCAL } from '../src/config/nodes';
import { TERRAFORM_SPELLING } from '../src/provider/arguments';
import { quietProgress } from '../src/rotation/context';
import { caught } from './support/errors';
import { childEnv, runCli } from './support/scenario';

const surface = (env: NodeJS.ProcessEnv, spelling: Spelling = CLI_SPELLING): Surface => ({ env, log: () => undefined, progress: quietProgress, spelling });

describe('buildContext', () => {
  let dir: string;
  let plain: string;
  let withUrl: string;
  beforeAll(() => {
    dir = scratchDir('mk-ctx-');
    plain = join(dir, 'act.env');
    writeFileSync(plain, 'ACT_MASTER_KEY=x\n', { mode: 0o600 });
    withUrl = join(dir, 'etc', 'act.env');
    mkdirSync(join(dir, 'etc'));
    writeFileSync(withUrl, 'ACT_MASTER_KEY=x\nACT_DATABASE_URL=sqlite:../var/act.db\n', { mode: 0o600 });
  });

  it('puts every node on this machine and the pending file, backups and reports beside the primary config by default', () => {
    const ctx = buildContext({ configFiles: [plain, join(dir, 'node2.json')] }, surface({ DATABASE_URL: 'postgres://h/db' }));
    expect(ctx.nodes.map((n) => [n.address, n.host, n.target.format])).toEqual([
      [plain, LOCAL, 'dotenv'],
      [join(dir, 'node2.json'), LOCAL, 'json'],
    ]);
    expect(ctx.targets).toEqual(ctx.nodes.map((n) => n.target));
    expect(ctx.targets[0].entry).toBe('ACT_MASTER_KEY');
    expect([ctx.pendingPath, ctx.backupDir, ctx.reportDir]).toEqual([join(dir, '.act.env.mk-pending'), join(dir, 'master-key-backups'), join(dir, 'master-key-reports')]);
    expect(ctx.databaseUrl).toBe('postgres://h/db');
    expect(ctx.inventory.name).toBe('act');
  });

  it('takes the database from ACT_DATABASE_URL in the primary config (a SQLite path relative to its directory) unless told otherwise', () => {
    const settings: InstallationSettings = { configFiles: [withUrl] };
    expect(buildContext(settings, surface({})).databaseUrl).toBe(`sqlite:${join(dir, 'var', 'act.db')}`);
    // The same database named by DATABASE_URL too is no conflict; a named source wins over the default.
    expect(buildContext(settings, surface({ DATABASE_URL: `sqlite:${join(dir, 'var', 'act.db')}` })).databaseUrl).toBe(`sqlite:${join(dir, 'var', 'act.db')}`);
    expect(buildContext({ ...settings, databaseUrl: { env: 'OTHER' } }, surface({ OTHER: 'postgres://h/other' })).databaseUrl).toBe('postgres://h/other');
    expect(buildContext({ ...settings, databaseUrl: { entry: 'ACT_DATABASE_URL' } }, surface({ DATABASE_URL: 'postgres://h/db' })).databaseUrl).toBe(`sqlite:${join(dir, 'var', 'act.db')}`);
  });

  it('refuses two different databases, and a missing variable, naming the settings as the surface spells them', () => {
    const both = caught(() => buildContext({ configFiles: [withUrl] }, surface({ DATABASE_URL: 'postgres://h/db' })));
    expect([both.code, both.message]).toEqual(['USAGE', `${withUrl} sets ACT_DATABASE_URL and the environment sets DATABASE_URL to a different database; choose one with --database-url-entry ACT_DATABASE_URL or --database-url-env DATABASE_URL.`]);
    expect(caught(() => buildContext({ configFiles: [withUrl] }, surface({ DATABASE_URL: 'postgres://h/db' }, TERRAFORM_SPELLING))).message).toContain(
      'choose one with database_url_entry = "ACT_DATABASE_URL" or database_url_env = "DATABASE_URL".',
    );
    const unset = caught(() => buildContext({ configFiles: [plain] }, surface({}, TERRAFORM_SPELLING)));
    expect(unset.message).toBe('The environment variable DATABASE_URL is not set; export the database URL in it in the shell that runs terraform (or name another with database_url_env, or use database_url_entry).');
  });

  it('puts an ssh:// node on its host (the address parsed once, settings merged) and refuses any other scheme in one sentence, on the CLI too', () => {
    const remote = 'ssh://deploy@10.0.0.2:2222/etc/act/act.env';
    const nodes = nodesOf({ configFiles: [remote], ssh: { knownHosts: '/ci/known_hosts', agent: false } }, { HOME: '/home/ci' });
    expect(nodes[0].target).toEqual({ path: '/etc/act/act.env', format: 'dotenv', entry: 'ACT_MASTER_KEY' });
    expect(nodes[0].host).toMatchObject({ kind: 'ssh', label: 'deploy@10.0.0.2:2222', target: { host: '10.0.0.2', port: 2222, user: 'deploy', hostKeys: { kind: 'known-hosts', files: ['/ci/known_hosts'], explicit: true } } });
    // The local rotation never sees it: the installation sends the work there.
    expect(caught(() => buildContext({ configFiles: [remote] }, surface({ DATABASE_URL: 'postgres://h/db' }))).code).toBe('INTERNAL');
    const ftp = 'ftp://host/etc/act/act.env';
    const e = caught(() => nodesOf({ configFiles: [plain, ftp] }, {}));
    expect([e.code, e.message]).toEqual(['USAGE', `The config file "${ftp}" names a host by "ftp://", which is not supported; reach other hosts with ssh://[user@]host[:port]/path, or give a local path.`]);
    const r = runCli(['status', '--config', ftp], childEnv({ DATABASE_URL: 'postgres://127.0.0.1:1/none' }));
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain(`The config file "${ftp}" names a host by "ftp://"`);
    expect(r.stderr).not.toContain('CONFIG_MISSING');
  });
});
