/**
 * One client-side benchmark run in its own process, so its peak RSS is its
 * own. Reads a job as JSON on stdin (the keys and the database URL travel
 * there, never in argv), runs it in one transaction, and prints one JSON
 * line: { seconds, rows, maxRssBytes }.
 *
 * Methods:
 * - `crypto`: crypto alone: every value of the table is first read into
 *   memory (not timed), then opened and re-sealed in batches by the
 *   production crypto module (`BatchCrypto`), nothing written.
 * - `ours`: `reencryptInventory` on the benchmark inventory.
 * - `naive`: what a quick script does: SELECT every row into memory, then
 *   open and seal each and send one UPDATE per row.
 */
import { Client } from 'pg';
import { CryptoMode, valueCrypto } from '../src/engine/value-crypto';
import { actCodec } from '../src/crypto/codec';
import { MasterKey, parseKey } from '../src/crypto/key';
import { Keyring } from '../src/crypto/keyring';
import { mapAhead } from '../src/engine/pipeline';
import { DEFAULT_BATCH_SIZE } from '../src/engine/walk';
import { copyLines } from '../src/store/postgres/copy';
import { reencryptInventory } from '../src/store/postgres/reencrypt';
import { BENCH_INVENTORY, BENCH_TABLE } from './bench-data';

/** What the parent sends on stdin. */
export interface ChildJob {
  readonly method: 'ours' | 'naive' | 'crypto';
  readonly url: string;
  readonly oldKey: string;
  readonly newKey: string;
  readonly batchSize?: number;
  /** ours: give reencryptInventory a second (reader) connection. */
  readonly useReader?: boolean;
  /** ours, crypto: where the AES-GCM work runs (default: what production uses). */
  readonly crypto?: CryptoMode;
}

/** What the child prints. */
export interface ChildResult {
  readonly seconds: number;
  readonly rows: number;
  readonly maxRssBytes: number;
  /** ours, crypto: where the AES-GCM work ran. */
  readonly crypto?: CryptoMode;
  /** apply: the report's milliseconds per phase, and its server-down window (stop hook to start hooks). */
  readonly phases?: Readonly<Record<string, number>>;
  readonly serverDownMs?: number;
  /** apply: seal-ahead's window with the server up, and the benchmark writer's time (its stop hook, not counted). */
  readonly serverUpSealAheadMs?: number;
  readonly writerMs?: number;
}

/** Crypto alone: reads every value (untimed), then times opening and re-sealing them all in memory. */
async function cryptoAlone(c: Client, from: MasterKey, to: MasterKey, job: ChildJob): Promise<{ seconds: number; rows: number; mode: CryptoMode }> {
  const values: string[] = [];
  for await (const lines of copyLines(c, `COPY (SELECT value FROM ${BENCH_TABLE}) TO STDOUT`)) for (const l of lines) values.push(l);
  const size = job.batchSize ?? DEFAULT_BATCH_SIZE;
  const crypto = valueCrypto({ from: new Keyring([from]), to }, job.crypto ? { crypto: job.crypto } : {});
  try {
    const batches = (async function* () {
      for (let i = 0; i < values.length; i += size) yield values.slice(i, i + size);
    })();
    const t0 = process.hrtime.bigint();
    let done = 0;
    for await (const r of mapAhead(batches, (b) => crypto.process('act', b), crypto.depth)) {
      if (r.some((x) => x.next === undefined)) throw new Error('a value did not re-seal');
      done += r.length;
    }
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, rows: done, mode: crypto.mode };
  } finally {
    await crypto.close();
  }
}

async function naive(c: Client, from: MasterKey, to: MasterKey): Promise<number> {
  const codec = actCodec();
  const ring = new Keyring([from]);
  const all = await c.query<{ id: string; value: string }>(`SELECT id, value FROM ${BENCH_TABLE}`);
  for (const row of all.rows) {
    const pt = codec.open(ring, row.value).plaintext;
    await c.query(`UPDATE ${BENCH_TABLE} SET value = $1 WHERE id = $2`, [codec.seal(to, pt), row.id]);
  }
  return all.rows.length;
}

async function run(job: ChildJob): Promise<ChildResult> {
  const from = parseKey(job.oldKey);
  const to = parseKey(job.newKey);
  const c = new Client({ connectionString: job.url });
  await c.connect();
  try {
    if (job.method === 'crypto') {
      const r = await cryptoAlone(c, from, to, job);
      return { seconds: r.seconds, rows: r.rows, maxRssBytes: process.resourceUsage().maxRSS * 1024, crypto: r.mode };
    }
    const t0 = process.hrtime.bigint();
    await c.query('BEGIN');
    let rows: number;
    let crypto: CryptoMode | undefined;
    if (job.method === 'naive') {
      rows = await naive(c, from, to);
    } else {
      const r = await reencryptInventory(c, BENCH_INVENTORY, new Keyring([from]), to, {
        ...(job.batchSize ? { batchSize: job.batchSize } : {}),
        ...(job.useReader ? { readerUrl: job.url } : {}),
        ...(job.crypto ? { crypto: job.crypto } : {}),
      });
      rows = r.updated;
      crypto = r.crypto;
    }
    await c.query('COMMIT');
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { seconds, rows, maxRssBytes: process.resourceUsage().maxRSS * 1024, ...(crypto ? { crypto } : {}) };
  } finally {
    await c.end();
  }
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

if (require.main === module) {
  readStdin()
    .then((text) => run(JSON.parse(text) as ChildJob))
    .then((r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
    })
    .catch((e: unknown) => {
      process.stderr.write(`bench child failed: ${(e as Error).message}\n`);
      process.exit(1);
    });
}
