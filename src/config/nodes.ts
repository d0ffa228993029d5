/**
 * Nodes: a node of the server is a config file on a host, named by an
 * address wherever a config path is accepted (the CLI's `--config`, the
 * provider's `config_files`, its import ids, the construct's `configFiles`).
 * The address is read here once, when the context is built; commands and
 * the rotation only see the node it became.
 *
 * A local path names a file on this machine. `ssh://[user@]host[:port]/path`
 * names a file on another host, reached over SSH (src/remote/): its host
 * carries the connection settings, the shared ones with the node's own over
 * them (DESIGN.md section 9).
 */
import { ConfigFormat } from './formats';
import { ConfigTarget, configTarget } from './config-file';
import { MasterKeyError } from '../errors';
import { isSshAddress, parseSshAddress, shownAddress } from '../remote/address';
import { SshHost, SshNodeSettings, SshSettings, resolveSshHost } from '../remote/connection';

/** This machine: the files are read and written by this process. */
export interface LocalHost {
  readonly kind: 'local';
}

/** Where a node's files are: this machine, or a host reached over SSH. */
export type Host = LocalHost | SshHost;

/** This machine. */
export const LOCAL: LocalHost = { kind: 'local' };

/** One node: its address as given, the host it is on, and its config file there. */
export interface ConfigNode {
  /** As the user wrote it (a local path may be relative). */
  readonly address: string;
  readonly host: Host;
  /** The config file on that host (its path absolute), its format and the entry holding the key. */
  readonly target: ConfigTarget;
}

/** How nodes on other hosts are reached: settings shared by all, settings per node (by address), and the environment OpenSSH's defaults come from. */
export interface NodeConnections {
  readonly shared?: SshSettings;
  readonly perNode?: readonly SshNodeSettings[];
  readonly env?: NodeJS.ProcessEnv;
}

/** The scheme of an address on another host. */
const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * The node an address names. A local path is made absolute (against the
 * working directory) and its format derived from its extension unless given;
 * an `ssh://` address gets its host with the connection settings that apply.
 */
export function configNode(address: string, keyName: string, format?: ConfigFormat, connections: NodeConnections = {}): ConfigNode {
  if (isSshAddress(address)) {
    const a = parseSshAddress(address);
    const own = connections.perNode?.find((n) => n.address === address);
    const host = resolveSshHost(a, connections.shared, own, connections.env ?? process.env);
    return { address, host, target: configTarget(a.path, keyName, format) };
  }
  if (REMOTE.test(address)) {
    const scheme = address.slice(0, address.indexOf(':'));
    const a = shownAddress(address);
    throw new MasterKeyError('USAGE', `The config file ${JSON.stringify(a)} names a host by ${JSON.stringify(`${scheme.slice(0, 20)}://`)}, which is not supported; reach other hosts with ssh://[user@]host[:port]/path, or give a local path.`, { address: a });
  }
  return { address, host: LOCAL, target: configTarget(address, keyName, format) };
}

/** The nodes of an installation, in order (the first is the primary); per-node settings must name one of them, and nodes on one host must reach it the same way. */
export function configNodes(addresses: readonly string[], keyName: string, format: ConfigFormat | undefined, connections: NodeConnections = {}): ConfigNode[] {
  for (const n of connections.perNode ?? []) {
    if (!addresses.includes(n.address)) {
      throw new MasterKeyError('USAGE', `The SSH settings for ${n.address} name no config file of this installation; give them for one of ${addresses.join(', ')}.`);
    }
  }
  const nodes = addresses.map((a) => configNode(a, keyName, format, connections));
  const seen = new Map<string, { node: ConfigNode; key: string }>();
  for (const n of nodes) {
    if (n.host.kind !== 'ssh') continue;
    const key = JSON.stringify(n.host);
    const first = seen.get(n.host.label);
    if (first && first.key !== key) {
      throw new MasterKeyError('USAGE', `${first.node.address} and ${n.address} are on the same host (${n.host.label}) but reach it with different SSH settings; give the settings for that host once.`);
    }
    if (!first) seen.set(n.host.label, { node: n, key });
  }
  return nodes;
}

/** Whether an address names a file on this machine. */
export function isLocalAddress(address: string): boolean {
  return !REMOTE.test(address);
}

/** A host's name in messages and reports: `local` or `user@host:port`. */
export function hostName(h: Host): string {
  return h.kind === 'local' ? 'local' : h.label;
}
