/**
 * Data source `masterkey_status`: the key's status for pipelines (a check
 * block or a postcondition fails the plan when it is overdue or a node is
 * out of step). Read only; typed by the schema (`StatusObject`).
 */
import { rotationSeam } from './rotation-seam-loader';
import { log } from './plugin-server';
import { STATUS_DATA_SOURCE, StatusObject, objectOf } from './schema';

/** Read: the installation's status as `master-key status` reports it, with its secrets counted. */
export async function readStatus(config: StatusObject): Promise<StatusObject> {
  const maxAgeDays = typeof config.max_age_days === 'number' ? config.max_age_days : undefined;
  const f = await rotationSeam().withInstallationOf(config, (line) => log('info', line), (i) => rotationSeam().keyFacts(i, { maxAgeDays }));
  return objectOf(STATUS_DATA_SOURCE, {
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
  });
}
