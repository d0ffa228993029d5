/**
 * Synth tests of the MasterKey construct with the Testing helpers and jest
 * matchers, run once with cdktf 0.21 and once with CDK Terrain (cdktn)
 * 0.24, from the same construct source: the rotation resource, its triggers
 * and command, the null_resource option, props validation (a credential is
 * refused before anything is built, so no synth can write it), the policy
 * Aspect at synth, and the example app (main.ts) synthesized with app.synth().
 */
import { removeScratch, scratchDir } from '../scripts/scratch';
import 'cdktf/lib/testing/adapters/jest';
import { provider as nullProvider, resource as nullResource } from '@cdktf/provider-null';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as cdktf from 'cdktf';
import * as cdktn from 'cdktn';
import { IConstruct } from 'constructs';
import { FindingLevel, MasterKey, MasterKeyInventory, MasterKeyPolicy, MasterKeyProps, RotationResourceType, defaultCliCommand, localExecCommand, shellQuote } from '../constructs';
import { ACT_PRESET } from '../src/inventory/act-preset';
import { inventoryDigest } from '../src/inventory/inventory';
import { isMasterKeyError } from '../src/errors';
import { masterkeyKey, masterkeyStatus } from '../constructs';
import { providerVersion, terraformPlatform } from '../src/provider/install';
import { buildApp, exampleSettings, newApp } from '../main';
import { chooseFramework } from '../constructs/framework';

type Stack = cdktf.TerraformStack;
/** Both libraries, typed as cdktf (cdktn has the same API). */
const LIBRARIES: ReadonlyArray<[string, typeof cdktf]> = [
  ['cdktf', cdktf],
  ['cdktn', cdktn as unknown as typeof cdktf],
];

cdktf.Testing.setupJest();

describe.each(LIBRARIES)('with %s', (libName, lib) => {
  const { App, Aspects, DataResource, TerraformStack, Testing } = lib;

  /** One output folder for every Testing.app() here (Testing.synth writes nothing into it). */
  const OUT = scratchDir('mk-cdktf-');
  afterAll(() => removeScratch(OUT));
  const testApp = (context?: Record<string, unknown>) => Testing.app({ outdir: OUT, ...(context ? { context } : {}) });

  const CLI = ['/opt/node/bin/node', '/opt/master-key/dist/src/cli/main.js'];
  const AT = '2026-03-10T12:00:00Z';
  /** An escrow recipient (the age specification's example X25519 recipient): backups sealed to it pass MasterKey-BackupRecipients. */
  const ESCROW = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

  /** Props that pass every policy rule. */
  function goodProps(over: Partial<MasterKeyProps> = {}): MasterKeyProps {
    return {
      name: 'act',
      generation: 3,
      rotationPolicy: { periodDays: 90, evaluatedAt: AT },
      configFiles: ['/etc/act/act.env', '/etc/act/node2.env'],
      backupDir: '/var/backups/act',
      reportDir: '/var/log/act-rotation',
      backupRecipients: [ESCROW],
      cliCommand: CLI,
      ...over,
    };
  }

  function stackWith(props: MasterKeyProps, build?: (stack: Stack) => void): { stack: Stack; key: MasterKey } {
    const stack = new TerraformStack(testApp(), 'stack');
    build?.(stack);
    const key = new MasterKey(stack, 'key', props);
    return { stack, key };
  }

  function synthJson(stack: Stack): { resource: Record<string, Record<string, Record<string, unknown>>>; provider?: unknown; terraform?: Record<string, unknown> } {
    return JSON.parse(Testing.synth(stack));
  }

  function annotations(scope: IConstruct, level: 'warn' | 'error' | 'info'): string[] {
    return scope.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === `@cdktf/${level}`).map((m) => `[${c.node.path}] ${String(m.data)}`));
  }

  function localExec(stack: Stack, type = 'terraform_data'): { command: string; environment?: Record<string, string> } {
    const res = Object.values(synthJson(stack).resource[type])[0] as { provisioner: Array<{ 'local-exec': { command: string; environment?: Record<string, string> } }> };
    expect(res.provisioner).toHaveLength(1);
    return res.provisioner[0]['local-exec'];
  }

  describe('MasterKey synth (terraform_data, the default)', () => {
    it('synthesizes one terraform_data whose readable triggers name the key, generation, window, inventory and config targets', () => {
      const { stack } = stackWith(goodProps());
      const out = Testing.synth(stack);
      expect(out).toHaveResource(DataResource);
      expect(out).toHaveResourceWithProperties(DataResource, {
        triggers_replace: {
          key: 'act',
          generation: '3',
          // 2026-03-10 is in window #228 of 90 days since 1970-01-01 (day 20522; 228 * 90 = 20520 = 2026-03-08).
          policy_window: '90d #228 from 2026-03-08',
          inventory: `act ${inventoryDigest(ACT_PRESET)} (9 locations, 7 kinds)`,
          config_targets: 'dotenv ACT_MASTER_KEY: /etc/act/act.env, /etc/act/node2.env',
        },
      });
      expect(Object.keys(synthJson(stack).resource)).toEqual(['terraform_data']);
      expect(Object.keys(synthJson(stack).resource.terraform_data)).toHaveLength(1);
    });

    it('names the rotation resource after the key, so the plan says which key it is about', () => {
      const { stack } = stackWith(goodProps({ name: 'billing db' }));
      expect(Object.keys(synthJson(stack).resource.terraform_data)).toEqual(['master_key_billing_db']);
      expect(() => new MasterKey(stack, 'again', goodProps({ name: 'billing db' }))).toThrow(
        'MasterKey stack/again: name "billing db" is already used by stack/key in the same stack; give each key its own name.',
      );
    });

    it('needs no provider: nothing to download, works air-gapped', () => {
      const { stack } = stackWith(goodProps());
      const json = synthJson(stack);
      expect(json.provider).toBeUndefined();
      expect(JSON.stringify(json.terraform ?? {})).not.toContain('required_providers');
      expect(Testing.synth(stack)).not.toHaveProvider(nullProvider.NullProvider);
    });

    it('runs `master-key apply` with only non-secret settings, one --config per node, in a fixed order', () => {
      const { stack, key } = stackWith(goodProps({ stopCommand: 'systemctl stop act', startCommand: 'systemctl start act', healthCommand: 'curl -fsS http://127.0.0.1:8080/health', newKeyFile: '/mnt/vault/act.key' }));
      expect(key.argv).toEqual([
        ...CLI,
        'apply',
        '--generation', '3',
        '--policy-days', '90',
        '--window-start', '2026-03-08T00:00:00Z',
        '--config', '/etc/act/act.env',
        '--config', '/etc/act/node2.env',
        '--format', 'dotenv',
        '--key-name', 'ACT_MASTER_KEY',
        '--database-url-env', 'DATABASE_URL',
        '--inventory', 'act',
        '--backup-dir', '/var/backups/act',
        '--report-dir', '/var/log/act-rotation',
        '--stop-command', 'systemctl stop act',
        '--start-command', 'systemctl start act',
        '--health-command', 'curl -fsS http://127.0.0.1:8080/health',
        '--new-key-out', '/mnt/vault/act.key',
        '--backup-recipient', ESCROW,
      ]);
      const le = localExec(stack);
      expect(le.command).toBe(localExecCommand(key.argv));
      expect(le.command).toContain("--stop-command 'systemctl stop act'");
      // No environment block: the database URL comes from terraform's own environment.
      expect(le.environment).toBeUndefined();
    });

    it('passes seal-ahead as the flag it sets (none by default: where it pays off), and refuses a value that is not a boolean', () => {
      expect(stackWith(goodProps()).key.argv.filter((a) => a.includes('seal-ahead'))).toEqual([]);
      expect(stackWith(goodProps({ sealAhead: false })).key.argv.slice(-1)).toEqual(['--no-seal-ahead']);
      expect(stackWith(goodProps({ sealAhead: true })).key.argv.slice(-1)).toEqual(['--seal-ahead']);
      expect(() => stackWith(goodProps({ sealAhead: 'no' as unknown as boolean }))).toThrow(/sealAhead is "no"; give true or false, or leave it out to seal ahead where it pays off/);
    });

    it('passes the database URL source by name only, and supports a config entry instead', () => {
      const viaEnv = stackWith(goodProps({ databaseUrlEnv: 'ACT_DB_URL' })).key;
      expect(viaEnv.argv.join(' ')).toContain('--database-url-env ACT_DB_URL');
      const viaEntry = stackWith(goodProps({ databaseUrlEntry: 'DATABASE_URL' })).key;
      expect(viaEntry.argv.join(' ')).toContain('--database-url-entry DATABASE_URL');
      expect(viaEntry.argv).not.toContain('--database-url-env');
    });

    it('omits the policy flags without a policy and shows policy_window = "none"', () => {
      const { stack, key } = stackWith(goodProps({ rotationPolicy: undefined, checks: { suppressions: [{ id: 'MasterKey-RotationPolicy', reason: 'rotated by hand on audit request' }] } }));
      expect(key.argv).not.toContain('--policy-days');
      expect(key.argv).not.toContain('--window-start');
      expect(Testing.synth(stack)).toHaveResourceWithProperties(DataResource, { triggers_replace: expect.objectContaining({ policy_window: 'none' }) });
    });

    it('keeps the trigger the same inside a window and changes it on the day the next window starts', () => {
      const trigger = (at: string) => stackWith(goodProps({ rotationPolicy: { periodDays: 90, evaluatedAt: at } })).key.triggers.policy_window;
      expect(trigger('2026-03-08T00:00:00Z')).toBe('90d #228 from 2026-03-08');
      expect(trigger('2026-06-05T23:59:59Z')).toBe('90d #228 from 2026-03-08');
      expect(trigger('2026-06-06T00:00:00Z')).toBe('90d #229 from 2026-06-06');
      const custom = stackWith(goodProps({ rotationPolicy: { periodDays: 30, epoch: '2026-01-01', evaluatedAt: '2026-02-15T08:00:00Z' } })).key;
      expect(custom.triggers.policy_window).toBe('30d #1 from 2026-01-31');
      expect(custom.argv.join(' ')).toContain('--policy-days 30 --window-start 2026-01-31T00:00:00Z');
    });

    it('shows a custom inventory by name, path and digest, and passes its path', () => {
      const dir = scratchDir('mk-inv-');
      try {
        const file = join(dir, 'inventory.json');
        const inv = { name: 'billing', entries: [{ kind: 'api token', table: 'tokens', idColumn: 'id', column: 'secret', codec: 'v1' }] };
        writeFileSync(file, JSON.stringify(inv));
        const { key } = stackWith(goodProps({ inventory: MasterKeyInventory.fromFile(file) }));
        expect(key.triggers.inventory).toBe(`billing (${file}) ${inventoryDigest(inv as never)} (1 location, 1 kind)`);
        expect(key.argv.join(' ')).toContain(`--inventory ${file}`);
      } finally {
        removeScratch(dir);
      }
    });

    it('escapes terraform templates and quotes for the shell, so odd paths reach the script unchanged', () => {
      const odd = ["/srv/it's here/act.env", '/srv/${HOME}/%{ if x }/act.env', '/srv/a b/$(touch pwned)/`x`.env'];
      const { stack, key } = stackWith(goodProps({ configFiles: odd }));
      const command = localExec(stack).command;
      expect(command).toContain('$${HOME}');
      expect(command).toContain('%%{ if x }');
      // What terraform hands to /bin/sh after undoing its template escapes:
      const shellLine = command.replace(/\$\$\{/g, '${').replace(/%%\{/g, '%{');
      const printed = spawnSync('/bin/sh', ['-c', `printf '%s\\n' ${shellLine.slice(shellLine.indexOf(' apply '))}`], { encoding: 'utf8' });
      expect(printed.status).toBe(0);
      const args = printed.stdout.split('\n').slice(0, -1);
      expect(args).toEqual(key.argv.slice(CLI.length));
      expect(odd.every((p) => args.includes(p))).toBe(true);
    });

    it('quotes only what needs quoting', () => {
      expect(shellQuote('/etc/act/act.env')).toBe('/etc/act/act.env');
      expect(shellQuote('')).toBe("''");
      expect(shellQuote("it's")).toBe("'it'\\''s'");
      expect(shellQuote('a b')).toBe("'a b'");
    });

    it('passes extra non-secret environment variables, escaped for terraform', () => {
      const { stack } = stackWith(goodProps({ environment: { PGSSLMODE: 'require', NOTE: 'cost ${x}' } }));
      expect(localExec(stack).environment).toEqual({ PGSSLMODE: 'require', NOTE: 'cost $${x}' });
    });

    it('finds the built CLI from the library and from the sources', () => {
      const fromDist = defaultCliCommand('/pkg/dist/constructs', () => false);
      expect(fromDist).toEqual([process.execPath, '/pkg/dist/src/cli/main.js']);
      const fromSources = defaultCliCommand('/repo/constructs', (p) => p === '/repo/constructs/index.ts');
      expect(fromSources).toEqual([process.execPath, '/repo/dist/src/cli/main.js']);
      const { key } = stackWith(goodProps({ cliCommand: undefined }));
      expect(key.settings.cliCommand[0]).toBe(process.execPath);
      expect(key.settings.cliCommand[1]).toMatch(/\/dist\/src\/cli\/main\.js$/);
    });

    it('synthesizes nothing secret: no 64-hex string and no URL with a password', () => {
      const { stack } = stackWith(goodProps());
      const out = Testing.synth(stack);
      expect(out).not.toMatch(/[0-9a-f]{64}/i);
      expect(out).not.toMatch(/:\/\/[^/\s]*:[^/\s]*@/);
    });
  });

  describe('MasterKey synth (null_resource option)', () => {
    it('synthesizes a null_resource with the same triggers and a null provider', () => {
      const { stack, key } = stackWith(goodProps({ resourceType: RotationResourceType.NULL_RESOURCE }));
      const out = Testing.synth(stack);
      expect(out).toHaveResourceWithProperties(nullResource.Resource, { triggers: key.triggers });
      expect(out).toHaveProvider(nullProvider.NullProvider);
      expect(out).not.toHaveResource(DataResource);
      expect(localExec(stack, 'null_resource').command).toBe(localExecCommand(key.argv));
      expect(synthJson(stack).terraform).toEqual(expect.objectContaining({ required_providers: { null: expect.objectContaining({ source: 'null' }) } }));
    });

    it('shares one null provider between keys', () => {
      const stack = new TerraformStack(testApp(), 'stack');
      new MasterKey(stack, 'a', goodProps({ name: 'a', resourceType: RotationResourceType.NULL_RESOURCE }));
      new MasterKey(stack, 'b', goodProps({ name: 'b', resourceType: RotationResourceType.NULL_RESOURCE, configFiles: ['/etc/b.env'] }));
      const json = synthJson(stack) as { provider: { null: unknown[] }; resource: { null_resource: Record<string, unknown> } };
      expect(json.provider.null).toHaveLength(1);
      expect(Object.keys(json.resource.null_resource)).toHaveLength(2);
    });

    if (libName === 'cdktf') {
      it('synthesizes what @cdktf/provider-null would, and reuses a NullProvider the stack already has', () => {
        const ours = stackWith(goodProps({ resourceType: RotationResourceType.NULL_RESOURCE }));
        const theirs = new TerraformStack(testApp(), 'stack');
        const provider = new nullProvider.NullProvider(theirs, 'master-key-null-provider', {});
        const res = new nullResource.Resource(theirs, 'rotation', {
          provider,
          triggers: ours.key.triggers as Record<string, string>,
          provisioners: [{ type: 'local-exec', command: localExecCommand(ours.key.argv) }],
        });
        res.overrideLogicalId('master_key_act');
        expect(synthJson(ours.stack)).toEqual(synthJson(theirs));

        const mixed = new TerraformStack(testApp(), 'stack');
        new nullProvider.NullProvider(mixed, 'mine', {});
        new MasterKey(mixed, 'a', goodProps({ name: 'a', resourceType: RotationResourceType.NULL_RESOURCE }));
        expect((synthJson(mixed) as { provider: { null: unknown[] } }).provider.null).toHaveLength(1);
      });
    }
  });

  describe('MasterKey lockTimeout', () => {
    it('reaches the rotation: --lock-timeout on the local-exec command, lock_timeout on masterkey_key; absent, neither (the tool defaults to 30s)', () => {
      expect(localExec(stackWith(goodProps({ lockTimeout: '5s' })).stack).command).toMatch(/ --lock-timeout 5s$/);
      expect(localExec(stackWith(goodProps()).stack).command).not.toContain('--lock-timeout');
      const json = synthJson(stackWith(goodProps({ resourceType: RotationResourceType.PROVIDER, cliCommand: undefined, lockTimeout: '2min' })).stack);
      expect(json.resource.masterkey_key.master_key_act).toEqual(expect.objectContaining({ lock_timeout: '2min' }));
    });

    it('refuses a lock timeout that is not one, naming the prop and the accepted forms', () => {
      for (const bad of ['0s', '3m', 'soon', 30]) {
        expect(() => stackWith(goodProps({ lockTimeout: bad as string }))).toThrow(/MasterKey stack\/key: lockTimeout is .*, not a lock timeout; give a duration of more than 0 and at most a day, such as "30s", "500ms" or "2min"/);
      }
    });
  });

  describe("MasterKey synth (resourceType 'provider')", () => {
    const providerProps = (over: Partial<MasterKeyProps> = {}) => goodProps({ resourceType: RotationResourceType.PROVIDER, cliCommand: undefined, ...over });
    type Json = ReturnType<typeof synthJson> & { provider: { masterkey: unknown[] }; output: Record<string, { value: unknown }>; data?: Record<string, Record<string, Record<string, unknown>>> };

    it('synthesizes required_providers, one masterkey provider, a masterkey_key with the declared arguments, and an output', () => {
      const inventoryFile = join(OUT, 'inventory.json');
      writeFileSync(inventoryFile, JSON.stringify(ACT_PRESET));
      const { stack, key } = stackWith(providerProps({ inventory: MasterKeyInventory.fromFile(inventoryFile), startCommand: 'systemctl start act', healthCommand: 'curl -f localhost' }));
      const json = synthJson(stack) as Json;
      expect(json.provider.masterkey).toHaveLength(1);
      expect(Object.keys(json.resource)).toEqual(['masterkey_key']);
      expect(json.resource.masterkey_key.master_key_act).toEqual(
        expect.objectContaining({
          name: 'act',
          generation: 3,
          config_files: ['/etc/act/act.env', '/etc/act/node2.env'],
          config_format: 'dotenv',
          key_name: 'ACT_MASTER_KEY',
          database_url_env: 'DATABASE_URL',
          inventory: inventoryFile,
          rotation_period_days: 90,
          rotation_evaluated_at: AT,
          backup_dir: '/var/backups/act',
          report_dir: '/var/log/act-rotation',
          start_command: 'systemctl start act',
          health_command: 'curl -f localhost',
          backup_recipients: [ESCROW],
        }),
      );
      expect(json.terraform).toEqual(expect.objectContaining({ required_providers: { masterkey: { source: 'cdktf-master-key/masterkey', version: providerVersion() } } }));
      expect(json.output.master_key_act.value).toEqual({
        fingerprint: '${masterkey_key.master_key_act.fingerprint}',
        generation: '${masterkey_key.master_key_act.database_generation}',
        nodes_in_sync: '${masterkey_key.master_key_act.nodes_in_sync}',
      });
      expect(key.key).toBe(key.resource);
      expect(key.resource.terraformResourceType).toBe('masterkey_key');
      expect(Testing.synth(stack)).not.toMatch(/[0-9a-f]{64}/i);
    });

    it('lets the provider evaluate the policy window at plan time unless evaluatedAt is given, and passes a config entry for the URL', () => {
      const { stack } = stackWith(providerProps({ rotationPolicy: { periodDays: 30, epoch: '2026-01-01' }, databaseUrlEnv: undefined, databaseUrlEntry: 'DATABASE_URL' }));
      const attrs = Object.values(synthJson(stack).resource.masterkey_key)[0];
      expect(attrs).toEqual(expect.objectContaining({ rotation_period_days: 30, rotation_epoch: '2026-01-01', database_url_entry: 'DATABASE_URL' }));
      expect(attrs).not.toHaveProperty('rotation_evaluated_at');
      expect(attrs).not.toHaveProperty('database_url_env');
    });

    it('shares one provider between keys; the data source binding synthesizes masterkey_status', () => {
      const stack = new TerraformStack(testApp(), 'stack');
      new MasterKey(stack, 'a', providerProps({ name: 'a' }));
      new MasterKey(stack, 'b', providerProps({ name: 'b', configFiles: ['/etc/b.env'] }));
      masterkeyStatus(stack, 'status', { configFiles: ['/etc/b.env'], maxAgeDays: 90 });
      const json = synthJson(stack) as Json;
      expect(json.provider.masterkey).toHaveLength(1);
      expect(Object.keys(json.resource.masterkey_key)).toEqual(['master_key_a', 'master_key_b']);
      expect(Object.values(json.data!.masterkey_status)[0]).toEqual(expect.objectContaining({ config_files: ['/etc/b.env'], max_age_days: 90 }));
    });

    it('the bindings give every computed attribute as a typed terraform reference', () => {
      const stack = new TerraformStack(testApp(), 'stack');
      const key = masterkeyKey(stack, 'k', { name: 'act', generation: 1, configFiles: ['/etc/act/act.env'] });
      const status = masterkeyStatus(stack, 's', { configFiles: ['/etc/act/act.env'] });
      const keyAttributes = { fingerprint: key.fingerprint, databaseGeneration: key.databaseGeneration, keySetAt: key.keySetAt, keyAgeDays: key.keyAgeDays, secrets: key.secrets, secretsByKind: key.secretsByKind, undecryptable: key.undecryptable, nodesInSync: key.nodesInSync, lastReport: key.lastReport };
      const statusAttributes = { fingerprint: status.fingerprint, generation: status.generation, keyAgeDays: status.keyAgeDays, overdue: status.overdue, nodesInSync: status.nodesInSync, interruptedRotation: status.interruptedRotation };
      new lib.TerraformOutput(stack, 'key-attributes', { value: keyAttributes });
      new lib.TerraformOutput(stack, 'status-attributes', { value: statusAttributes });
      const outputs = Object.values((synthJson(stack) as Json).output).map((o) => o.value);
      const k = key.friendlyUniqueId;
      const d = status.friendlyUniqueId;
      expect(outputs).toEqual([
        {
          fingerprint: `\${masterkey_key.${k}.fingerprint}`,
          databaseGeneration: `\${masterkey_key.${k}.database_generation}`,
          keySetAt: `\${masterkey_key.${k}.key_set_at}`,
          keyAgeDays: `\${masterkey_key.${k}.key_age_days}`,
          secrets: `\${masterkey_key.${k}.secrets}`,
          secretsByKind: `\${masterkey_key.${k}.secrets_by_kind}`,
          undecryptable: `\${masterkey_key.${k}.undecryptable}`,
          nodesInSync: `\${masterkey_key.${k}.nodes_in_sync}`,
          lastReport: `\${masterkey_key.${k}.last_report}`,
        },
        {
          fingerprint: `\${data.masterkey_status.${d}.fingerprint}`,
          generation: `\${data.masterkey_status.${d}.generation}`,
          keyAgeDays: `\${data.masterkey_status.${d}.key_age_days}`,
          overdue: `\${data.masterkey_status.${d}.overdue}`,
          nodesInSync: `\${data.masterkey_status.${d}.nodes_in_sync}`,
          interruptedRotation: `\${data.masterkey_status.${d}.interrupted_rotation}`,
        },
      ]);
    });

    it('passes the nodes on other hosts and their ssh settings (the connection block\'s names, string values), never key content', () => {
      const a = 'ssh://root@10.0.0.2:2222/etc/act/act.env';
      const b = 'ssh://root@10.0.0.3/etc/act/act.env';
      const pin = 'SHA256:' + 'A'.repeat(43);
      const { stack } = stackWith(
        providerProps({
          configFiles: [a, b],
          ssh: { user: 'deploy', port: 22, privateKeyFile: '/home/ci/.ssh/id_ed25519', agent: false, knownHosts: '/home/ci/.ssh/known_hosts', bastionHost: 'jump.example.com', timeout: '1m', remoteCommand: '/usr/bin/npx master-key' },
          sshNodes: { [b]: { hostKey: pin } },
          localReportDir: '/home/ci/reports',
        }),
      );
      const attrs = Object.values(synthJson(stack).resource.masterkey_key)[0];
      expect(attrs).toEqual(
        expect.objectContaining({
          config_files: [a, b],
          ssh: { user: 'deploy', port: '22', private_key_file: '/home/ci/.ssh/id_ed25519', agent: 'false', known_hosts: '/home/ci/.ssh/known_hosts', bastion_host: 'jump.example.com', timeout: '1m', remote_command: '/usr/bin/npx master-key' },
          ssh_nodes: { [b]: { host_key: pin } },
          local_report_dir: '/home/ci/reports',
        }),
      );
      let refusal = '';
      try {
        stackWith(providerProps({ configFiles: [a], ssh: { privateKeyFile: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn' } }));
      } catch (e) {
        refusal = (e as Error).message;
      }
      expect(refusal).toMatch(/ssh is not usable: ssh\.private_key_file holds a key, not a file's path/);
      expect(refusal).not.toContain('b3Blbn');
      expect(() => stackWith(providerProps({ configFiles: [a], ssh: { password: 'x' } as never }))).toThrow(/ssh\.password is not a connection setting; use user, port, privateKeyFile/);
      expect(() => stackWith(providerProps({ configFiles: [a], sshNodes: { 'ssh://elsewhere/x': { hostKey: pin } } }))).toThrow(/sshNodes\["ssh:\/\/elsewhere\/x"\] names no node of configFiles/);
    });

    it('passes the ssh settings to `master-key apply` as its options with the CLI resource types; user and port belong in the address there', () => {
      const a = 'ssh://root@10.0.0.2:2222/etc/act/act.env';
      const pin = 'SHA256:' + 'B'.repeat(43);
      const { key } = stackWith(goodProps({ configFiles: [a], ssh: { knownHosts: '/k', privateKeyFile: '/id', agent: false, bastionHost: 'jump', bastionUser: 'j', bastionPort: 2200, timeout: '10s', remoteCommand: 'mk' }, sshNodes: { [a]: { hostKey: pin } }, localReportDir: '/r' }));
      const tail = key.argv.slice(key.argv.indexOf('--report-dir') + 2);
      expect(tail).toEqual(['--backup-recipient', ESCROW, '--known-hosts', '/k', '--host-key', `10.0.0.2:2222=${pin}`, '--private-key-file', '/id', '--no-ssh-agent', '--bastion', 'j@jump:2200', '--ssh-timeout', '10s', '--remote-command', 'mk', '--local-report-dir', '/r']);
      expect(() => stackWith(goodProps({ configFiles: [a], ssh: { user: 'deploy' } }))).toThrow(/ssh\.user is only used with resourceType "provider".*ssh:\/\/user@host:port\/path/);
      expect(() => stackWith(goodProps({ configFiles: [a], sshNodes: { [a]: { timeout: '5s' } } }))).toThrow(/sets timeout, which only the provider takes per node/);
    });

    it('passes verifySecrets to the provider, and refuses it and the local-exec props where they mean nothing', () => {
      const { stack } = stackWith(providerProps({ verifySecrets: true }));
      expect(Object.values(synthJson(stack).resource.masterkey_key)[0]).toEqual(expect.objectContaining({ verify_secrets: true }));
      expect(() => stackWith(goodProps({ verifySecrets: true }))).toThrow(/verifySecrets is only used with resourceType "provider", not "terraform_data"/);
      expect(() => stackWith(providerProps({ cliCommand: CLI }))).toThrow(/cliCommand is not used with resourceType "provider"/);
      expect(() => stackWith(providerProps({ environment: { PGSSLMODE: 'require' } }))).toThrow(/environment is not used with resourceType "provider".*export variables in the shell/);
    });
  });

  describe('MasterKey props validation (at construction)', () => {
    const rejects = (over: Partial<MasterKeyProps>, ...parts: Array<string | RegExp>) => {
      let err: unknown;
      try {
        stackWith(goodProps(over));
      } catch (e) {
        err = e;
      }
      expect(isMasterKeyError(err, 'USAGE')).toBe(true);
      const msg = (err as Error).message;
      expect(msg).toContain('MasterKey stack/key');
      for (const p of parts) expect(msg).toMatch(p);
      return msg;
    };

    it('names the bad value and the fix', () => {
      rejects({ generation: -1 }, 'generation -1 is not a whole number', 'raise it by one to rotate');
      rejects({ generation: 1.5 }, 'generation 1.5');
      rejects({ configFiles: [] }, 'configFiles is empty');
      rejects({ configFiles: ['/a', '/a'] }, 'the same file twice');
      rejects({ configFormat: 'yaml' as never }, /configFormat "yaml" .*dotenv, json, xml/);
      rejects({ resourceType: 'local_file' as never }, /terraform_data, null_resource, provider/);
      rejects({ databaseUrlEnv: 'A', databaseUrlEntry: 'B' }, 'set only one');
      rejects({ rotationPolicy: { periodDays: 0 } }, 'rotationPolicy.periodDays is 0');
      rejects({ rotationPolicy: { periodDays: 90, epoch: 'yesterday' } }, 'rotationPolicy.epoch "yesterday" is not a UTC date');
      rejects({ cliCommand: [] }, 'cliCommand');
      rejects({ environment: { DATABASE_URL: 'x' } }, 'export DATABASE_URL in the shell that runs terraform');
      rejects({ configFiles: '/etc/act/act.env' as never }, 'configFiles is "/etc/act/act.env", not a list');
      rejects({ environment: ['PGSSLMODE=require'] as never }, 'environment is a list; give an object of variable names and string values');
      rejects({ rotationPolicy: 90 as never }, 'rotationPolicy is 90; give { periodDays: 90 }');
      rejects({ inventory: { spec: 'act' } as never }, 'inventory is an object, not a MasterKeyInventory; use MasterKeyInventory.act()');
      rejects({ checks: { maxRotationDays: 1.5 } }, 'checks.maxRotationDays is 1.5, not a whole number of days of at least 1; give a period such as 180 or 365.');
      rejects({ checks: { additionalRules: [{ id: 'MasterKey-Mine', description: 'mine', check: () => [] }] } }, 'checks.additionalRules[0].id "MasterKey-Mine" uses the prefix MasterKey-');
    });

    it('takes instants as ISO-8601 UTC text only: a Date is refused with the way to write it, and its toISOString() gives the same window', () => {
      rejects({ rotationPolicy: { periodDays: 90, evaluatedAt: new Date(AT) as never } }, 'rotationPolicy.evaluatedAt is a Date, not text; give ISO-8601 UTC text such as "2026-03-10T12:00:00Z" (date.toISOString() writes it).');
      rejects({ rotationPolicy: { periodDays: 90, epoch: new Date(0) as never } }, 'rotationPolicy.epoch is a Date, not text');
      const fromDate = stackWith(goodProps({ rotationPolicy: { periodDays: 90, evaluatedAt: new Date(AT).toISOString() } })).key;
      expect(fromDate.triggers.policy_window).toBe(stackWith(goodProps()).key.triggers.policy_window);
    });

    it('takes the enums\' values as plain strings from JavaScript', () => {
      const { stack } = stackWith(goodProps({ resourceType: 'null_resource' as never, configFormat: 'json' as never, keyName: 'app.key' }));
      expect(Object.keys(synthJson(stack).resource)).toEqual(['null_resource']);
      expect(localExec(stack, 'null_resource').command).toContain('--format json');
    });

    it('never echoes a credential given where a name was expected', () => {
      const url = 'postgres://act:S3cretPw@db.internal:5432/act';
      const msg = rejects({ databaseUrlEnv: url }, 'is not an environment variable name', 'not shown');
      expect(msg).not.toContain('S3cretPw');
      const msg2 = rejects({ databaseUrlEntry: url }, 'is not a config entry name', 'not shown');
      expect(msg2).not.toContain('S3cretPw');
    });
  });

  describe('a key typed into props never reaches disk', () => {
    const HEX = 'c0ffee'.repeat(10) + 'abcd';

    it('is refused when the construct is built, in any prop, naming where but never the value', () => {
      const cases: Array<[Partial<MasterKeyProps>, string]> = [
        [{ configFiles: [`/etc/act/${HEX}.env`] }, 'configFiles[0] looks like it contains a 64-hex-character string'],
        [{ healthCommand: `curl -H 'X-Key: ${HEX}' http://127.0.0.1:8080/health` }, 'healthCommand looks like it contains a 64-hex-character string'],
        [{ environment: { ACT_SECRET: HEX } }, 'environment.ACT_SECRET looks like it contains a 64-hex-character string'],
        [{ stopCommand: 'psql postgres://act:hunter2@db/act -c stop' }, 'stopCommand looks like it contains a URL with a password'],
      ];
      for (const [over, where] of cases) {
        const app = testApp();
        const stack = new TerraformStack(app, 'stack');
        let err: unknown;
        try {
          new MasterKey(stack, 'key', goodProps(over));
        } catch (e) {
          err = e;
        }
        expect(isMasterKeyError(err, 'USAGE')).toBe(true);
        const msg = (err as Error).message;
        expect(msg).toContain(`MasterKey stack/key: [MasterKey-NoCredentials] ${where}`);
        expect(msg).toContain('(value not shown)');
        expect(msg).not.toContain(HEX);
        expect(msg).not.toContain('hunter2');
        expect(stack.node.findAll().some((c) => c.node.id === 'rotation')).toBe(false);
      }
    });

    it('cannot be suppressed', () => {
      const checks = { suppressions: [{ id: 'MasterKey-NoCredentials', reason: 'we know what we are doing here' }] };
      expect(() => stackWith(goodProps({ backupDir: `/backups/${HEX}`, checks }))).toThrow('[MasterKey-NoCredentials] backupDir');
      const { stack } = stackWith(goodProps({ checks }));
      Testing.synth(stack);
      expect(annotations(stack, 'error')).toEqual([expect.stringContaining('MasterKey-NoCredentials cannot be suppressed')]);
    });

    it(`the example app run as \`${libName} synth\` runs it (CDKTF_CONTINUE_SYNTH_ON_ERROR_ANNOTATIONS set) exits non-zero and writes no cdk.tf.json`, () => {
      const out = join(scratchDir('mk-synth-key-'), 'out');
      const r = spawnSync(process.execPath, [join(__dirname, '..', 'dist', 'main.js')], {
        encoding: 'utf8',
        env: { ...process.env, CDKTF_CONTINUE_SYNTH_ON_ERROR_ANNOTATIONS: 'true', CDKTF_OUTDIR: out, MK_CDK: libName, MK_CONFIG: `/etc/act/${HEX}/act.env` },
      });
      expect(r.status).toBe(3);
      expect(r.stderr).toContain('[MasterKey-NoCredentials] configFiles[0]');
      expect(`${r.stdout}${r.stderr}`).not.toContain(HEX);
      expect(filesUnder(out).filter((f) => f.endsWith('cdk.tf.json'))).toEqual([]);
      for (const f of filesUnder(out)) expect(readFileSync(f, 'utf8')).not.toContain(HEX);
    });
  });

  describe('MasterKeyPolicy at synth', () => {
    function synthToDisk(build: (stack: Stack) => void): { outdir: string; error?: Error } {
      const outdir = scratchDir('mk-synth-');
      const app = new App({ outdir, stackTraces: false });
      build(new TerraformStack(app, 'stack'));
      try {
        app.synth();
        return { outdir };
      } catch (e) {
        return { outdir, error: e as Error };
      }
    }

    it('fails synth on an error with the construct path, the rule and the fix, and writes no terraform config', () => {
      const { outdir, error } = synthToDisk((s) => new MasterKey(s, 'key', goodProps({ configFiles: ['etc/act.env'], backupDir: undefined })));
      try {
        expect(error?.message).toContain('[stack/key] [MasterKey-AbsolutePaths] configFiles[0] "etc/act.env" is a relative path');
        expect(error?.message).toContain('Fix: give an absolute path');
        expect(error?.message).toContain('[stack/key] [MasterKey-BackupDir]');
        expect(() => readFileSync(join(outdir, 'stacks/stack/cdk.tf.json'))).toThrow();
      } finally {
        removeScratch(outdir);
      }
    });

    it('shows warnings and still synthesizes', () => {
      const { outdir, error } = synthToDisk((s) => new MasterKey(s, 'key', goodProps({ rotationPolicy: undefined, startCommand: 'systemctl start act' })));
      try {
        expect(error).toBeUndefined();
        const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8'));
        const msgs = manifest.stacks.stack.annotations.map((a: { level: string; constructPath: string; message: string }) => `${a.level} ${a.constructPath} ${a.message}`);
        expect(msgs).toEqual([
          expect.stringMatching(/^@cdktf\/warn stack\/key \[MasterKey-RotationPolicy\] .*Fix: set rotationPolicy/),
          expect.stringMatching(/^@cdktf\/warn stack\/key \[MasterKey-HealthCheck\] .*Fix: set healthCommand/),
        ]);
        expect(readFileSync(join(outdir, 'stacks/stack/cdk.tf.json'), 'utf8')).toContain('terraform_data');
      } finally {
        removeScratch(outdir);
      }
    });

    it('checks each key once; a stack-level policy wins over the construct default', () => {
      const { stack } = stackWith(goodProps({ rotationPolicy: { periodDays: 180, evaluatedAt: AT } }));
      Testing.synth(stack);
      expect(annotations(stack, 'error')).toEqual([]);
      const strict = stackWith(goodProps({ rotationPolicy: { periodDays: 180, evaluatedAt: AT } }), (s) => Aspects.of(s).add(new MasterKeyPolicy({ maxRotationDays: 90 })));
      Testing.synth(strict.stack);
      expect(annotations(strict.stack, 'error')).toEqual([
        '[stack/key] [MasterKey-MaxRotationPeriod] rotationPolicy.periodDays is 180 days, longer than the 90 days the policy allows. Fix: set rotationPolicy.periodDays to 90 or less.',
      ]);
    });

    /** A rule of an organisation's own, which fails on every key. */
    const broken = (fail: () => never) => ({ id: 'Acme-Broken', description: 'Throws.', check: fail });

    it('turns a rule that throws into a warning naming the rule, and still synthesizes; the other rules still run', () => {
      const { outdir, error } = synthToDisk((s) => {
        Aspects.of(s).add(new MasterKeyPolicy({ additionalRules: [broken(() => { throw new TypeError("Cannot read properties of undefined (reading 'nfs')"); })] }));
        new MasterKey(s, 'key', goodProps({ startCommand: 'systemctl start act' }));
      });
      try {
        expect(error).toBeUndefined();
        const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8'));
        expect(manifest.stacks.stack.annotations.map((a: { level: string; message: string }) => `${a.level} ${a.message}`)).toEqual([
          expect.stringMatching(/^@cdktf\/warn \[MasterKey-HealthCheck\] /),
          '@cdktf/warn [MasterKey-RuleFailed] the rule Acme-Broken threw "TypeError: Cannot read properties of undefined (reading \'nfs\')", so this key was not checked against it. Fix: correct the rule, or suppress Acme-Broken with a reason.',
        ]);
        expect(readFileSync(join(outdir, 'stacks/stack/cdk.tf.json'), 'utf8')).toContain('terraform_data');
      } finally {
        removeScratch(outdir);
      }
    });

    it("runs an organisation's own rules after the built-in ones, from a policy or the key's own checks, and lets them be suppressed with a reason", () => {
      const nfs = { id: 'Acme-BackupOnNfs', description: 'Backups go to the NFS share.', check: ({ settings }: { settings: { backupDir?: string } }) => (settings.backupDir?.startsWith('/mnt/nfs/') ? [] : [{ ruleId: 'Acme-BackupOnNfs', level: FindingLevel.ERROR, problem: 'backupDir is not on /mnt/nfs', fix: 'back up to /mnt/nfs/<key>' }]) };
      const viaPolicy = stackWith(goodProps(), (s) => Aspects.of(s).add(new MasterKeyPolicy({ additionalRules: [nfs] })));
      Testing.synth(viaPolicy.stack);
      expect(annotations(viaPolicy.stack, 'error')).toEqual(['[stack/key] [Acme-BackupOnNfs] backupDir is not on /mnt/nfs. Fix: back up to /mnt/nfs/<key>.']);
      const viaChecks = stackWith(goodProps({ checks: { additionalRules: [nfs] } }));
      Testing.synth(viaChecks.stack);
      expect(annotations(viaChecks.stack, 'error')).toEqual(['[stack/key] [Acme-BackupOnNfs] backupDir is not on /mnt/nfs. Fix: back up to /mnt/nfs/<key>.']);
      const waived = stackWith(goodProps({ checks: { additionalRules: [nfs], suppressions: [{ id: 'Acme-BackupOnNfs', reason: 'this host has no NFS share yet' }] } }));
      Testing.synth(waived.stack);
      expect(annotations(waived.stack, 'error')).toEqual([]);
      expect(annotations(waived.stack, 'info')).toEqual(['[stack/key] [Acme-BackupOnNfs] suppressed: this host has no NFS share yet']);
    });

    it('refuses bad policy options when the policy is made, naming the value and the fix', () => {
      expect(() => new MasterKeyPolicy({ maxRotationDays: 0 })).toThrow('MasterKeyPolicy: maxRotationDays is 0, not a whole number of days of at least 1; give a period such as 180 or 365.');
      const rule = { id: 'Acme-One', description: 'One.', check: () => [] };
      expect(() => new MasterKeyPolicy({ additionalRules: [rule, rule] })).toThrow('MasterKeyPolicy: additionalRules[1].id "Acme-One" is used by another rule; give every rule its own id.');
      expect(() => new MasterKeyPolicy({ additionalRules: [{ id: 'Acme-Two', description: 'Two.' } as never] })).toThrow(/additionalRules\[0\] is an object without a description and a check function/);
      expect(() => new MasterKeyPolicy({ additionalRules: [{ ...rule, id: 'has space' }] })).toThrow('MasterKeyPolicy: additionalRules[0].id "has space" is not a rule id');
    });

    it('records suppressions with their reason and rejects unknown or unexplained ones', () => {
      const ok = stackWith(goodProps({ rotationPolicy: undefined, checks: { suppressions: [{ id: 'MasterKey-RotationPolicy', reason: 'rotated on every release' }] } }));
      Testing.synth(ok.stack);
      expect(annotations(ok.stack, 'warn')).toEqual([]);
      expect(annotations(ok.stack, 'info')).toEqual(['[stack/key] [MasterKey-RotationPolicy] suppressed: rotated on every release']);
      const bad = stackWith(goodProps({ checks: { suppressions: [{ id: 'MasterKey-Nope', reason: 'because I said so' }, { id: 'MasterKey-BackupDir', reason: '' }] } }));
      Testing.synth(bad.stack);
      expect(annotations(bad.stack, 'error')).toEqual([
        expect.stringContaining('"MasterKey-Nope" is not a rule id'),
        expect.stringContaining('the suppression of MasterKey-BackupDir has no reason'),
      ]);
    });
  });

  describe('the example app (main.ts)', () => {
    it('reads environment over cdktf.json context over defaults', () => {
      const ctx: Record<string, unknown> = { generation: 4, rotationPeriodDays: 30, configPath: '/ctx/act.env' };
      const s = exampleSettings((k) => ctx[k], { MK_GENERATION: '7', MK_CONFIG: '/env/a.env,/env/b.env' }, '/root/project');
      expect(s.stackName).toBe('master-key');
      expect(s.props.generation).toBe(7);
      expect(s.props.configFiles).toEqual(['/env/a.env', '/env/b.env']);
      expect(s.props.rotationPolicy).toEqual({ periodDays: 30 });
      expect(s.props.backupDir).toBe('/root/project/.mk-work/backups');
      const none = exampleSettings(() => undefined, { MK_POLICY_DAYS: 'none' }, '/p');
      expect(none.props.rotationPolicy).toBeUndefined();
      expect(none.props.configFiles).toEqual(['/p/.mk-work/act.env']);
      expect(() => exampleSettings(() => undefined, { MK_GENERATION: 'two' }, '/p')).toThrow(/generation "two".*whole number/);
      expect(none.props.ssh).toBeUndefined();
      const pin = 'SHA256:' + 'C'.repeat(43);
      const remote = exampleSettings(() => undefined, { MK_CONFIG: 'ssh://deploy@act.example.com/etc/act/act.env', MK_HOST_KEY: pin, MK_KNOWN_HOSTS: '' }, '/p');
      expect(remote.props.configFiles).toEqual(['ssh://deploy@act.example.com/etc/act/act.env']);
      expect(remote.props.ssh).toEqual({ hostKey: pin });
    });

    it('synthesizes with the committed cdktf.json context through the provider and passes the policy checks; MK_RESOURCE=terraform_data still declares terraform_data', () => {
      const cdktfJson = JSON.parse(readFileSync(join(__dirname, '..', 'cdktf.json'), 'utf8'));
      expect(cdktfJson.app).toBe('node dist/main.js');
      expect(cdktfJson.context.resourceType).toBe('provider');
      const { buildApp } = require('../main') as typeof import('../main');
      const example = (env: NodeJS.ProcessEnv) => {
        const app = buildApp(testApp(cdktfJson.context), env);
        const stack = app.node.findChild('master-key') as Stack;
        expect(annotations(stack, 'error')).toEqual([]);
        expect(annotations(stack, 'warn')).toEqual([]);
        return stack;
      };
      const json = synthJson(example({}));
      expect(Object.keys(json.resource)).toEqual(['masterkey_key']);
      expect(json.resource.masterkey_key.master_key_act).toEqual(expect.objectContaining({ name: 'act', generation: 1, rotation_period_days: 90, database_url_env: 'DATABASE_URL', inventory: 'act' }));
      expect(json.terraform).toEqual(expect.objectContaining({ required_providers: { masterkey: expect.objectContaining({ source: 'cdktf-master-key/masterkey' }) } }));
      const out = Testing.synth(example({ MK_RESOURCE: 'terraform_data' }));
      expect(out).toHaveResourceWithProperties(DataResource, { triggers_replace: expect.objectContaining({ key: 'act', generation: '1', policy_window: expect.stringMatching(/^90d #\d+ from \d{4}-\d{2}-\d{2}$/) }) });
    });

    it(`synthesizes to disk with app.synth() on ${libName} (MK_CDK=${libName}), as the ${libName} CLI would run it`, () => {
      const outdir = scratchDir('mk-example-');
      const { context } = JSON.parse(readFileSync(join(__dirname, '..', 'cdktf.json'), 'utf8'));
      const env = { MK_CDK: libName, MK_POLICY_AT: AT, MK_WORK_DIR: '/srv/act', MK_BACKUP_RECIPIENTS: ESCROW };
      const app = buildApp(newApp({ outdir, context }, env), env);
      expect(app).toBeInstanceOf(App);
      app.synth();
      const json = readFileSync(join(outdir, 'stacks', 'master-key', 'cdk.tf.json'), 'utf8');
      EXAMPLE_JSON.set(libName, JSON.parse(json));
      expect(JSON.parse(json).resource.masterkey_key.master_key_act).toEqual(
        expect.objectContaining({ config_files: ['/srv/act/act.env'], config_format: 'dotenv', key_name: 'ACT_MASTER_KEY', rotation_period_days: 90, rotation_evaluated_at: AT, backup_dir: '/srv/act/backups', backup_recipients: [ESCROW] }),
      );
      const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8'));
      expect(manifest.stacks['master-key'].annotations).toEqual([]);
      const key = app.node.findAll().find(MasterKey.isMasterKey)!;
      expect(key.framework).toBe(libName);
    });
  });
});

/** The example's cdk.tf.json per library, filled by the tests above. */
const EXAMPLE_JSON = new Map<string, Record<string, unknown>>();

describe('cdktf and cdktn', () => {
  it('synthesize the same example configuration (logical ids, provider and arguments unchanged; only the version stamp differs)', () => {
    expect([...EXAMPLE_JSON.keys()].sort()).toEqual(['cdktf', 'cdktn']);
    const strip = (j: Record<string, unknown>) => {
      const { ['//']: stamp, ...rest } = j as { '//'?: { metadata?: { version?: string } } };
      expect(stamp?.metadata?.version).toMatch(/^0\.2[14]\.\d+$/);
      return rest;
    };
    expect(strip(EXAMPLE_JSON.get('cdktn')!)).toEqual(strip(EXAMPLE_JSON.get('cdktf')!));
  });

  it('`npx cdktf synth` (the real cdktf CLI, which sets CDKTF_CONTINUE_SYNTH_ON_ERROR_ANNOTATIONS) fails on a key in props and writes no cdk.tf.json', () => {
    const hex = '5eed'.repeat(16);
    const out = join(scratchDir('mk-cdktf-cli-'), 'out');
    const cli = join(__dirname, '..', 'node_modules', 'cdktf-cli', 'bundle', 'bin', 'cdktf');
    const r = spawnSync(process.execPath, [cli, 'synth', '--output', out], {
      cwd: join(__dirname, '..'),
      encoding: 'utf8',
      timeout: 150_000,
      env: { ...process.env, CI: '1', CHECKPOINT_DISABLE: '1', MK_CDK: 'cdktf', MK_CONFIG: `/etc/act/${hex}/act.env` },
    });
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toContain('[MasterKey-NoCredentials] configFiles[0]');
    expect(`${r.stdout}${r.stderr}`).not.toContain(hex);
    expect(filesUnder(out).filter((f) => f.endsWith('cdk.tf.json'))).toEqual([]);
    for (const f of filesUnder(out)) expect(readFileSync(f, 'utf8')).not.toContain(hex);
  }, 180_000);

  it('`npx cdktf synth` of the example (the real cdktf CLI) writes masterkey_key and installs the provider\'s release archive into the implicit local mirror of the stack (terraform.d/plugins), its hashes in the lock file', () => {
    const dir = scratchDir('mk-cdktf-cli-');
    const cli = join(__dirname, '..', 'node_modules', 'cdktf-cli', 'bundle', 'bin', 'cdktf');
    const r = spawnSync(process.execPath, [cli, 'synth', '--output', join(dir, 'out')], {
      cwd: join(__dirname, '..'),
      encoding: 'utf8',
      timeout: 150_000,
      env: { ...process.env, CI: '1', CHECKPOINT_DISABLE: '1', MK_CDK: 'cdktf', MK_WORK_DIR: join(dir, 'work') },
    });
    expect(r.status).toBe(0);
    const stackDir = join(dir, 'out', 'stacks', 'master-key');
    expect(Object.keys(JSON.parse(readFileSync(join(stackDir, 'cdk.tf.json'), 'utf8')).resource)).toEqual(['masterkey_key']);
    const zip = join(stackDir, 'terraform.d', 'plugins', 'registry.terraform.io', 'cdktf-master-key', 'masterkey', `terraform-provider-masterkey_${providerVersion()}_${terraformPlatform()}.zip`);
    expect(statSync(zip).isFile()).toBe(true);
    expect(readFileSync(join(stackDir, '.terraform.lock.hcl'), 'utf8')).toMatch(/provider "registry\.terraform\.io\/cdktf-master-key\/masterkey" \{[^}]*"h1:[^"]+",\n {4}"zh:[0-9a-f]{64}",/);
  }, 180_000);

  it('the example app picks its library from MK_CDK or the `cdk` context key, else cdktf when both are installed', () => {
    expect(chooseFramework('cdktn').name).toBe('cdktn');
    expect(chooseFramework('cdktf').name).toBe('cdktf');
    expect(chooseFramework(undefined).name).toBe('cdktf');
    expect(() => chooseFramework('cdk8s')).toThrow('"cdk8s" is not a supported CDK for Terraform library; use one of cdktf, cdktn.');
    expect(newApp({ outdir: scratchDir('mk-app-'), context: { cdk: 'cdktn' } }, {})).toBeInstanceOf(cdktn.App);
    expect(newApp({ outdir: scratchDir('mk-app-') }, { MK_CDK: 'cdktn' })).toBeInstanceOf(cdktn.App);
    expect(newApp({ outdir: scratchDir('mk-app-') }, {})).toBeInstanceOf(cdktf.App);
  });

  it('the construct refuses a scope outside any app of an installed library, saying what to do', () => {
    const { Construct } = require('constructs') as typeof import('constructs');
    const root = new Construct(undefined as never, 'bare');
    expect(() => new MasterKey(root, 'key', goodPropsOutside())).toThrow(/is not inside an App or TerraformStack of cdktf or cdktn; build the app and its stacks with the classes of one library/);
  });
});

function goodPropsOutside(): MasterKeyProps {
  return { generation: 1, configFiles: ['/etc/act/act.env'], backupDir: '/var/backups/act' };
}

/** Every file under a directory (none when it does not exist). */
function filesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => join(d.parentPath, d.name));
  } catch {
    return [];
  }
}
