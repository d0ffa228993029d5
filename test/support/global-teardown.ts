import { rmSync } from 'node:fs';
import { removeEmbeddedData } from '../../src/db/embedded';
import { keepScratch } from '../../scripts/scratch';
import { entries, judgeLeftovers, newEntries } from './tmp-guard';

export default async function globalTeardown(): Promise<void> {
  const server = globalThis.__MK_PG__;
  if (server) {
    await server.stop();
    removeEmbeddedData(server);
    globalThis.__MK_PG__ = undefined;
  }
  const state = globalThis.__MK_TMP__;
  if (!state) return;
  globalThis.__MK_TMP__ = undefined;
  if (state.previousTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = state.previousTmpdir;
  const keep = keepScratch();
  const verdict = judgeLeftovers({
    runDir: state.runDir,
    leftInRunDir: entries(state.runDir),
    tmp: state.tmp,
    newInTmp: newEntries(state.before, entries(state.tmp)),
    ci: !!process.env.CI,
    keep,
  });
  if (!keep) rmSync(state.runDir, { recursive: true, force: true });
  for (const n of verdict.notes) process.stderr.write(`${n}\n`);
  if (verdict.failures.length > 0) throw new Error(verdict.failures.join('\n'));
}
