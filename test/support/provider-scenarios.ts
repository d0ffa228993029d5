/**
 * The provider's terraform scenarios, each a named function proving one
 * behaviour through the real terraform binary against a real installation
 * (test/support/provider-installation.ts). They run in the order of
 * `PROVIDER_SCENARIOS`, each starting from where the one before left the
 * installation (its doc comment says what it leaves), on every store the
 * suite is given (test/support/provider-suite.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { join, relative } from 'node:path';
import { TerraformOutput } from 'cdktf';
import { MasterKey as MasterKeyConstruct, ensureMasterkeyProvider, masterkeyStatus } from '../../constructs';
import { actCodec } from '../../src/crypto/codec';
import { MasterKey } from '../../src/crypto/key';
import { sqliteFile } from '../../src/store/sqlite/url';
import { ADDRESS, ProviderInstallation } from './provider-installation';
import { dbSnapshot, keyLeaks, keyLine, readPlaintexts } from './scenario';
import { withTestSql } from './sql';
import { TfWorkspace, allCommandLines, descendants, waitFor } from './terraform';

export interface ProviderScenario {
  /** What it proves, as the test's title. */
  readonly title: string;
  readonly run: (t: ProviderInstallation) => Promise<void> | void;
}

const total = (byKind: Record<string, number>) => Object.values(byKind).reduce((a, b) => a + b, 0);

/** The resource's change in a saved plan's JSON: what it will be, and which of that is known only after apply. */
function plannedChange(t: ProviderInstallation, planFile: string): { after: Record<string, unknown>; after_unknown: Record<string, unknown> } {
  const json = JSON.parse(t.terraform(['show', '-json', planFile]));
  return json.resource_changes.find((c: { address: string }) => c.address === ADDRESS).change;
}

/** Leaves the stack declared at generation 1 and terraform initialised. */
function initsOfflineFromTheLocalMirror(t: ProviderInstallation): void {
  t.declare(1);
  expect(t.terraform(['init'])).toContain('Installed cdktf-master-key/masterkey v0.1.0');
  const lock = readFileSync(join(t.ws.stackDir, '.terraform.lock.hcl'), 'utf8');
  expect(lock).toContain('provider "registry.terraform.io/cdktf-master-key/masterkey"');
  expect(lock).toMatch(/"h1:[A-Za-z0-9+/=]+"/);
}

/** Adopts the key at generation 1: the resource is created, nothing on the server changes. */
async function plansTheKeyAsItIs(t: ProviderInstallation): Promise<void> {
  const before = await dbSnapshot(t.url);
  const key = t.current();
  const plan = t.terraform(['plan', '-detailed-exitcode'], 2);
  expect(plan).toContain(`# ${ADDRESS} will be created`);
  expect(plan).toMatch(new RegExp(`\\+ fingerprint\\s+= "${key.fingerprint}"`));
  expect(plan).toMatch(/\+ database_generation\s+= 1/);
  expect(plan).toMatch(new RegExp(`\\+ secrets\\s+= ${total(t.byKind)}\\b`));
  for (const [kind, n] of Object.entries(t.byKind)) expect(plan).toMatch(new RegExp(`"${kind}"\\s+= ${n}\\b`));
  expect(plan).toMatch(/\+ nodes_in_sync\s+= true/);
  t.terraform(['apply', '-auto-approve']);
  expect(await dbSnapshot(t.url)).toBe(before);
  expect(t.current().equals(key)).toBe(true);
  t.expectNoChanges();
}

/** Rotates to the next generation through a saved plan (and keeps its trace log for the leak scan). */
async function rotatesOnAGenerationBump(t: ProviderInstallation): Promise<void> {
  const old = t.current();
  const from = t.generation;
  t.declare(from + 1);
  const plan = t.terraform(['plan', '-detailed-exitcode'], 2);
  expect(plan).toContain(`# ${ADDRESS} will be updated in-place`);
  expect(plan).toMatch(new RegExp(`~ fingerprint\\s+= "${old.fingerprint}" -> \\(known after apply\\)`));
  expect(plan).toMatch(new RegExp(`~ database_generation\\s+= ${from} -> ${from + 1}`));
  expect(plan).toMatch(new RegExp(`~ generation\\s+= ${from} -> ${from + 1}`));
  expect(plan).toContain('Plan: 0 to add, 1 to change, 0 to destroy.');
  // The saved plan's JSON holds the counts, known at plan time.
  t.terraform(['plan', '-out=rotate.tfplan']);
  const change = plannedChange(t, 'rotate.tfplan');
  expect(change.after.secrets_by_kind).toEqual(t.byKind);
  expect(change.after_unknown.fingerprint).toBe(true);
  const applied = t.terraform(['apply', 'rotate.tfplan'], 0, { TF_LOG: 'trace', TF_LOG_PATH: join(t.ws.dir, 'trace.log') });
  expect(applied).toContain('Apply complete! Resources: 0 added, 1 changed, 0 destroyed.');
  const rotated = t.current();
  t.keys.push(rotated);
  expect(rotated.equals(old)).toBe(false);
  expect(t.node2Key().equals(rotated)).toBe(true);
  await t.expectAllOpenWith(rotated);
  const attrs = t.stateAttributes();
  expect(attrs).toEqual(expect.objectContaining({ fingerprint: rotated.fingerprint, database_generation: from + 1, undecryptable: 0, nodes_in_sync: true, key_age_days: 0 }));
  expect(existsSync(attrs.last_report as string)).toBe(true);
  t.expectNoChanges();
  const trace = readFileSync(join(t.ws.dir, 'trace.log'), 'utf8');
  expect(trace).toContain('configured automatic mTLS');
  expect(trace).toContain('ApplyResourceChange');
  t.ws.transcript.push(trace);
}


/**
 * Backups through terraform (issue 19): a rotation declared without
 * backup_recipients plans with a warning that its backup will hold the old
 * key in cleartext. Declared with an escrow's age recipient and
 * backup_retention { keep: 1 }, the plan has no such warning; apply seals
 * the new backup (the `age` CLI opens its values and config copies with the
 * escrow's identity, no backup file holds the old key), then retires every
 * older backup and records it in the report's key custody. Leaves the next
 * generation declared, with no changes; the identity file is removed.
 */
async function sealsAndRetiresBackups(t: ProviderInstallation): Promise<void> {
  const old = t.current();
  const from = t.generation;
  t.declare(from + 1);
  const cleartext = t.terraform(['plan', '-detailed-exitcode'], 2);
  expect(cleartext).toContain(`Warning: The rotation of act will leave its backup under ${t.backupDir} holding the old key in cleartext: no backup_recipients are declared.`);

  const id = await generateX25519Identity();
  const idFile = join(t.dir, 'escrow-identity.txt');
  writeFileSync(idFile, `${id}\n`, { mode: 0o600 });
  try {
    const recipient = await identityToRecipient(id);
    const older = readdirSync(t.backupDir);
    expect(older.length).toBeGreaterThan(0);
    t.declare(from + 1, { backupRecipients: [recipient], backupRetention: { keep: 1 } });
    const sealedPlan = t.terraform(['plan', '-detailed-exitcode'], 2);
    expect(sealedPlan).toMatch(new RegExp(`~ generation\\s+= ${from} -> ${from + 1}`));
    expect(sealedPlan).not.toContain('cleartext');
    t.terraform(['apply', '-auto-approve']);
    const rotated = t.current();
    t.keys.push(rotated);
    await t.expectAllOpenWith(rotated);

    const left = readdirSync(t.backupDir);
    expect(left).toHaveLength(1);
    expect(older).not.toContain(left[0]);
    const backup = join(t.backupDir, left[0]);
    const manifest = JSON.parse(readFileSync(join(backup, 'manifest.json'), 'utf8'));
    expect(manifest.sealed).toEqual({ format: 'age', recipients: [recipient] });
    const files = readdirSync(backup).filter((f) => f !== 'manifest.json');
    expect(files.length).toBeGreaterThan(1);
    for (const f of files) {
      expect(f.endsWith('.age')).toBe(true);
      const opened = spawnSync('age', ['--decrypt', '--identity', idFile, join(backup, f)], { maxBuffer: 1 << 28 });
      expect(opened.status).toBe(0);
      if (f.startsWith('config-')) expect(keyLeaks(opened.stdout.toString('latin1'), [old]).length).toBeGreaterThan(0);
      expect(keyLeaks(readFileSync(join(backup, f)).toString('latin1'), [old])).toEqual([]);
    }

    const report = JSON.parse(readFileSync(String(t.stateAttributes().last_report).replace(/\.md$/, '.json'), 'utf8'));
    expect(report.backup.sealedTo).toEqual([recipient]);
    expect(report.custody.retention).toBe('keep the newest 1');
    expect(report.custody.retired.map((r: { path: string }) => relative(t.backupDir, r.path)).sort()).toEqual([...older].sort());
    t.expectNoChanges();
  } finally {
    rmSync(idFile, { force: true });
  }
}

/**
 * A server writes a secret between the saved plan of a rotation and its
 * apply: apply refuses with PLAN_STALE (not terraform's "inconsistent final
 * plan"), nothing changes; a new plan counts the secret, and its apply
 * rotates it with the others (the next generation). The secret is removed.
 */
async function refusesASavedPlanMadeStaleByANewSecret(t: ProviderInstallation): Promise<void> {
  const key = t.current();
  t.declare(t.generation + 1);
  t.terraform(['plan', '-out=stale.tfplan']);
  const counted = plannedChange(t, 'stale.tfplan').after.secrets as number;
  const place = await t.store.addSecret(t.url, key, 'written after the plan');
  try {
    const before = await t.everythingOnTheServer();
    const stale = t.try(['apply', 'stale.tfplan']);
    expect(stale.code).toBe(1);
    expect(stale.out).toContain(`Error: The database holds ${counted + 1} secrets now but the plan counted ${counted}; nothing was changed: run terraform plan again and review it.`);
    expect(stale.out).toContain('Error code PLAN_STALE');
    expect(stale.out).toContain(`Warning: The database holds ${counted + 1} secrets now, but held ${counted} when Terraform read it`);
    expect(stale.out).not.toMatch(/inconsistent|bug in the provider/);
    expect(await t.everythingOnTheServer()).toEqual(before);

    t.terraform(['plan', '-out=fresh.tfplan']);
    expect(plannedChange(t, 'fresh.tfplan').after.secrets).toBe(counted + 1);
    t.terraform(['apply', 'fresh.tfplan']);
    const rotated = t.current();
    t.keys.push(rotated);
    await t.expectAllOpenWith(rotated);
    expect(await readPlaintexts(t.url, rotated, [place])).toEqual(new Map([[place, 'written after the plan']]));
  } finally {
    await t.store.removeSecretAt(t.url, place);
  }
  t.expectNoChanges();
}

/** A stack without the construct's output of the fingerprint, generation and node agreement: the resource alone shows what changed. */
const withoutOutput = (k: MasterKeyConstruct) => expect(k.node.tryRemoveChild('key')).toBe(true);

/**
 * The key rotated by the CLI (the next generation) under a configuration
 * with no output of the fingerprint: the resource itself plans a change
 * (exit 2 under -detailed-exitcode), its generation read back from the
 * database, with a warning saying what to declare; apply refuses and
 * changes nothing; declaring the database's generation leaves no changes.
 */
async function plansAChangeForARotationByHand(t: ProviderInstallation): Promise<void> {
  const from = t.generation;
  t.declare(from, {}, withoutOutput);
  t.terraform(['apply', '-auto-approve']);
  t.expectNoChanges();

  expect(t.cli(['apply']).code).toBe(0);
  const byHand = t.current();
  t.keys.push(byHand);
  const plan = t.terraform(['plan', '-detailed-exitcode'], 2);
  expect(plan).toContain(`# ${ADDRESS} will be updated in-place`);
  expect(plan).toMatch(new RegExp(`~ generation\\s+= ${from + 1} -> ${from}\\n`));
  expect(plan).toContain('Plan: 0 to add, 1 to change, 0 to destroy.');
  expect(plan).toContain(`Warning: The database of act is at generation ${from + 1}, ahead of the declared generation ${from}: the key was rotated outside Terraform (it is now ${byHand.fingerprint}).`);
  expect(plan).toContain(`Set generation = ${from + 1} to declare the key as it is`);

  const before = await t.everythingOnTheServer();
  const refused = t.try(['apply', '-auto-approve']);
  expect(refused.code).toBe(1);
  expect(refused.out).toContain(`Error: The database of act is at generation ${from + 1}, ahead of the declared generation ${from}: the key was rotated outside Terraform, and no apply can lower it; nothing was changed`);
  expect(refused.out).toContain('Error code USAGE.');
  expect(refused.out).not.toContain('Apply complete');
  expect(await t.everythingOnTheServer()).toEqual(before);

  t.declare(from + 1, {}, withoutOutput);
  t.expectNoChanges();
  t.declare(from + 1);
  t.terraform(['apply', '-auto-approve']);
  expect(t.stateAttributes()).toEqual(expect.objectContaining({ generation: from + 1, database_generation: from + 1, fingerprint: byHand.fingerprint }));
  t.expectNoChanges();
}

/** A hand-edited node is set back to the database's key; the database is untouched. */
async function setsAnOutOfStepNodeBack(t: ProviderInstallation): Promise<void> {
  const key = t.current();
  const before = await dbSnapshot(t.url);
  t.editKey(t.node2, MasterKey.generate());
  const plan = t.terraform(['plan', '-detailed-exitcode'], 2);
  expect(plan).toContain(`# ${ADDRESS} will be updated in-place`);
  expect(plan).toMatch(/~ nodes_in_sync\s+= false -> true/);
  t.terraform(['apply', '-auto-approve']);
  expect(readFileSync(t.node2, 'utf8')).toContain(keyLine(key));
  expect(await dbSnapshot(t.url)).toBe(before);
  t.expectNoChanges();
}

/** A wrong key in the primary config stops the plan of a rotation; the configuration is declared back as it was. */
async function refusesAWrongKeyAtPlan(t: ProviderInstallation): Promise<void> {
  const declared = t.generation;
  const key = t.current();
  t.declare(declared + 1);
  const before = await dbSnapshot(t.url);
  const good = readFileSync(t.primary);
  const wrong = MasterKey.generate();
  t.editKey(t.primary, wrong);
  try {
    const r = t.try(['apply', '-auto-approve']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('Error: Old master key incorrect');
    expect(r.out).toContain('OLD_KEY_INCORRECT');
    expect(r.out).not.toContain('Apply complete');
    expect(await dbSnapshot(t.url)).toBe(before);
    expect(readFileSync(t.node2, 'utf8')).toContain(keyLine(key));
    t.keys.push(wrong);
  } finally {
    writeFileSync(t.primary, good);
  }
  t.declare(declared);
}

/** Destroy removes the resource from the state only. */
async function destroyOnlyForgets(t: ProviderInstallation): Promise<void> {
  const before = await t.everythingOnTheServer();
  const out = t.terraform(['destroy', '-auto-approve']);
  expect(out).toContain('was removed from the Terraform state only: the master key, the database and the config files are left as they are');
  expect(out).toContain('Destroy complete! Resources: 1 destroyed.');
  expect(await t.everythingOnTheServer()).toEqual(before);
  expect(JSON.parse(t.ws.state()).resources).toEqual([]);
}

/** Imports the key back (both ways); leaves it in the state as declared. */
function importsTheInstallation(t: ProviderInstallation): void {
  const key = t.current();
  const json = JSON.parse(t.ws.synthesized.at(-1)!);
  const args = Object.fromEntries(Object.entries(json.resource.masterkey_key.master_key_act).filter(([k]) => k !== '//' && k !== 'provider'));
  expect(t.terraform(['import', ADDRESS, JSON.stringify(args)])).toContain('Import successful!');
  const shown = t.terraform(['state', 'show', ADDRESS]);
  expect(shown).toMatch(new RegExp(`fingerprint\\s+= "${key.fingerprint}"`));
  expect(shown).toMatch(new RegExp(`database_generation\\s+= ${t.generation}`));
  expect(t.terraform(['plan'])).not.toMatch(/will be (updated|created|destroyed|replaced)/);
  t.terraform(['state', 'rm', ADDRESS]);
  // The short id names only the key and its config files: the other arguments of the configuration show as an update.
  const id = `act:${t.primary},${t.node2}`;
  t.declare(t.generation, {}, (k) => k.key!.importFrom(id));
  const plan = t.terraform(['plan']);
  expect(plan).toContain(`# (imported from "${id}")`);
  expect(plan).toMatch(new RegExp(`  fingerprint\\s+= "${key.fingerprint}"`));
  expect(plan).toContain('Plan: 1 to import, 0 to add, 1 to change, 0 to destroy.');
  t.terraform(['apply', '-auto-approve']);
  t.declare(t.generation);
  t.expectNoChanges();
}

/**
 * terraform killed with -9 in the stop hook: nothing changed, the next plan
 * stops, `master-key recover` undoes it. The provider killed right after
 * COMMIT: recover finishes the rotation (generation + 1), which is what the
 * configuration declares: the resource has nothing left to do, and an apply
 * records the new key (the construct's output shows it).
 */
async function losesNothingWhenKilled(t: ProviderInstallation): Promise<void> {
  const key = t.current();
  const from = t.generation;
  const ready = join(t.ws.dir, 'stop-hook-ready');
  const go = join(t.ws.dir, 'stop-hook-go');
  t.declare(from + 1, { stopCommand: `touch '${ready}'; while [ ! -e '${go}' ]; do sleep 0.1; done`, healthCommand: 'true', startCommand: 'true' });
  const before = await dbSnapshot(t.url);
  const tf = t.ws.start(['apply', '-auto-approve'], t.env);
  const exited = new Promise((r) => tf.once('exit', r));
  let killed: number[] = [];
  try {
    await waitFor('the stop hook', () => existsSync(ready));
    t.processArgs.push(allCommandLines());
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
  expect(await dbSnapshot(t.url)).toBe(before);
  const blocked = t.try(['plan']);
  expect(blocked.code).toBe(1);
  expect(blocked.out).toContain('An interrupted rotation');
  expect(blocked.out).toContain('ROTATION_INTERRUPTED');
  const undone = t.cli(['recover']);
  expect(undone.code).toBe(0);
  expect(undone.stdout + undone.stderr).toContain('Undid the interrupted rotation');
  await t.expectAllOpenWith(t.current());
  expect(t.current().equals(key)).toBe(true);

  // Killed right after COMMIT (the provider dies with terraform still running): recover finishes the rotation.
  t.declare(from + 1);
  const crashed = t.try(['apply', '-auto-approve'], { MASTER_KEY_TEST_KILL_AT: 'committed' });
  expect(crashed.code).toBe(1);
  const finished = t.cli(['recover']);
  expect(finished.stdout + finished.stderr).toContain('Finished the interrupted rotation');
  const rotated = t.current();
  t.keys.push(rotated);
  expect(rotated.equals(key)).toBe(false);
  await t.expectAllOpenWith(rotated);
  // The database is where the configuration declares it now: the resource has nothing left to do; the output shows the new key.
  const plan = t.terraform(['plan', '-detailed-exitcode'], 2);
  expect(plan).toContain('Changes to Outputs:');
  expect(plan).toMatch(new RegExp(`~ fingerprint\\s+= "${key.fingerprint}" -> "${rotated.fingerprint}"`));
  expect(plan).not.toContain(`# ${ADDRESS} will be`);
  t.terraform(['apply', '-auto-approve']);
  t.expectNoChanges();
  expect(t.stateAttributes()).toEqual(expect.objectContaining({ generation: from + 1, database_generation: from + 1, fingerprint: rotated.fingerprint }));
}

/** How many values the scenario below seals under a stranger's key: more than a diagnostic lists. */
const STRANGERS = 25;

/**
 * Values sealed under another key (one changed, the others written by "a
 * server"): with verifySecrets, an error at plan whether a rotation is due
 * or not, listing the first 20 by place and how many there are; without it,
 * a rotation's apply refuses with the same list and taints nothing. They
 * are put back as they were.
 */
async function refusesValuesThatDoNotOpen(t: ProviderInstallation): Promise<void> {
  const declared = t.generation;
  const stranger = MasterKey.generate();
  const [row] = await withTestSql(t.url, (db) => db.query<{ id: string | number; v: string }>('SELECT id, access_token AS v FROM git_credentials ORDER BY id LIMIT 1'));
  await withTestSql(t.url, (db) => db.query('UPDATE git_credentials SET access_token = $2 WHERE id = $1', [row.id, actCodec().seal(stranger, Buffer.from('sealed under another key'))]));
  const added: string[] = [];
  try {
    for (let i = 1; i < STRANGERS; i++) added.push(await t.store.addSecret(t.url, stranger, `stranger ${i}`));
    const before = await t.everythingOnTheServer();
    const listsThem = (out: string) => {
      expect(out).toMatch(new RegExp(`- git_credentials\\.access_token id=${row.id} \\(git access token\\): SEALED_[A-Z_]+\\n`));
      expect(out).toContain(`… and ${STRANGERS - 20} more (${STRANGERS} in all).`);
      expect(out).toContain('Error code UNDECRYPTABLE_ROWS');
      expect(out).not.toContain('listed above');
    };

    t.declare(declared, { verifySecrets: true });
    const noRotation = t.try(['plan', '-detailed-exitcode']);
    expect(noRotation.code).toBe(1);
    expect(noRotation.out).toContain(`Error: ${STRANGERS} stored value(s) do not open with the database's key ${t.current().fingerprint}`);
    listsThem(noRotation.out);

    t.declare(declared + 1, { verifySecrets: true });
    const rotation = t.try(['plan']);
    expect(rotation.code).toBe(1);
    expect(rotation.out).toContain(`Error: ${STRANGERS} stored value(s) do not open with the old key ${t.current().fingerprint}; restore or fix them before rotating.`);
    listsThem(rotation.out);

    t.declare(declared + 1);
    t.terraform(['plan', '-detailed-exitcode'], 2);
    const applied = t.try(['apply', '-auto-approve']);
    expect(applied.code).toBe(1);
    expect(applied.out).toContain(`${STRANGERS} stored value(s) do not open with the old key`);
    listsThem(applied.out);
    expect(await t.everythingOnTheServer()).toEqual(before);
    const again = t.terraform(['plan']);
    expect(again).toContain(`# ${ADDRESS} will be updated in-place`);
    expect(again).not.toMatch(/tainted|must be replaced/);
  } finally {
    for (const place of added) await t.store.removeSecretAt(t.url, place);
    await withTestSql(t.url, (db) => db.query('UPDATE git_credentials SET access_token = $2 WHERE id = $1', [row.id, row.v]));
  }
  t.declare(declared);
  t.expectNoChanges();
}

/** masterkey_status with a postcondition: passes while the key is young enough, fails the plan once it is not. */
function statusFailsThePlanWhenOverdue(t: ProviderInstallation): void {
  const declared = t.generation;
  const status = (maxAgeDays: number) => (k: MasterKeyConstruct) =>
    masterkeyStatus(k, 'status', {
      configFiles: [t.primary, t.node2],
      maxAgeDays,
      lifecycle: { postcondition: [{ condition: '${!self.overdue && self.nodes_in_sync}', errorMessage: 'The ACT master key is overdue or a node is out of step: rotate it.' }] },
    });
  t.declare(declared, {}, status(365));
  t.expectNoChanges();
  t.declare(declared, {}, status(0.00001)); // under a second: the key is older than that by now
  const overdue = t.try(['plan']);
  expect(overdue.code).toBe(1);
  expect(overdue.out).toContain('The ACT master key is overdue or a node is out of step: rotate it.');
  t.declare(declared);
}

/**
 * A pipeline's status check on a config file that names its database in
 * ACT_DATABASE_URL (a SQLite path relative to the file's directory, or a
 * PostgreSQL URL), with no database_url_env: the provider finds the
 * database as the CLI does, with no DATABASE_URL in terraform's
 * environment; with a DATABASE_URL naming another database it stops,
 * naming the two arguments to choose from. In a workspace of its own,
 * removed after (its transcript joins the leak scan).
 */
function findsTheDatabaseThroughActDatabaseUrl(t: ProviderInstallation): void {
  const config = join(t.dir, 'act-url.env');
  const url = t.store.kind === 'sqlite' ? `sqlite:${relative(t.dir, sqliteFile(t.url))}` : t.url;
  writeFileSync(config, `${readFileSync(t.primary, 'utf8')}ACT_DATABASE_URL=${url}\n`, { mode: 0o600 });
  const ws = new TfWorkspace('status');
  ws.create();
  try {
    ws.synth((stack) => {
      ensureMasterkeyProvider(stack);
      const status = masterkeyStatus(stack, 'status', { configFiles: [config] });
      new TerraformOutput(stack, 'fingerprint', { value: status.fingerprint });
    });
    ws.ok(['init']);
    expect(ws.ok(['plan'], { DATABASE_URL: undefined })).toMatch(new RegExp(`\\+ fingerprint = "${t.current().fingerprint}"`));
    const other = ws.tf(['plan'], { DATABASE_URL: `sqlite:${join(t.dir, 'another.db')}` });
    expect(other.code).toBe(1);
    expect(other.out).toContain(`${config} sets ACT_DATABASE_URL and the environment sets DATABASE_URL to a different database; choose one with database_url_entry = "ACT_DATABASE_URL" or database_url_env = "DATABASE_URL".`);
  } finally {
    t.ws.transcript.push(...ws.transcript);
    ws.remove();
    rmSync(config, { force: true });
  }
}

/** Every key the installation had, and the database password, appear nowhere terraform wrote or printed, nor in any process's arguments. */
function leaksNoKeyNorPassword(t: ProviderInstallation): void {
  t.terraform(['plan', '-out=final.tfplan']);
  const planJson = t.terraform(['show', '-json', 'final.tfplan']);
  const stateJson = t.terraform(['show', '-json']);
  const haystack = [t.ws.everything(), planJson, stateJson, ...t.processArgs].join('\n');
  expect(t.keys.length).toBeGreaterThanOrEqual(5);
  expect(haystack).toContain('configured automatic mTLS');
  expect(keyLeaks(haystack, t.keys)).toEqual([]);
  const password = decodeURIComponent(new URL(t.url).password);
  if (t.store.kind === 'postgres') expect(password).not.toBe('');
  if (password) expect(haystack).not.toContain(password);
  expect(haystack).toContain(t.current().fingerprint);
}

export const PROVIDER_SCENARIOS: readonly ProviderScenario[] = [
  { title: 'inits offline from the implicit local mirror and records the provider in .terraform.lock.hcl', run: initsOfflineFromTheLocalMirror },
  { title: 'plans the key at its current generation with its fingerprint and secrets_by_kind; apply changes nothing; the next plan has no changes', run: plansTheKeyAsItIs },
  {
    title: 'a generation bump plans an in-place update (fingerprint known after apply, counts known now); apply rotates every secret and node; the next plan has no changes',
    run: rotatesOnAGenerationBump,
  },
  {
    title: 'without backup_recipients a rotation plans with a cleartext-backup warning; with an age recipient and backup_retention the warning is gone, apply seals the backup (age opens it) and retires the older ones',
    run: sealsAndRetiresBackups,
  },
  {
    title: 'a secret written between a saved plan and its apply: apply refuses with PLAN_STALE and changes nothing; the next plan counts it and its apply rotates it',
    run: refusesASavedPlanMadeStaleByANewSecret,
  },
  {
    title: 'a rotation by hand outside terraform, with no output of the fingerprint: the resource plans generation N+1 -> N (exit 2) with a warning to declare it; apply refuses and changes nothing',
    run: plansAChangeForARotationByHand,
  },
  { title: "a node's config edited by hand shows nodes_in_sync = false, and apply sets the node back to the database's key", run: setsAnOutOfStepNodeBack },
  { title: 'a wrong key in the primary config is a plan-time error "Old master key incorrect" and nothing changes', run: refusesAWrongKeyAtPlan },
  { title: 'destroy only forgets: database, config files, backups and reports stay byte for byte', run: destroyOnlyForgets },
  { title: 'imports the installation with `terraform import` and with an import block', run: importsTheInstallation },
  { title: 'kill -9 of terraform during apply, then `master-key recover`, loses nothing; a pending rotation is a plan-time error until then', run: losesNothingWhenKilled },
  {
    title: 'stored values that do not open: with verifySecrets a plan-time error (rotation due or not) listing the first 20 and the count; without it the same list at apply, which taints nothing',
    run: refusesValuesThatDoNotOpen,
  },
  { title: 'masterkey_status fails the plan through a postcondition once the key is older than max_age_days', run: statusFailsThePlanWhenOverdue },
  {
    title: 'with neither database_url_env nor database_url_entry, the database is the ACT_DATABASE_URL of the primary config (as the CLI finds it); a DATABASE_URL naming another is refused',
    run: findsTheDatabaseThroughActDatabaseUrl,
  },
  { title: 'no key and no database password in state, plan JSON, trace logs, outputs or any process arguments', run: leaksNoKeyNorPassword },
];
