/**
 * Keys in config files and where a new key comes from (a file, stdin or an
 * environment variable, never argv); `master-key show` and `master-key set`.
 */
import { readFileSync } from 'node:fs';
import { ConfigTarget, readConfigKey, writeConfigKey } from '../config/config-file';
import { parseKey, MasterKey } from '../crypto/key';
import { MasterKeyError } from '../errors';
import { withStore } from '../store/open';
import { canaryOpensWith, requireCanary } from './canary';
import { Context, NewKeySource } from './context';
import { ConfigFact } from './plan';
import { readPending } from './pending';

/** Reads the key of every config target; all must agree (one key per server). */
export function readConfiguredKey(ctx: Pick<Context, 'targets'>): { key: MasterKey; facts: ConfigFact[] } {
  const keys = ctx.targets.map((t) => ({ target: t, key: readConfigKey(t) }));
  const primary = keys[0];
  for (const k of keys.slice(1)) {
    if (!k.key.equals(primary.key)) {
      throw new MasterKeyError(
        'CONFIG_DISAGREE',
        `The config files disagree: ${k.target.path} holds ${k.key.fingerprint} but ${primary.target.path} holds ${primary.key.fingerprint}; run \`master-key status\` to see which matches the database, then \`master-key set --config ${k.target.path}\` (or \`master-key recover\` after an interrupted rotation).`,
      );
    }
  }
  return { key: primary.key, facts: keys.map((k) => ({ target: k.target, fingerprint: k.key.fingerprint })) };
}

/** Marks a node whose config entry holds no usable key (e.g. a placeholder for a new HA node). */
export const NO_KEY = 'no key';

/** A config's key, or undefined when its entry holds no usable key (a new node's placeholder). */
function keyOrNone(t: ConfigTarget): MasterKey | undefined {
  try {
    return readConfigKey(t);
  } catch (e) {
    if (e instanceof MasterKeyError && e.code === 'KEY_MALFORMED') return undefined;
    throw e;
  }
}

/**
 * The primary config's key, and what every node holds. Unlike
 * readConfiguredKey, another node may hold a different key or a placeholder:
 * apply sets it (the primary's key must open the canary, which gather proves).
 */
export function readNodeKeys(ctx: Pick<Context, 'targets'>): { key: MasterKey; facts: ConfigFact[] } {
  const primary = readConfigKey(ctx.targets[0]);
  const facts = ctx.targets.map((t, i) => ({ target: t, fingerprint: i === 0 ? primary.fingerprint : (keyOrNone(t)?.fingerprint ?? NO_KEY) }));
  return { key: primary, facts };
}

/** The targets that do not hold `key` yet (a placeholder counts as not holding it), in order. */
export function targetsWithout(targets: readonly ConfigTarget[], key: MasterKey): ConfigTarget[] {
  return targets.filter((t) => !keyOrNone(t)?.equals(key));
}

/** Writes `key` into each target in order (atomically, keeping mode and owner); returns their paths. */
export function writeKeyInto(
  targets: readonly ConfigTarget[],
  key: MasterKey,
  on: { readonly written?: (t: ConfigTarget) => void; readonly failed?: (t: ConfigTarget, e: unknown) => Error } = {},
): string[] {
  for (const t of targets) {
    try {
      writeConfigKey(t, key);
    } catch (e) {
      throw on.failed ? on.failed(t, e) : e;
    }
    on.written?.(t);
  }
  return targets.map((t) => t.path);
}

/** Refuses to go on while an interrupted rotation's pending file exists. */
export function assertNoPending(ctx: Pick<Context, 'pendingPath'>): void {
  const p = readPending(ctx.pendingPath);
  if (p) {
    throw new MasterKeyError(
      'ROTATION_INTERRUPTED',
      `An interrupted rotation (started ${p.pending.startedAt}, ${p.pending.oldFingerprint} -> ${p.pending.newFingerprint}) left ${ctx.pendingPath}; run \`master-key recover\` with the same --config options before anything else.`,
      { pendingFile: ctx.pendingPath, oldFingerprint: p.pending.oldFingerprint, newFingerprint: p.pending.newFingerprint },
    );
  }
}

/** Reads a new key from a file, stdin or an environment variable (never argv), or generates one. */
export function obtainNewKey(src: NewKeySource): MasterKey {
  switch (src.kind) {
    case 'generate':
      return MasterKey.generate();
    case 'file': {
      let text: string;
      try {
        text = readFileSync(src.path, 'utf8');
      } catch (e) {
        throw new MasterKeyError('FILE_ERROR', `Cannot read the new key file ${src.path} (${(e as NodeJS.ErrnoException).code}); check the path and its permissions.`);
      }
      return parseKey(text, `the new key in ${src.path}`);
    }
    case 'stdin': {
      let text: string;
      try {
        text = readFileSync(0, 'utf8');
      } catch {
        throw new MasterKeyError('USAGE', 'Could not read the new key from standard input; pipe it in, e.g. `openssl rand -hex 32 | master-key apply --new-key-stdin`.');
      }
      return parseKey(text, 'the new key on standard input');
    }
    case 'given':
      return src.key;
    case 'env': {
      const v = process.env[src.name];
      if (v === undefined) throw new MasterKeyError('USAGE', `The environment variable ${src.name} (named by --new-key-env) is not set; export it or let apply generate the key.`);
      return parseKey(v, `the new key in $${src.name}`);
    }
  }
}

/** `master-key show`: the configured key's fingerprint, or the key itself with reveal. */
export function runShow(ctx: Pick<Context, 'targets'>, reveal: boolean): { fingerprint: string; key?: string } {
  const k = readConfigKey(ctx.targets[0]);
  return reveal ? { fingerprint: k.fingerprint, key: k.toHex() } : { fingerprint: k.fingerprint };
}

/** `master-key set`: writes a key into a node's config, only if it opens the canary. */
export async function runSet(ctx: Context, target: ConfigTarget, source: NewKeySource): Promise<{ fingerprint: string; path: string }> {
  if (source.kind === 'generate') throw new MasterKeyError('USAGE', 'Say where the key comes from: --key-file <path>, --key-stdin or --key-env <NAME>.');
  assertNoPending(ctx);
  const key: MasterKey = obtainNewKey(source);
  return withStore(ctx.databaseUrl, { lockTimeoutMs: ctx.lockTimeoutMs, doing: 'checking the key against the canary' }, async (store) => {
    const canary = requireCanary(await store.readCanary());
    if (!canaryOpensWith(canary, key)) {
      throw new MasterKeyError(
        'KEY_NOT_FOR_DATABASE',
        `The key ${key.fingerprint} does not open this database's integrity canary (sealed under ${canary.fingerprint}); ${target.path} was not changed: supply the database's current key.`,
      );
    }
    writeConfigKey(target, key);
    ctx.log(`Wrote ${key.fingerprint} into ${target.path} (${target.entry}); it opens the database's canary.`);
    return { fingerprint: key.fingerprint, path: target.path };
  });
}
