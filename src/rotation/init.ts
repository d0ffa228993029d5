/**
 * `master-key init`: the metadata tables and the canary for the configured
 * key (optionally the ACT preset's tables too).
 */
import { MasterKeyError } from '../errors';
import { createActSchema, withStore } from '../store/open';
import { canaryFor } from './canary';
import { Context } from './context';
import { readConfiguredKey } from './keys';

export async function runInit(ctx: Context, opts: { generation: number; createActSchema: boolean }): Promise<{ fingerprint: string; generation: number }> {
  const { key } = readConfiguredKey(ctx);
  return withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'initialising the database' }, async (store) => {
    await store.assertWritable();
    const existing = await store.readCanary();
    if (existing) {
      throw new MasterKeyError(
        'CANARY_EXISTS',
        `This database is already initialised (key ${existing.fingerprint}, generation ${existing.generation}); nothing was changed: use \`master-key status\`, or \`master-key apply\` to rotate.`,
      );
    }
    if (opts.createActSchema) await createActSchema(ctx.databaseUrl);
    await store.initialise({ keyEntry: ctx.targets[0].entry, ...canaryFor(key, opts.generation, ctx.now()) });
    ctx.log(`Initialised ${store.description}: integrity canary sealed under ${key.fingerprint}, generation ${opts.generation}.`);
    return { fingerprint: key.fingerprint, generation: opts.generation };
  });
}
