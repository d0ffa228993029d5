/**
 * Stop / start / health-check commands of the server, run through the shell.
 * Their output goes to stderr (visible in terraform's apply log); they get no
 * key material, neither in arguments nor in the environment.
 */
import { spawnSync } from 'node:child_process';
import { MasterKeyError } from '../errors';

export interface Hooks {
  readonly stop?: string;
  readonly start?: string;
  readonly health?: string;
}

export function runHook(which: keyof Hooks, command: string, log: (line: string) => void): number {
  const t0 = Date.now();
  log(`running ${which} command: ${command}`);
  const r = spawnSync('/bin/sh', ['-c', command], { stdio: ['ignore', process.stderr, process.stderr], timeout: 10 * 60_000 });
  const ms = Date.now() - t0;
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit code ${r.status}`;
    throw new MasterKeyError('HOOK_FAILED', `The ${which} command failed (${why}); fix it or the server, then run the command again.`, { hook: which });
  }
  return ms;
}

/** A hook that ran, for the report. */
export interface HookRun {
  readonly which: string;
  readonly command: string;
  readonly ms: number;
}

/** Runs the start and then the health command, if any. */
export function startServer(hooks: Hooks, log: (line: string) => void): HookRun[] {
  const ran: HookRun[] = [];
  if (hooks.start) ran.push({ which: 'start', command: hooks.start, ms: runHook('start', hooks.start, log) });
  if (hooks.health) ran.push({ which: 'health', command: hooks.health, ms: runHook('health', hooks.health, log) });
  return ran;
}
