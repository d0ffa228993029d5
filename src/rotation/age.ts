/**
 * age, as this tool uses it: the `age-encryption` library (typage, by age's
 * author; ESM-only, loaded with a dynamic `import()` that the compiler keeps
 * as it is), its public API only. No primitive of age is implemented here:
 * recipients and identities are checked and turned into one another by the
 * library, files are sealed and opened by its `Encrypter` and `Decrypter`.
 *
 * What is ours: reading recipient and identity lists (files and options)
 * with one clear sentence for each problem, never echoing a secret; the
 * `Sealer` that streams bytes through an `Encrypter` into a file (0600,
 * checksummed as written, fsynced, renamed into place only when complete);
 * and `readAgeHeader`, the check the restore path makes of a sealed file's
 * header (version line, one stanza per recipient) before it decrypts it.
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { FileHandle, open } from 'node:fs/promises';
import { MasterKeyError } from '../errors';
import { SYNC_EVERY } from '../fsutil';

type AgeModule = typeof import('age-encryption');
let ageModule: Promise<AgeModule> | undefined;

/** The age library (ESM), loaded once. */
export function loadAge(): Promise<AgeModule> {
  return (ageModule ??= import('age-encryption'));
}

/** The suffix of a sealed file: file `name` of a backup is stored as `name.age`. */
export const SEALED_SUFFIX = '.age';
/** A sealed file while it is written: never taken for a sealed file (renamed when complete). */
export const PARTIAL_SUFFIX = '.age.partial';

/** The kinds of recipient a backup can be sealed to: X25519 (`age1…`) and the post-quantum hybrid ML-KEM-768 + X25519 (`age1pq1…`). */
export type RecipientKind = 'X25519' | 'hybrid';

/** The bech32 characters after the separator. */
const BECH32 = /^[02-9ac-hj-np-z]+$/;

/**
 * The kind of an age recipient string by its shape alone (synchronous, for
 * synth-time checks): undefined when it is not one this tool seals to.
 * `checkRecipients` has the library check it fully.
 */
export function recipientKind(s: string): RecipientKind | undefined {
  if (s.startsWith('age1pq1')) return s.length > 1000 && BECH32.test(s.slice(7)) ? 'hybrid' : undefined;
  if (s.startsWith('age1tag')) return undefined;
  if (s.startsWith('age1') && s.length === 62 && BECH32.test(s.slice(4))) return 'X25519';
  return undefined;
}

/** A recipient as messages name it: whole when short (X25519), else its head and tail (a hybrid one is about 2,000 characters). */
export function recipientLabel(s: string): string {
  return s.length <= 70 ? s : `${s.slice(0, 20)}…${s.slice(-8)}`;
}

/** Why a string is not a usable recipient, never quoting it (it may be a secret pasted in the wrong place). */
function recipientProblem(s: string): string {
  if (/^AGE-SECRET-KEY-/i.test(s)) return 'is an age identity (a secret key), not a recipient: give its public recipient (`age-keygen -y`), and treat that identity as exposed';
  if (/^age1tag/.test(s)) return 'is a hardware-tag recipient, which needs a plugin to restore: give an X25519 (`age1…`) or hybrid (`age1pq1…`) recipient';
  if (/^ssh-/.test(s)) return 'is an SSH key: give an X25519 (`age1…`) or hybrid (`age1pq1…`) age recipient';
  return 'is not an age recipient: give an X25519 (`age1…`, 62 characters) or hybrid (`age1pq1…`) recipient';
}

/**
 * Checks recipients (trimmed; `where(i)` names the i-th for messages): each
 * must be of a kind this tool seals to and be accepted by the library; no
 * duplicates. RECIPIENT_INVALID otherwise, naming which one and why.
 */
export async function checkRecipients(list: readonly string[], where: (i: number) => string): Promise<string[]> {
  const out = checkRecipientShapes(list, where);
  if (out.length === 0) return out;
  const { Encrypter } = await loadAge();
  out.forEach((r, i) => {
    try {
      new Encrypter().addRecipient(r);
    } catch {
      throw new MasterKeyError('RECIPIENT_INVALID', `${where(i)} ${recipientProblem(r)} (its checksum or length is wrong); copy it again from \`age-keygen -y\`.`);
    }
  });
  return out;
}

/** The synchronous part of `checkRecipients`: shapes and duplicates (what synth time can check). */
export function checkRecipientShapes(list: readonly string[], where: (i: number) => string): string[] {
  const out = list.map((r) => r.trim());
  const seen = new Set<string>();
  out.forEach((r, i) => {
    if (!recipientKind(r)) throw new MasterKeyError('RECIPIENT_INVALID', `${where(i)} ${recipientProblem(r)}.`);
    if (seen.has(r)) throw new MasterKeyError('RECIPIENT_INVALID', `${where(i)} (${recipientLabel(r)}) is given twice; give each recipient once.`);
    seen.add(r);
  });
  return out;
}

/** The non-comment lines of an age recipients or identities file (`#` comments, blank lines skipped), with their line numbers. */
function meaningfulLines(text: string): Array<{ line: number; text: string }> {
  return text
    .split(/\r?\n/)
    .map((t, i) => ({ line: i + 1, text: t.trim() }))
    .filter((l) => l.text !== '' && !l.text.startsWith('#'));
}

/**
 * Reads a recipients file (age's `-R` format: one recipient a line, `#`
 * comments) and checks each one's shape (`checkRecipients` has the library
 * check them fully); RECIPIENT_INVALID naming the line, never its text.
 */
export function readRecipientsFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MasterKeyError('FILE_ERROR', `Cannot read the recipients file ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}); check the path given for the backup recipients file.`);
  }
  const lines = meaningfulLines(text);
  if (lines.length === 0) throw new MasterKeyError('RECIPIENT_INVALID', `The recipients file ${path} lists no recipient; add one \`age1…\` line, or do not name the file.`);
  return checkRecipientShapes(
    lines.map((l) => l.text),
    (i) => `Line ${lines[i].line} of ${path}`,
  );
}

/** What an identity file holds: the identities (secret; never printed) and the recipient each one is. */
export interface Identities {
  readonly path: string;
  readonly identities: readonly string[];
  readonly recipients: readonly string[];
}

/**
 * Reads an identity file (age-keygen's format: `AGE-SECRET-KEY-1…` or
 * `AGE-SECRET-KEY-PQ-1…` lines, `#` comments). It must be a regular file
 * readable by its owner only (0600 or 0400): IDENTITY_UNSAFE otherwise,
 * before it is read. IDENTITY_INVALID, naming the line and never its text,
 * for anything the library does not take as an identity.
 */
export async function readIdentityFile(path: string): Promise<Identities> {
  let mode: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
    mode = st.mode & 0o777;
  } catch (e) {
    throw new MasterKeyError('FILE_ERROR', `Cannot read the identity file ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}); check the path given to --identity-file.`);
  }
  if ((mode & 0o077) !== 0) {
    throw new MasterKeyError('IDENTITY_UNSAFE', `The identity file ${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); run \`chmod 600 ${path}\` (and treat the identity as exposed if others could read it), then run the command again.`);
  }
  const lines = meaningfulLines(readFileSync(path, 'utf8'));
  if (lines.length === 0) throw new MasterKeyError('IDENTITY_INVALID', `The identity file ${path} holds no identity; give the file \`age-keygen\` wrote.`);
  const { identityToRecipient } = await loadAge();
  const recipients: string[] = [];
  for (const l of lines) {
    try {
      if (!/^AGE-SECRET-KEY-(PQ-)?1/.test(l.text)) throw new Error('not an identity');
      recipients.push(await identityToRecipient(l.text));
    } catch {
      throw new MasterKeyError('IDENTITY_INVALID', `Line ${l.line} of the identity file ${path} is not an age identity (\`AGE-SECRET-KEY-1…\` or \`AGE-SECRET-KEY-PQ-1…\`); give the file \`age-keygen\` wrote.`);
    }
  }
  return { path, identities: lines.map((l) => l.text), recipients };
}

/** Sealed bytes gathered into one write. */
const WRITE_BATCH = 1 << 20;
/** Sealed bytes handed to the file system and not yet written, at most, before age is made to wait. */
const WRITE_AHEAD = 4 << 20;

/**
 * Writes behind the sealing: age's output (64 KiB a chunk) is gathered
 * into writes of `WRITE_BATCH` bytes (one `writev` each, nothing copied)
 * that run in the background, in order, while age seals the next bytes
 * (age waits only while `WRITE_AHEAD` bytes are unwritten); a flush to
 * disk is started every `SYNC_EVERY` bytes, in the same order. The first
 * failure is thrown by the next `add`, or by `end`.
 */
class WriteBehind {
  private batch: Uint8Array[] = [];
  private batched = 0;
  private unwritten = 0;
  private unsynced = 0;
  private chain: Promise<void> = Promise.resolve();
  private failed?: { error: unknown };
  private drained?: () => void;

  constructor(private readonly fh: FileHandle) {}

  async add(chunk: Uint8Array): Promise<void> {
    this.check();
    this.batch.push(chunk);
    this.batched += chunk.length;
    if (this.batched >= WRITE_BATCH) this.write();
    while (this.unwritten > WRITE_AHEAD && !this.failed) await new Promise<void>((r) => (this.drained = r));
    this.check();
  }

  /** Writes what is gathered and waits for every write. */
  async end(): Promise<void> {
    this.write();
    await this.chain;
    this.check();
  }

  /** Waits for the writes started (never throws). */
  settle(): Promise<void> {
    return this.chain;
  }

  private check(): void {
    if (this.failed) throw this.failed.error;
  }

  private write(): void {
    if (this.batched === 0) return;
    const chunks = this.batch;
    const n = this.batched;
    this.batch = [];
    this.batched = 0;
    this.unwritten += n;
    this.unsynced += n;
    const sync = this.unsynced >= SYNC_EVERY;
    if (sync) this.unsynced = 0;
    this.chain = this.chain.then(async () => {
      if (this.failed) return;
      try {
        const { bytesWritten } = await this.fh.writev(chunks);
        // A short write (the disk filling up): the rest written whole, which names the error if there is one.
        if (bytesWritten < n) await this.fh.writeFile(Buffer.concat(chunks, n).subarray(bytesWritten));
        if (sync) await this.fh.datasync();
      } catch (e) {
        this.failed = { error: e };
      }
      this.unwritten -= n;
      this.drained?.();
    });
  }
}

/** A sealed file as written: the SHA-256 and size of its sealed bytes. */
export interface SealedFile {
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * Streams bytes through age into a file: `push` each chunk (it resolves
 * when age wants more), then `finish`. The sealed bytes go to
 * `<path>.partial` (0600, created new), checksummed as they are written,
 * flushed now and then, fsynced at the end and only then renamed to
 * `path`: a file named `path` is always a complete sealed file. The
 * caller fsyncs the directory.
 */
export class Sealer {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private wanted?: () => void;
  private failed?: unknown;
  private pump!: Promise<SealedFile>;

  private constructor(readonly path: string) {}

  static async open(recipients: readonly string[], path: string): Promise<Sealer> {
    const { Encrypter } = await loadAge();
    const e = new Encrypter();
    for (const r of recipients) e.addRecipient(r);
    const s = new Sealer(path);
    const input = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          s.controller = c;
        },
        pull: () => {
          s.wanted?.();
        },
      },
      { highWaterMark: 2 },
    );
    const fh = await open(path + '.partial', 'wx', 0o600);
    const sealed = await e.encrypt(input);
    s.pump = (async () => {
      const hash = createHash('sha256');
      const out = new WriteBehind(fh);
      let bytes = 0;
      try {
        for await (const chunk of sealed) {
          hash.update(chunk);
          bytes += chunk.length;
          await out.add(chunk);
        }
        await out.end();
        await fh.sync();
      } finally {
        await out.settle();
        await fh.close();
      }
      renameSync(path + '.partial', path);
      return { sha256: hash.digest('hex'), bytes };
    })();
    s.pump.catch((err: unknown) => {
      s.failed = err;
      s.wanted?.();
    });
    return s;
  }

  /** Appends bytes (they are copied when not handed over: the caller may reuse its buffer). */
  async push(bytes: Uint8Array, owned = false): Promise<void> {
    if (this.failed) throw this.failed;
    if (bytes.length === 0) return;
    try {
      this.controller.enqueue(owned ? bytes : new Uint8Array(bytes));
    } catch (e) {
      throw await this.cause(e);
    }
    while ((this.controller.desiredSize ?? 1) <= 0 && !this.failed) await new Promise<void>((r) => (this.wanted = r));
    if (this.failed) throw this.failed;
  }

  /** Ends the file: complete, durable and at `path` when this resolves. */
  async finish(): Promise<SealedFile> {
    try {
      this.controller.close();
    } catch (e) {
      throw await this.cause(e);
    }
    return this.pump;
  }

  /**
   * Why the input refused bytes (`e`, ERR_INVALID_STATE): age cancels it
   * when writing the sealed file failed, before that failure reaches
   * `failed`; the write's error (e.g. ENOSPC) is the one to report.
   */
  private cause(e: unknown): Promise<unknown> {
    return this.pump.then(
      () => e,
      (err: unknown) => err,
    );
  }

  /** Gives up: the partial file is removed. Never throws. */
  async abort(): Promise<void> {
    try {
      this.controller.error(new Error('aborted'));
    } catch {
      // already closed or errored
    }
    await this.pump.catch(() => undefined);
    rmSync(this.path + '.partial', { force: true });
    rmSync(this.path, { force: true });
  }
}

/** What a sealed file's header says: the stanza type of each recipient it is sealed to (`X25519`, `mlkem768x25519`, …), and the header's length. */
export interface AgeHeader {
  readonly stanzas: readonly string[];
  readonly headerBytes: number;
}

const AGE_VERSION = 'age-encryption.org/v1';
/** How much of a file the header may take: age headers are small (a hybrid stanza is about 1.5 KiB). */
export const MAX_HEADER = 64 * 1024;
const B64 = /^[A-Za-z0-9+/]*$/;

/**
 * The check the restore path makes of a sealed file before it decrypts it:
 * the age v1 version line, each stanza (`-> type args…` then base64 body
 * lines of at most 64 characters, the last one shorter), the MAC line
 * (`--- ` and 43 base64 characters), all within `MAX_HEADER` bytes of the
 * file's start. BACKUP_CORRUPT (naming `what`) for anything else, and
 * never any other exception: this is the parser the fuzz target drives.
 * The MAC itself is the library's to verify, with the identity.
 */
export function readAgeHeader(bytes: Uint8Array, what: string): AgeHeader {
  const corrupt = (why: string) => new MasterKeyError('BACKUP_CORRUPT', `${what} is not a sealed file this tool wrote (${why}); it cannot be restored.`);
  const head = bytes.subarray(0, MAX_HEADER);
  let at = 0;
  const line = (): string => {
    const nl = head.indexOf(0x0a, at);
    if (nl < 0) throw corrupt(at === 0 ? 'no age header' : 'its age header does not end');
    let s = '';
    for (let i = at; i < nl; i++) {
      const c = head[i];
      if (c < 0x20 || c > 0x7e) throw corrupt('its age header holds a byte that is not printable ASCII');
      s += String.fromCharCode(c);
    }
    at = nl + 1;
    return s;
  };
  if (line() !== AGE_VERSION) throw corrupt('not an age v1 file');
  const stanzas: string[] = [];
  for (;;) {
    const l = line();
    if (l.startsWith('--- ')) {
      const mac = l.slice(4);
      if (mac.length !== 43 || !B64.test(mac)) throw corrupt('its age header has a malformed MAC line');
      if (stanzas.length === 0) throw corrupt('its age header names no recipient');
      return { stanzas, headerBytes: at };
    }
    if (!l.startsWith('-> ')) throw corrupt('its age header has a line that is neither a stanza nor the MAC');
    const args = l.slice(3).split(' ');
    if (args.some((a) => a.length === 0)) throw corrupt('its age header has a stanza with an empty argument');
    stanzas.push(args[0]);
    for (;;) {
      const body = line();
      if (body.length > 64 || !B64.test(body)) throw corrupt('its age header has a malformed stanza body');
      if (body.length < 64) break;
    }
  }
}

/** The stanza type age writes for a recipient of each kind. */
export const STANZA_OF: Readonly<Record<RecipientKind, string>> = { X25519: 'X25519', hybrid: 'mlkem768x25519' };
