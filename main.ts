/**
 * The example app: one stack with one `MasterKey`, configured from the
 * environment (MK_* variables), else from `cdktf.json` context, else from
 * defaults that keep everything under `.mk-work/` in this checkout (or
 * `MK_WORK_DIR`). It runs on cdktf or on CDK Terrain (cdktn): `MK_CDK`
 * (or the context key `cdk`) picks one, else the one installed (cdktf when
 * both are).
 *
 * The key is this package's own terraform provider (`masterkey_key`), which
 * reads the database and the config files at plan time; `MK_RESOURCE=terraform_data`
 * (or the context key `resourceType`) declares it as `terraform_data` +
 * `local-exec` instead. Run as a program (`node dist/main.js`, as the cdktf
 * CLI does), it synthesizes and installs the provider into the implicit
 * local mirror of every stack that uses it, so an offline `terraform init`
 * there finds it.
 *
 * | setting          | environment          | cdktf.json context  | default                         |
 * | ---------------- | -------------------- | ------------------- | ------------------------------- |
 * | stack name       | MK_STACK             | stackName           | master-key                      |
 * | key name         | MK_NAME              | keyLabel            | act                             |
 * | config file(s)   | MK_CONFIG (a,b,...)  | configPath          | <root>/.mk-work/act.env         |
 * | config format    | MK_FORMAT            | configFormat        | dotenv                          |
 * | key entry        | MK_KEY_NAME          | keyName             | ACT_MASTER_KEY                  |
 * | generation       | MK_GENERATION        | generation          | 1                               |
 * | policy (days)    | MK_POLICY_DAYS       | rotationPeriodDays  | 90 (`none` for no schedule)     |
 * | inventory        | MK_INVENTORY         | inventory           | act (or an inventory JSON path) |
 * | backup dir       | MK_BACKUP_DIR        | backupDir           | <root>/.mk-work/backups         |
 * | report dir       | MK_REPORT_DIR        | reportDir           | <root>/.mk-work/reports         |
 * | backup recipients| MK_BACKUP_RECIPIENTS (a,b,...) | backupRecipients | none: cleartext backups (a policy warning) |
 * | URL variable     | MK_DATABASE_URL_ENV  | databaseUrlEnv      | DATABASE_URL                    |
 * | resource type    | MK_RESOURCE          | resourceType        | provider                        |
 * | state file       | MK_STATE_FILE        | stateFile           | <cwd>/terraform.<stack>.tfstate |
 * | policy evaluated | MK_POLICY_AT         | policyEvaluatedAt   | the time of synth               |
 * | library          | MK_CDK               | cdk                 | cdktf if installed, else cdktn  |
 * | ssh known_hosts  | MK_KNOWN_HOSTS       | knownHosts          | ~/.ssh/known_hosts              |
 * | ssh host key pin | MK_HOST_KEY          | hostKey             | none (known_hosts decides)      |
 * | ssh private key  | MK_PRIVATE_KEY_FILE  | privateKeyFile      | the agent, then ~/.ssh/id_*     |
 */
import type { App, TerraformStack } from 'cdktf';
import type { IConstruct } from 'constructs';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MasterKey, MasterKeyInventory, MasterKeyProps } from './constructs';
import { chooseFramework, frameworkOf } from './constructs/framework';
import { MasterKeyError } from './src/errors';
import { PROVIDER_SOURCE } from './src/provider/install';
import { installArchive } from './src/provider/release';

/** The project root (main.ts sits there; main.js sits in dist/). */
export const PROJECT_ROOT = resolve(__dirname, __dirname.endsWith(`${'/'}dist`) ? '..' : '.');

/** Each setting: its environment variable and its cdktf.json context key. */
const SOURCES = {
  stackName: ['MK_STACK', 'stackName'],
  name: ['MK_NAME', 'keyLabel'],
  configPath: ['MK_CONFIG', 'configPath'],
  configFormat: ['MK_FORMAT', 'configFormat'],
  keyName: ['MK_KEY_NAME', 'keyName'],
  generation: ['MK_GENERATION', 'generation'],
  rotationPeriodDays: ['MK_POLICY_DAYS', 'rotationPeriodDays'],
  inventory: ['MK_INVENTORY', 'inventory'],
  backupDir: ['MK_BACKUP_DIR', 'backupDir'],
  reportDir: ['MK_REPORT_DIR', 'reportDir'],
  backupRecipients: ['MK_BACKUP_RECIPIENTS', 'backupRecipients'],
  databaseUrlEnv: ['MK_DATABASE_URL_ENV', 'databaseUrlEnv'],
  resourceType: ['MK_RESOURCE', 'resourceType'],
  stateFile: ['MK_STATE_FILE', 'stateFile'],
  policyEvaluatedAt: ['MK_POLICY_AT', 'policyEvaluatedAt'],
  knownHosts: ['MK_KNOWN_HOSTS', 'knownHosts'],
  hostKey: ['MK_HOST_KEY', 'hostKey'],
  privateKeyFile: ['MK_PRIVATE_KEY_FILE', 'privateKeyFile'],
} as const;

/** The example stack's settings. */
export interface ExampleSettings {
  readonly stackName: string;
  /** Where terraform keeps its local state; undefined for cdktf's default. */
  readonly stateFile?: string;
  readonly props: MasterKeyProps;
}

/**
 * Reads the example's settings: environment first, then context, then
 * defaults. Pure apart from loading a custom inventory file.
 */
export function exampleSettings(context: (key: string) => unknown, env: NodeJS.ProcessEnv, root: string = PROJECT_ROOT): ExampleSettings {
  const get = (s: keyof typeof SOURCES): string | undefined => {
    const [envName, ctxKey] = SOURCES[s];
    const v = env[envName] ?? context(ctxKey);
    return v === undefined || v === null || v === '' ? undefined : String(v);
  };
  const work = resolve(root, env.MK_WORK_DIR ?? '.mk-work');
  const generationText = get('generation') ?? '1';
  const generation = Number(generationText);
  if (!/^\d+$/.test(generationText)) {
    throw new MasterKeyError('USAGE', `The generation "${generationText}" (MK_GENERATION or cdktf.json "generation") is not a whole number; set it to the key generation, e.g. 1.`);
  }
  const policy = get('rotationPeriodDays') ?? '90';
  const evaluatedAt = get('policyEvaluatedAt');
  const inventory = get('inventory') ?? 'act';
  // Config files on other hosts (ssh://…): how they are reached (the agent at SSH_AUTH_SOCK by default).
  const ssh = Object.fromEntries((['knownHosts', 'hostKey', 'privateKeyFile'] as const).flatMap((k) => (get(k) === undefined ? [] : [[k, get(k)]])));
  return {
    stackName: get('stackName') ?? 'master-key',
    stateFile: get('stateFile'),
    props: {
      name: get('name') ?? 'act',
      generation,
      ...(policy === 'none' ? {} : { rotationPolicy: { periodDays: Number(policy), ...(evaluatedAt ? { evaluatedAt } : {}) } }),
      configFiles: (get('configPath') ?? resolve(work, 'act.env')).split(',').map((p) => p.trim()),
      configFormat: (get('configFormat') ?? 'dotenv') as MasterKeyProps['configFormat'],
      keyName: get('keyName'),
      databaseUrlEnv: get('databaseUrlEnv'),
      inventory: inventory === 'act' ? MasterKeyInventory.act() : MasterKeyInventory.fromFile(inventory),
      backupDir: get('backupDir') ?? resolve(work, 'backups'),
      reportDir: get('reportDir') ?? resolve(work, 'reports'),
      ...(get('backupRecipients') ? { backupRecipients: get('backupRecipients')!.split(',').map((r) => r.trim()) } : {}),
      resourceType: (get('resourceType') ?? 'provider') as MasterKeyProps['resourceType'],
      ...(Object.keys(ssh).length ? { ssh } : {}),
    },
  };
}

/** The example stack and its key. */
export interface ExampleStack {
  readonly stack: TerraformStack;
  readonly key: MasterKey;
}

/** Adds the example stack (one master key, optionally a local state file) to an app of either library. */
export function exampleStack(app: IConstruct, settings: ExampleSettings): ExampleStack {
  const { lib } = frameworkOf(app, 'The example app');
  const stack = new lib.TerraformStack(app, settings.stackName);
  if (settings.stateFile !== undefined) new lib.LocalBackend(stack, { path: resolve(settings.stateFile) });
  return { stack, key: new MasterKey(stack, 'master-key', settings.props) };
}

/** App options the example passes through. */
export interface ExampleAppOptions {
  readonly outdir?: string;
  readonly context?: Record<string, unknown>;
}

/** A new App of the library chosen by MK_CDK, the `cdk` context key, or what is installed. */
export function newApp(opts: ExampleAppOptions = {}, env: NodeJS.ProcessEnv = process.env): App {
  const fromCli = env.CDKTF_CONTEXT_JSON ? (JSON.parse(env.CDKTF_CONTEXT_JSON) as Record<string, unknown>) : {};
  const fw = chooseFramework(env.MK_CDK ?? ((opts.context?.cdk ?? fromCli.cdk) as string | undefined));
  return new fw.lib.App({ stackTraces: false, ...opts });
}

/** Builds the example app (context comes from cdktf.json through the App). */
export function buildApp(app: App = newApp(), env: NodeJS.ProcessEnv = process.env): App {
  exampleStack(app, exampleSettings((k) => app.node.tryGetContext(k), env));
  return app;
}

/** A synthesized stack as cdktf's manifest.json lists it. */
export interface ManifestStack {
  readonly name: string;
  readonly workingDirectory: string;
  readonly annotations?: ReadonlyArray<{ readonly constructPath: string; readonly level: string; readonly message: string }>;
}

/** The stacks synthesized into `outdir` (from its manifest.json). */
export function synthesizedStacks(outdir: string): ManifestStack[] {
  const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8')) as { stacks: Record<string, ManifestStack> };
  return Object.values(manifest.stacks);
}

/**
 * Installs the release archive of terraform-provider-masterkey into the
 * implicit local mirror (`terraform.d/plugins`) of every stack synthesized
 * into `outdir` that requires it, with its hashes in the stack's lock file,
 * so `terraform init` there finds it offline with no CLI configuration and
 * verifies it without a warning; the stacks' directories, for messages.
 */
export async function installProviderBesideStacks(outdir: string): Promise<string[]> {
  const dirs = synthesizedStacks(outdir).map((s) => join(outdir, s.workingDirectory));
  const using = dirs.filter((dir) => readFileSync(join(dir, 'cdk.tf.json'), 'utf8').includes(`"${PROVIDER_SOURCE}"`));
  for (const dir of using) await installArchive({ pluginsDir: join(dir, 'terraform.d', 'plugins'), workingDir: dir });
  return using;
}

if (require.main === module) {
  (async () => {
    const app = buildApp();
    app.synth();
    await installProviderBesideStacks(app.outdir);
  })().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = e instanceof MasterKeyError ? e.exitCode : 1;
  });
}
