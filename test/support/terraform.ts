/**
 * Whether the tests that need a `terraform` binary run: they run when one is
 * on PATH; without one they are skipped (saying so) on a developer's
 * machine, but fail under CI, where a missing binary is a broken setup and
 * must not pass as a green run.
 */
import { spawnSync } from 'node:child_process';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, LocalBackend, TerraformStack } from 'cdktf';
import { installProvider } from '../../src/provider/install';


/** True when `terraform version` runs. */
export const HAS_TERRAFORM = spawnSync('terraform', ['version'], { stdio: 'ignore' }).status === 0;

/** What to do with the terraform tests. Pure. */
export function terraformGate(hasTerraform: boolean, ci: boolean): 'run' | 'fail' | 'skip' {
  if (hasTerraform) return 'run';
  return ci ? 'fail' : 'skip';
}

const MISSING = 'no `terraform` binary on PATH (install Terraform >= 1.4 to run them)';

/**
 * `describe` for tests that need terraform: runs them, skips them with a
 * warning, or (under CI) replaces them with one failing test that says why.
 */
export function describeTerraform(name: string, fn: () => void): void {
  const gate = terraformGate(HAS_TERRAFORM, !!process.env.CI);
  if (gate === 'run') describe(name, fn);
  else if (gate === 'skip') {
    console.warn(`Skipping "${name}": ${MISSING}.`);
    describe.skip(name, fn);
  } else {
    describe(name, () => {
      it('has a terraform binary (CI never skips the terraform tests)', () => {
        throw new Error(`CI is set and there is ${MISSING}; install terraform in CI instead of skipping "${name}".`);
      });
    });
  }
}

/*
 * Driving the real `terraform` binary against a stack synthesized with our
 * constructs, with terraform-provider-masterkey installed in the stack's
 * implicit local mirror (`terraform.d/plugins`, found by an offline init),
 * an empty CLI configuration and every output kept for the leak scans.
 */
/** Terraform takes options before positional arguments: `<command> [subcommand] -input=false -no-color ...`. */
function withFlags(args: readonly string[]): string[] {
  const n = args[0] === 'state' ? 2 : 1;
  const flags = args[0] === 'state' || args[0] === 'show' || args[0] === 'output' ? [] : ['-input=false', '-no-color'];
  return [...args.slice(0, n), ...flags, ...args.slice(n)];
}

export interface TfResult {
  readonly code: number;
  readonly out: string;
}

export class TfWorkspace {
  readonly dir = join(tmpdir(), `mk-tfp-${randomBytes(6).toString('hex')}`);
  readonly outdir = join(this.dir, 'cdktf.out');
  readonly stateFile = join(this.dir, 'terraform.tfstate');
  readonly transcript: string[] = [];
  readonly synthesized: string[] = [];
  private readonly cliConfig = join(this.dir, 'empty.tfrc');

  constructor(readonly stackName = 'fleet') {}

  get stackDir(): string {
    return join(this.outdir, 'stacks', this.stackName);
  }

  create(): void {
    mkdirSync(this.dir, { mode: 0o700 });
    writeFileSync(this.cliConfig, '');
  }

  /** Synthesizes one stack (local state in the workspace) and installs the provider beside it. */
  synth(build: (stack: TerraformStack) => void): string {
    const app = new App({ outdir: this.outdir, stackTraces: false });
    const stack = new TerraformStack(app, this.stackName);
    new LocalBackend(stack, { path: this.stateFile });
    build(stack);
    app.synth();
    installProvider({ pluginsDir: join(this.stackDir, 'terraform.d', 'plugins') });
    const json = readFileSync(join(this.stackDir, 'cdk.tf.json'), 'utf8');
    this.synthesized.push(json);
    return json;
  }

  env(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
    return { ...process.env, TF_CLI_CONFIG_FILE: this.cliConfig, TF_IN_AUTOMATION: '1', CHECKPOINT_DISABLE: '1', TF_LOG: undefined, ...extra };
  }

  /** Runs terraform in the stack directory; the output joins the transcript. */
  tf(args: readonly string[], env: Record<string, string | undefined> = {}): TfResult {
    const r = spawnSync('terraform', withFlags(args), {
      cwd: this.stackDir,
      encoding: 'utf8',
      env: this.env(env),
      timeout: 300_000,
    });
    // eslint-disable-next-line no-control-regex
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.replace(/\x1b\[[0-9;]*m/g, '');
    this.transcript.push(`$ terraform ${args.join(' ')}\n${out}`);
    return { code: r.status ?? -1, out };
  }

  /** Runs terraform and fails the test unless it exits with `code`. */
  ok(args: readonly string[], env: Record<string, string | undefined> = {}, code = 0): string {
    const r = this.tf(args, env);
    if (r.code !== code) throw new Error(`terraform ${args.join(' ')} exited ${r.code}, expected ${code}:\n${r.out}`);
    return r.out;
  }

  /** Starts terraform without waiting, in its own process group. */
  start(args: readonly string[], env: Record<string, string | undefined> = {}): ChildProcess {
    return spawn('terraform', withFlags(args), { cwd: this.stackDir, env: this.env(env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  state(): string {
    return existsSync(this.stateFile) ? readFileSync(this.stateFile, 'utf8') : '';
  }

  /** Everything terraform wrote or printed: synthesized config, state, transcript. */
  everything(): string {
    return [...this.synthesized, this.state(), ...this.transcript].join('\n');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Pids of every living descendant of `pid` (from /proc). */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** The command lines of every process on the machine (NUL separators as spaces). */
export function allCommandLines(): string {
  const lines: string[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      lines.push(readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' '));
    } catch {
      // gone meanwhile
    }
  }
  return lines.join('\n');
}

/** Waits until `test()` holds (polling), failing after `ms`. */
export async function waitFor(what: string, test: () => boolean, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!test()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
