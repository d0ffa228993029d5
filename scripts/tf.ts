/**
 * `npm run plan` / `npm run deploy`: synthesizes the example app (main.ts)
 * with the context from cdktf.json, prints the policy warnings, then runs
 * `terraform init` and `terraform plan` or `terraform apply` in the
 * synthesized stack directory. Extra arguments go to terraform
 * (`npm run deploy -- -auto-approve`). The database URL is read by the
 * rotation script from the environment this runs in, never from the config.
 *
 * Usage: node dist/scripts/tf.js <plan|apply> [terraform args...]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { App } from 'cdktf';
import { buildApp, PROJECT_ROOT } from '../main';

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

/** Synthesizes the example app into outdir; returns its stacks from the manifest. */
export function synthesize(root: string, outdir: string): ManifestStack[] {
  const { context } = readCdktfJson(root);
  const app = buildApp(new App({ outdir, context, stackTraces: false }));
  app.synth();
  const manifest = JSON.parse(readFileSync(join(outdir, 'manifest.json'), 'utf8')) as { stacks: Record<string, ManifestStack> };
  return Object.values(manifest.stacks);
}

function terraform(args: readonly string[], cwd: string): number {
  const r = spawnSync('terraform', args, { cwd, stdio: 'inherit' });
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
  const root = PROJECT_ROOT;
  process.chdir(root);
  const outdir = resolve(root, process.env.CDKTF_OUTDIR ?? readCdktfJson(root).output);
  let stacks: ManifestStack[];
  try {
    stacks = synthesize(root, outdir);
  } catch (e) {
    process.stderr.write(`Synth failed:\n${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  for (const s of stacks) for (const line of formatAnnotations(s.annotations ?? [])) process.stderr.write(`${line}\n`);
  for (const s of stacks) {
    const dir = join(outdir, s.workingDirectory);
    process.stdout.write(`\n== stack ${s.name} (${dir}) ==\n`);
    const init = terraform(['init', '-input=false'], dir);
    if (init !== 0) return init;
    const code = terraform([command, '-input=false', ...rest], dir);
    if (code !== 0) return code;
  }
  return 0;
}

if (require.main === module) {
  process.exitCode = main(process.argv.slice(2));
}
