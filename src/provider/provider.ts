/**
 * The tfplugin6 `Provider` service: each RPC decodes its typed request
 * (`./protocol.ts`) into objects typed by the schema, calls one operation of
 * resource `masterkey_key` (`./key-resource.ts`) or data source
 * `masterkey_status` (`./status-data-source.ts`), and encodes the answer.
 * Every failure is a diagnostic (the CLI's sentence, its error code in the
 * detail), never a gRPC error, so terraform shows it where it happened; a
 * failed read keeps the state, a failed plan keeps the proposal, and a failed
 * apply keeps the prior state, so a failed rotation is never tainted.
 */
import type * as grpc from '@grpc/grpc-js';
import { MasterKeyError } from '../errors';
import { validateKey, validateStatus } from './arguments';
import { decodeDynamic, objectOrNull } from './cty';
import { errorDiagnostic } from './diagnostics';
import { PlannedPrivate, createKey, deleteKey, importKey, planKey, readKey, updateKey } from './key-resource';
import { log } from './plugin-server';
import type * as P from './protocol';
import { KEY_RESOURCE, PROVIDER_BLOCK, STATUS_DATA_SOURCE, decodeObject, encodeObject, objectOf, schemaMessage } from './schema';
import { readStatus } from './status-data-source';

export const RESOURCE_TYPE = 'masterkey_key';
export const DATA_SOURCE_TYPE = 'masterkey_status';

/** RPCs running now (the process waits for them before it exits on its own). */
let inFlight = 0;
export const rpcsInFlight = (): number => inFlight;

/** Wraps a handler as a gRPC unary method; an exception becomes a response holding only its error diagnostic. */
function unary<Req, Res>(name: string, fn: (req: Req) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res | { readonly diagnostics: readonly P.Diagnostic[] }> {
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

const key = (dv: P.DynamicValue | null) => decodeObject(KEY_RESOURCE, dv, `a ${RESOURCE_TYPE} value`);
const status = (dv: P.DynamicValue | null) => decodeObject(STATUS_DATA_SOURCE, dv, `a ${DATA_SOURCE_TYPE} configuration`);

function readPrivate(b: Buffer | undefined): PlannedPrivate | undefined {
  if (!b || b.length === 0) return undefined;
  try {
    return JSON.parse(b.toString('utf8')) as PlannedPrivate;
  } catch {
    return undefined;
  }
}

async function readResource(req: P.ReadResourceRequest): Promise<P.ReadResourceResponse> {
  const prior = key(req.current_state);
  if (!prior) return { new_state: encodeObject(KEY_RESOURCE, null), private: req.private };
  try {
    return { new_state: encodeObject(KEY_RESOURCE, await readKey(prior)), private: req.private };
  } catch (e) {
    return { new_state: req.current_state, private: req.private, diagnostics: [errorDiagnostic(e)] };
  }
}

async function planResourceChange(req: P.PlanResourceChangeRequest): Promise<P.PlanResourceChangeResponse> {
  const proposed = key(req.proposed_new_state);
  // Destroy: nothing to plan (deleting only forgets).
  if (!proposed) return { planned_state: encodeObject(KEY_RESOURCE, null) };
  try {
    const { value, diagnostics } = await planKey(key(req.prior_state), proposed);
    return {
      planned_state: encodeObject(KEY_RESOURCE, value.planned),
      planned_private: value.private ? Buffer.from(JSON.stringify(value.private)) : undefined,
      diagnostics,
    };
  } catch (e) {
    return { planned_state: req.proposed_new_state, diagnostics: [errorDiagnostic(e)] };
  }
}

async function applyResourceChange(req: P.ApplyResourceChangeRequest): Promise<P.ApplyResourceChangeResponse> {
  const prior = key(req.prior_state);
  const planned = key(req.planned_state);
  if (!planned) {
    const { diagnostics } = deleteKey(prior);
    return { new_state: encodeObject(KEY_RESOURCE, null), diagnostics };
  }
  const priv = readPrivate(req.planned_private);
  try {
    const { value, diagnostics } = prior ? await updateKey(prior, planned, priv) : await createKey(planned, priv);
    return { new_state: encodeObject(KEY_RESOURCE, value), private: Buffer.alloc(0), diagnostics };
  } catch (e) {
    return { new_state: prior ? req.prior_state : encodeObject(KEY_RESOURCE, null), diagnostics: [errorDiagnostic(e)] };
  }
}

async function importResourceState(req: P.ImportResourceStateRequest): Promise<P.ImportResourceStateResponse> {
  const { value, diagnostics } = await importKey(req.id);
  if (!value) return { diagnostics };
  return { imported_resources: [{ type_name: RESOURCE_TYPE, state: encodeObject(KEY_RESOURCE, value), private: Buffer.alloc(0) }], diagnostics };
}

async function readDataSource(req: P.ReadDataSourceRequest): Promise<P.ReadDataSourceResponse> {
  return { state: encodeObject(STATUS_DATA_SOURCE, await readStatus(status(req.config) ?? objectOf(STATUS_DATA_SOURCE, {}))) };
}

function upgradeResourceState(req: P.UpgradeResourceStateRequest): P.UpgradeResourceStateResponse {
  const raw = req.raw_state?.json;
  if (!raw || raw.length === 0) throw new MasterKeyError('USAGE', 'The stored state of masterkey_key is not JSON (a flatmap state from an older Terraform); remove it with terraform state rm and import the key again.');
  const stored = objectOrNull(decodeDynamic({ json: raw }), `the stored state of ${String(req.type_name)}`) ?? {};
  return req.type_name === DATA_SOURCE_TYPE
    ? { upgraded_state: encodeObject(STATUS_DATA_SOURCE, objectOf(STATUS_DATA_SOURCE, stored)) }
    : { upgraded_state: encodeObject(KEY_RESOURCE, objectOf(KEY_RESOURCE, stored)) };
}

/** The schema never changes within a version, so Terraform may use a copy it already has. */
const CAPABILITIES: P.ServerCapabilities = { plan_destroy: false, get_provider_schema_optional: true, move_resource_state: false };

/** The `tfplugin6.Provider` implementation. */
export function providerService(): grpc.UntypedServiceImplementation {
  return {
    GetMetadata: unary<P.Empty, P.GetMetadataResponse>('GetMetadata', () => ({
      server_capabilities: CAPABILITIES,
      resources: [{ type_name: RESOURCE_TYPE }],
      data_sources: [{ type_name: DATA_SOURCE_TYPE }],
    })),
    GetProviderSchema: unary<P.Empty, P.GetProviderSchemaResponse>('GetProviderSchema', () => ({
      provider: schemaMessage(PROVIDER_BLOCK),
      resource_schemas: { [RESOURCE_TYPE]: schemaMessage(KEY_RESOURCE) },
      data_source_schemas: { [DATA_SOURCE_TYPE]: schemaMessage(STATUS_DATA_SOURCE) },
      server_capabilities: CAPABILITIES,
    })),
    ValidateProviderConfig: unary<P.ValidateConfigRequest, P.ValidateConfigResponse>('ValidateProviderConfig', () => ({})),
    ValidateResourceConfig: unary<P.ValidateConfigRequest, P.ValidateConfigResponse>('ValidateResourceConfig', (req) => ({ diagnostics: validateKey(key(req.config) ?? objectOf(KEY_RESOURCE, {})) })),
    ValidateDataResourceConfig: unary<P.ValidateConfigRequest, P.ValidateConfigResponse>('ValidateDataResourceConfig', (req) => ({ diagnostics: validateStatus(status(req.config) ?? objectOf(STATUS_DATA_SOURCE, {})) })),
    UpgradeResourceState: unary('UpgradeResourceState', upgradeResourceState),
    ConfigureProvider: unary<P.ValidateConfigRequest, P.ValidateConfigResponse>('ConfigureProvider', () => ({})),
    ReadResource: unary('ReadResource', readResource),
    PlanResourceChange: unary('PlanResourceChange', planResourceChange),
    ApplyResourceChange: unary('ApplyResourceChange', applyResourceChange),
    ImportResourceState: unary('ImportResourceState', importResourceState),
    ReadDataSource: unary('ReadDataSource', readDataSource),
    StopProvider: unary<P.Empty, P.StopProviderResponse>('StopProvider', () => ({ Error: '' })),
  };
}
