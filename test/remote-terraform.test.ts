/**
 * ACT on SQLite on another host, through terraform and the provider: the
 * `MasterKey` construct (resourceType provider) declares the node as
 * `ssh://root@127.0.0.1:<port>/…/etc/act/act.env` with its `ssh` settings
 * (the names of terraform's connection block), and a `masterkey_status` data
 * source reads the same node. Terraform runs on the runner (this machine),
 * the host is a real OpenSSH server. The plan shows the counts by kind,
 * apply rotates there, a second plan shows no changes, an independent
 * reader (node:crypto) opens every value with the key read back from the
 * host's act.env, the report is copied back into local_report_dir, and
 * import adopts the installation from an id with the ssh:// node. No
 * key appears in any process's command line (runner or host) while apply
 * runs, nor in the stack, state, plan JSON, terraform's trace log, the
 * reports or the host's sshd log.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TerraformOutput } from 'cdktf';
import { MasterKey as MasterKeyConstruct, MasterKeyProps, RotationResourceType, masterkeyStatus } from '../constructs';
import { MasterKey } from '../src/crypto/key';
import { scratchDir } from '../scripts/scratch';
import { RemoteAct, notOpening, remoteAct, sampleCommandLines } from './support/remote-act';
import { keyLeaks } from './support/scenario';
import { SshdFleet, describeWithSshd, startFleet, stopFleet } from './support/sshd';
import { SQLITE_WAL } from './support/stores';
import { TfResult, TfWorkspace, describeTerraform } from './support/terraform';

jest.setTimeout(600_000);

const ADDRESS = 'masterkey_key.master_key_act';
let fleet: SshdFleet;
let act: RemoteAct;
const ws = new TfWorkspace('remote');

beforeAll(async () => {
  fleet = await startFleet(1);
  act = await remoteAct(fleet, { store: SQLITE_WAL, perKind: 3, runnerDir: scratchDir('mk-runner-') });
  ws.create();
}, 120_000);
afterAll(async () => {
  ws.remove();
  await stopFleet(fleet);
});

/** The construct's props: the node on the host, reached with the fleet's known_hosts and client key. */
function props(generation: number): MasterKeyProps {
  const root = fleet.hosts[0].root;
  return {
    name: 'act',
    generation,
    rotationPolicy: { periodDays: 365 },
    configFiles: [act.addresses[0]],
    databaseUrlEntry: 'ACT_DATABASE_URL',
    backupDir: join(root, 'var', 'backups', 'act'),
    resourceType: RotationResourceType.PROVIDER,
    ssh: { knownHosts: fleet.knownHosts, privateKeyFile: fleet.clientKey, agent: false, timeout: '20s' },
    localReportDir: join(ws.dir, 'reports'),
  };
}

function declare(generation: number): void {
  ws.synth((stack) => {
    new MasterKeyConstruct(stack, 'master-key', props(generation));
    const status = masterkeyStatus(stack, 'status', {
      configFiles: [act.addresses[0]],
      databaseUrlEntry: 'ACT_DATABASE_URL',
      ssh: { known_hosts: fleet.knownHosts, private_key_file: fleet.clientKey, agent: 'false' },
    });
    new TerraformOutput(stack, 'status_in_sync', { value: status.nodesInSync });
  });
}

/** Terraform without blocking this process (so that the command-line sampler runs meanwhile). */
async function tfAsync(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<TfResult> {
  const child = ws.start(args, env);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? -1)));
  ws.transcript.push(`$ terraform ${args.join(' ')}\n${out}`);
  return { code, out };
}

describeWithSshd('ACT on SQLite on another host, through terraform and the provider over SSH', () => {
  describeTerraform('terraform', () => {
    it('plans counts by kind, apply rotates on the host, the next plan has no changes, import adopts it; no key anywhere terraform or the host wrote', async () => {
      const keys: MasterKey[] = [act.key];
      const facts = JSON.parse(act.cli(['plan', '--generation', '99', '--json']).stdout) as { generation: number; secrets: { byKind: Record<string, number> } };
      const byKind = facts.secrets.byKind;
      expect(Object.values(byKind).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
      const status = JSON.parse(act.cli(['status', '--json']).stdout) as { generation: number };
      const from = status.generation;

      // The key as it is: read over SSH, nothing changes on apply.
      declare(from);
      ws.ok(['init']);
      const first = ws.ok(['apply', '-auto-approve']);
      expect(first).toContain('Apply complete!');
      expect(act.nodeKey().equals(act.key)).toBe(true);
      expect(JSON.parse(ws.ok(['output', '-json', 'status_in_sync']))).toBe(true);

      // A generation bump: the plan shows the counts by kind, known at plan time.
      declare(from + 1);
      const plan = ws.ok(['plan', '-detailed-exitcode'], {}, 2);
      expect(plan).toContain(`# ${ADDRESS} will be updated in-place`);
      expect(plan).toMatch(new RegExp(`~ fingerprint\\s+= "${act.key.fingerprint}" -> \\(known after apply\\)`));
      ws.ok(['plan', '-out=rotate.tfplan']);
      const planJson = ws.ok(['show', '-json', 'rotate.tfplan']);
      const change = (JSON.parse(planJson) as { resource_changes: Array<{ address: string; change: { after: { secrets_by_kind: Record<string, number> } } }> }).resource_changes.find((c) => c.address === ADDRESS)!;
      expect(change.change.after.secrets_by_kind).toEqual(byKind);

      // Apply rotates on the host; every process's command line is sampled meanwhile.
      const sampler = sampleCommandLines();
      let applied: TfResult;
      let lines: string[];
      try {
        applied = await tfAsync(['apply', 'rotate.tfplan'], { TF_LOG: 'trace', TF_LOG_PATH: join(ws.dir, 'trace.log') });
      } finally {
        lines = await sampler.stop();
      }
      expect(applied.out).toContain('Apply complete! Resources: 0 added, 1 changed, 0 destroyed.');
      const key = act.nodeKey();
      keys.push(key);
      expect(key.equals(act.key)).toBe(false);
      // An independent reader (node:crypto) opens every value with the key read back from the host's act.env.
      expect(await notOpening(act.url, key.toHex(), act.plaintexts)).toEqual([]);
      const state = JSON.parse(ws.ok(['show', '-json'])) as { values: { root_module: { resources: Array<{ address: string; values: Record<string, unknown> }> } } };
      const resource = state.values.root_module.resources.find((r) => r.address === ADDRESS)!;
      expect(resource.values).toMatchObject({ fingerprint: key.fingerprint, database_generation: from + 1, nodes_in_sync: true });
      // The report is written on the host and copied back into local_report_dir (last_report names the copy).
      const localReports = join(ws.dir, 'reports');
      expect(resource.values.last_report).toMatch(new RegExp(`^${localReports}/.+\\.md$`));
      const copy = readFileSync(resource.values.last_report as string, 'utf8');
      expect(copy).toContain(key.fingerprint);
      expect(copy).toContain(`root@127.0.0.1:${fleet.hosts[0].port}`);
      const hostReports = join(fleet.hosts[0].root, 'var', 'backups', 'act');
      const onHost = readdirSync(hostReports).filter((f) => f.endsWith('.md'));
      expect(onHost.map((f) => readFileSync(join(hostReports, f), 'utf8'))).toContain(copy);

      expect(ws.ok(['plan', '-detailed-exitcode'])).toContain('No changes.');

      // Import: the installation adopted from an id naming the node on the host and its ssh settings.
      ws.ok(['state', 'rm', ADDRESS]);
      const id = JSON.stringify({ name: 'act', config_files: [act.addresses[0]], database_url_entry: 'ACT_DATABASE_URL', ssh: { known_hosts: fleet.knownHosts, private_key_file: fleet.clientKey, agent: 'false' } });
      expect(ws.ok(['import', ADDRESS, id])).toContain('Import successful!');
      const imported = (JSON.parse(ws.ok(['show', '-json'])) as typeof state).values.root_module.resources.find((r) => r.address === ADDRESS)!;
      expect(imported.values).toMatchObject({ fingerprint: key.fingerprint, generation: from + 1, nodes_in_sync: true, config_files: [act.addresses[0]] });
      expect(act.nodeKey().equals(key)).toBe(true);

      // The leak scan: command lines (runner and host), stack, state, plan JSON, trace log, reports, sshd log.
      const reports = [localReports, hostReports].flatMap((d) => readdirSync(d).filter((f) => /\.(md|json)$/.test(f)).map((f) => readFileSync(join(d, f), 'utf8')));
      const trace = readFileSync(join(ws.dir, 'trace.log'), 'utf8');
      expect(trace).toContain('masterkey');
      expect(lines.some((l) => / remote$/.test(l))).toBe(true);
      const haystack = [ws.everything(), planJson, ws.ok(['show', '-json']), trace, ...reports, fleet.hosts[0].log(), ...lines].join('\n');
      expect(keyLeaks(haystack, keys)).toEqual([]);
    });
  });
});
