/**
 * Addresses of files on other hosts: `ssh://[user@]host[:port]/absolute/path`
 * (the form of the IETF draft for SSH URIs, as `git` and `scp` users know
 * it). Parsing is pure and total: any string either becomes an `SshAddress`
 * or a USAGE error saying what is wrong and how to write it; nothing is
 * looked up. `parseSshAddress` is the one parser (the fuzzing harness calls
 * it directly).
 */
import { isIP } from 'node:net';
import { posix } from 'node:path';
import { MasterKeyError } from '../errors';

/** A file on a host reached over SSH. */
export interface SshAddress {
  /** The login name, when the address gives one. */
  readonly user?: string;
  /** A host name, an IPv4 address, or an IPv6 address (without brackets). */
  readonly host: string;
  /** The port, when the address gives one. */
  readonly port?: number;
  /** The file's absolute path on that host (percent-escapes decoded). */
  readonly path: string;
}

const SCHEME = /^ssh:\/\//i;
/** A POSIX login name (letters, digits, dot, underscore, dash; a trailing `$` for machine accounts). */
const USER = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}\$?$/;
/** A DNS name or a dotted IPv4 address: labels of letters, digits and dashes. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const EXAMPLE = 'ssh://root@10.0.0.2:22/etc/act/act.env';

/** Whether `address` is written as an SSH address (it may still be malformed). */
export function isSshAddress(address: string): boolean {
  return SCHEME.test(address);
}

/**
 * Where a password written into the address (`user:password@`) would be,
 * hidden by messages wherever the address is malformed. In an ssh://
 * address: from the first `:` of the authority to the last `@`, unless that
 * `:` is a port's (digits, then the path). In anything else, everything
 * before the last `@` (where the password sits cannot be told).
 */
function passwordSpan(address: string): [number, number] | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return undefined;
  if (!SCHEME.test(address)) return at > 0 ? [0, at] : undefined;
  const colon = address.indexOf(':', 'ssh://'.length);
  if (colon < 0 || colon > at) return undefined;
  const slash = address.indexOf('/', colon);
  if (slash >= 0 && slash < at && /^\d+$/.test(address.slice(colon + 1, slash))) return undefined;
  return [colon + 1, at];
}

/** The address as it may be shown: a password (`user:secret@`) replaced by `***`, long ones cut. */
export function shownAddress(address: string): string {
  const span = passwordSpan(address);
  const safe = span ? `${address.slice(0, span[0])}***${address.slice(span[1])}` : address;
  return safe.length > 200 ? `${safe.slice(0, 200)}…` : safe;
}

/** A part of the address quoted in a message, ` ("part")`, or nothing when showing it could show a password. */
function quoted(address: string, part: string): string {
  const span = passwordSpan(address);
  const hidden = span ? address.slice(span[0], span[1]) : '';
  return hidden && (hidden.includes(part) || part.includes(hidden)) ? '' : ` (${JSON.stringify(part)})`;
}

function bad(address: string, what: string): MasterKeyError {
  const a = shownAddress(address);
  return new MasterKeyError('USAGE', `The address ${JSON.stringify(a)} ${what}; write it as ssh://[user@]host[:port]/absolute/path, e.g. ${EXAMPLE}.`, { address: a });
}

/** Parses `ssh://[user@]host[:port]/path`; throws a USAGE error naming the problem. */
export function parseSshAddress(address: string): SshAddress {
  if (typeof address !== 'string' || !SCHEME.test(address)) throw bad(String(address), 'is not an ssh:// address');
  if (/[\u0000-\u0020\u007f]/.test(address)) throw bad(address, 'holds a space or a control character (write a space in the path as %20)');
  if (/[\ud800-\udfff]/u.test(address)) throw bad(address, 'holds half of a UTF-16 surrogate pair, which is no character');
  const rest = address.slice('ssh://'.length);
  const slash = rest.indexOf('/');
  if (slash < 0) throw bad(address, 'names no file (the path is missing)');
  const authority = rest.slice(0, slash);
  const rawPath = rest.slice(slash);
  const at = authority.lastIndexOf('@');
  const userPart = at >= 0 ? authority.slice(0, at) : undefined;
  const hostPort = at >= 0 ? authority.slice(at + 1) : authority;
  let user: string | undefined;
  if (userPart !== undefined) {
    if (userPart.includes(':')) throw bad(address, 'holds a password (user:password@); passwords are never accepted: log in with a key or the SSH agent');
    const decoded = decodePart(address, userPart, 'user name');
    if (!USER.test(decoded)) throw bad(address, `has a user name${quoted(address, decoded.slice(0, 40))} that is not a login name`);
    user = decoded;
  }
  const { host, port } = hostAndPort(address, hostPort);
  return { ...(user !== undefined ? { user } : {}), host, ...(port !== undefined ? { port } : {}), path: pathOf(address, rawPath) };
}

function hostAndPort(address: string, hostPort: string): { host: string; port?: number } {
  let host: string;
  let portText: string | undefined;
  if (hostPort.startsWith('[')) {
    const close = hostPort.indexOf(']');
    if (close < 0) throw bad(address, 'opens an IPv6 address with [ but does not close it');
    host = hostPort.slice(1, close);
    const after = hostPort.slice(close + 1);
    if (after !== '' && !after.startsWith(':')) throw bad(address, 'has something other than :port after the IPv6 address');
    portText = after === '' ? undefined : after.slice(1);
    if (isIP(host) !== 6) throw bad(address, `has something in brackets${quoted(address, host.slice(0, 60))} that is not an IPv6 address`);
  } else {
    const colon = hostPort.indexOf(':');
    host = colon < 0 ? hostPort : hostPort.slice(0, colon);
    portText = colon < 0 ? undefined : hostPort.slice(colon + 1);
    if (host === '') throw bad(address, 'names no host');
    if (!HOSTNAME.test(host)) throw bad(address, `has a host${quoted(address, host.slice(0, 60))} that is not a host name or an IP address (write an IPv6 address in brackets)`);
  }
  if (portText === undefined) return { host };
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) throw bad(address, `has a port${quoted(address, portText.slice(0, 10))} that is not a number from 1 to 65535`);
  return { host, port: Number(portText) };
}

function pathOf(address: string, raw: string): string {
  if (/[?#]/.test(raw)) throw bad(address, 'has a ? or # in its path (write them as %3F and %23 if the file name holds them)');
  const path = decodePart(address, raw, 'path');
  if (path.includes('\u0000')) throw bad(address, 'has a NUL character in its path');
  if (path === '/' || path.endsWith('/')) throw bad(address, 'names a directory, not a file');
  if (path.startsWith('/~')) throw bad(address, 'starts its path with ~, which is not expanded; give the absolute path');
  if (posix.normalize(path) !== path) throw bad(address, 'has . or .. or doubled slashes in its path; give the path as it is, e.g. /etc/act/act.env');
  return path;
}

function decodePart(address: string, text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw bad(address, `has a malformed percent-escape in its ${what}`);
  }
}

/** How a host is named in messages and reports: `user@host:port` (IPv6 in brackets). */
export function hostLabel(user: string, host: string, port: number): string {
  return `${user}@${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

/** The address of a file on a host, written back (path percent-escaped where needed). */
export function formatSshAddress(a: { user?: string; host: string; port?: number; path: string }): string {
  const host = isIP(a.host) === 6 ? `[${a.host}]` : a.host;
  const path = a.path.split('/').map((seg) => encodeURIComponent(seg).replace(/%40/g, '@').replace(/%3A/gi, ':').replace(/%2B/gi, '+').replace(/%2C/gi, ',').replace(/%3D/gi, '=')).join('/');
  return `ssh://${a.user !== undefined ? `${a.user}@` : ''}${host}${a.port !== undefined ? `:${a.port}` : ''}${path}`;
}
