/**
 * Everything a command needs, resolved once from what the user declared
 * (`src/context/build.ts`, for the CLI and the provider alike): the nodes
 * and their config files, database URL, inventory, file locations, hooks,
 * output sinks.
 */
import { ConfigTarget } from '../config/config-file';
import type { MasterKey } from '../crypto/key';
import type { ConfigNode } from '../config/nodes';
import { Inventory } from '../inventory/inventory';
import { FaultPoints } from './faults';
import { Hooks } from './hooks';

/** Receives progress of long work; quiet implementations for CI and --json. */
export interface Progress {
  start(label: string, total?: number): void;
  tick(n: number): void;
  stop(): void;
}

export const quietProgress: Progress = { start: () => undefined, tick: () => undefined, stop: () => undefined };

/** Shows progress of fn's work under `label` (`total` when known); fn reports how much is done. */
export async function withProgress<T>(progress: Progress, label: string, total: number | undefined, fn: (tick: (done: number) => void) => Promise<T>): Promise<T> {
  progress.start(label, total);
  try {
    return await fn((done) => progress.tick(done));
  } finally {
    progress.stop();
  }
}

/** Where a new key comes from: generated, a file, standard input, an environment variable, or already read (by the runner of a rotation on another host, which sends it on that host's standard input). */
export type NewKeySource =
  | { readonly kind: 'generate' }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'stdin' }
  | { readonly kind: 'env'; readonly name: string }
  | { readonly kind: 'given'; readonly key: MasterKey };

export interface Context {
  /** The server's nodes: each a config file on a host (this machine today); the first is the primary. */
  readonly nodes: readonly ConfigNode[];
  /** The nodes' config files holding the key (`nodes[i].target`), as the rotation reads and writes them. */
  readonly targets: readonly ConfigTarget[];
  readonly databaseUrl: string;
  readonly inventory: Inventory;
  readonly pendingPath: string;
  readonly backupDir: string;
  readonly reportDir: string;
  readonly hooks: Hooks;
  /** Human-readable lines (stderr when --json, else stdout). */
  readonly log: (line: string) => void;
  readonly progress: Progress;
  /** Where a crash test kills this run (MASTER_KEY_TEST_KILL_AT). */
  readonly faults: FaultPoints;
  readonly now: () => Date;
  readonly batchSize?: number;
  /** age recipients every backup is sealed to (shape-checked; the library checks them in preflight); none: backups hold the old key in cleartext. */
  readonly backupRecipients?: readonly string[];
  /** How long the tool's sessions wait for a lock another session holds (`OpenOptions.lockTimeoutMs`). */
  readonly lockTimeoutMs: number;
  /** Seal ahead (true), never (false), or where it pays off (undefined): `src/rotation/seal-ahead.ts`. */
  readonly sealAhead?: boolean;
}
