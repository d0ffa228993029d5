/**
 * Starts one embedded PostgreSQL for the whole run (or uses DATABASE_URL when
 * set) and hands its admin URL to the test files through MK_TEST_ADMIN_URL.
 * Each test file then creates its own fresh database (see ./db.ts).
 */
import { startEmbeddedPostgres, EmbeddedServer } from '../../src/db/embedded';

declare global {
  // eslint-disable-next-line no-var
  var __MK_PG__: EmbeddedServer | undefined;
}

export default async function globalSetup(): Promise<void> {
  if (process.env.DATABASE_URL) {
    process.env.MK_TEST_ADMIN_URL = process.env.DATABASE_URL;
    return;
  }
  const server = await startEmbeddedPostgres({ settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } });
  globalThis.__MK_PG__ = server;
  process.env.MK_TEST_ADMIN_URL = server.adminUrl;
}
