/**
 * Scratch directories of the tests and harnesses (soak, bench, dev-db): each
 * is made under os.tmpdir() and removed by `removeScratch` when its user is
 * done, also when it failed (jest removes whatever a test file left after the
 * file ran; harnesses remove theirs in `finally`). With `KEEP` set (to
 * anything but empty, 0 or false) nothing is removed and each kept directory
 * is named on stderr, for debugging.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atExit } from '../src/at-exit';

const live = new Set<string>();
let removedAtExit = false;

/** True when KEEP asks to keep scratch directories. */
export function keepScratch(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = (env.KEEP ?? '').trim().toLowerCase();
  return v !== '' && v !== '0' && v !== 'false' && v !== 'no';
}

/** A new directory `<tmpdir>/<prefix>XXXXXX` (mode 0700 unless `mode` is given), to be removed with `removeScratch`. */
export function scratchDir(prefix: string, mode?: number): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (mode !== undefined) chmodSync(dir, mode);
  live.add(dir);
  // A harness ended by a signal (or exiting without its finally) still leaves none behind.
  if (!removedAtExit) {
    removedAtExit = true;
    atExit(removeAllScratch);
  }
  return dir;
}

/** Removes a scratch directory (or, with KEEP, says where it is). */
export function removeScratch(dir: string): void {
  live.delete(dir);
  if (!existsSync(dir)) return;
  if (keepScratch()) {
    process.stderr.write(`KEEP is set: kept ${dir}\n`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Removes every scratch directory this process made and has not removed yet; returns them. */
export function removeAllScratch(): string[] {
  const dirs = [...live];
  for (const d of dirs) removeScratch(d);
  return dirs;
}
