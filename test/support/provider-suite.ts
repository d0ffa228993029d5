/**
 * The provider's terraform suite (run by test/provider-terraform.test.ts on
 * PostgreSQL and test/provider-terraform-sqlite.test.ts on SQLite):
 * terraform-provider-masterkey driven by the real terraform binary (offline
 * init from the stack's implicit local mirror) against a real installation
 * with two nodes on the given store, through the `MasterKey` construct with
 * `resourceType: 'provider'`: the plan tells the truth about the key and the
 * data, apply rotates, drift and out-of-step nodes show, a wrong key is a
 * plan-time diagnostic, destroy forgets, import adopts, a killed apply loses
 * nothing, and no key or password leaks into state, plan JSON, trace logs or
 * process arguments.
 */
import { copyFileSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKey as MasterKeyConstruct, MasterKeyProps, RotationResourceType, masterkeyStatus } from '../../constructs';
import { MasterKey, parseKey } from '../../src/crypto/key';
import { actCodec } from '../../src/crypto/codec';
import { Scenario, actScenario, dbSnapshot, keyLeaks, keyLine, readPlaintexts } from './scenario';
import { withTestSql } from './sql';
import { StoreFixture } from './stores';
import { TfWorkspace, allCommandLines, describeTerraform, descendants, waitFor } from './terraform';

const ADDRESS = 'masterkey_key.master_key_act';

/** The suite on one store; each store's test file calls it (so jest runs them side by side). */
export function providerTerraformSuite(store: StoreFixture): void {
  describeTerraform(`terraform-provider-masterkey on real terraform and ${store.name}`, () => {
    const ws = new TfWorkspace('keys');
    let scn: Scenario;
    let node2 = '';
    let env: Record<string, string> = {};
    const keys: MasterKey[] = [];
    const processArgs: string[] = [];
    let byKind: Record<string, number> = {};

    const props = (generation: number, extra: Partial<MasterKeyProps> = {}): MasterKeyProps => ({
      name: 'act',
      generation,
      rotationPolicy: { periodDays: 90 },
      configFiles: [scn.configPath, node2],
      backupDir: join(scn.dir, 'backups'),
      reportDir: join(scn.dir, 'reports'),
      resourceType: RotationResourceType.PROVIDER,
      ...extra,
    });
    const synth = (generation: number, extra: Partial<MasterKeyProps> = {}, more?: (k: MasterKeyConstruct) => void) =>
      ws.synth((stack) => {
        const k = new MasterKeyConstruct(stack, 'master-key', props(generation, extra));
        more?.(k);
      });
    // Backup and report directories for the commands that take them (recover takes neither).
    const cli = (args: string[]) =>
      scn.cli([...args, '--config', scn.configPath, '--config', node2, ...(args[0] === 'recover' ? [] : ['--backup-dir', join(scn.dir, 'backups'), '--report-dir', join(scn.dir, 'reports')])]);
    const configs = () => [readFileSync(scn.configPath), readFileSync(node2)];
    const allOpenWith = async (k: MasterKey) => expect(await readPlaintexts(scn.url, k, scn.plaintexts.keys())).toEqual(scn.plaintexts);
    const current = () => scn.configKey();

    beforeAll(async () => {
      ws.create();
      scn = await actScenario({ perKind: 3, store });
      node2 = join(scn.dir, 'node2.env');
      copyFileSync(scn.configPath, node2);
      env = { DATABASE_URL: scn.url };
      keys.push(scn.key);
      // The engine's own full scan counts what the provider must count by query.
      const plan = cli(['plan', '--generation', '99', '--json']);
      byKind = JSON.parse(plan.stdout).secrets.byKind;
    });

    afterAll(async () => {
      if (scn) {
        await store.drop(scn.url);
        rmSync(scn.dir, { recursive: true, force: true });
      }
      ws.remove();
    });

    it('inits offline from the implicit local mirror and records the provider in .terraform.lock.hcl', () => {
      synth(1);
      const out = ws.ok(['init'], env);
      expect(out).toContain('Installed cdktf-master-key/masterkey v0.1.0');
      const lock = readFileSync(join(ws.stackDir, '.terraform.lock.hcl'), 'utf8');
      expect(lock).toContain('provider "registry.terraform.io/cdktf-master-key/masterkey"');
      expect(lock).toMatch(/"h1:[A-Za-z0-9+/=]+"/);
    });

    it('plans the key at its current generation with its fingerprint and secrets_by_kind; apply changes nothing; the next plan has no changes', async () => {
      const before = await dbSnapshot(scn.url);
      const plan = ws.ok(['plan', '-detailed-exitcode'], env, 2);
      expect(plan).toContain(`# ${ADDRESS} will be created`);
      expect(plan).toMatch(new RegExp(`\\+ fingerprint\\s+= "${scn.key.fingerprint}"`));
      expect(plan).toMatch(/\+ database_generation\s+= 1/);
      expect(plan).toMatch(new RegExp(`\\+ secrets\\s+= ${Object.values(byKind).reduce((a, b) => a + b, 0)}\\b`));
      for (const [kind, n] of Object.entries(byKind)) expect(plan).toMatch(new RegExp(`"${kind}"\\s+= ${n}\\b`));
      expect(plan).toMatch(/\+ nodes_in_sync\s+= true/);
      ws.ok(['apply', '-auto-approve'], env);
      expect(await dbSnapshot(scn.url)).toBe(before);
      expect(current().equals(scn.key)).toBe(true);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
    });

    it('a generation bump plans an in-place update (fingerprint known after apply, counts known now); apply rotates every secret and node; the next plan has no changes', async () => {
      synth(2);
      const plan = ws.ok(['plan', '-detailed-exitcode'], env, 2);
      expect(plan).toContain(`# ${ADDRESS} will be updated in-place`);
      expect(plan).toMatch(new RegExp(`~ fingerprint\\s+= "${scn.key.fingerprint}" -> \\(known after apply\\)`));
      expect(plan).toMatch(/~ database_generation\s+= 1 -> 2/);
      expect(plan).toMatch(/~ generation\s+= 1 -> 2/);
      expect(plan).toContain('Plan: 0 to add, 1 to change, 0 to destroy.');
      // The saved plan's JSON holds the counts, known at plan time.
      ws.ok(['plan', '-out=rotate.tfplan'], env);
      const json = JSON.parse(ws.ok(['show', '-json', 'rotate.tfplan']));
      const change = json.resource_changes.find((c: { address: string }) => c.address === ADDRESS).change;
      expect(change.after.secrets_by_kind).toEqual(byKind);
      expect(change.after_unknown.fingerprint).toBe(true);
      const applied = ws.ok(['apply', 'rotate.tfplan'], { ...env, TF_LOG: 'trace', TF_LOG_PATH: join(ws.dir, 'trace.log') });
      expect(applied).toContain('Apply complete! Resources: 0 added, 1 changed, 0 destroyed.');
      keys.push(current());
      expect(keys[1].equals(keys[0])).toBe(false);
      expect(parseKey(/ACT_MASTER_KEY=(\w+)/.exec(readFileSync(node2, 'utf8'))![1]).equals(keys[1])).toBe(true);
      await allOpenWith(keys[1]);
      const state = JSON.parse(ws.state());
      const attrs = state.resources[0].instances[0].attributes;
      expect(attrs).toEqual(expect.objectContaining({ fingerprint: keys[1].fingerprint, database_generation: 2, undecryptable: 0, nodes_in_sync: true, key_age_days: 0 }));
      expect(existsSync(attrs.last_report)).toBe(true);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
      const trace = readFileSync(join(ws.dir, 'trace.log'), 'utf8');
      expect(trace).toContain('configured automatic mTLS');
      expect(trace).toContain('ApplyResourceChange');
      ws.transcript.push(trace);
    });

    it('a rotation by hand outside terraform shows in the plan as changed outside of Terraform, with a warning to declare it', () => {
      const r = cli(['apply']);
      expect(r.code).toBe(0);
      keys.push(current());
      const plan = ws.ok(['plan'], env);
      expect(plan).toContain('Objects have changed outside of Terraform');
      expect(plan).toMatch(new RegExp(`~ fingerprint\\s+= "${keys[1].fingerprint}" -> "${keys[2].fingerprint}"`));
      expect(plan).toMatch(/~ database_generation\s+= 2 -> 3/);
      expect(plan).toContain('is at generation 3, ahead of the declared generation 2: the key was rotated outside Terraform');
      synth(3);
      ws.ok(['apply', '-auto-approve'], env);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
    });

    it("a node's config edited by hand shows nodes_in_sync = false, and apply sets the node back to the database's key", async () => {
      const before = await dbSnapshot(scn.url);
      writeFileSync(node2, readFileSync(node2, 'utf8').replace(/ACT_MASTER_KEY=\w+/, keyLine(MasterKey.generate())));
      const plan = ws.ok(['plan', '-detailed-exitcode'], env, 2);
      expect(plan).toContain(`# ${ADDRESS} will be updated in-place`);
      expect(plan).toMatch(/~ nodes_in_sync\s+= false -> true/);
      ws.ok(['apply', '-auto-approve'], env);
      expect(readFileSync(node2, 'utf8')).toContain(keyLine(keys[2]));
      expect(await dbSnapshot(scn.url)).toBe(before);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
    });

    it('a wrong key in the primary config is a plan-time error "Old master key incorrect" and nothing changes', async () => {
      synth(4);
      const before = await dbSnapshot(scn.url);
      const good = readFileSync(scn.configPath);
      const wrong = MasterKey.generate();
      writeFileSync(scn.configPath, good.toString('utf8').replace(/ACT_MASTER_KEY=\w+/, keyLine(wrong)));
      try {
        const r = ws.tf(['apply', '-auto-approve'], env);
        expect(r.code).toBe(1);
        expect(r.out).toContain('Error: Old master key incorrect');
        expect(r.out).toContain('OLD_KEY_INCORRECT');
        expect(r.out).not.toContain('Apply complete');
        expect(await dbSnapshot(scn.url)).toBe(before);
        expect(readFileSync(node2, 'utf8')).toContain(keyLine(keys[2]));
        keys.push(wrong);
      } finally {
        writeFileSync(scn.configPath, good);
      }
      synth(3);
    });

    it('destroy only forgets: database, config files, backups and reports stay byte for byte', async () => {
      const before = [await dbSnapshot(scn.url), ...configs().map((b) => b.toString('hex')), readdirSync(join(scn.dir, 'backups')).join(), readdirSync(join(scn.dir, 'reports')).join()];
      const out = ws.ok(['destroy', '-auto-approve'], env);
      expect(out).toContain('was removed from the Terraform state only: the master key, the database and the config files are left as they are');
      expect(out).toContain('Destroy complete! Resources: 1 destroyed.');
      const after = [await dbSnapshot(scn.url), ...configs().map((b) => b.toString('hex')), readdirSync(join(scn.dir, 'backups')).join(), readdirSync(join(scn.dir, 'reports')).join()];
      expect(after).toEqual(before);
      expect(JSON.parse(ws.state()).resources).toEqual([]);
    });

    it('imports the installation with `terraform import` and with an import block', () => {
      const json = JSON.parse(ws.synthesized.at(-1)!);
      const args = Object.fromEntries(Object.entries(json.resource.masterkey_key.master_key_act).filter(([k]) => k !== '//' && k !== 'provider'));
      const id = JSON.stringify(args);
      const imported = ws.ok(['import', ADDRESS, id], env);
      expect(imported).toContain('Import successful!');
      const shown = ws.ok(['state', 'show', ADDRESS]);
      expect(shown).toMatch(new RegExp(`fingerprint\\s+= "${keys[2].fingerprint}"`));
      expect(shown).toMatch(/database_generation\s+= 3/);
      expect(ws.ok(['plan'], env)).not.toMatch(/will be (updated|created|destroyed|replaced)/);
      ws.ok(['state', 'rm', ADDRESS]);
      // The short id names only the key and its config files: the other arguments of the configuration show as an update.
      synth(3, {}, (k) => k.key!.importFrom(`act:${scn.configPath},${node2}`));
      const plan = ws.ok(['plan'], env);
      expect(plan).toContain(`# (imported from "act:${scn.configPath},${node2}")`);
      expect(plan).toMatch(new RegExp(`  fingerprint\\s+= "${keys[2].fingerprint}"`));
      expect(plan).toContain('Plan: 1 to import, 0 to add, 1 to change, 0 to destroy.');
      ws.ok(['apply', '-auto-approve'], env);
      synth(3);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
    });

    it('kill -9 of terraform during apply, then `master-key recover`, loses nothing; a pending rotation is a plan-time error until then', async () => {
      const ready = join(ws.dir, 'stop-hook-ready');
      const go = join(ws.dir, 'stop-hook-go');
      synth(4, { stopCommand: `touch '${ready}'; while [ ! -e '${go}' ]; do sleep 0.1; done`, healthCommand: 'true', startCommand: 'true' });
      const before = await dbSnapshot(scn.url);
      const tf = ws.start(['apply', '-auto-approve'], env);
      const exited = new Promise((r) => tf.once('exit', r));
      let killed: number[] = [];
      try {
        await waitFor('the stop hook', () => existsSync(ready));
        processArgs.push(allCommandLines());
        killed = [tf.pid!, ...descendants(tf.pid!)];
        for (const pid of killed) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone (e.g. the hook's sleep)
          }
        }
        await exited;
        await waitFor('every killed process to be gone', () => killed.every((p) => !existsSync(`/proc/${p}/stat`) || readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z')));
      } finally {
        writeFileSync(go, '');
      }
      expect(await dbSnapshot(scn.url)).toBe(before);
      const blocked = ws.tf(['plan'], env);
      expect(blocked.code).toBe(1);
      expect(blocked.out).toContain('An interrupted rotation');
      expect(blocked.out).toContain('ROTATION_INTERRUPTED');
      const rec = cli(['recover']);
      expect(rec.code).toBe(0);
      expect(rec.stdout + rec.stderr).toContain('Undid the interrupted rotation');
      await allOpenWith(current());
      expect(current().equals(keys[2])).toBe(true);

      // Killed right after COMMIT (the provider dies with terraform still running): recover finishes the rotation.
      synth(4);
      const crashed = ws.tf(['apply', '-auto-approve'], { ...env, MASTER_KEY_TEST_KILL_AT: 'committed' });
      expect(crashed.code).toBe(1);
      const finished = cli(['recover']);
      expect(finished.stdout + finished.stderr).toContain('Finished the interrupted rotation');
      keys.push(current());
      expect(keys.at(-1)!.equals(keys[2])).toBe(false);
      await allOpenWith(keys.at(-1)!);
      const plan = ws.ok(['plan', '-detailed-exitcode'], env, 2);
      expect(plan).toMatch(/~ database_generation\s+= 3 -> 4/);
      ws.ok(['apply', '-auto-approve'], env);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
    });

    it('a stored value that does not open is a plan-time error with verifySecrets, and without it an apply-time diagnostic that taints nothing', async () => {
      const [row] = await withTestSql(scn.url, (db) => db.query<{ id: string | number; v: string }>('SELECT id, access_token AS v FROM git_credentials ORDER BY id LIMIT 1'));
      const stranger = actCodec().seal(MasterKey.generate(), Buffer.from('sealed under another key'));
      await withTestSql(scn.url, (db) => db.query('UPDATE git_credentials SET access_token = $2 WHERE id = $1', [row.id, stranger]));
      try {
        const before = await dbSnapshot(scn.url);
        const configsBefore = configs().map((b) => b.toString('hex'));
        synth(5, { verifySecrets: true });
        const planned = ws.tf(['plan'], env);
        expect(planned.code).toBe(1);
        expect(planned.out).toContain('1 stored value(s) do not open with the old key');
        expect(planned.out).toContain('UNDECRYPTABLE_ROWS');
        synth(5);
        ws.ok(['plan', '-detailed-exitcode'], env, 2);
        const applied = ws.tf(['apply', '-auto-approve'], env);
        expect(applied.code).toBe(1);
        expect(applied.out).toContain(`git_credentials.access_token id=${row.id}`);
        expect(applied.out).toContain('UNDECRYPTABLE_ROWS');
        expect(await dbSnapshot(scn.url)).toBe(before);
        expect(configs().map((b) => b.toString('hex'))).toEqual(configsBefore);
        const again = ws.ok(['plan'], env);
        expect(again).toContain(`# ${ADDRESS} will be updated in-place`);
        expect(again).not.toMatch(/tainted|must be replaced/);
      } finally {
        await withTestSql(scn.url, (db) => db.query('UPDATE git_credentials SET access_token = $2 WHERE id = $1', [row.id, row.v]));
      }
      synth(4);
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
    });

    it('masterkey_status fails the plan through a postcondition once the key is older than max_age_days', () => {
      const status = (maxAgeDays: number) => (k: MasterKeyConstruct) =>
        masterkeyStatus(k, 'status', {
          configFiles: [scn.configPath, node2],
          maxAgeDays,
          lifecycle: { postcondition: [{ condition: '${!self.overdue && self.nodes_in_sync}', errorMessage: 'The ACT master key is overdue or a node is out of step: rotate it.' }] },
        });
      synth(4, {}, status(365));
      expect(ws.ok(['plan', '-detailed-exitcode'], env, 0)).toContain('No changes.');
      synth(4, {}, status(0.00001)); // under a second: the key is older than that by now
      const overdue = ws.tf(['plan'], env);
      expect(overdue.code).toBe(1);
      expect(overdue.out).toContain('The ACT master key is overdue or a node is out of step: rotate it.');
      synth(4);
    });

    it('no key and no database password in state, plan JSON, trace logs, outputs or any process arguments', () => {
      ws.ok(['plan', '-out=final.tfplan'], env);
      const planJson = ws.ok(['show', '-json', 'final.tfplan']);
      const stateJson = ws.ok(['show', '-json']);
      const haystack = [ws.everything(), planJson, stateJson, ...processArgs].join('\n');
      expect(keys.length).toBeGreaterThanOrEqual(5);
      expect(haystack).toContain('configured automatic mTLS');
      expect(keyLeaks(haystack, keys)).toEqual([]);
      const password = decodeURIComponent(new URL(scn.url).password);
      if (store.kind === 'postgres') expect(password).not.toBe('');
      if (password) expect(haystack).not.toContain(password);
      expect(haystack).toContain(keys.at(-1)!.fingerprint);
    });
  });
}
