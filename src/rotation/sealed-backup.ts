/**
 * Backups sealed to age recipients (issue 19): the writing side of
 * `BackupDirectory` when it has recipients, and the `BackupSource` that
 * opens a sealed backup again with an identity.
 *
 * Writing: a store's streamed file (PostgreSQL's values) is sealed in a
 * worker thread (`./seal-worker`) as the store writes it, beside the
 * re-encryption; a file a store hands over by path (SQLite's copy of the
 * database) is sealed by a worker from that path, which is removed once
 * sealed; small files (config copies) are sealed on this thread. Each
 * file `name` is stored as `name.age`, written as `name.age.partial` and
 * renamed only once complete and fsynced.
 *
 * Reading: the identity file's recipients must include one the backup was
 * sealed to (IDENTITY_MISMATCH otherwise, before anything is decrypted);
 * each file's header is checked (`readAgeHeader`) before the library
 * decrypts it; a file a store opens by path is decrypted into a private
 * temporary directory (0700, files 0600) removed when the restore ends.
 */
import { createReadStream, mkdtempSync, openSync, readSync, closeSync, rmSync, chmodSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { builtFile } from '../engine/built-file';
import { MasterKeyError } from '../errors';
import { BackupFileWriter, BackupSource, StoredFile, backupFileError } from '../store/store';
import { Identities, MAX_HEADER, SEALED_SUFFIX, Sealer, loadAge, readAgeHeader, recipientLabel } from './age';

/** What a sealing thread is given. */
export interface SealWorkerData {
  readonly recipients: readonly string[];
  /** The sealed file to write (complete only once renamed from `.partial`). */
  readonly path: string;
  /** Seal this whole file (and remove it) instead of bytes sent as messages. */
  readonly file?: string;
}
export type SealRequest = { readonly chunk: Uint8Array } | { readonly end: true };
export type SealReply = { readonly ready: true } | { readonly ack: number } | { readonly done: { readonly sha256: string; readonly bytes: number } } | { readonly error: { readonly code: string; readonly message: string } };

/** The sealing thread's young generation (MB). */
const SEAL_YOUNG_MB = 3;

/** Bytes sent to a sealing thread and not yet taken by age, at most. */
const IN_FLIGHT = 4 << 20;

/** The sealing thread's entry (compiled), or undefined when only the sources exist (then sealing runs on this thread). */
function sealWorkerEntry(): string | undefined {
  return builtFile(__dirname, 'seal-worker.js');
}

/** A sealing thread: its replies as promises, its failure as the backup's typed error. */
class SealThread {
  readonly worker: Worker;
  private readonly waiting: Array<{ resolve: (r: SealReply) => void; reject: (e: unknown) => void }> = [];
  private readonly listeners: Array<() => void> = [];
  private failure?: MasterKeyError;
  /** Called with the bytes age took, as it takes them. */
  onAck?: (n: number) => void;

  constructor(entry: string, data: SealWorkerData) {
    // A small young generation: age allocates a new chunk for every 64 KiB it seals, and with V8's default the thread's
    // young generation grows to hold that garbage (about 20 MB more peak RSS for the same speed, measured sealing 250 MB).
    this.worker = new Worker(entry, { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: SEAL_YOUNG_MB } });
    this.worker.on('message', (r: SealReply) => {
      if ('error' in r) this.fail(backupFileError(Object.assign(new Error(r.error.message), { code: r.error.code }), data.path));
      else if ('ack' in r) this.onAck?.(r.ack);
      else this.waiting.shift()?.resolve(r);
    });
    this.worker.on('error', (e) => this.fail(backupFileError(e, data.path)));
    this.worker.on('exit', (code) => this.fail(new MasterKeyError('BACKUP_UNWRITABLE', `The sealing thread for ${data.path} stopped unexpectedly (exit code ${code}); run the command again.`)));
  }

  private fail(e: MasterKeyError): void {
    if (this.failure) return;
    this.failure = e;
    for (const w of this.waiting.splice(0)) w.reject(e);
    for (const l of this.listeners.splice(0)) l();
  }

  get failed(): MasterKeyError | undefined {
    return this.failure;
  }

  /** Calls fn once the thread failed (at once if it did). */
  onFailure(fn: () => void): void {
    if (this.failure) fn();
    else this.listeners.push(fn);
  }

  /** The next reply other than an acknowledgement. */
  next(): Promise<SealReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Stops the thread (its exit is no failure then). */
  async stop(): Promise<void> {
    this.failure ??= new MasterKeyError('INTERNAL', 'The sealing thread was stopped.');
    await this.worker.terminate().catch(() => undefined);
  }
}

/** A file of a sealed backup, written as the store streams it: sealed in a worker thread, or on this thread when none is built. */
export class SealingFileWriter implements BackupFileWriter {
  private inFlight = 0;
  private room?: () => void;
  private bytes = 0;

  private constructor(
    private readonly name: string,
    private readonly path: string,
    private readonly stored: (path: string) => void,
    private readonly thread?: SealThread,
    private readonly sealer?: Sealer,
  ) {
    if (thread) {
      thread.onAck = (n) => {
        this.inFlight -= n;
        if (this.inFlight <= IN_FLIGHT) this.room?.();
      };
    }
  }

  /** `name`'s sealed file at `path` (`…/name.age`); `stored` makes its directory entry durable. */
  static async create(name: string, path: string, recipients: readonly string[], stored: (path: string) => void): Promise<SealingFileWriter> {
    const entry = sealWorkerEntry();
    try {
      if (!entry) return new SealingFileWriter(name, path, stored, undefined, await Sealer.open(recipients, path));
      const thread = new SealThread(entry, { recipients, path });
      const ready = await thread.next();
      if (!('ready' in ready)) throw new MasterKeyError('INTERNAL', 'The sealing thread answered out of turn; this is a bug.');
      return new SealingFileWriter(name, path, stored, thread);
    } catch (e) {
      throw e instanceof MasterKeyError ? e : backupFileError(e, path);
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.bytes += bytes.length;
    if (this.sealer) return this.wrap(this.sealer.push(bytes));
    const t = this.thread!;
    if (t.failed) throw t.failed;
    const copy = new Uint8Array(bytes);
    this.inFlight += copy.length;
    t.worker.postMessage({ chunk: copy } satisfies SealRequest, [copy.buffer]);
    while (this.inFlight > IN_FLIGHT && !t.failed) {
      await new Promise<void>((r) => {
        this.room = r;
        t.onFailure(r);
      });
    }
    if (t.failed) throw t.failed;
  }

  async end(): Promise<StoredFile> {
    let sealed: { sha256: string; bytes: number };
    if (this.sealer) {
      sealed = await this.wrap(this.sealer.finish());
    } else {
      const t = this.thread!;
      const done = t.next();
      t.worker.postMessage({ end: true } satisfies SealRequest);
      const r = await done;
      await t.stop();
      if (!('done' in r)) throw new MasterKeyError('INTERNAL', 'The sealing thread answered out of turn; this is a bug.');
      sealed = r.done;
    }
    this.stored(this.path);
    return { name: `${this.name}${SEALED_SUFFIX}`, sha256: sealed.sha256, bytes: sealed.bytes };
  }

  async abort(): Promise<void> {
    if (this.thread) await this.thread.stop();
    if (this.sealer) await this.sealer.abort();
    rmSync(`${this.path}.partial`, { force: true });
    rmSync(this.path, { force: true });
  }

  /** Plaintext bytes written so far. */
  get plainBytes(): number {
    return this.bytes;
  }

  private wrap<T>(p: Promise<T>): Promise<T> {
    return p.catch((e: unknown) => {
      throw e instanceof MasterKeyError ? e : backupFileError(e, this.path);
    });
  }
}

/** Seals the whole file `file` into `path` (a worker thread when built), then removes `file`; the sealed file's checksum and size. */
export async function sealWholeFile(file: string, path: string, recipients: readonly string[]): Promise<{ sha256: string; bytes: number }> {
  const entry = sealWorkerEntry();
  try {
    if (!entry) {
      const sealer = await Sealer.open(recipients, path);
      try {
        for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) await sealer.push(chunk as Buffer, true);
        const done = await sealer.finish();
        rmSync(file, { force: true });
        return done;
      } catch (e) {
        await sealer.abort();
        throw e;
      }
    }
    const thread = new SealThread(entry, { recipients, path, file });
    try {
      const r = await thread.next();
      if (!('done' in r)) throw new MasterKeyError('INTERNAL', 'The sealing thread answered out of turn; this is a bug.');
      return r.done;
    } finally {
      await thread.stop();
    }
  } catch (e) {
    rmSync(`${path}.partial`, { force: true });
    throw e instanceof MasterKeyError ? e : backupFileError(e, path);
  }
}

/** Seals small bytes (a config copy) into `path` on this thread. */
export async function sealBytes(bytes: Uint8Array, path: string, recipients: readonly string[]): Promise<{ sha256: string; bytes: number }> {
  const sealer = await Sealer.open(recipients, path).catch((e: unknown) => {
    throw backupFileError(e, path);
  });
  try {
    await sealer.push(bytes);
    return await sealer.finish();
  } catch (e) {
    await sealer.abort();
    throw e instanceof MasterKeyError ? e : backupFileError(e, path);
  }
}

/** What a sealed backup's manifest says about its sealing. */
export interface Sealing {
  readonly format: 'age';
  /** Every recipient's public string, in the order given. */
  readonly recipients: readonly string[];
}

/** The sentence refusing to open a sealed backup without an identity, naming its recipients. */
export function identityRequired(dir: string, sealing: Sealing): MasterKeyError {
  return new MasterKeyError(
    'IDENTITY_REQUIRED',
    `The backup ${dir} is sealed to ${sealing.recipients.map(recipientLabel).join(', ')}; pass --identity-file with the age identity of one of them (a file of mode 0600), then run the command again.`,
    { recipients: sealing.recipients },
  );
}

/**
 * A sealed backup's files as a store reads them back, opened with the
 * identities given. `open` refuses, before anything is decrypted, an
 * identity file that holds none of the backup's recipients.
 */
export class SealedBackupSource implements BackupSource {
  private scratchDir?: string;
  private readonly opened = new Map<string, string>();

  private constructor(
    private readonly dir: string,
    private readonly ids: Identities,
    private readonly recipients: readonly string[],
  ) {}

  static open(dir: string, sealing: Sealing, ids: Identities | undefined): SealedBackupSource {
    if (!ids) throw identityRequired(dir, sealing);
    if (!ids.recipients.some((r) => sealing.recipients.includes(r))) {
      throw new MasterKeyError(
        'IDENTITY_MISMATCH',
        `The identity file ${ids.path} holds no identity of the recipients the backup ${dir} is sealed to (${sealing.recipients.map(recipientLabel).join(', ')}); nothing was changed: pass the identity file of one of them.`,
        { recipients: sealing.recipients },
      );
    }
    return new SealedBackupSource(dir, ids, sealing.recipients);
  }

  /** Checks the header of file `name`'s sealed file (one stanza per recipient of the manifest); BACKUP_CORRUPT otherwise. */
  checkHeader(name: string): void {
    const file = this.sealedPath(name);
    const buf = Buffer.alloc(MAX_HEADER);
    let n: number;
    try {
      const fd = openSync(file, 'r');
      try {
        n = readSync(fd, buf, 0, buf.length, 0);
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      throw new MasterKeyError('BACKUP_CORRUPT', `Cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'}); the backup cannot be restored.`);
    }
    const h = readAgeHeader(buf.subarray(0, n), file);
    if (h.stanzas.length !== this.recipients.length) {
      throw new MasterKeyError('BACKUP_CORRUPT', `${file} is sealed to ${h.stanzas.length} recipient(s) but the manifest lists ${this.recipients.length}; it cannot be restored.`);
    }
  }

  read(name: string): AsyncIterable<Uint8Array> {
    return this.decrypted(name);
  }

  private async *decrypted(name: string): AsyncGenerator<Uint8Array> {
    this.checkHeader(name);
    const file = this.sealedPath(name);
    const { Decrypter } = await loadAge();
    const d = new Decrypter();
    for (const i of this.ids.identities) d.addIdentity(i);
    const corrupt = (e: unknown) =>
      new MasterKeyError('BACKUP_CORRUPT', `${file} does not open with the identity in ${this.ids.path} (${(e as Error).message ?? 'age refused it'}): it was altered or damaged; it cannot be restored.`, {}, { cause: e });
    let plain: ReadableStream<Uint8Array>;
    try {
      plain = await d.decrypt(Readable.toWeb(createReadStream(file, { highWaterMark: 1 << 20 })) as ReadableStream<Uint8Array>);
    } catch (e) {
      throw corrupt(e);
    }
    const reader = plain.getReader();
    try {
      for (;;) {
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await reader.read();
        } catch (e) {
          throw corrupt(e);
        }
        if (r.done) return;
        yield r.value;
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** File `name` decrypted into a private temporary directory, removed by `close`. */
  async path(name: string): Promise<string> {
    const known = this.opened.get(name);
    if (known) return known;
    if (!this.scratchDir) {
      this.scratchDir = mkdtempSync(join(tmpdir(), 'mk-unsealed-'));
      chmodSync(this.scratchDir, 0o700);
    }
    const out = join(this.scratchDir, name);
    const fh = await open(out, 'wx', 0o600);
    try {
      for await (const chunk of this.decrypted(name)) await fh.write(chunk);
    } finally {
      await fh.close();
    }
    this.opened.set(name, out);
    return out;
  }

  /** Removes what was decrypted to disk. Never throws. */
  close(): void {
    if (this.scratchDir) rmSync(this.scratchDir, { recursive: true, force: true });
    this.scratchDir = undefined;
    this.opened.clear();
  }

  private sealedPath(name: string): string {
    return join(this.dir, `${name}${SEALED_SUFFIX}`);
  }
}
