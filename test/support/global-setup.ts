/**
 * Starts one embedded PostgreSQL for the whole run (or uses DATABASE_URL when
 * set) and hands its admin URL to the test files through MK_TEST_ADMIN_URL.
 * Each test file then creates its own fresh database (see ./db.ts).
 *
 * It also makes the run's temp directory and points TMPDIR at it, so that
 * global teardown can prove the run left nothing behind (see ./tmp-guard.ts).
 */
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres, EmbeddedServer } from '../../src/db/embedded';
import { RUN_DIR_PREFIX, TmpGuardState, entries } from './tmp-guard';

declare global {
  // eslint-disable-next-line no-var
  var __MK_PG__: EmbeddedServer | undefined;
  // eslint-disable-next-line no-var
  var __MK_TMP__: TmpGuardState | undefined;
}

export default async function globalSetup(): Promise<void> {
  const tmp = tmpdir();
  const before = entries(tmp);
  const runDir = mkdtempSync(join(tmp, RUN_DIR_PREFIX));
  // Traversable (not listable) by others: as root, PostgreSQL runs as the unprivileged `postgres` user and keeps its data in here.
  chmodSync(runDir, 0o711);
  globalThis.__MK_TMP__ = { tmp, before, runDir, previousTmpdir: process.env.TMPDIR };
  process.env.TMPDIR = runDir;

  if (process.env.DATABASE_URL) {
    process.env.MK_TEST_ADMIN_URL = process.env.DATABASE_URL;
    return;
  }
  const server = await startEmbeddedPostgres({ settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } });
  globalThis.__MK_PG__ = server;
  process.env.MK_TEST_ADMIN_URL = server.adminUrl;
}
