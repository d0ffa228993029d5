/**
 * What the provider's terraform scenarios share (test/support/provider-scenarios.ts):
 * an ACT installation with two nodes on one store, a terraform workspace
 * whose stack declares its key through the `MasterKey` construct with
 * `resourceType: 'provider'`, the CLI beside it, every key the installation
 * has had (for the leak scan), and the helpers the scenarios speak in.
 */
import { copyFileSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MasterKey as MasterKeyConstruct, MasterKeyProps, RotationResourceType } from '../../constructs';
import { MasterKey, parseKey } from '../../src/crypto/key';
import { CliResult, Scenario, actScenario, dbSnapshot, keyLine, readPlaintexts } from './scenario';
import { StoreFixture } from './stores';
import { TfWorkspace } from './terraform';

/** The resource's address in the synthesized stack. */
export const ADDRESS = 'masterkey_key.master_key_act';

export class ProviderInstallation {
  readonly ws = new TfWorkspace('keys');
  /** Every key the installation has had, oldest first (the leak scan looks for each). */
  readonly keys: MasterKey[] = [];
  /** Every process's command line, sampled while a rotation ran. */
  readonly processArgs: string[] = [];
  /** The secrets per kind, as the tool's own full scan counted them at the start. */
  byKind: Record<string, number> = {};
  /** The generation the stack declares now (set by `declare`). */
  generation = 0;
  private scn?: Scenario;

  constructor(readonly store: StoreFixture) {}

  get scenario(): Scenario {
    if (!this.scn) throw new Error('the installation is not set up yet');
    return this.scn;
  }
  get dir(): string {
    return this.scenario.dir;
  }
  get url(): string {
    return this.scenario.url;
  }
  /** The primary node's config file. */
  get primary(): string {
    return this.scenario.configPath;
  }
  /** The second node's config file. */
  get node2(): string {
    return join(this.dir, 'node2.env');
  }
  /** Terraform's environment: the database URL in DATABASE_URL, as the construct declares it. */
  get env(): Record<string, string> {
    return { DATABASE_URL: this.url };
  }
  get backupDir(): string {
    return join(this.dir, 'backups');
  }
  get reportDir(): string {
    return join(this.dir, 'reports');
  }

  async setUp(): Promise<void> {
    this.ws.create();
    this.scn = await actScenario({ perKind: 3, store: this.store });
    copyFileSync(this.primary, this.node2);
    this.keys.push(this.scn.key);
    this.byKind = JSON.parse(this.cli(['plan', '--generation', '99', '--json']).stdout).secrets.byKind;
  }

  async tearDown(): Promise<void> {
    if (this.scn) {
      await this.store.drop(this.scn.url);
      rmSync(this.scn.dir, { recursive: true, force: true });
    }
    this.ws.remove();
  }

  /** The construct's props: both nodes, a 90-day policy, backups and reports in the installation's directory. */
  props(generation: number, extra: Partial<MasterKeyProps> = {}): MasterKeyProps {
    return {
      name: 'act',
      generation,
      rotationPolicy: { periodDays: 90 },
      configFiles: [this.primary, this.node2],
      backupDir: this.backupDir,
      reportDir: this.reportDir,
      resourceType: RotationResourceType.PROVIDER,
      ...extra,
    };
  }

  /** Synthesizes the stack declaring the key at `generation` (and whatever `more` adds to the construct). */
  declare(generation: number, extra: Partial<MasterKeyProps> = {}, more?: (k: MasterKeyConstruct) => void): void {
    this.generation = generation;
    this.ws.synth((stack) => {
      const k = new MasterKeyConstruct(stack, 'master-key', this.props(generation, extra));
      more?.(k);
    });
  }

  /** Runs terraform and fails unless it exits with `code`; its output. */
  terraform(args: readonly string[], code = 0, env: Record<string, string | undefined> = {}): string {
    return this.ws.ok(args, { ...this.env, ...env }, code);
  }

  /** Runs terraform whatever it exits with. */
  try(args: readonly string[], env: Record<string, string | undefined> = {}) {
    return this.ws.tf(args, { ...this.env, ...env });
  }

  /** `terraform plan -detailed-exitcode` expecting no changes. */
  expectNoChanges(): void {
    expect(this.terraform(['plan', '-detailed-exitcode'], 0)).toContain('No changes.');
  }

  /** The CLI on both nodes, with the backup and report directories for the commands that take them (recover takes neither). */
  cli(args: string[]): CliResult {
    const dirs = args[0] === 'recover' ? [] : ['--backup-dir', this.backupDir, '--report-dir', this.reportDir];
    return this.scenario.cli([...args, '--config', this.primary, '--config', this.node2, ...dirs]);
  }

  /** The key in the primary config now. */
  current(): MasterKey {
    return this.scenario.configKey();
  }

  /** The key in the second node's config now. */
  node2Key(): MasterKey {
    return parseKey(/ACT_MASTER_KEY=(\w+)/.exec(readFileSync(this.node2, 'utf8'))![1]);
  }

  /** Puts another key into a node's config file (a hand edit). */
  editKey(path: string, key: MasterKey): void {
    writeFileSync(path, readFileSync(path, 'utf8').replace(/ACT_MASTER_KEY=\w+/, keyLine(key)));
  }

  /** Every stored value opens with `key` to the plaintext it was sealed from. */
  async expectAllOpenWith(key: MasterKey): Promise<void> {
    expect(await readPlaintexts(this.url, key, this.scenario.plaintexts.keys())).toEqual(this.scenario.plaintexts);
  }

  /** The database's rows, both config files, and the backup and report directories' listings. */
  async everythingOnTheServer(): Promise<string[]> {
    const list = (d: string) => {
      try {
        return readdirSync(d).join();
      } catch {
        return '(none)';
      }
    };
    return [await dbSnapshot(this.url), ...[this.primary, this.node2].map((p) => readFileSync(p).toString('hex')), list(this.backupDir), list(this.reportDir)];
  }

  /** The resource's attributes in the state. */
  stateAttributes(): Record<string, unknown> {
    return JSON.parse(this.ws.state()).resources[0].instances[0].attributes;
  }
}
