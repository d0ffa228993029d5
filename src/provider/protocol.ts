/**
 * The tfplugin6 messages this provider receives and sends, as
 * @grpc/proto-loader hands them over with the options `loadProto` uses
 * (snake_case field names, bytes as Buffers, enums by name, defaults filled
 * in: an absent message field is null, an absent bytes field is empty).
 * They mirror `proto/tfplugin6.proto`; the objects inside a DynamicValue are
 * typed by the schema (`Obj<B>` in ./schema).
 */

/** A value of any type: msgpack (what terraform sends), or JSON (the protocol's fallback). */
export interface DynamicValue {
  readonly msgpack?: Uint8Array | null;
  readonly json?: Uint8Array | null;
}

export type AttributePathStep = { readonly attribute_name: string } | { readonly element_key_int: number } | { readonly element_key_string: string };

export interface Diagnostic {
  readonly severity: 'ERROR' | 'WARNING';
  readonly summary: string;
  readonly detail: string;
  readonly attribute?: { readonly steps: readonly AttributePathStep[] };
}

export interface ServerCapabilities {
  readonly plan_destroy: boolean;
  readonly get_provider_schema_optional: boolean;
  readonly move_resource_state: boolean;
}

export interface SchemaMessage {
  readonly version: number;
  readonly block: {
    readonly version: number;
    readonly description: string;
    readonly description_kind: 'PLAIN' | 'MARKDOWN';
    readonly attributes: ReadonlyArray<{
      readonly name: string;
      /** The attribute's type constraint as JSON. */
      readonly type: Buffer;
      readonly description: string;
      readonly description_kind: 'PLAIN' | 'MARKDOWN';
      readonly required: boolean;
      readonly optional: boolean;
      readonly computed: boolean;
    }>;
  };
}

interface WithDiagnostics {
  readonly diagnostics?: readonly Diagnostic[];
}

export type Empty = Record<string, never>;

export interface GetMetadataResponse extends WithDiagnostics {
  readonly server_capabilities: ServerCapabilities;
  readonly resources: ReadonlyArray<{ readonly type_name: string }>;
  readonly data_sources: ReadonlyArray<{ readonly type_name: string }>;
}

export interface GetProviderSchemaResponse extends WithDiagnostics {
  readonly provider: SchemaMessage;
  readonly resource_schemas: Readonly<Record<string, SchemaMessage>>;
  readonly data_source_schemas: Readonly<Record<string, SchemaMessage>>;
  readonly server_capabilities: ServerCapabilities;
}

export interface ValidateConfigRequest {
  readonly type_name: string;
  readonly config: DynamicValue | null;
}

export type ValidateConfigResponse = WithDiagnostics;

export interface UpgradeResourceStateRequest {
  readonly type_name: string;
  readonly version: number;
  readonly raw_state: { readonly json: Buffer; readonly flatmap: Readonly<Record<string, string>> } | null;
}

export interface UpgradeResourceStateResponse extends WithDiagnostics {
  readonly upgraded_state?: DynamicValue;
}

export interface ReadResourceRequest {
  readonly type_name: string;
  readonly current_state: DynamicValue | null;
  readonly private: Buffer;
}

export interface ReadResourceResponse extends WithDiagnostics {
  readonly new_state?: DynamicValue | null;
  readonly private?: Buffer;
}

export interface PlanResourceChangeRequest {
  readonly type_name: string;
  readonly prior_state: DynamicValue | null;
  readonly proposed_new_state: DynamicValue | null;
  readonly config: DynamicValue | null;
  readonly prior_private: Buffer;
}

export interface PlanResourceChangeResponse extends WithDiagnostics {
  readonly planned_state?: DynamicValue | null;
  readonly planned_private?: Buffer;
}

export interface ApplyResourceChangeRequest {
  readonly type_name: string;
  readonly prior_state: DynamicValue | null;
  readonly planned_state: DynamicValue | null;
  readonly config: DynamicValue | null;
  readonly planned_private: Buffer;
}

export interface ApplyResourceChangeResponse extends WithDiagnostics {
  readonly new_state?: DynamicValue | null;
  readonly private?: Buffer;
}

export interface ImportResourceStateRequest {
  readonly type_name: string;
  readonly id: string;
}

export interface ImportResourceStateResponse extends WithDiagnostics {
  readonly imported_resources?: ReadonlyArray<{ readonly type_name: string; readonly state: DynamicValue; readonly private: Buffer }>;
}

export interface ReadDataSourceRequest {
  readonly type_name: string;
  readonly config: DynamicValue | null;
}

export interface ReadDataSourceResponse extends WithDiagnostics {
  readonly state?: DynamicValue;
}

export interface StopProviderResponse {
  readonly Error: string;
}
