/**
 * `npm run plan` / `npm run deploy`: synthesizes the example app (main.ts)
 * with the context from cdktf.json, prints the policy warnings, installs
 * terraform-provider-masterkey into the implicit local mirror of each stack
 * that uses it (so `terraform init` finds it offline, with no CLI
 * configuration), then runs `terraform init` and `terraform plan` or
 * `terraform apply` in the synthesized stack directory. Extra arguments go
 * to terraform (`npm run deploy -- -auto-approve`). The database URL is read
 * from the environment this runs in, never from the config.
 *
 * Before terraform runs, what could not work is refused (nothing started,
 * nothing tainted): no database URL in the environment or a missing config
 * file (for an apply; for a plan too when the provider declares the key,
 * since it reads both at plan time; a `terraform_data` plan only warns), and
 * an apply with no terminal to confirm on without -auto-approve. On a fresh
 * checkout `npm run dev-db` provides the database and the config file.
 *
 * Terraform runs with CHECKPOINT_DISABLE (no update check), with this
 * checkout's empty `.terraformrc` unless you have a CLI configuration of your
 * own (so no "Unable to open CLI configuration file" warning), and with
 * -no-color when its output is not a terminal.
 *
 * Usage: node dist/scripts/tf.js <plan|apply> [terraform args...]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { MasterKey, RotationResourceType } from '../constructs';
import { ManifestStack, buildApp, installProviderBesideStacks, newApp, PROJECT_ROOT, synthesizedStacks } from '../main';

/** A synth annotation as cdktf writes it to manifest.json. */
type ManifestAnnotation = NonNullable<ManifestStack['annotations']>[number];

/** What cdktf.json says: the output folder and the app's context. */
export function readCdktfJson(root: string): { output: string; context: Record<string, unknown> } {
  const file = join(root, 'cdktf.json');
  const json = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { output?: string; context?: Record<string, unknown> }) : {};
  return { output: json.output ?? 'cdktf.out', context: json.context ?? {} };
}

/** One line per annotation, as `[level] path: message` (info, warnings and errors). */
export function formatAnnotations(annotations: readonly ManifestAnnotation[]): string[] {
  const level = (l: string) => l.replace('@cdktf/', '');
  return annotations.map((a) => `[${level(a.level)}] ${a.constructPath}: ${a.message}`);
}

/** Synthesizes the example app into outdir; returns its stacks from the manifest and its keys. */
export function synthesize(root: string, outdir: string): { stacks: ManifestStack[]; keys: MasterKey[] } {
  const { context } = readCdktfJson(root);
  const app = buildApp(newApp({ outdir, context }));
  app.synth();
  return { stacks: synthesizedStacks(outdir), keys: app.node.findAll().filter(MasterKey.isMasterKey) };
}

/** What would make terraform fail: one sentence, and whether the plan fails too or only the apply. */
export interface RotationProblem {
  readonly text: string;
  /** The provider reads the database and the config files at plan time; terraform_data only at apply. */
  readonly failsPlan: boolean;
}

/**
 * What would make the rotation fail, in one sentence per key and cause: the
 * database URL variable unset (the sentence names `npm run dev-db`, which
 * also writes the example's config file, and the export line it prints), a
 * config file missing. Pure apart from `exists`.
 */
export function rotationProblems(keys: readonly MasterKey[], env: NodeJS.ProcessEnv, exists: (p: string) => boolean = existsSync): RotationProblem[] {
  const problems = new Map<string, RotationProblem>();
  for (const k of keys) {
    const s = k.settings;
    const failsPlan = s.resourceType === RotationResourceType.PROVIDER;
    const add = (text: string) => problems.set(text, { text, failsPlan: failsPlan || (problems.get(text)?.failsPlan ?? false) });
    const missing = s.configFiles.filter((f) => !exists(f));
    if (s.databaseUrlEnv !== undefined && !env[s.databaseUrlEnv]) {
      const name = s.databaseUrlEnv;
      const then = name === 'DATABASE_URL' ? 'then run the `export DATABASE_URL=…` line it prints' : `export the URL it prints as ${name}`;
      add(`${name} is not set, so terraform cannot reach the database of "${s.name}": run \`npm run dev-db\` for a local one${missing.length ? ' (it writes the example\'s config file too)' : ''} and ${then}, or export the URL of your database`);
      continue;
    }
    for (const f of missing) add(`the config file ${f} of "${s.name}" does not exist: \`npm run dev-db\` creates the example's, or point MK_CONFIG at your server's config file`);
  }
  return [...problems.values()];
}

/**
 * Terraform's environment: no update check, automation wording when not
 * interactive, and this checkout's empty CLI configuration unless the user
 * has one that exists (a TF_CLI_CONFIG_FILE naming a missing file, as some
 * images set, would make terraform warn on every run). Pure apart from
 * `exists`.
 */
export function terraformEnv(env: NodeJS.ProcessEnv, root: string, interactive: boolean, exists: (p: string) => boolean = existsSync): NodeJS.ProcessEnv {
  const given = env.TF_CLI_CONFIG_FILE;
  const homes = [...new Set([env.HOME ?? homedir(), userInfo().homedir])];
  const own = given ? exists(given) : homes.some((h) => exists(join(h, '.terraformrc')) || exists(join(h, 'terraform.rc')));
  return {
    ...env,
    CHECKPOINT_DISABLE: env.CHECKPOINT_DISABLE ?? '1',
    ...(interactive ? {} : { TF_IN_AUTOMATION: env.TF_IN_AUTOMATION ?? '1' }),
    ...(own ? {} : { TF_CLI_CONFIG_FILE: join(root, '.terraformrc') }),
  };
}

/** The terraform arguments: -input=false, -no-color when the output is not a terminal, then the user's. */
export function terraformArgs(command: string, rest: readonly string[], colour: boolean): string[] {
  return [command, '-input=false', ...(colour || rest.includes('-no-color') ? [] : ['-no-color']), ...rest];
}

function terraform(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): number {
  const r = spawnSync('terraform', args, { cwd, stdio: 'inherit', env });
  if (r.error) {
    process.stderr.write(`Cannot run terraform (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}); install Terraform 1.4 or newer and put it on PATH.\n`);
    return 127;
  }
  return r.status ?? 1;
}

/** Runs synth, init and plan/apply; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'plan' && command !== 'apply') {
    process.stderr.write('Usage: node dist/scripts/tf.js <plan|apply> [terraform args...]\n');
    return 3;
  }
  const interactive = !!process.stdin.isTTY;
  const savedPlan = rest.some((a) => !a.startsWith('-'));
  if (command === 'apply' && !interactive && !savedPlan && !rest.includes('-auto-approve')) {
    process.stderr.write('terraform apply asks for confirmation and there is no terminal to answer on: run `npm run deploy -- -auto-approve` to apply without asking.\n');
    return 3;
  }
  const root = PROJECT_ROOT;
  process.chdir(root);
  const outdir = resolve(root, process.env.CDKTF_OUTDIR ?? readCdktfJson(root).output);
  let synth: ReturnType<typeof synthesize>;
  try {
    synth = synthesize(root, outdir);
  } catch (e) {
    process.stderr.write(`Synth failed:\n${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  for (const s of synth.stacks) for (const line of formatAnnotations(s.annotations ?? [])) process.stderr.write(`${line}\n`);
  const problems = rotationProblems(synth.keys, process.env);
  const sentences = (ps: readonly RotationProblem[]) => ps.map((p) => `${p.text.charAt(0).toUpperCase()}${p.text.slice(1)}.`).join('\n');
  const fatal = command === 'apply' ? problems : problems.filter((p) => p.failsPlan);
  if (fatal.length > 0) {
    process.stderr.write(`Not ${command === 'apply' ? 'applying' : 'planning'} (terraform was not run, nothing changed):\n${sentences(fatal)}\n`);
    return 3;
  }
  if (problems.length > 0) process.stderr.write(`Warning: the plan is shown, but an apply would fail:\n${sentences(problems)}\n`);
  // A stack using our provider gets its release archive in its own implicit local mirror and its hashes in the lock file, so init finds and verifies it offline.
  await installProviderBesideStacks(outdir);
  const env = terraformEnv(process.env, root, interactive);
  const colour = !!process.stdout.isTTY;
  for (const s of synth.stacks) {
    const dir = join(outdir, s.workingDirectory);
    process.stdout.write(`\n== stack ${s.name} (${dir}) ==\n`);
    const init = terraform(terraformArgs('init', [], colour), dir, env);
    if (init !== 0) return init;
    const code = terraform(terraformArgs(command, rest, colour), dir, env);
    if (code !== 0) return code;
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
