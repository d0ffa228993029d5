/**
 * Processes standing in for a running server that holds a SQLite database
 * (its write lock, an open transaction), for the tests of what a busy
 * database does to a command.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const BETTER_SQLITE3 = resolve(__dirname, '..', '..', 'node_modules', 'better-sqlite3');

/**
 * A process standing in for a running server: runs `script` (with
 * `Database` and `path` in scope; what it must keep open it stores in
 * `globalThis.held`, or garbage collection would close it), prints
 * "ready", then waits to be killed.
 */
export async function standIn(path: string, script: string): Promise<ChildProcess> {
  const code = `const Database = require(${JSON.stringify(BETTER_SQLITE3)}); const path = ${JSON.stringify(path)};
    (async () => { ${script}; process.stdout.write('ready\\n'); setInterval(() => undefined, 1000); })().catch((e) => { console.error(e); process.exit(2); });`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && res());
    child.on('exit', (c) => rej(new Error(`the stand-in server exited with ${c}`)));
  });
  return child;
}

export function stopStandIn(child: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res();
    child.on('exit', () => res());
    child.kill('SIGKILL');
  });
}

