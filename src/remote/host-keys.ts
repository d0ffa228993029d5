/**
 * Host-key verification, as OpenSSH does it: a host is trusted only when
 * the key it presents is pinned (`host_key`: a `SHA256:…` fingerprint as
 * `ssh-keygen -lf` prints it, or the public key itself) or listed for it in
 * an OpenSSH known_hosts file, hashed entries (`|1|salt|hash`, HMAC-SHA1 of
 * the host name) included. Everything here is pure apart from reading the
 * known_hosts files; SHA-256 and HMAC-SHA1 come from node:crypto.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { MasterKeyError } from '../errors';

/** A public key as SSH sends it: its type and its wire-format blob. */
export interface PublicKey {
  readonly type: string;
  readonly blob: Buffer;
}

/** `SHA256:<base64 without padding>` of a key blob, as `ssh-keygen -lf` prints it. */
export function fingerprintOf(blob: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The type named at the start of a key blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...), or '' when it cannot be read. */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return '';
  const n = blob.readUInt32BE(0);
  return n > 0 && n < 64 && blob.length >= 4 + n ? blob.subarray(4, 4 + n).toString('latin1') : '';
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;
const KEY_TYPE = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)$/;

/** A pinned host key: its fingerprint, and its type when the pin gave the public key itself. */
export interface HostKeyPin {
  readonly fingerprint: string;
  readonly type?: string;
}

/**
 * Reads a `host_key` setting: `SHA256:` and 43 base64 characters, or a
 * public key line (`ssh-ed25519 AAAA… [comment]`, as in a `.pub` file).
 */
export function parseHostKeyPin(text: string, setting = 'host_key'): HostKeyPin {
  const t = text.trim();
  if (FINGERPRINT.test(t)) return { fingerprint: t };
  const [type, b64] = t.split(/\s+/);
  if (type && b64 && KEY_TYPE.test(type) && /^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
    const blob = Buffer.from(b64, 'base64');
    if (keyTypeOf(blob) === type) return { fingerprint: fingerprintOf(blob), type };
  }
  throw new MasterKeyError(
    'USAGE',
    `The ${setting} ${JSON.stringify(t.slice(0, 60))} is neither a SHA256 fingerprint (SHA256: and 43 base64 characters, as \`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` prints it on the host) nor a public key line (ssh-ed25519 AAAA…); give one of those.`,
  );
}

/** One usable line of a known_hosts file. */
export interface KnownHostsEntry {
  readonly file: string;
  readonly line: number;
  /** `@revoked`: this key is refused for the hosts it names. `@cert-authority` lines are skipped (certificates are not supported). */
  readonly revoked: boolean;
  /** The host patterns as written (comma-separated names, wildcards, negations, or one hashed `|1|salt|hash`). */
  readonly hosts: string;
  readonly key: PublicKey;
}

/** The lines of a known_hosts text that name a key (comments, blank, malformed and @cert-authority lines skipped). */
export function parseKnownHosts(text: string, file: string): KnownHostsEntry[] {
  const out: KnownHostsEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker = '';
    if (fields[0].startsWith('@')) marker = fields.shift()!;
    if (marker !== '' && marker !== '@revoked') return;
    const [hosts, type, b64] = fields;
    if (!hosts || !type || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return;
    const blob = Buffer.from(b64, 'base64');
    if (keyTypeOf(blob) !== type) return;
    out.push({ file, line: i + 1, revoked: marker === '@revoked', hosts, key: { type, blob } });
  });
  return out;
}

/** How known_hosts names a host: `host` on port 22, `[host]:port` on any other. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** OpenSSH's pattern match: `*` any run, `?` one character, case-insensitive. */
function wildcard(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');
  return re.test(name);
}

/** Whether `|1|salt|hash` is HMAC-SHA1(salt, name). */
function hashedMatch(field: string, name: string): boolean {
  const parts = field.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2], 'base64');
  const want = Buffer.from(parts[3], 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Whether an entry's host patterns name `name` (a negated pattern that matches excludes it). */
export function hostsMatch(hosts: string, name: string): boolean {
  if (hosts.startsWith('|')) return hashedMatch(hosts, name);
  let matched = false;
  for (const p of hosts.split(',')) {
    if (p.startsWith('!')) {
      if (wildcard(p.slice(1), name)) return false;
    } else if (wildcard(p, name)) {
      matched = true;
    }
  }
  return matched;
}

/** Where trust comes from for one host: pins, or known_hosts files. */
export type HostKeyPolicy =
  | { readonly kind: 'pinned'; readonly pins: readonly HostKeyPin[]; readonly setting: string }
  | { readonly kind: 'known-hosts'; readonly files: readonly string[]; readonly explicit: boolean };

/** The verdict on a presented key. */
export type HostKeyVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: 'HOST_KEY_UNKNOWN' | 'HOST_KEY_MISMATCH'; readonly why: string; readonly expected: readonly string[] };

/** The known_hosts lines of every readable file (a missing default file is no entries; an unreadable given one is an error). */
export function readKnownHosts(files: readonly string[], explicit: boolean): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (!explicit && code === 'ENOENT') continue;
      throw new MasterKeyError('USAGE', `Cannot read the known_hosts file ${f} (${code}); give a readable OpenSSH known_hosts file, or pin the host key with host_key.`);
    }
    entries.push(...parseKnownHosts(text, f));
  }
  return entries;
}

/** The key types known_hosts (or the pins) list for a host: the ones to ask the server for first. */
export function preferredKeyTypes(policy: HostKeyPolicy, host: string, port: number): string[] {
  if (policy.kind === 'pinned') return [...new Set(policy.pins.map((p) => p.type).filter((t): t is string => t !== undefined))];
  const name = knownHostsName(host, port);
  return [...new Set(readKnownHosts(policy.files, policy.explicit).filter((e) => !e.revoked && hostsMatch(e.hosts, name)).map((e) => e.key.type))];
}

/** Decides whether the key a host presented is trusted (reads the known_hosts files each time: they may change between runs). */
export function checkHostKey(policy: HostKeyPolicy, host: string, port: number, presented: PublicKey): HostKeyVerdict {
  const fp = fingerprintOf(presented.blob);
  if (policy.kind === 'pinned') {
    if (policy.pins.some((p) => p.fingerprint === fp)) return { ok: true };
    return { ok: false, code: 'HOST_KEY_MISMATCH', why: `the pinned ${policy.setting}`, expected: policy.pins.map((p) => p.fingerprint) };
  }
  const name = knownHostsName(host, port);
  const entries = readKnownHosts(policy.files, policy.explicit).filter((e) => hostsMatch(e.hosts, name));
  const same = entries.filter((e) => e.key.blob.equals(presented.blob));
  const revoked = same.find((e) => e.revoked);
  if (revoked) return { ok: false, code: 'HOST_KEY_MISMATCH', why: `${revoked.file} line ${revoked.line}, which marks this key @revoked`, expected: [] };
  if (same.length > 0) return { ok: true };
  const sameType = entries.filter((e) => !e.revoked && e.key.type === presented.type);
  if (sameType.length > 0) {
    return { ok: false, code: 'HOST_KEY_MISMATCH', why: `${sameType[0].file} line ${sameType[0].line}`, expected: sameType.map((e) => fingerprintOf(e.key.blob)) };
  }
  const others = entries.filter((e) => !e.revoked);
  const where = policy.files.join(' or ') || 'no known_hosts file';
  return {
    ok: false,
    code: 'HOST_KEY_UNKNOWN',
    why: others.length > 0 ? `${where} (which lists only ${[...new Set(others.map((e) => e.key.type))].join(', ')} keys for ${name})` : where,
    expected: [],
  };
}
