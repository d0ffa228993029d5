/**
 * Who keeps the rotation from its locks: while the write transaction waits
 * for a lock (bounded by the session's `lock_timeout`), a second connection
 * asks PostgreSQL which sessions it waits for (`pg_blocking_pids`) and
 * describes them from `pg_stat_activity`: pid, application, user, state and
 * how long their transaction has been open. Never their query text. When
 * the wait ended before anyone was seen (a timeout shorter than the first
 * look), the sessions holding a conflicting lock on the tables are named
 * instead, before the transaction rolls back.
 */
import type { Client } from 'pg';
import { MasterKeyError } from '../../errors';
import { describeLockTimeout } from '../../lock-timeout';
import { quoteIdent } from '../../inventory/inventory';
import { connect } from './client';

/** A session another one waits for. */
export interface BlockingSession {
  readonly pid: number;
  readonly application?: string;
  readonly user?: string;
  /** `active`, `idle in transaction`, ...; undefined when this role may not see it (pg_read_all_stats). */
  readonly state?: string;
  /** Seconds since its transaction began; undefined when unknown. */
  readonly transactionSeconds?: number;
  /** The tables of the wait it holds a lock on (schema.table). */
  readonly holding?: readonly string[];
}

/** Looks first after this long (or half the timeout, if shorter), then every `POLL_MS`. */
const FIRST_LOOK_MS = 200;
const POLL_MS = 250;

/** Lock modes that conflict with SHARE ROW EXCLUSIVE (the rotation's lock on the secret tables) and with a row lock (on the canary). */
const TABLE_CONFLICTS = ['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'];
const ROW_CONFLICTS = ['RowShareLock', ...TABLE_CONFLICTS];

/** The sessions `pids` name, as pg_stat_activity shows them to this role, with the tables of `wait` each holds a lock on; longest-open transaction first. */
async function describe(c: Client, pids: readonly number[], wait: LockWait): Promise<BlockingSession[]> {
  if (!pids.length) return [];
  const r = await c.query<{ pid: number; application_name: string | null; usename: string | null; state: string | null; xact_seconds: number | null; holding: string[] | null }>(
    `SELECT a.pid, a.application_name, a.usename, a.state, extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_seconds,
            (SELECT array_agg(DISTINCT format('%I.%I', n.nspname, k.relname)) FROM pg_locks l JOIN pg_class k ON k.oid = l.relation JOIN pg_namespace n ON n.oid = k.relnamespace
              WHERE l.pid = a.pid AND l.granted AND l.relation = ANY($2::regclass[])) AS holding
       FROM pg_stat_activity a WHERE a.pid = ANY($1::int[]) ORDER BY a.xact_start NULLS LAST, a.pid`,
    [pids, wait.tables.map(quoteIdent)],
  );
  const seen: BlockingSession[] = r.rows.map((x) => ({
    pid: x.pid,
    application: x.application_name ?? undefined,
    user: x.usename ?? undefined,
    state: x.state ?? undefined,
    transactionSeconds: x.xact_seconds ?? undefined,
    holding: x.holding ?? undefined,
  }));
  // A session that ended meanwhile is still named by its pid.
  return [...seen, ...pids.filter((p) => !seen.some((s) => s.pid === p)).map((pid) => ({ pid }))];
}

/** What one lock wait is about: the tables (as the inventory names them) and whether a row lock (FOR UPDATE) is awaited. */
export interface LockWait {
  readonly tables: readonly string[];
  readonly rows?: boolean;
}

/**
 * Watches the session `pid` while it waits for a lock: from the first
 * look on (after 200 ms), a connection of its own, closed by `stop`.
 */
export class BlockerWatch {
  private timer?: NodeJS.Timeout;
  private looking?: Promise<void>;
  private client?: Client;
  private stopped = false;
  /** Ends the pause between two looks at once (stop). */
  private wake?: () => void;
  private seen: BlockingSession[] = [];

  constructor(
    private readonly url: string,
    private readonly pid: number,
    private readonly wait: LockWait,
    timeoutMs: number,
  ) {
    this.timer = setTimeout(() => (this.looking = this.look()), Math.min(FIRST_LOOK_MS, timeoutMs / 2));
  }

  private async side(): Promise<Client> {
    this.client ??= await connect(this.url, { applicationName: 'master-key lock watch' });
    return this.client;
  }

  private async look(): Promise<void> {
    try {
      while (!this.stopped) {
        const c = await this.side();
        const r = await c.query<{ pids: number[] }>('SELECT pg_blocking_pids($1) AS pids', [this.pid]);
        const found = await describe(c, r.rows[0]?.pids ?? [], this.wait);
        if (found.length) this.seen = found;
        if (this.stopped) break;
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.timer = setTimeout(resolve, POLL_MS);
        });
      }
    } catch {
      // Watching is best effort: the refusal then names the holders of the tables' locks.
    }
  }

  /**
   * The sessions the wait was for: the last ones seen waited for, or, when
   * none was seen, those holding a lock on the wait's tables that conflicts
   * with it (call before the transaction rolls back).
   */
  async blockers(): Promise<BlockingSession[]> {
    const wait = this.wait;
    if (this.seen.length) return this.seen;
    try {
      const c = await this.side();
      const r = await c.query<{ pid: number }>(
        `SELECT DISTINCT pid FROM pg_locks
          WHERE granted AND pid <> $1 AND relation = ANY($2::regclass[]) AND mode = ANY($3::text[])
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        [this.pid, wait.tables.map(quoteIdent), wait.rows ? ROW_CONFLICTS : TABLE_CONFLICTS],
      );
      return await describe(
        c,
        r.rows.map((x) => x.pid),
        wait,
      );
    } catch {
      return [];
    }
  }

  /** Stops watching and closes the connection. Never throws. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wake?.();
    await this.looking;
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}

/** `pid 4242 (application "psql", user "act", idle in transaction, its transaction open for 12 s)`. */
export function describeSession(s: BlockingSession): string {
  const parts = [
    s.application !== undefined ? `application "${s.application}"` : undefined,
    s.user !== undefined ? `user "${s.user}"` : undefined,
    s.state ?? 'state not visible to this role',
    s.transactionSeconds !== undefined ? `its transaction open for ${seconds(s.transactionSeconds)}` : undefined,
    s.holding?.length ? `holding ${s.holding.join(', ')}` : undefined,
  ].filter((x) => x !== undefined);
  return `pid ${s.pid} (${parts.join(', ')})`;
}

function seconds(s: number): string {
  if (s < 10) return `${Math.round(s * 10) / 10} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}

/**
 * The refusal when a lock could not be had within the lock timeout: one
 * sentence naming the tables, the sessions that held them (never a query)
 * and what to do.
 */
export function tablesBusy(wait: LockWait, blockers: readonly BlockingSession[], timeoutMs: number, cause: unknown): MasterKeyError {
  const held = [...new Set(blockers.flatMap((b) => b.holding ?? []))];
  const tables = held.length ? held : wait.tables;
  const what = tables.length === 1 ? `the table ${tables[0]}` : `the tables ${tables.join(', ')}`;
  const who = blockers.length
    ? `${blockers.length === 1 ? 'PostgreSQL session' : 'PostgreSQL sessions'} ${blockers.map(describeSession).join('; ')}`
    : 'another session (it ended before it could be named)';
  const end = blockers.length ? ` (or stop it: SELECT pg_terminate_backend(${blockers[0].pid}))` : '';
  return new MasterKeyError(
    'TABLES_BUSY',
    `The rotation could not lock ${what} within the lock timeout of ${describeLockTimeout(timeoutMs)}: ${who} held a conflicting lock; nothing was changed: end that transaction${end} and run the command again, or raise the lock timeout.`,
    { tables: wait.tables, lockTimeoutMs: timeoutMs, blockers },
    { cause },
  );
}
