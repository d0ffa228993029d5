/**
 * How a host is reached over SSH: the settings a user declares (named as
 * terraform's `connection` block: user, port, private_key_file, agent,
 * host_key, known_hosts, bastion_host / bastion_user / bastion_port /
 * bastion_host_key, timeout; and remote_command), shared by every node or
 * given for one node, resolved with OpenSSH's defaults into one `SshHost`
 * per node. Key content never appears here: a private key is named by its
 * file, read only when connecting.
 */
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { MasterKeyError } from '../errors';
import { SshAddress, hostLabel } from './address';
import { HostKeyPolicy, parseHostKeyPin } from './host-keys';

/** Connection settings as declared; every one optional. */
export interface SshSettings {
  /** The login name. @default the address's, else the local user name (as OpenSSH) */
  readonly user?: string;
  /** @default the address's, else 22 */
  readonly port?: number;
  /** A private key file (OpenSSH format, unencrypted; load an encrypted one into the agent). @default the agent, then ~/.ssh/id_ed25519 and ~/.ssh/id_rsa */
  readonly privateKeyFile?: string;
  /** Use the SSH agent at $SSH_AUTH_SOCK. @default true */
  readonly agent?: boolean;
  /** The host's key, pinned: `SHA256:…` as `ssh-keygen -lf` prints it, or the public key line. @default known_hosts decides */
  readonly hostKey?: string;
  /** An OpenSSH known_hosts file (hashed entries included). @default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts */
  readonly knownHosts?: string;
  /** One jump host to connect through. */
  readonly bastionHost?: string;
  /** @default the user */
  readonly bastionUser?: string;
  /** @default 22 */
  readonly bastionPort?: number;
  /** The jump host's key, pinned as host_key is. @default known_hosts decides */
  readonly bastionHostKey?: string;
  /** How long to wait for a connection: `30s`, `5m`, `1m30s` or a number of seconds. @default 30s */
  readonly timeout?: string;
  /** The command that runs master-key on the host (Node.js 20+ and this package there). @default master-key (from the host's PATH) */
  readonly remoteCommand?: string;
}

/** Settings for one node, by its address as written in the config files. */
export interface SshNodeSettings extends SshSettings {
  readonly address: string;
}

/** The settings by their names in terraform's `connection` block (the provider's `connection` map, the constructs' `connection` props in snake_case). */
export const CONNECTION_SETTINGS = {
  user: 'user',
  port: 'port',
  private_key_file: 'privateKeyFile',
  agent: 'agent',
  host_key: 'hostKey',
  known_hosts: 'knownHosts',
  bastion_host: 'bastionHost',
  bastion_user: 'bastionUser',
  bastion_port: 'bastionPort',
  bastion_host_key: 'bastionHostKey',
  timeout: 'timeout',
  remote_command: 'remoteCommand',
} as const satisfies Record<string, keyof SshSettings>;

export type ConnectionName = keyof typeof CONNECTION_SETTINGS;

/**
 * A `connection` map as terraform gives it (every value a string: terraform
 * turns `port = 22` and `agent = false` into "22" and "false") as settings.
 * `where` names the map in sentences (`connection`, `node_connections["…"]`).
 * Names are checked, ports are whole numbers, agent is true or false, files
 * are absolute paths, and a private key's content given where its path
 * belongs is refused without being repeated.
 */
export function connectionOf(map: Readonly<Record<string, string>>, where = 'ssh'): SshSettings {
  const out: Record<string, string | number | boolean> = {};
  for (const [name, raw] of Object.entries(map)) {
    const field = (CONNECTION_SETTINGS as Record<string, keyof SshSettings | undefined>)[name];
    if (field === undefined) {
      throw new MasterKeyError('USAGE', `${where} has no setting ${JSON.stringify(name.slice(0, 40))}; use the names of terraform's connection block: ${Object.keys(CONNECTION_SETTINGS).join(', ')}.`);
    }
    const value = raw.trim();
    const setting = `${where}.${name}`;
    if (/-----BEGIN|PRIVATE KEY/.test(value)) throw new MasterKeyError('USAGE', `${setting} holds a key, not a file's path; give the path of the private key file (its content must never be in the configuration or state).`);
    if (name === 'port' || name === 'bastion_port') {
      if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw new MasterKeyError('USAGE', `${setting} ${JSON.stringify(value.slice(0, 20))} is not a port number from 1 to 65535.`);
      out[field] = Number(value);
    } else if (name === 'agent') {
      if (value !== 'true' && value !== 'false') throw new MasterKeyError('USAGE', `${setting} ${JSON.stringify(value.slice(0, 20))} is neither true nor false.`);
      out[field] = value === 'true';
    } else if (name === 'private_key_file' || name === 'known_hosts') {
      if (!value.startsWith('/')) throw new MasterKeyError('USAGE', `${setting} ${JSON.stringify(value.slice(0, 60))} is not an absolute path; write it absolute, e.g. with abspath().`);
      out[field] = value;
    } else if (name === 'timeout') {
      parseTimeout(value, setting);
      out[field] = value;
    } else {
      out[field] = raw;
    }
  }
  return out as SshSettings;
}

/** One end of an SSH connection and how its host key is checked. */
export interface SshEndpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly hostKeys: HostKeyPolicy;
}

/** A host reached over SSH: where, through what, as whom, and which master-key runs there. */
export interface SshHost {
  readonly kind: 'ssh';
  /** `user@host:port`, with ` via user@bastion:port` when jumping. */
  readonly label: string;
  readonly target: SshEndpoint;
  readonly bastion?: SshEndpoint;
  /** Private key files to offer, in order, and whether they were given (a missing given file is an error; a missing default is skipped). */
  readonly keyFiles: readonly string[];
  readonly keyFilesGiven: boolean;
  /** The agent's socket, when one is used. */
  readonly agentSocket?: string;
  readonly timeoutMs: number;
  readonly remoteCommand: string;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_REMOTE_COMMAND = 'master-key';

/** A duration as terraform writes it (`30s`, `5m`, `1m30s`, `2h`) or a number of seconds; milliseconds. */
export function parseTimeout(text: string | number, setting = 'timeout'): number {
  const t = typeof text === 'number' ? String(text) : text.trim();
  let ms: number | undefined;
  if (/^\d+(\.\d+)?$/.test(t)) ms = Number(t) * 1000;
  else if (/^(\d+h)?(\d+m)?(\d+(\.\d+)?s)?$/.test(t) && t !== '') {
    const part = (u: string) => Number(new RegExp(`(\\d+(?:\\.\\d+)?)${u}`).exec(t)?.[1] ?? 0);
    ms = (part('h') * 3600 + part('m') * 60 + part('s')) * 1000;
  }
  if (ms === undefined || !(ms >= 1000) || ms > 3_600_000) {
    throw new MasterKeyError('USAGE', `The ${setting} ${JSON.stringify(String(text).slice(0, 30))} is not a duration from 1s to 1h; write it like 30s, 5m or 1m30s.`);
  }
  return Math.round(ms);
}

function checkPort(p: number | undefined, setting: string): number | undefined {
  if (p === undefined) return undefined;
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new MasterKeyError('USAGE', `The ${setting} ${String(p)} is not a port number from 1 to 65535.`);
  return p;
}

function checkUser(u: string | undefined, setting: string): string | undefined {
  if (u === undefined) return undefined;
  if (!/^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}\$?$/.test(u)) throw new MasterKeyError('USAGE', `The ${setting} ${JSON.stringify(u.slice(0, 40))} is not a login name.`);
  return u;
}

function checkHost(h: string, setting: string): string {
  if (!/^[A-Za-z0-9.:-]{1,253}$/.test(h) || h.startsWith('-')) throw new MasterKeyError('USAGE', `The ${setting} ${JSON.stringify(h.slice(0, 60))} is not a host name or an IP address.`);
  return h;
}

/** The local user name, as OpenSSH's default login (from the environment, else the passwd entry). */
function localUser(env: NodeJS.ProcessEnv): string {
  if (env.USER) return env.USER;
  if (env.LOGNAME) return env.LOGNAME;
  try {
    return userInfo().username;
  } catch {
    return 'root';
  }
}

/** The known_hosts files to read, or the pin, for one endpoint. */
function hostKeyPolicy(pin: string | undefined, pinSetting: string, knownHosts: string | undefined, home: string | undefined): HostKeyPolicy {
  if (pin !== undefined) return { kind: 'pinned', pins: [parseHostKeyPin(pin, pinSetting)], setting: pinSetting };
  if (knownHosts !== undefined) return { kind: 'known-hosts', files: [knownHosts], explicit: true };
  return { kind: 'known-hosts', files: [...(home ? [join(home, '.ssh', 'known_hosts')] : []), '/etc/ssh/ssh_known_hosts'], explicit: false };
}

/**
 * The host a node's address names, with its settings: the node's own over
 * the shared ones, the address's user and port over both, then OpenSSH's
 * defaults from `env` (HOME, SSH_AUTH_SOCK, USER).
 */
export function resolveSshHost(a: SshAddress, shared: SshSettings = {}, own: SshSettings = {}, env: NodeJS.ProcessEnv = process.env): SshHost {
  const s: SshSettings = { ...definedOnly(shared), ...definedOnly(own) };
  const user = a.user ?? checkUser(s.user, 'user') ?? localUser(env);
  const port = a.port ?? checkPort(s.port, 'port') ?? 22;
  const home = env.HOME;
  const target: SshEndpoint = { host: a.host, port, user, hostKeys: hostKeyPolicy(s.hostKey, 'host_key', s.knownHosts, home) };
  let bastion: SshEndpoint | undefined;
  if (s.bastionHost !== undefined) {
    bastion = {
      host: checkHost(s.bastionHost, 'bastion_host'),
      port: checkPort(s.bastionPort, 'bastion_port') ?? 22,
      user: checkUser(s.bastionUser, 'bastion_user') ?? user,
      hostKeys: hostKeyPolicy(s.bastionHostKey, 'bastion_host_key', s.knownHosts, home),
    };
  } else if (s.bastionUser !== undefined || s.bastionPort !== undefined || s.bastionHostKey !== undefined) {
    throw new MasterKeyError('USAGE', 'bastion_user, bastion_port or bastion_host_key is set without bastion_host; name the jump host with bastion_host (--bastion on the CLI) or leave them out.');
  }
  const keyFilesGiven = s.privateKeyFile !== undefined;
  const keyFiles = keyFilesGiven ? [s.privateKeyFile!] : home ? [join(home, '.ssh', 'id_ed25519'), join(home, '.ssh', 'id_rsa')] : [];
  const agentSocket = s.agent !== false && env.SSH_AUTH_SOCK ? env.SSH_AUTH_SOCK : undefined;
  const remoteCommand = s.remoteCommand ?? DEFAULT_REMOTE_COMMAND;
  if (remoteCommand.trim() === '' || /[\r\n\u0000]/.test(remoteCommand)) throw new MasterKeyError('USAGE', 'The remote_command is empty or spans several lines; give the command that runs master-key on the host, e.g. /usr/bin/npx master-key.');
  const label = `${hostLabel(user, a.host, port)}${bastion ? ` via ${hostLabel(bastion.user, bastion.host, bastion.port)}` : ''}`;
  return { kind: 'ssh', label, target, bastion, keyFiles, keyFilesGiven, agentSocket, timeoutMs: s.timeout !== undefined ? parseTimeout(s.timeout) : DEFAULT_TIMEOUT_MS, remoteCommand };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as Partial<T>;
}
