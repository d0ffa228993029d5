/**
 * A backup file sealed in the background (`AdoptOptions`), as SQLite's
 * copy made in seal-ahead is: its sealing thread runs at a lower CPU
 * priority than the rotation's threads (its own nice value, the process's
 * unchanged), the file it seals opens with the identity (the `age` CLI),
 * and a stop (`signal`) ends it at once, leaving neither the sealed file
 * nor its partial file.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { loadAge } from '../src/rotation/age';
import { sealWholeFile } from '../src/rotation/sealed-backup';
import { lowerThreadPriority } from '../src/thread-priority';
import { removeScratch, scratchDir } from '../scripts/scratch';

/** The nice value of each thread of this process, by thread id (Linux: field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNices(): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8');
      // After the command name's closing parenthesis: state is field 3, nice field 19.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), Number(fields[19 - 3]));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

describe('sealing in the background', () => {
  let dir: string;
  let identity: string;
  let recipient: string;

  beforeAll(async () => {
    const { generateX25519Identity, identityToRecipient } = await loadAge();
    identity = await generateX25519Identity();
    recipient = await identityToRecipient(identity);
    dir = scratchDir('mk-seal-background-');
  });
  afterAll(() => removeScratch(dir));

  it('lowerThreadPriority changes the calling thread alone', async () => {
    const before = getPriority(process.pid);
    // In a worker, as the sealing thread calls it: that thread's nice value is 7, the process's is what it was.
    const seen = await new Promise<{ ok: boolean; nice: number; tid: number }>((resolve, reject) => {
      const w = new Worker(
        `const { parentPort } = require('node:worker_threads');
         const { readlinkSync } = require('node:fs');
         const { getPriority } = require('node:os');
         const { lowerThreadPriority } = require(${JSON.stringify(require.resolve('../dist/src/thread-priority.js'))});
         const ok = lowerThreadPriority(7);
         const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
         parentPort.postMessage({ ok, nice: getPriority(tid), tid });
         setTimeout(() => undefined, 200);`,
        { eval: true },
      );
      w.once('message', (m) => {
        resolve(m as { ok: boolean; nice: number; tid: number });
        void w.terminate();
      });
      w.once('error', reject);
    });
    expect(seen).toMatchObject({ ok: true, nice: 7 });
    expect(getPriority(process.pid)).toBe(before);
    // A nice value the system refuses (below the current one, without the privilege) is no failure: false, nothing changes.
    expect(typeof lowerThreadPriority(before)).toBe('boolean');
    expect(getPriority(process.pid)).toBe(before);
  });

  it('seals a whole file in a thread of lower priority; the age CLI opens it', async () => {
    const file = join(dir, 'copy.unsealed');
    const bytes = Buffer.alloc(24 << 20);
    for (let i = 0; i < bytes.length; i += 4096) bytes.writeUInt32BE(i, i);
    writeFileSync(file, bytes, { mode: 0o600 });
    const sealed = join(dir, 'copy.age');
    const mine = new Set(threadNices().keys());
    let lowest = 0;
    const watch = setInterval(() => {
      for (const [tid, nice] of threadNices()) if (!mine.has(tid)) lowest = Math.max(lowest, nice);
    }, 5);
    try {
      const r = await sealWholeFile(file, sealed, [recipient], { background: true });
      expect(r.bytes).toBeGreaterThan(bytes.length);
    } finally {
      clearInterval(watch);
    }
    // A new thread of this process ran at nice 10 while it sealed.
    expect(lowest).toBe(10);
    expect(existsSync(file)).toBe(false);
    const idFile = join(dir, 'id.key');
    writeFileSync(idFile, `${identity}\n`, { mode: 0o600 });
    expect(execFileSync('age', ['-d', '-i', idFile, sealed], { maxBuffer: 64 << 20 }).equals(bytes)).toBe(true);
  });

  it('a stop ends the sealing at once: it rejects, and neither the sealed nor the partial file is left', async () => {
    const file = join(dir, 'stopped.unsealed');
    writeFileSync(file, Buffer.alloc(64 << 20, 1), { mode: 0o600 });
    const sealed = join(dir, 'stopped.age');
    const stop = new AbortController();
    const sealing = sealWholeFile(file, sealed, [recipient], { background: true, signal: stop.signal });
    setTimeout(() => stop.abort(), 50);
    await expect(sealing).rejects.toThrow(/was stopped: the rotation no longer needs it/);
    expect(existsSync(sealed)).toBe(false);
    expect(existsSync(`${sealed}.partial`)).toBe(false);
    // A signal stopped before the sealing starts: refused at once.
    await expect(sealWholeFile(file, join(dir, 'never.age'), [recipient], { signal: AbortSignal.abort() })).rejects.toThrow(/was stopped/);
    expect(existsSync(join(dir, 'never.age.partial'))).toBe(false);
  });
});
