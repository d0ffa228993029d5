/**
 * `npm run plan` / `npm run deploy`: synthesizes the example app (main.ts)
 * with the context from cdktf.json, prints the policy warnings, then runs
 * `terraform init` and `terraform plan` or `terraform apply` in the
 * synthesized stack directory. Extra arguments go to terraform
 * (`npm run deploy -- -auto-approve`). The database URL is read by the
 * rotation script from the environment this runs in, never from the config.
 *
 * Before terraform runs, an apply is refused (nothing started, nothing
 * tainted) when the rotation could not work: no database URL in the
 * environment, a missing config file, or no terminal to confirm on without
 * -auto-approve. A plan only warns. On a fresh checkout `npm run dev-db`
 * provides the database and the config file.
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
import { MasterKey } from '../constructs';
import { buildApp, newApp, PROJECT_ROOT } from '../main';
import { PROVIDER_SOURCE, installProvider } from '../src/provider/install';

/** A synth annotation as cdktf writes it to manifest.json. */
interface ManifestAnnotation {
  readonly constructPath: string;
  readonly level: string;
  readonly message: string;
}

interface ManifestStack {
  readonly name: string;
  readonly workingDirectory: string;
  readonly annotations?: readonly ManifestAnnotation[];
}

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
  const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8')) as { stacks: Record<string, ManifestStack> };
  return { stacks: Object.values(manifest.stacks), keys: app.node.findAll().filter((c): c is MasterKey => c instanceof MasterKey) };
}

/**
 * What would make the rotation fail at apply, in one sentence each: the
 * database URL variable unset, a config file missing. Pure apart from
 * `exists`.
 */
export function rotationProblems(keys: readonly MasterKey[], env: NodeJS.ProcessEnv, exists: (p: string) => boolean = existsSync): string[] {
  const problems: string[] = [];
  for (const k of keys) {
    const s = k.settings;
    if ('env' in s.databaseUrl && !env[s.databaseUrl.env]) {
      problems.push(`${s.databaseUrl.env} is not set, so the rotation of "${s.name}" could not reach the database: run \`npm run dev-db\` for a local one and run the export line it prints, or export the URL of your database`);
    }
    for (const f of s.configFiles) {
      if (!exists(f)) problems.push(`the config file ${f} of "${s.name}" does not exist: \`npm run dev-db\` creates the example's, or point MK_CONFIG at your server's config file`);
    }
  }
  return [...new Set(problems)];
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
export function main(argv: readonly string[]): number {
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
  if (problems.length > 0) {
    const text = problems.map((p) => `${p.charAt(0).toUpperCase()}${p.slice(1)}.`).join('\n');
    if (command === 'apply') {
      process.stderr.write(`Not applying (terraform was not run, nothing changed):\n${text}\n`);
      return 3;
    }
    process.stderr.write(`Warning: the plan is shown, but an apply would fail:\n${text}\n`);
  }
  const env = terraformEnv(process.env, root, interactive);
  const colour = !!process.stdout.isTTY;
  for (const s of synth.stacks) {
    const dir = join(outdir, s.workingDirectory);
    process.stdout.write(`\n== stack ${s.name} (${dir}) ==\n`);
    // A stack using our provider gets it in its own implicit local mirror, so init finds it offline.
    if (readFileSync(join(dir, 'cdk.tf.json'), 'utf8').includes(`"${PROVIDER_SOURCE}"`)) installProvider({ pluginsDir: join(dir, 'terraform.d', 'plugins') });
    const init = terraform(terraformArgs('init', [], colour), dir, env);
    if (init !== 0) return init;
    const code = terraform(terraformArgs(command, rest, colour), dir, env);
    if (code !== 0) return code;
  }
  return 0;
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}
