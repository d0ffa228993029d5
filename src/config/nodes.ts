/**
 * Nodes: a node of the server is a config file on a host, named by an
 * address wherever a config path is accepted (the CLI's `--config`, the
 * provider's `config_files`, its import ids, the construct's `configFiles`).
 * The address is read here once, when the context is built; commands and
 * the rotation only see the node it became.
 *
 * Today every node is on this machine: an address is a local path. A file on
 * another host is written `ssh://[user@]host[:port]/path`; reaching it is
 * the work of the SSH transport (DESIGN.md section 9), which adds a host kind
 * beside `local` here and is refused until then.
 */
import { ConfigFormat } from './formats';
import { ConfigTarget, configTarget } from './config-file';
import { MasterKeyError } from '../errors';

/** Where a node's files are. */
export type Host = { readonly kind: 'local' };

/** This machine: the files are read and written by this process. */
export const LOCAL: Host = { kind: 'local' };

/** One node: its address as given, the host it is on, and its config file there. */
export interface ConfigNode {
  /** As the user wrote it (a local path may be relative). */
  readonly address: string;
  readonly host: Host;
  /** The config file on that host (its path absolute), its format and the entry holding the key. */
  readonly target: ConfigTarget;
}

/** The scheme of an address on another host. */
const REMOTE = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * The node an address names. A local path is made absolute (against the
 * working directory) and its format derived from its extension unless given.
 */
export function configNode(address: string, keyName: string, format?: ConfigFormat): ConfigNode {
  if (REMOTE.test(address)) {
    const scheme = address.slice(0, address.indexOf(':'));
    throw new MasterKeyError(
      'USAGE',
      `The config file ${address} is on another host (${scheme}://), and this version reaches config files on this machine only; run it where the file is and give its local path.`,
      { address },
    );
  }
  return { address, host: LOCAL, target: configTarget(address, keyName, format) };
}

/** Whether an address names a file on this machine (the only kind there is today). */
export function isLocalAddress(address: string): boolean {
  return !REMOTE.test(address);
}
