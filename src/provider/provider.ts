/**
 * The tfplugin6 `Provider` service: resource `masterkey_key` (read, plan,
 * apply, import) and data source `masterkey_status`. Values arrive and leave
 * as msgpack DynamicValues; every failure is a diagnostic (the CLI's sentence,
 * its error code in the detail), never a gRPC error, so terraform shows it
 * where it happened and an apply that fails leaves no tainted resource.
 */
import type * as grpc from '@grpc/grpc-js';
import { MasterKeyError, isMasterKeyError } from '../errors';
import { Diagnostic, INSTALLATION_ARGUMENTS, declaredOf, installationOf, validateKey, validateStatus } from './arguments';
import { ObjectValue, UNKNOWN, Value, decodeDynamic, encodeDynamic, hasUnknown, objectOrNull } from './cty';
import type { KeyFacts } from './engine';
import { KEY_RESOURCE, PROVIDER_BLOCK, STATUS_DATA_SOURCE, computedNames, objectOf, schemaMessage, typed } from './schema';
import { log } from './plugin-server';

export const RESOURCE_TYPE = 'masterkey_key';
export const DATA_SOURCE_TYPE = 'masterkey_status';

const DAY_MS = 86_400_000;

type Req = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Res = Record<string, unknown>;

/**
 * The engine adapter, loaded on first use: Terraform launches the provider
 * several times per command, mostly for schemas and validation, which need
 * neither the engine nor the PostgreSQL driver.
 */
let engineModule: typeof import('./engine') | undefined;
const engine = (): typeof import('./engine') => (engineModule ??= require('./engine') as typeof import('./engine'));

/** RPCs running now (the process waits for them before it exits on its own). */
let inFlight = 0;
export const rpcsInFlight = (): number => inFlight;

/** Wraps an async handler as a gRPC unary method; an unexpected exception becomes an error diagnostic. */
function unary(name: string, fn: (req: Req) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    const t0 = Date.now();
    inFlight++;
    Promise.resolve()
      .then(() => fn(call.request))
      .then(
        (res) => cb(null, res),
        (e: unknown) => cb(null, { diagnostics: [errorDiagnostic(e)] }),
      )
      .finally(() => {
        inFlight--;
        log('debug', `${name} done`, { ms: Date.now() - t0 });
      });
  };
}

/** A resource value from the wire, typed by the resource's schema. */
const keyValue = (dv: unknown): ObjectValue | null => typed(KEY_RESOURCE, objectOrNull(decodeDynamic(dv as Parameters<typeof decodeDynamic>[0]), `a ${RESOURCE_TYPE} value`));

/** A data source configuration from the wire, typed by its schema. */
const statusValue = (dv: unknown): ObjectValue | null => typed(STATUS_DATA_SOURCE, objectOrNull(decodeDynamic(dv as Parameters<typeof decodeDynamic>[0]), `a ${DATA_SOURCE_TYPE} configuration`));

/** The CLI's sentence as the summary, its code in the detail. */
export function errorDiagnostic(e: unknown): Diagnostic {
  const err = isMasterKeyError(e) ? e : new MasterKeyError('INTERNAL', `Internal error in terraform-provider-masterkey: ${(e as Error)?.message ?? String(e)}; please report it.`);
  if (err.code === 'INTERNAL') log('error', 'internal error', { error: String((e as Error)?.stack ?? e) });
  return { severity: 'ERROR', summary: err.message, detail: `Error code ${err.code} (\`master-key\` reports the same and exits ${err.exitCode}).` };
}

const warning = (summary: string, detail = ''): Diagnostic => ({ severity: 'WARNING', summary, detail });

function contextOf(o: ObjectValue) {
  return engine().installationContext(installationOf(o), (line) => log('info', line));
}

const ageDays = (keySetAt: string, at: Date): number => Math.max(0, Math.floor((at.getTime() - new Date(keySetAt).getTime()) / DAY_MS));

/** The resource's computed attributes from the key's real state. */
function keyComputed(o: ObjectValue, f: KeyFacts, at: Date): ObjectValue {
  return {
    id: o.name,
    fingerprint: f.fingerprint,
    key_set_at: f.keySetAt,
    key_age_days: ageDays(f.keySetAt, at),
    secrets: f.secrets.values,
    secrets_by_kind: { ...f.secrets.byKind },
    nodes_in_sync: f.nodesInSync,
    database_generation: f.generation,
    last_report: f.lastReport ?? null,
  };
}

/** What planned_private carries from plan to apply: the instant the plan was made for and what it decided. */
interface PlannedPrivate {
  readonly at: string;
  readonly windowStart?: string;
  readonly policyDays?: number;
  readonly rotate: boolean;
}

function readPrivate(b: Buffer | undefined): PlannedPrivate | undefined {
  if (!b || b.length === 0) return undefined;
  try {
    return JSON.parse(b.toString('utf8')) as PlannedPrivate;
  } catch {
    return undefined;
  }
}

async function readResource(req: Req): Promise<Res> {
  const prior = keyValue(req.current_state);
  if (!prior) return { new_state: encodeDynamic(null), private: req.private };
  try {
    const ctx = contextOf(prior);
    const f = await engine().readKey(ctx, { verify: prior.verify_secrets === true, refusePending: true });
    const state: ObjectValue = { ...prior, ...keyComputed(prior, f, new Date()), undecryptable: f.undecryptable ?? prior.undecryptable ?? null };
    return { new_state: encodeDynamic(state), private: req.private };
  } catch (e) {
    return { new_state: req.current_state, private: req.private, diagnostics: [errorDiagnostic(e)] };
  }
}

/** Whether everything needed to look at the installation is known at plan time. */
export function lookable(o: ObjectValue): boolean {
  return ![...INSTALLATION_ARGUMENTS, 'name', 'generation', 'rotation_period_days', 'rotation_epoch', 'rotation_evaluated_at', 'verify_secrets', 'backup_dir', 'report_dir'].some((a) => hasUnknown(o[a]));
}

async function planResourceChange(req: Req): Promise<Res> {
  const prior = keyValue(req.prior_state);
  const proposed = keyValue(req.proposed_new_state);
  if (!proposed) return { planned_state: encodeDynamic(null) };
  const planned: ObjectValue = { ...proposed, id: proposed.name };
  if (!lookable(proposed)) {
    for (const c of computedNames(KEY_RESOURCE)) if (c !== 'id') planned[c] = UNKNOWN;
    return { planned_state: encodeDynamic(planned) };
  }
  const at = new Date();
  const diagnostics: Diagnostic[] = [];
  let priv: PlannedPrivate;
  try {
    const ctx = contextOf(proposed);
    const declared = declaredOf(proposed, at);
    const kp = await engine().planKey(ctx, declared, { verify: proposed.verify_secrets === true });
    const p = kp.plan;
    const rotate = p.action === 'rotate';
    if (rotate) for (const x of kp.problems) diagnostics.push({ severity: 'ERROR', summary: x.message, detail: `Error code ${x.code} (\`master-key apply\` refuses the same way).` });
    Object.assign(planned, {
      secrets: p.secrets.total,
      secrets_by_kind: { ...p.secrets.byKind },
      nodes_in_sync: true,
      database_generation: p.toGeneration,
      ...(rotate
        ? { fingerprint: UNKNOWN, key_set_at: UNKNOWN, key_age_days: 0, last_report: UNKNOWN, undecryptable: 0 }
        : {
            fingerprint: p.oldFingerprint,
            key_set_at: p.keySetAt,
            key_age_days: ageDays(p.keySetAt, at),
            last_report: prior ? prior.last_report : UNKNOWN,
            undecryptable: prior ? prior.undecryptable : null,
          }),
    });
    if (!rotate && p.fromGeneration > declared.targetGeneration) {
      diagnostics.push(
        warning(
          `The database of ${String(proposed.name)} is at generation ${p.fromGeneration}, ahead of the declared generation ${declared.targetGeneration}: the key was rotated outside Terraform (it is now ${p.oldFingerprint}).`,
          `Set generation = ${p.fromGeneration} to declare the key as it is; raise it above ${p.fromGeneration} to rotate.`,
        ),
      );
    }
    priv = { at: at.toISOString(), windowStart: declared.windowStart?.toISOString(), policyDays: declared.policyDays, rotate };
  } catch (e) {
    return { planned_state: req.proposed_new_state, diagnostics: [errorDiagnostic(e)] };
  }
  return { planned_state: encodeDynamic(planned), planned_private: Buffer.from(JSON.stringify(priv)), diagnostics };
}

async function applyResourceChange(req: Req): Promise<Res> {
  const prior = keyValue(req.prior_state);
  const planned = keyValue(req.planned_state);
  if (!planned) {
    return {
      new_state: encodeDynamic(null),
      diagnostics: [
        warning(
          `${String(prior?.name ?? 'The key')} was removed from the Terraform state only: the master key, the database and the config files are left as they are.`,
          'Destroying masterkey_key forgets it; nothing on the server changed. Import it again to manage it.',
        ),
      ],
    };
  }
  const keep = { new_state: prior ? req.prior_state : encodeDynamic(null) };
  try {
    const ctx = contextOf(planned);
    const priv = readPrivate(req.planned_private);
    const at = priv ? new Date(priv.at) : new Date();
    const declared = priv
      ? { targetGeneration: planned.generation as number, windowStart: priv.windowStart ? new Date(priv.windowStart) : undefined, policyDays: priv.policyDays }
      : declaredOf(planned, at);
    if (priv?.rotate && typeof planned.secrets === 'number') {
      const now = await engine().countNow(ctx);
      if (now.values !== planned.secrets) {
        throw new MasterKeyError('PLAN_STALE', `The database holds ${now.values} secrets now but the plan counted ${planned.secrets}; nothing was changed: run terraform plan again and review it.`);
      }
    }
    const r = await engine().applyKey(ctx, declared, typeof planned.new_key_file === 'string' ? planned.new_key_file : undefined);
    const f = await engine().readKey(ctx);
    const state: ObjectValue = { ...planned, ...keyComputed(planned, f, r.rotated ? new Date() : at) };
    state.undecryptable = r.rotated ? (r.verificationFailures ?? 0) : planned.undecryptable === UNKNOWN ? null : planned.undecryptable;
    if (r.rotated) state.last_report = r.reportMarkdown ?? null;
    else if (planned.last_report !== UNKNOWN) state.last_report = planned.last_report;
    return { new_state: encodeDynamic(state), private: Buffer.alloc(0) };
  } catch (e) {
    return { ...keep, diagnostics: [errorDiagnostic(e)] };
  }
}

/**
 * An import id names the installation: either a JSON object of the
 * resource's arguments, or `NAME:PATH[,PATH...]` (the key's name and its
 * config files, everything else at its default).
 */
export function parseImportId(id: string): ObjectValue {
  const text = id.trim();
  let args: Record<string, Value>;
  if (text.startsWith('{')) {
    try {
      args = JSON.parse(text) as Record<string, Value>;
    } catch {
      throw new MasterKeyError('USAGE', 'The import id starts with "{" but is not valid JSON; give a JSON object of the arguments, e.g. {"name":"act","config_files":["/etc/act/act.env"]}.');
    }
  } else {
    const colon = text.indexOf(':');
    if (colon < 1) throw new MasterKeyError('USAGE', `The import id ${JSON.stringify(text)} is not NAME:PATH[,PATH...] nor a JSON object; e.g. act:/etc/act/act.env.`);
    args = { name: text.slice(0, colon), config_files: text.slice(colon + 1).split(',') };
  }
  const known = new Set(KEY_RESOURCE.attributes.filter((a) => a.use !== 'computed').map((a) => a.name));
  const extra = Object.keys(args).filter((k) => !known.has(k));
  if (extra.length) throw new MasterKeyError('USAGE', `The import id names ${extra.map((k) => JSON.stringify(k)).join(', ')}, which masterkey_key does not take; use its argument names (name, config_files, key_name, ...).`);
  return objectOf(KEY_RESOURCE, args);
}

async function importResourceState(req: Req): Promise<Res> {
  try {
    const args = parseImportId(String(req.id));
    if (args.name === null) args.name = 'act';
    const bad = validateKey(args);
    if (bad.length) return { diagnostics: bad };
    const f = await engine().readKey(contextOf(args), { refusePending: true });
    if (args.generation === null) args.generation = f.generation;
    const state: ObjectValue = { ...args, ...keyComputed(args, f, new Date()), undecryptable: null };
    return { imported_resources: [{ type_name: RESOURCE_TYPE, state: encodeDynamic(state), private: Buffer.alloc(0) }] };
  } catch (e) {
    return { diagnostics: [errorDiagnostic(e)] };
  }
}

async function readDataSource(req: Req): Promise<Res> {
  try {
    const config = statusValue(req.config) ?? objectOf(STATUS_DATA_SOURCE, {});
    const maxAge = typeof config.max_age_days === 'number' ? config.max_age_days : undefined;
    const f = await engine().readKey(contextOf(config), { maxAgeMs: maxAge !== undefined ? maxAge * DAY_MS : undefined });
    const state: ObjectValue = {
      ...config,
      id: f.database,
      fingerprint: f.fingerprint,
      generation: f.generation,
      key_set_at: f.keySetAt,
      key_age_days: f.keyAgeDays,
      secrets: f.secrets.values,
      secrets_by_kind: { ...f.secrets.byKind },
      nodes_in_sync: f.nodesInSync,
      overdue: f.status.overdue,
      interrupted_rotation: f.status.interruptedRotation !== undefined,
      last_rotation_at: f.lastRotationAt ?? null,
    };
    return { state: encodeDynamic(objectOf(STATUS_DATA_SOURCE, state)) };
  } catch (e) {
    return { diagnostics: [errorDiagnostic(e)] };
  }
}

function upgradeResourceState(req: Req): Res {
  const raw = req.raw_state?.json as Buffer | undefined;
  if (!raw || raw.length === 0) return { diagnostics: [errorDiagnostic(new MasterKeyError('USAGE', 'The stored state of masterkey_key is not JSON (a flatmap state from an older Terraform); remove it with terraform state rm and import the key again.'))] };
  const schema = req.type_name === DATA_SOURCE_TYPE ? STATUS_DATA_SOURCE : KEY_RESOURCE;
  const state = objectOrNull(decodeDynamic({ json: raw }), `the stored state of ${String(req.type_name)}`) ?? {};
  return { upgraded_state: encodeDynamic(objectOf(schema, state)) };
}

/** The schema never changes within a version, so Terraform may use a copy it already has. */
const CAPABILITIES = { plan_destroy: false, get_provider_schema_optional: true, move_resource_state: false };

/** The `tfplugin6.Provider` implementation. */
export function providerService(): grpc.UntypedServiceImplementation {
  return {
    GetMetadata: unary('GetMetadata', () => ({ server_capabilities: CAPABILITIES, resources: [{ type_name: RESOURCE_TYPE }], data_sources: [{ type_name: DATA_SOURCE_TYPE }] })),
    GetProviderSchema: unary('GetProviderSchema', () => ({
      provider: schemaMessage(PROVIDER_BLOCK),
      resource_schemas: { [RESOURCE_TYPE]: schemaMessage(KEY_RESOURCE) },
      data_source_schemas: { [DATA_SOURCE_TYPE]: schemaMessage(STATUS_DATA_SOURCE) },
      server_capabilities: CAPABILITIES,
    })),
    ValidateProviderConfig: unary('ValidateProviderConfig', () => ({})),
    ValidateResourceConfig: unary('ValidateResourceConfig', (req) => ({ diagnostics: validateKey(keyValue(req.config) ?? objectOf(KEY_RESOURCE, {})) })),
    ValidateDataResourceConfig: unary('ValidateDataResourceConfig', (req) => ({ diagnostics: validateStatus(statusValue(req.config) ?? objectOf(STATUS_DATA_SOURCE, {})) })),
    UpgradeResourceState: unary('UpgradeResourceState', upgradeResourceState),
    ConfigureProvider: unary('ConfigureProvider', () => ({})),
    ReadResource: unary('ReadResource', readResource),
    PlanResourceChange: unary('PlanResourceChange', planResourceChange),
    ApplyResourceChange: unary('ApplyResourceChange', applyResourceChange),
    ImportResourceState: unary('ImportResourceState', importResourceState),
    ReadDataSource: unary('ReadDataSource', readDataSource),
    StopProvider: unary('StopProvider', () => ({ Error: '' })),
  };
}
