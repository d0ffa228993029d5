/**
 * The policy rules one by one (pure: settings in, findings out), the
 * credential detector behind MasterKey-NoCredentials, and the window math
 * the policy trigger is built from.
 */
import fc from 'fast-check';
import {
  FindingLevel,
  IPolicyRule,
  MasterKeyInventory,
  MasterKeyProps,
  POLICY_RULES,
  RULE_FAILED_ID,
  PolicyFinding,
  PolicyRule,
  absolutePathsRule,
  backupDirRule,
  checkSuppressions,
  credentialKinds,
  evaluatePolicy,
  findCredentials,
  formatFinding,
  healthCheckRule,
  maxRotationPeriodRule,
  noCredentialsRule,
  nonEmptyInventoryRule,
  resolveSettings,
  rotationPolicyRule,
  rotationWindow,
} from '../constructs';
import { describeWindow, parseEpoch } from '../constructs/window';

const BASE: MasterKeyProps = {
  name: 'act',
  generation: 1,
  rotationPolicy: { periodDays: 90, evaluatedAt: '2026-03-10T00:00:00Z' },
  configFiles: ['/etc/act/act.env'],
  backupDir: '/var/backups/act',
  cliCommand: ['/usr/bin/node', '/opt/mk/dist/src/cli/main.js'],
};

function run(r: PolicyRule, over: Partial<MasterKeyProps> = {}, maxRotationDays = 365): PolicyFinding[] {
  const props = { ...BASE, ...over };
  const settings = resolveSettings(props, { id: 'key', path: 'stack/key', now: new Date('2026-03-10T00:00:00Z'), defaultCliCommand: ['node', 'cli.js'] });
  return r.check({ settings, props, maxRotationDays });
}

const messages = (fs: PolicyFinding[]) => fs.map(formatFinding);

describe('policy rules', () => {
  it('the compliant base props pass every rule', () => {
    for (const r of POLICY_RULES) expect(run(r)).toEqual([]);
  });

  it('MasterKey-MaxRotationPeriod: errors above the configurable maximum (default 365 days)', () => {
    expect(run(maxRotationPeriodRule, { rotationPolicy: { periodDays: 365 } })).toEqual([]);
    expect(messages(run(maxRotationPeriodRule, { rotationPolicy: { periodDays: 400 } }))).toEqual([
      '[MasterKey-MaxRotationPeriod] rotationPolicy.periodDays is 400 days, longer than the 365 days the policy allows. Fix: set rotationPolicy.periodDays to 365 or less.',
    ]);
    expect(run(maxRotationPeriodRule, { rotationPolicy: { periodDays: 90 } }, 30)).toEqual([
      expect.objectContaining({ ruleId: 'MasterKey-MaxRotationPeriod', level: 'error', fix: 'set rotationPolicy.periodDays to 30 or less' }),
    ]);
    expect(run(maxRotationPeriodRule, { rotationPolicy: undefined })).toEqual([]);
  });

  it('MasterKey-RotationPolicy: warns when there is no schedule', () => {
    expect(run(rotationPolicyRule, { rotationPolicy: undefined })).toEqual([
      expect.objectContaining({ level: 'warning', problem: expect.stringContaining('rotates only when generation is raised by hand') }),
    ]);
  });

  it('MasterKey-AbsolutePaths: errors for each relative config, backup, report, new-key or inventory path', () => {
    const found = run(absolutePathsRule, {
      configFiles: ['/etc/act/act.env', 'act.env', './node2.env'],
      backupDir: 'backups',
      reportDir: '../reports',
      newKeyFile: 'new.key',
      inventory: MasterKeyInventory.fromData('inventory.json', { name: 'x', entries: [{ kind: 'k', table: 't', idColumn: 'id', column: 'c', codec: 'v1' }] }),
    });
    expect(found.map((f) => f.problem.split(' is ')[0])).toEqual(['configFiles[1] "act.env"', 'configFiles[2] "./node2.env"', 'backupDir "backups"', 'reportDir "../reports"', 'newKeyFile "new.key"', 'the inventory file "inventory.json"']);
    expect(found.every((f) => f.level === 'error' && f.fix.length > 0)).toBe(true);
  });

  it('MasterKey-NonEmptyInventory: errors for an inventory without entries', () => {
    const empty = MasterKeyInventory.fromData('/etc/act/inventory.json', { name: 'empty', entries: [] });
    expect(messages(run(nonEmptyInventoryRule, { inventory: empty }))).toEqual([
      '[MasterKey-NonEmptyInventory] the inventory "empty" lists no secret locations, so a rotation would leave every secret sealed under the old key. Fix: list the tables and columns holding sealed secrets, or use MasterKeyInventory.act().',
    ]);
    expect(run(nonEmptyInventoryRule, { inventory: MasterKeyInventory.act() })).toEqual([]);
  });

  it('MasterKey-NoCredentials: errors for a credential in any prop, naming where but never the value', () => {
    const key = '0123456789abcdef'.repeat(4);
    const found = run(noCredentialsRule, {
      stopCommand: `ACT_MASTER_KEY=${key} systemctl stop act`,
      healthCommand: 'psql postgres://act:Pa55word@db/act -c "select 1"',
      environment: { PGOPTIONS: '-c password=hunter22' },
      configFiles: ['/etc/act/act.env', `/etc/act/${key}.env`],
    });
    expect(found.map((f) => f.problem.split(' looks like')[0]).sort()).toEqual(['configFiles[1]', 'environment.PGOPTIONS', 'healthCommand', 'stopCommand']);
    const text = messages(found).join('\n');
    for (const secret of [key, 'Pa55word', 'hunter22']) expect(text).not.toContain(secret);
    expect(found.every((f) => f.level === 'error')).toBe(true);
    expect(text).toContain('a 64-hex-character string (the shape of a master key)');
    expect(text).toContain('a URL with a password');
  });

  it('MasterKey-BackupDir: errors when no backup directory is set', () => {
    expect(messages(run(backupDirRule, { backupDir: undefined }))).toEqual([
      expect.stringMatching(/^\[MasterKey-BackupDir\] backupDir is not set.*Fix: set backupDir to an absolute directory/),
    ]);
  });

  it('MasterKey-HealthCheck: warns when the server is started again without a health check', () => {
    expect(run(healthCheckRule, { startCommand: 'systemctl start act' })).toEqual([expect.objectContaining({ level: 'warning' })]);
    expect(run(healthCheckRule, { startCommand: 'systemctl start act', healthCommand: 'curl -fsS http://127.0.0.1/health' })).toEqual([]);
  });

  it('evaluatePolicy runs every rule except suppressed ones, in rule order', () => {
    const props = { ...BASE, rotationPolicy: undefined, backupDir: undefined, configFiles: ['act.env'] };
    const settings = resolveSettings(props, { id: 'key', path: 'stack/key', now: new Date(), defaultCliCommand: ['node'] });
    const input = { settings, props, maxRotationDays: 365 };
    expect(evaluatePolicy(input).map((f) => f.ruleId)).toEqual(['MasterKey-RotationPolicy', 'MasterKey-AbsolutePaths', 'MasterKey-BackupDir']);
    expect(evaluatePolicy(input, POLICY_RULES, new Set(['MasterKey-RotationPolicy'])).map((f) => f.ruleId)).toEqual(['MasterKey-AbsolutePaths', 'MasterKey-BackupDir']);
  });

  describe('a rule that fails', () => {
    const props = { ...BASE, startCommand: 'systemctl start act' };
    const input = { settings: resolveSettings(props, { id: 'key', path: 'stack/key', now: new Date(), defaultCliCommand: ['node'] }), props, maxRotationDays: 365 };
    const own = (check: () => unknown): IPolicyRule => ({ id: 'Acme-Own', description: 'Ours.', check: check as IPolicyRule['check'] });
    const failed = (rules: IPolicyRule[]) => evaluatePolicy(input, [...POLICY_RULES, ...rules]);

    it('becomes one MasterKey-RuleFailed warning naming the rule and what it threw; the other rules still run', () => {
      const found = failed([
        own(() => {
          throw new RangeError('no NFS share');
        }),
      ]);
      expect(found.map((f) => f.ruleId)).toEqual(['MasterKey-HealthCheck', RULE_FAILED_ID]);
      expect(formatFinding(found[1])).toBe('[MasterKey-RuleFailed] the rule Acme-Own threw "RangeError: no NFS share", so this key was not checked against it. Fix: correct the rule, or suppress Acme-Own with a reason.');
      expect(found[1].level).toBe(FindingLevel.WARNING);
      expect(formatFinding(failed([own(() => Promise.reject(new Error('x')))])[1])).toContain('the rule Acme-Own returned a promise instead of a list of findings (rules run synchronously at synth)');
      expect(formatFinding(failed([own(() => ({ findings: [] }))])[1])).toContain('the rule Acme-Own returned an object instead of a list of findings');
      expect(formatFinding(failed([own(() => [{ ruleId: 'Acme-Own', level: 'fatal', problem: 'p', fix: 'f' }])])[1])).toContain('returned a malformed finding (item 0');
      expect(formatFinding(failed([own(() => { throw 'plain text'; })])[1])).toContain('threw "plain text"');
    });

    it('never shows what it threw when that looks like a credential', () => {
      const url = 'postgres://act:Hunter2pw@db/act';
      const text = formatFinding(failed([own(() => { throw new Error(`cannot reach ${url}`); })])[1]);
      expect(text).toContain('threw (a value that looks like a URL with a password, not shown)');
      expect(text).not.toContain('Hunter2pw');
    });

    it('a built-in rule that throws is reported as a bug to report', () => {
      const broken = { ...input, settings: { ...input.settings, inventory: undefined as never } };
      const found = evaluatePolicy(broken);
      expect(found.filter((f) => f.ruleId === RULE_FAILED_ID).map(formatFinding)).toEqual([
        expect.stringMatching(/^\[MasterKey-RuleFailed\] the rule MasterKey-AbsolutePaths threw "TypeError: .*this is a bug in cdktf-master-key, please report it/),
        expect.stringMatching(/^\[MasterKey-RuleFailed\] the rule MasterKey-NonEmptyInventory threw "TypeError: /),
      ]);
    });
  });

  it('suppressions need a known rule id and a reason', () => {
    expect(checkSuppressions([{ id: 'MasterKey-HealthCheck', reason: 'health is checked by the load balancer' }])).toEqual([]);
    expect(checkSuppressions([{ id: 'MasterKey-Typo', reason: 'a good enough reason' }])[0]).toContain('"MasterKey-Typo" is not a rule id');
    expect(checkSuppressions([{ id: 'MasterKey-HealthCheck', reason: 'meh' }])[0]).toContain('has no reason');
  });
});

describe('credential detector', () => {
  it.each([
    ['postgres://act:secret@db:5432/act', 'a URL with a password'],
    ['https://user:tok@example.invalid/x', 'a URL with a password'],
    ['ACT_MASTER_KEY=' + 'a1'.repeat(32), 'a 64-hex-character string (the shape of a master key)'],
    ['-----BEGIN OPENSSH PRIVATE KEY-----', 'a PEM private key'],
    ['host=db password=hunter2', 'a password setting'],
    ['PGPASSWORD=hunter2 psql', 'a password setting'],
    ['AKIAABCDEFGHIJKLMNOP', 'an AWS access key id'],
    ['ghp_' + 'A'.repeat(36), 'a GitHub token'],
  ])('flags %s', (text, kind) => {
    expect(credentialKinds(text)).toContain(kind);
  });

  it.each([
    '/etc/act/act.env',
    'postgres://db:5432/act',
    'postgres://act@db/act',
    'DATABASE_URL',
    'systemctl restart act',
    'curl -fsS http://127.0.0.1:8080/health',
    'sha256:26ab26e6b2d6f66c',
    'a1'.repeat(31),
    'a1'.repeat(33),
    '--password-file /run/secrets/pw',
  ])('leaves %s alone', (text) => {
    expect(credentialKinds(text)).toEqual([]);
  });

  it('walks nested props and object keys', () => {
    const hex = 'f'.repeat(64);
    expect(findCredentials({ a: ['x', { b: hex }], [hex]: 'y' }).map((f) => f.path)).toEqual(['a[1].b', '(a key)']);
  });
});

describe('rotation windows', () => {
  const DAY = 86_400_000;
  const epochs = fc.integer({ min: 0, max: 20_000 }).map((d) => new Date(d * DAY));

  it('puts every instant in exactly one window: start <= t < end, start = epoch + index * period', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 800 }), epochs, fc.integer({ min: 0, max: 40_000 * DAY }), (period, epoch, offset) => {
        const t = new Date(epoch.getTime() + offset);
        const w = rotationWindow(period, t, epoch);
        expect(w.start.getTime()).toBeLessThanOrEqual(t.getTime());
        expect(w.end.getTime()).toBeGreaterThan(t.getTime());
        expect(w.start.getTime()).toBe(epoch.getTime() + w.index * period * DAY);
        expect(rotationWindow(period, new Date(t.getTime() + period * DAY), epoch).index).toBe(w.index + 1);
      }),
    );
  });

  it('a pipeline planning daily at any time of day sees exactly one change per period, on the day a window starts', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 0, max: DAY - 1 }), fc.integer({ min: 0, max: 30_000 }), (period, timeOfDay, firstDay) => {
        const seen: string[] = [];
        const changedOn: number[] = [];
        for (let day = firstDay; day < firstDay + 3 * period; day++) {
          const label = describeWindow(rotationWindow(period, new Date(day * DAY + timeOfDay)));
          if (seen.length > 0 && seen[seen.length - 1] !== label) changedOn.push(day);
          seen.push(label);
        }
        expect(changedOn.length).toBeGreaterThanOrEqual(2);
        expect(changedOn.length).toBeLessThanOrEqual(3);
        expect(changedOn.every((d) => d % period === 0)).toBe(true);
      }),
    );
  });

  it('reads like "90d #228 from 2026-03-08" and shows the time only for an epoch off midnight', () => {
    expect(describeWindow(rotationWindow(90, new Date('2026-03-10T15:00:00Z')))).toBe('90d #228 from 2026-03-08');
    expect(describeWindow(rotationWindow(7, new Date('2026-03-10T15:00:00Z'), parseEpoch('2026-01-01T06:00:00Z')))).toBe('7d #9 from 2026-03-05T06:00:00Z');
  });

  it('accepts UTC dates only', () => {
    expect(parseEpoch('2026-01-01').toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(() => parseEpoch('2026-01-01T00:00:00+02:00')).toThrow(/not a UTC date/);
    expect(() => parseEpoch('soon')).toThrow(/not a UTC date/);
  });
});
