/**
 * The CDK for Terraform library a construct tree belongs to: HashiCorp's
 * `cdktf` (0.21, deprecated upstream) or its community fork CDK Terrain
 * (`cdktn` 0.24), which has the same API under another package name. The
 * constructs of this package are written once against that API and create
 * their resources with the classes of whichever library built the stack they
 * are added to, so the same source works in a cdktf app and in a cdktn app.
 * Both are optional peer dependencies: a project installs the one it uses.
 */
import type * as Cdktf from 'cdktf';
import type { IConstruct } from 'constructs';
import { MasterKeyError } from '../src/errors';

/** The package names of the supported libraries, in the order they are tried. */
export const FRAMEWORK_PACKAGES = ['cdktf', 'cdktn'] as const;
/** A supported library's package name. */
export type FrameworkName = (typeof FRAMEWORK_PACKAGES)[number];

/** The library's exports (cdktn exports the same API as cdktf). */
export type FrameworkModule = typeof Cdktf;

/** A loaded library and its package name. */
export interface Framework {
  readonly name: FrameworkName;
  readonly lib: FrameworkModule;
}

const loaded = new Map<FrameworkName, Framework | undefined>();

/** Loads a library by package name; undefined when it is not installed. */
export function loadFramework(name: FrameworkName): Framework | undefined {
  if (!loaded.has(name)) {
    let lib: FrameworkModule | undefined;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      lib = require(name) as FrameworkModule;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'MODULE_NOT_FOUND' || !err.message.includes(`'${name}'`)) throw e;
    }
    loaded.set(name, lib && { name, lib });
  }
  return loaded.get(name);
}

/** The installed libraries, in `FRAMEWORK_PACKAGES` order. */
export function installedFrameworks(): Framework[] {
  return FRAMEWORK_PACKAGES.map(loadFramework).filter((f): f is Framework => f !== undefined);
}

/**
 * The library whose `TerraformStack` or `App` holds `scope` (the nearest one
 * up the tree, `scope` included). Throws a USAGE error naming the construct and the fix when the scope
 * is in no stack of an installed library.
 */
export function frameworkOf(scope: IConstruct, what = `MasterKey ${scope.node.path}`): Framework {
  const installed = installedFrameworks();
  for (const c of [...scope.node.scopes].reverse()) {
    const f = installed.find((fw) => c instanceof fw.lib.TerraformStack || c instanceof fw.lib.App);
    if (f) return f;
  }
  const names = installed.map((f) => f.name).join(' or ') || 'cdktf or cdktn (neither is installed)';
  throw new MasterKeyError('USAGE', `${what} is not inside an App or TerraformStack of ${names}; build the app and its stacks with the classes of one library, and install that library once (npm ls cdktf cdktn shows duplicates).`);
}

/**
 * The library an app should use: `preferred` (e.g. from MK_CDK) when given,
 * else the only one installed, else cdktf. Throws a USAGE error when the
 * preferred one is unknown or not installed.
 */
export function chooseFramework(preferred?: string): Framework {
  if (preferred !== undefined && preferred !== '') {
    if (!(FRAMEWORK_PACKAGES as readonly string[]).includes(preferred)) {
      throw new MasterKeyError('USAGE', `"${preferred}" is not a supported CDK for Terraform library; use one of ${FRAMEWORK_PACKAGES.join(', ')}.`);
    }
    const f = loadFramework(preferred as FrameworkName);
    if (!f) throw new MasterKeyError('USAGE', `${preferred} is not installed; run \`npm install ${preferred}\` or choose one of ${installedFrameworks().map((x) => x.name).join(', ') || 'cdktf, cdktn'}.`);
    return f;
  }
  const installed = installedFrameworks();
  if (installed.length === 0) throw new MasterKeyError('USAGE', 'Neither cdktf nor cdktn is installed; run `npm install cdktn constructs` (or `npm install cdktf constructs`).');
  return installed[0];
}
