/**
 * `master-key restore`: puts a backup back (stored values, canary, config
 * files), under the rotation lock, after checking every checksum, that the
 * backup is of this database, and that its config copies hold its key.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigTarget, readConfigKey } from '../config/config-file';
import { MasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { withStore } from '../store/open';
import { sameDatabase } from '../store/store';
import { readBackup, toRestore } from './backup';
import { assertKeyOpensCanary, requireCanary } from './canary';
import { Context } from './context';
import { assertNoPending } from './keys';

export async function runRestore(ctx: Context, backupPath: string): Promise<{ values: number; fingerprint: string; generation: number; configs: string[] }> {
  const manifest = readBackup(backupPath);
  // The backup's own config copy must open the backup's canary, or restoring would leave secrets nobody can open.
  const copies = manifest.configs.map((cf) => ({ cf, target: { path: join(backupPath, cf.file), format: cf.format, entry: cf.entry } as ConfigTarget }));
  for (const { cf, target } of copies) {
    const k = readConfigKey(target);
    if (k.fingerprint !== manifest.canary.fingerprint) {
      throw new MasterKeyError('BACKUP_CORRUPT', `The backup's copy of ${cf.path} holds ${k.fingerprint}, not the backed-up key ${manifest.canary.fingerprint}; this backup cannot be restored safely.`);
    }
  }
  const session = { label: `master-key restore ${ctx.now().toISOString()}`, doing: 'restoring the backup' };
  return withStore(ctx.databaseUrl, session, async (store) => {
    await store.assertWritable();
    await store.lockRotation();
    assertNoPending(ctx);
    const id = await store.identity();
    if (!sameDatabase(id, manifest.database)) {
      throw new MasterKeyError('KEY_NOT_FOR_DATABASE', `The backup ${backupPath} is of database "${manifest.database.name}", not this one ("${id.name}"); point the database URL at the right database.`);
    }
    const values = await store.restore(toRestore(backupPath, manifest), { batchSize: ctx.batchSize });
    const configs: string[] = [];
    for (const { cf, target } of copies) {
      atomicWriteFile(cf.path, readFileSync(target.path), { mode: cf.mode, uid: cf.uid, gid: cf.gid, errorCode: 'CONFIG_UNWRITABLE' });
      configs.push(cf.path);
    }
    const canary = requireCanary(await store.readCanary());
    const restored = copies[0].cf;
    assertKeyOpensCanary(canary, readConfigKey({ path: restored.path, format: restored.format, entry: restored.entry } as ConfigTarget), `the restored key in ${restored.path}`);
    ctx.log(`Restored ${values} stored values, the canary (${manifest.canary.fingerprint}, generation ${manifest.canary.generation}) and ${configs.length} config file(s) from ${backupPath}. Restart the server.`);
    return { values, fingerprint: manifest.canary.fingerprint, generation: manifest.canary.generation, configs };
  });
}
