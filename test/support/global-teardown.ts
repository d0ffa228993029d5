import { removeEmbeddedData } from '../../src/db/embedded';

export default async function globalTeardown(): Promise<void> {
  const server = globalThis.__MK_PG__;
  if (server) {
    await server.stop();
    removeEmbeddedData(server);
    globalThis.__MK_PG__ = undefined;
  }
}
