/**
 * Key material scan: full rotations (human and --json output, with hooks so
 * there are child processes) while /proc/<pid>/cmdline of the CLI and all its
 * descendants and PostgreSQL's view of the session (pg_stat_activity) are
 * sampled; then every artifact is scanned for both keys in hex (both cases)
 * and base64/base64url: stdout, stderr, reports, the backup's file names,
 * manifest and stored values, the history and canary rows, process
 * arguments, the queries PostgreSQL saw, and the output of plan, status,
 * verify, show and recover. Zero hits.
 *
 * Files that hold a key by design are not scanned but checked to hold it
 * (which also proves the scanner finds keys): the config files, the backup's
 * config copies (old key), the --new-key-file/--new-key-out files (new key).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { MasterKey } from '../src/crypto/key';
import { Installation, configKeys, createInstallation, runCli } from '../scripts/soak-harness';
import { freshDatabase, withTestClient } from './support/db';
import { keyLeaks } from './support/scenario';

/** Every file under dir (absolute paths). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name));
}

/** Pids of `root` and all its descendants, from /proc/<pid>/stat. */
function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended meanwhile
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) for (const [pid, ppid] of parent) if (ppid === tree[i]) tree.push(pid);
  return tree;
}

/** Samples process arguments of a running CLI (and its children) and the database's session view until stopped. */
class Sampler {
  readonly argv = new Set<string>();
  readonly queries = new Set<string>();
  samples = 0;
  private running = true;
  private loop: Promise<void> = Promise.resolve();

  start(pid: number, url: string): void {
    this.loop = withTestClient(url, async (c) => {
      while (this.running) {
        for (const p of processTree(pid)) {
          try {
            this.argv.add(readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' '));
          } catch {
            // gone
          }
        }
        const r = await c.query<{ q: string }>("SELECT coalesce(application_name, '') || ' | ' || coalesce(query, '') AS q FROM pg_stat_activity WHERE pid <> pg_backend_pid()");
        for (const row of r.rows) this.queries.add(row.q);
        this.samples++;
        await new Promise((res) => setTimeout(res, 5));
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

let inst: Installation;
const oldKeys: MasterKey[] = [];
const artifacts: Array<[string, string]> = [];
let sampler: Sampler;

beforeAll(async () => {
  inst = await createInstallation(await freshDatabase('leak'), { perKind: 2, nodes: 2 });
  oldKeys.push(configKeys(inst)[0] as MasterKey);
  sampler = new Sampler();
  // Rotation 1: human output, the new key from a file, hooks running child shells.
  const newKeyFile = join(inst.dir, 'new.key');
  const given = MasterKey.generate();
  writeFileSync(newKeyFile, given.toHex() + '\n', { mode: 0o600 });
  const hooks = ['--stop-command', 'sleep 0.3', '--start-command', 'sleep 0.2', '--health-command', 'true'];
  const r1 = await runCli(inst, ['apply', '--new-key-file', newKeyFile, '--new-key-out', join(inst.dir, 'out.key'), ...hooks], { onSpawn: (pid) => sampler.start(pid, inst.url) });
  await sampler.stop();
  expect(r1.code).toBe(0);
  artifacts.push(['apply stdout', r1.stdout], ['apply stderr', r1.stderr]);
  // Rotation 2: --json, the new key generated.
  const s2 = new Sampler();
  const r2 = await runCli(inst, ['apply', '--json', ...hooks], { onSpawn: (pid) => s2.start(pid, inst.url) });
  await s2.stop();
  expect(r2.code).toBe(0);
  artifacts.push(['apply --json stdout', r2.stdout], ['apply --json stderr', r2.stderr]);
  for (const a of s2.argv) sampler.argv.add(a);
  for (const q of s2.queries) sampler.queries.add(q);
  sampler.samples += s2.samples;
  oldKeys.push(given);
  // Every other command's output.
  for (const args of [['plan'], ['plan', '--json'], ['status'], ['status', '--json'], ['verify'], ['verify', '--json'], ['show'], ['recover', '--json']]) {
    const r = await runCli(inst, args);
    expect(r.code).toBe(0);
    artifacts.push([`${args.join(' ')} stdout`, r.stdout], [`${args.join(' ')} stderr`, r.stderr]);
  }
});

function allKeys(): MasterKey[] {
  return [...oldKeys, configKeys(inst)[0] as MasterKey];
}

function scan(items: ReadonlyArray<[string, string]>): string[] {
  return items.flatMap(([what, text]) => keyLeaks(text, allKeys()).map((hit) => `${what}: ${hit}`));
}

it('the scanner finds keys where they belong (configs, key files, backup config copies)', () => {
  const [k0, k1, k2] = allKeys();
  expect(keyLeaks(readFileSync(inst.configs[0], 'utf8'), [k2])).not.toEqual([]);
  expect(keyLeaks(readFileSync(join(inst.dir, 'out.key'), 'utf8'), [k1])).not.toEqual([]);
  const copies = filesUnder(inst.backupDir).filter((f) => /\/config-\d+-/.test(f));
  expect(copies.length).toBe(4);
  expect(keyLeaks(copies.map((f) => readFileSync(f, 'utf8')).join('\n'), [k0, k1])).not.toEqual([]);
});

it('no key in stdout or stderr of apply, plan, status, verify, show and recover', () => {
  expect(artifacts.length).toBeGreaterThan(10);
  expect(scan(artifacts)).toEqual([]);
});

it('no key in the reports', () => {
  const reports = filesUnder(inst.reportDir);
  expect(reports.filter((f) => f.endsWith('.md'))).toHaveLength(2);
  expect(reports.filter((f) => f.endsWith('.json'))).toHaveLength(2);
  expect(scan(reports.map((f) => [f, readFileSync(f, 'utf8')]))).toEqual([]);
});

it("no key in the backups' listings, manifests or stored values", () => {
  const files = filesUnder(inst.backupDir);
  expect(files.length).toBeGreaterThanOrEqual(8);
  const listing: [string, string] = ['backup listing', files.map((f) => relative(inst.backupDir, f)).join('\n')];
  const contents = files.filter((f) => !/\/config-\d+-/.test(f)).map((f): [string, string] => [f, readFileSync(f, 'utf8')]);
  expect(contents.some(([f]) => f.endsWith('secrets.jsonl'))).toBe(true);
  expect(scan([listing, ...contents])).toEqual([]);
});

it('no key in the history or canary rows', async () => {
  const rows = await withTestClient(inst.url, async (c) => {
    const h = await c.query<{ j: string }>('SELECT row_to_json(h)::text AS j FROM master_key.history h');
    const k = await c.query<{ j: string }>('SELECT row_to_json(k)::text AS j FROM master_key.canary k');
    return [...h.rows, ...k.rows].map((r): [string, string] => ['database row', r.j]);
  });
  expect(rows).toHaveLength(3);
  expect(scan(rows)).toEqual([]);
});

it('no key in any process argument (the CLI and its hook shells, from /proc) or in any query PostgreSQL saw', () => {
  expect(sampler.samples).toBeGreaterThan(20);
  const argv = [...sampler.argv];
  expect(argv.some((a) => a.includes('apply'))).toBe(true);
  expect(argv.some((a) => a.includes('sleep 0.3'))).toBe(true);
  const queries = [...sampler.queries];
  expect(queries.some((q) => q.startsWith('master-key apply'))).toBe(true);
  expect(scan([...argv.map((a): [string, string] => ['argv', a]), ...queries.map((q): [string, string] => ['pg_stat_activity', q])])).toEqual([]);
});
