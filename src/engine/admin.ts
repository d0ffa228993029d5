/**
 * The smaller commands: init, status, show, set and restore.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigTarget, readConfigKey, writeConfigKey } from '../config/config-file';
import { MasterKey } from '../crypto/key';
import {
  META_SCHEMA,
  acquireRotationLock,
  assertKeyOpensCanary,
  canaryOpensWith,
  createMetadata,
  databaseIdentity,
  insertCanary,
  lastHistory,
  readCanary,
  requireCanary,
  HistoryRow,
} from '../db/meta';
import { assertWritable, describeUrl, translatePgError, withClient, withTransaction } from '../db/pg';
import { valueWriter } from '../db/rows';
import { ExitCode, ExitCodeValue, MasterKeyError } from '../errors';
import { atomicWriteFile } from '../fsutil';
import { ACT_SCHEMA_SQL } from '../inventory/act-preset';
import { forEachBackupBatch, readBackup } from './backup';
import { Context, NewKeySource } from './context';
import { lockHolder } from '../db/meta';
import { readPending } from './pending';
import { assertNoPending, obtainNewKey, readConfiguredKey } from './rotation';

/** `master-key init`: metadata tables and the canary for the configured key. */
export async function runInit(ctx: Context, opts: { generation: number; createActSchema: boolean }): Promise<{ fingerprint: string; generation: number }> {
  const { key } = readConfiguredKey(ctx);
  return withClient(ctx.databaseUrl, async (c) => {
    try {
      await assertWritable(c, ctx.databaseUrl);
      const existing = await readCanary(c);
      if (existing) {
        throw new MasterKeyError(
          'CANARY_EXISTS',
          `This database is already initialised (key ${existing.fingerprint}, generation ${existing.generation}); nothing was changed: use \`master-key status\`, or \`master-key apply\` to rotate.`,
        );
      }
      await withTransaction(c, async () => {
        if (opts.createActSchema) await c.query(ACT_SCHEMA_SQL);
        await createMetadata(c);
        await insertCanary(c, key, ctx.targets[0].entry, opts.generation, ctx.now());
      });
      ctx.log(`Initialised ${describeUrl(ctx.databaseUrl)}: integrity canary sealed under ${key.fingerprint}, generation ${opts.generation}.`);
      return { fingerprint: key.fingerprint, generation: opts.generation };
    } catch (e) {
      if (e instanceof MasterKeyError) throw e;
      // A concurrent init may have won the race on the canary's primary key.
      if ((e as { code?: string }).code === '23505') {
        throw new MasterKeyError('CANARY_EXISTS', 'This database was initialised by another process just now; nothing was changed: use `master-key status`.');
      }
      throw translatePgError(e, 'initialising the database', ctx.databaseUrl);
    }
  });
}

export interface NodeStatus {
  readonly path: string;
  readonly fingerprint?: string;
  readonly error?: string;
  readonly matchesDatabase: boolean;
}

export interface StatusResult {
  readonly database: string;
  readonly fingerprint: string;
  readonly generation: number;
  readonly keySetAt: string;
  readonly keyAgeDays: number;
  readonly maxAgeDays?: number;
  readonly overdue: boolean;
  readonly nodes: readonly NodeStatus[];
  readonly mismatchedNodes: number;
  readonly lastRotation?: Omit<HistoryRow, 'byKind'> & { byKind: Readonly<Record<string, number>> };
  readonly interruptedRotation?: { readonly pendingFile: string; readonly startedAt: string; readonly oldFingerprint: string; readonly newFingerprint: string; readonly inProgress: boolean };
  readonly exitCode: ExitCodeValue;
}

/** `master-key status`: key, generation, age vs policy, every node's key, interrupted rotations. */
export async function runStatus(ctx: Context, opts: { maxAgeMs?: number }): Promise<StatusResult> {
  const pending = readPending(ctx.pendingPath);
  return withClient(ctx.databaseUrl, async (c) => {
    try {
      const canary = await requireCanary(c);
      const nodes: NodeStatus[] = ctx.targets.map((t) => {
        try {
          const k = readConfigKey(t);
          return { path: t.path, fingerprint: k.fingerprint, matchesDatabase: canaryOpensWith(canary, k) };
        } catch (e) {
          return { path: t.path, error: (e as Error).message, matchesDatabase: false };
        }
      });
      const ageMs = ctx.now().getTime() - canary.keyCreatedAt.getTime();
      const overdue = opts.maxAgeMs !== undefined && ageMs > opts.maxAgeMs;
      const last = await lastHistory(c);
      const holder = pending ? await lockHolder(c) : undefined;
      const mismatched = nodes.filter((n) => !n.matchesDatabase).length;
      const exitCode = pending ? ExitCode.INTERRUPTED : mismatched ? ExitCode.NODE_MISMATCH : overdue ? ExitCode.OVERDUE : ExitCode.OK;
      return {
        database: describeUrl(ctx.databaseUrl),
        fingerprint: canary.fingerprint,
        generation: canary.generation,
        keySetAt: canary.keyCreatedAt.toISOString(),
        keyAgeDays: Math.floor(ageMs / 86_400_000),
        maxAgeDays: opts.maxAgeMs !== undefined ? opts.maxAgeMs / 86_400_000 : undefined,
        overdue,
        nodes,
        mismatchedNodes: mismatched,
        lastRotation: last,
        interruptedRotation: pending
          ? {
              pendingFile: ctx.pendingPath,
              startedAt: pending.pending.startedAt,
              oldFingerprint: pending.pending.oldFingerprint,
              newFingerprint: pending.pending.newFingerprint,
              inProgress: holder !== undefined,
            }
          : undefined,
        exitCode,
      };
    } catch (e) {
      throw translatePgError(e, 'reading the key status', ctx.databaseUrl);
    }
  });
}

export function renderStatus(s: StatusResult): string {
  const out: string[] = [];
  out.push(`database      ${s.database}`);
  out.push(`key           ${s.fingerprint} (generation ${s.generation})`);
  out.push(`set at        ${s.keySetAt} (${s.keyAgeDays} days ago)${s.maxAgeDays !== undefined ? `; policy allows ${s.maxAgeDays} days: ${s.overdue ? 'OVERDUE, rotate now' : 'ok'}` : ''}`);
  if (s.lastRotation) {
    const r = s.lastRotation;
    out.push(`last rotation ${r.committedAt.toISOString?.() ?? String(r.committedAt)}: ${r.oldFingerprint} -> ${r.newFingerprint}, ${r.updated} secrets, ${r.outcome}`);
  } else {
    out.push('last rotation none recorded');
  }
  for (const n of s.nodes) {
    out.push(`config        ${n.path}: ${n.error ? `unreadable: ${n.error}` : `${n.fingerprint} ${n.matchesDatabase ? '(matches the database)' : '(DIFFERS from the database: run `master-key set --config ' + n.path + '` with the current key, or `master-key recover`)'}`}`);
  }
  if (s.interruptedRotation) {
    const i = s.interruptedRotation;
    out.push(
      i.inProgress
        ? `rotation      in progress since ${i.startedAt} (${i.oldFingerprint} -> ${i.newFingerprint})`
        : `rotation      INTERRUPTED (started ${i.startedAt}, ${i.oldFingerprint} -> ${i.newFingerprint}): run \`master-key recover\``,
    );
  }
  return out.join('\n');
}

/** `master-key set`: writes a key into a node's config, only if it opens the canary. */
export async function runSet(ctx: Context, target: ConfigTarget, source: NewKeySource): Promise<{ fingerprint: string; path: string }> {
  if (source.kind === 'generate') throw new MasterKeyError('USAGE', 'Say where the key comes from: --key-file <path>, --key-stdin or --key-env <NAME>.');
  assertNoPending(ctx);
  const key: MasterKey = obtainNewKey(source);
  return withClient(ctx.databaseUrl, async (c) => {
    try {
      const canary = await requireCanary(c);
      if (!canaryOpensWith(canary, key)) {
        throw new MasterKeyError(
          'KEY_NOT_FOR_DATABASE',
          `The key ${key.fingerprint} does not open this database's integrity canary (sealed under ${canary.fingerprint}); ${target.path} was not changed: supply the database's current key.`,
        );
      }
      writeConfigKey(target, key);
      ctx.log(`Wrote ${key.fingerprint} into ${target.path} (${target.entry}); it opens the database's canary.`);
      return { fingerprint: key.fingerprint, path: target.path };
    } catch (e) {
      throw translatePgError(e, 'checking the key against the canary', ctx.databaseUrl);
    }
  });
}

/** `master-key show`: the configured key's fingerprint, or the key itself with reveal. */
export function runShow(ctx: Pick<Context, 'targets'>, reveal: boolean): { fingerprint: string; key?: string } {
  const k = readConfigKey(ctx.targets[0]);
  return reveal ? { fingerprint: k.fingerprint, key: k.toHex() } : { fingerprint: k.fingerprint };
}

/** `master-key restore`: puts a backup back (stored values, canary, config files). */
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
  return withClient(
    ctx.databaseUrl,
    async (c) => {
      try {
        await assertWritable(c, ctx.databaseUrl);
        await acquireRotationLock(c);
        assertNoPending(ctx);
        const id = await databaseIdentity(c);
        if (id.name !== manifest.database.name || (id.systemIdentifier !== 'unknown' && manifest.database.systemIdentifier !== 'unknown' && id.systemIdentifier !== manifest.database.systemIdentifier)) {
          throw new MasterKeyError('KEY_NOT_FOR_DATABASE', `The backup ${backupPath} is of database "${manifest.database.name}", not this one ("${id.name}"); point the database URL at the right database.`);
        }
        let values = 0;
        await withTransaction(c, async () => {
          await requireCanary(c, true);
          const writers = new Map<string, (rows: ReadonlyArray<readonly [string, string]>) => Promise<number>>();
          for (const loc of manifest.locations) writers.set(`${loc.table}\0${loc.column}`, await valueWriter(c, loc));
          values = await forEachBackupBatch(backupPath, ctx.batchSize ?? 5000, async (loc, rows) => {
            const w = writers.get(`${loc.table}\0${loc.column}`);
            if (!w) throw new MasterKeyError('BACKUP_CORRUPT', `The backup holds values for ${loc.table}.${loc.column}, which its manifest does not list; it cannot be restored.`);
            await w(rows);
          });
          if (values !== manifest.values) {
            throw new MasterKeyError('BACKUP_CORRUPT', `The backup lists ${manifest.values} values but holds ${values}; it cannot be restored.`);
          }
          const cn = manifest.canary;
          await c.query(`UPDATE ${META_SCHEMA}.canary SET fingerprint = $1, generation = $2, sealed = $3, key_created_at = $4, updated_at = now()`, [
            cn.fingerprint,
            cn.generation,
            cn.sealed,
            cn.keyCreatedAt,
          ]);
        });
        const configs: string[] = [];
        for (const { cf, target } of copies) {
          atomicWriteFile(cf.path, readFileSync(target.path), { mode: cf.mode, uid: cf.uid, gid: cf.gid, errorCode: 'CONFIG_UNWRITABLE' });
          configs.push(cf.path);
        }
        const canary = await requireCanary(c);
        const restored = copies[0].cf;
        assertKeyOpensCanary(canary, readConfigKey({ path: restored.path, format: restored.format, entry: restored.entry } as ConfigTarget), `the restored key in ${restored.path}`);
        ctx.log(`Restored ${values} stored values, the canary (${manifest.canary.fingerprint}, generation ${manifest.canary.generation}) and ${configs.length} config file(s) from ${backupPath}. Restart the server.`);
        return { values, fingerprint: manifest.canary.fingerprint, generation: manifest.canary.generation, configs };
      } catch (e) {
        throw translatePgError(e, 'restoring the backup', ctx.databaseUrl);
      }
    },
    { applicationName: `master-key restore ${ctx.now().toISOString()}` },
  );
}
