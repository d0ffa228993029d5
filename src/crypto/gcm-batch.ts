/**
 * AES-256-GCM over a batch of sealed messages, always by OpenSSL.
 *
 * A batch is a `GcmJob`: the messages (nonce(12) || ciphertext || tag(16))
 * at offsets in one buffer, each with its additional data for opening and
 * for re-sealing, the key to open it with (or every key in turn), and, for a
 * re-encryption, fresh nonces from the caller's CSPRNG and an output buffer
 * laid out like the input (re-sealing keeps every length).
 *
 * Implementations that run a job, all OpenSSL underneath:
 * - `native`: our small addon (native/gcm_batch.c) loops over the batch in C
 *   through OpenSSL's EVP interface, one context per key re-initialised per
 *   nonce (about ten times the throughput of the next one);
 * - `node`: node:crypto, one `createDecipheriv`/`createCipheriv` per message.
 *   The fallback where no prebuilt addon fits the platform (the package
 *   ships one for linux-x64); `master-key --version` and the report say
 *   which one runs.
 * Either runs on the calling thread; worker threads each run their own
 * (src/engine/crypto-pool).
 * No AES or GHASH is implemented in this repository; tests check every
 * implementation byte for byte against @noble/ciphers.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MasterKeyError } from '../errors';
import { NONCE_BYTES, TAG_BYTES, nodeAead } from './aead';

export const KEY_BYTES = 32;

/** One batch of messages to open (and, with `newKey`, re-seal). Arrays as in native/gcm_batch.c. */
export interface GcmJob {
  /** The keys that may open the messages, 32 bytes each, in order. */
  readonly keys: Uint8Array;
  /** The key to re-seal under; absent: open only (a scan). */
  readonly newKey?: Uint8Array;
  /** The messages: value i is data[offs[2i] .. offs[2i] + offs[2i+1]]. */
  readonly data: Uint8Array;
  readonly offs: Int32Array;
  /** Additional data: value i opens with aad[aadOffs[4i] .. +aadOffs[4i+1]], is re-sealed with aad[aadOffs[4i+2] .. +aadOffs[4i+3]]. */
  readonly aad: Uint8Array;
  readonly aadOffs: Int32Array;
  /** Per value: the index of the key to open it with, or -1 to try every key in order. */
  readonly keyIdx: Int32Array;
  /** Re-encryption: 12 fresh CSPRNG bytes per value. */
  readonly nonces?: Uint8Array;
  /** Re-encryption: where the re-sealed messages go (same offsets as `data`). */
  readonly out?: Uint8Array;
  /** Written per value: the index of the key that opened it, -1 when none does, -2 when its offsets are malformed. */
  readonly status: Int32Array;
}

export type EngineName = 'native' | 'node';

/** Runs jobs synchronously on the calling thread. */
export interface GcmEngine {
  readonly name: EngineName;
  /** Fills `job.status` (and `job.out`); returns how many messages opened. */
  run(job: GcmJob): number;
  /**
   * Adds SHA-256 of each item data[offs[2i] .. +offs[2i+1]], read as a
   * big-endian 256-bit number, to `acc` (32 bytes, big-endian) modulo 2^256.
   * With `groups` (one index per item), `acc` holds 32 bytes per group and
   * item i goes to group groups[i].
   */
  sumSha256(data: Uint8Array, offs: Int32Array, acc: Uint8Array, groups?: Int32Array): void;
}

/** The `node` implementation: one node:crypto cipher object per message. */
export const nodeEngine: GcmEngine = {
  name: 'node',
  run(job) {
    return runWithNodeCrypto(job);
  },
  sumSha256(data, offs, acc, groups) {
    for (let i = 0; i < offs.length; i += 2) {
      const h = createHash('sha256').update(data.subarray(offs[i], offs[i] + offs[i + 1])).digest();
      const at = groups ? 32 * groups[i / 2] : 0;
      if (at < 0 || at + 32 > acc.length) throw new MasterKeyError('INTERNAL', 'A digest group index is out of range; this is a bug.');
      let carry = 0;
      for (let j = 31; j >= 0; j--) {
        const v = acc[at + j] + h[j] + carry;
        acc[at + j] = v & 0xff;
        carry = v >> 8;
      }
    }
  },
};

/** The `node` implementation's loop. */
function runWithNodeCrypto(job: GcmJob): number {
  const nc = { createCipheriv, createDecipheriv };
  const N = 12;
  const T = 16;
  const K = 32;
  const nKeys = job.keys.length / K;
  const keys: Uint8Array[] = [];
  for (let k = 0; k < nKeys; k++) keys.push(job.keys.subarray(k * K, (k + 1) * K));
  let opened = 0;
  const count = job.status.length;
  for (let i = 0; i < count; i++) {
    const off = job.offs[2 * i];
    const len = job.offs[2 * i + 1];
    const want = job.keyIdx[i];
    job.status[i] = -2;
    if (off < 0 || len < N + T || off + len > job.data.length || want < -1 || want >= nKeys) continue;
    job.status[i] = -1;
    const msg = job.data.subarray(off, off + len);
    const oldAad = job.aad.subarray(job.aadOffs[4 * i], job.aadOffs[4 * i] + job.aadOffs[4 * i + 1]);
    let pt: Buffer | undefined;
    for (let k = want < 0 ? 0 : want; k < (want < 0 ? nKeys : want + 1) && !pt; k++) {
      const d = nc.createDecipheriv('aes-256-gcm', keys[k], msg.subarray(0, N));
      d.setAAD(oldAad);
      d.setAuthTag(msg.subarray(len - T));
      const body = d.update(msg.subarray(N, len - T));
      try {
        d.final();
        pt = body;
        job.status[i] = k;
      } catch {
        body.fill(0);
      }
    }
    if (!pt) continue;
    opened++;
    if (job.newKey && job.out && job.nonces) {
      const nonce = job.nonces.subarray(N * i, N * i + N);
      const e = nc.createCipheriv('aes-256-gcm', job.newKey, nonce);
      e.setAAD(job.aad.subarray(job.aadOffs[4 * i + 2], job.aadOffs[4 * i + 2] + job.aadOffs[4 * i + 3]));
      job.out.set(nonce, off);
      job.out.set(e.update(pt), off + N);
      e.final();
      job.out.set(e.getAuthTag(), off + len - T);
    }
    pt.fill(0);
  }
  return opened;
}

interface NativeModule {
  process(
    keys: Uint8Array,
    newKey: Uint8Array | null,
    data: Uint8Array,
    offs: Int32Array,
    aad: Uint8Array,
    aadOffs: Int32Array,
    keyIdx: Int32Array,
    nonces: Uint8Array | null,
    out: Uint8Array | null,
    status: Int32Array,
  ): number;
  sumSha256(data: Uint8Array, offs: Int32Array, acc: Uint8Array, groups?: Int32Array): void;
  readonly openssl: string;
}

/**
 * The folder of the addon (native/, with binding.gyp and the prebuilds),
 * searched upwards from here: src/crypto in the checkout, dist/src/crypto
 * in the checkout or in an installed package.
 */
function nativeDir(): string | undefined {
  for (let dir = __dirname, i = 0; i < 5; i++, dir = dirname(dir)) {
    const d = join(dir, 'native');
    if (existsSync(join(d, 'binding.gyp'))) return d;
  }
  return undefined;
}

/** This process's platform as prebuilds are named (linux-x64). */
const PLATFORM = `${process.platform}-${process.arch}`;

interface AddonLookup {
  /** The addon that fits this platform (native/prebuilds/<platform>-<arch>/, or native/build/Release after a local node-gyp build). */
  readonly path?: string;
  /** Why there is none, in a few words (for `master-key --version` and the report). */
  readonly why?: string;
}

let lookup: AddonLookup | undefined;

/**
 * Finds the addon with node-gyp-build, which picks the prebuild whose tags
 * fit this process (platform, architecture, libc; a Node-API build fits
 * every Node.js version). `npm run build` makes the linux-x64 prebuild and
 * the package ships it, so no consumer needs a compiler.
 */
function findAddon(): AddonLookup {
  if (lookup) return lookup;
  const dir = nativeDir();
  if (!dir) return (lookup = { why: 'the native folder of the package is missing' });
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    lookup = { path: nodeGypBuild.path(dir) };
  } catch {
    lookup = { why: `no prebuilt addon fits ${PLATFORM}` };
  }
  return lookup;
}

/** The addon's path (a prebuild, or a local build), or undefined when none fits this platform. */
export function nativeAddonPath(): string | undefined {
  return findAddon().path;
}

let native: GcmEngine | null | undefined;
let nativeOpenssl: string | undefined;
let notLoaded: string | undefined;

/**
 * The `native` implementation, or undefined when no addon fits this platform (or
 * the one that fits cannot be loaded here, e.g. a Node.js built without
 * OpenSSL's symbols). It is used only after it sealed and opened a known
 * message exactly as node:crypto does; an addon that disagrees is an
 * error, never ignored.
 */
export function nativeEngine(): GcmEngine | undefined {
  if (native === undefined) {
    const path = nativeAddonPath();
    native = null;
    if (path) {
      let mod: NativeModule | undefined;
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        mod = require(path) as NativeModule;
      } catch (e) {
        notLoaded = `the addon for ${PLATFORM} did not load: ${String((e as Error).message).split('\n')[0]}`;
      }
      if (mod) {
        const m = mod;
        const engine: GcmEngine = {
          name: 'native',
          run: (j) => m.process(j.keys, j.newKey ?? null, j.data, j.offs, j.aad, j.aadOffs, j.keyIdx, j.nonces ?? null, j.out ?? null, j.status),
          sumSha256: (d, o, a, g) => (g ? m.sumSha256(d, o, a, g) : m.sumSha256(d, o, a)),
        };
        if (!selfTest(engine)) {
          throw new MasterKeyError('INTERNAL', `The AES-GCM addon (${path}) does not agree with node:crypto; reinstall the package (or rebuild it with \`npm run build\` in a checkout).`);
        }
        nativeOpenssl = m.openssl;
        native = engine;
      }
    }
  }
  return native ?? undefined;
}

/** The OpenSSL version the native addon runs on (node's own), for reports. */
export function nativeOpenSslVersion(): string | undefined {
  return nativeEngine() ? nativeOpenssl : undefined;
}

/**
 * Which AES-GCM implementation this process runs, in the words `master-key
 * --version` and the report's header use: "OpenSSL batch addon" or
 * "node:crypto" (with why the addon is not used).
 */
export function aesGcmEngineDescription(): string {
  if (nativeEngine()) return `OpenSSL batch addon (${nativeOpenssl}, ${PLATFORM})`;
  return `node:crypto (${notLoaded ?? findAddon().why ?? 'the addon is not used'}; one OpenSSL call per value, slower on large tables)`;
}

/** The implementation production uses: the native addon when built, else node:crypto. */
export function defaultEngine(): GcmEngine {
  return nativeEngine() ?? nodeEngine;
}

export function engineByName(name: EngineName): GcmEngine {
  if (name === 'node') return nodeEngine;
  const n = nativeEngine();
  if (!n) throw new MasterKeyError('INTERNAL', `The AES-GCM addon is not available: ${aesGcmEngineDescription()}; run \`npm run build\` in a checkout.`);
  return n;
}

/** Re-seals one message with `engine` and checks it against node:crypto, both ways, with additional data. */
function selfTest(engine: GcmEngine): boolean {
  const k1 = Buffer.alloc(KEY_BYTES, 0x11);
  const k2 = Buffer.alloc(KEY_BYTES, 0x22);
  const nonce = Buffer.alloc(NONCE_BYTES, 0x33);
  const fresh = Buffer.alloc(NONCE_BYTES, 0x44);
  const pt = Buffer.from('self-test: 37 bytes of plaintext....', 'latin1');
  const aadOld = Buffer.from('old-aad');
  const aadNew = Buffer.from('new aad');
  const data = Buffer.concat([nonce, nodeAead.seal(k1, nonce, pt, aadOld)]);
  const out = Buffer.alloc(data.length);
  const status = new Int32Array(1);
  const aad = Buffer.concat([aadOld, aadNew]);
  const opened = engine.run({
    keys: Buffer.concat([k2, k1]),
    newKey: k2,
    data,
    offs: Int32Array.of(0, data.length),
    aad,
    aadOffs: Int32Array.of(0, aadOld.length, aadOld.length, aadNew.length),
    keyIdx: Int32Array.of(-1),
    nonces: fresh,
    out,
    status,
  });
  const expected = Buffer.concat([fresh, nodeAead.seal(k2, fresh, pt, aadNew)]);
  return opened === 1 && status[0] === 1 && out.equals(expected);
}

/** Bytes of a message around its plaintext. */
export const OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** Sizes of a job's parts. */
export interface JobSizes {
  readonly count: number;
  readonly keys: number;
  readonly data: number;
  readonly aad: number;
  readonly reseal: boolean;
}

/** A job whose parts all live in one ArrayBuffer (so it moves to a worker thread without a copy). */
export interface PackedJob extends GcmJob {
  readonly buffer: ArrayBuffer;
  readonly sizes: JobSizes;
}

const align4 = (n: number) => (n + 3) & ~3;

/** Lays out the parts of a job in `buffer` (a new one when absent). */
export function packJob(sizes: JobSizes, buffer?: ArrayBuffer): PackedJob {
  const { count, reseal } = sizes;
  const parts: Array<[string, number]> = [
    ['offs', count * 8],
    ['aadOffs', count * 16],
    ['keyIdx', count * 4],
    ['status', count * 4],
    ['keys', sizes.keys],
    ['newKey', reseal ? KEY_BYTES : 0],
    ['data', sizes.data],
    ['aad', sizes.aad],
    ['nonces', reseal ? count * NONCE_BYTES : 0],
    ['out', reseal ? sizes.data : 0],
  ];
  const total = parts.reduce((a, [, n]) => a + align4(n), 0);
  const buf = buffer && buffer.byteLength >= total ? buffer : new ArrayBuffer(total);
  const at: Record<string, number> = {};
  let o = 0;
  for (const [name, n] of parts) {
    at[name] = o;
    o += align4(n);
  }
  const u8 = (name: string, n: number) => new Uint8Array(buf, at[name], n);
  const i32 = (name: string, n: number) => new Int32Array(buf, at[name], n);
  return {
    buffer: buf,
    sizes,
    offs: i32('offs', count * 2),
    aadOffs: i32('aadOffs', count * 4),
    keyIdx: i32('keyIdx', count),
    status: i32('status', count),
    keys: u8('keys', sizes.keys),
    data: u8('data', sizes.data),
    aad: u8('aad', sizes.aad),
    ...(reseal ? { newKey: u8('newKey', KEY_BYTES), nonces: u8('nonces', count * NONCE_BYTES), out: u8('out', sizes.data) } : {}),
  };
}

/** Zeroes the key material a job carried (call when it is done). */
export function wipeKeys(job: GcmJob): void {
  job.keys.fill(0);
  job.newKey?.fill(0);
}
