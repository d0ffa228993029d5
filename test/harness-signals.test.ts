/**
 * A harness (bench, soak) ended by a signal leaves nothing behind: its
 * scratch directories (which may hold keys) are removed and the embedded
 * PostgreSQL it started is stopped and its folder removed, by the exit
 * hooks of `src/at-exit.ts`, and the process still ends by that signal.
 * Runs the built modules (`npm test` builds first) in a child node.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const DIST = join(__dirname, '..', 'dist');

/** Starts `script` in a child node, waits for its first line of output, sends `signal`; the line and how it ended. */
async function killAfterReady(script: string, signal: NodeJS.Signals): Promise<{ line: string; code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, signal: sig })));
  const lines = createInterface({ input: child.stdout });
  const line = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', () => reject(new Error(`the child ended before it was ready: ${stderr}`)));
  });
  child.kill(signal);
  return { line, ...(await ended), stderr };
}

describe('a harness ended by a signal', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s: its scratch directory (with a 0600 key file in it) is removed, and it ends by that signal', async (signal) => {
    const r = await killAfterReady(
      `const { scratchDir } = require(${JSON.stringify(join(DIST, 'scripts', 'scratch.js'))});
       const d = scratchDir('mk-harness-signal-');
       require('node:fs').writeFileSync(d + '/old.key', 'k'.repeat(64), { mode: 0o600 });
       console.log(d);
       setInterval(() => undefined, 1000);`,
      signal,
    );
    expect(r).toMatchObject({ code: null, signal });
    expect(r.line).toContain('mk-harness-signal-');
    expect(existsSync(r.line)).toBe(false);
  });

  it('SIGTERM during a bench with its own embedded PostgreSQL: the server is stopped and its folder removed', async () => {
    const r = await killAfterReady(
      `const { startEmbeddedPostgres } = require(${JSON.stringify(join(DIST, 'src', 'db', 'embedded.js'))});
       startEmbeddedPostgres().then((s) => { console.log(JSON.stringify({ dataDir: s.dataDir, port: s.port })); setInterval(() => undefined, 1000); });`,
      'SIGTERM',
    );
    expect(r).toMatchObject({ code: null, signal: 'SIGTERM' });
    const { dataDir, port } = JSON.parse(r.line) as { dataDir: string; port: number };
    expect(existsSync(join(dataDir, '..'))).toBe(false);
    // Nothing listens on its port any more.
    const { createConnection } = await import('node:net');
    const refused = await new Promise<boolean>((resolve) => {
      const sock = createConnection({ host: '127.0.0.1', port }, () => {
        sock.destroy();
        resolve(false);
      });
      sock.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });
});
