/**
 * Resource `masterkey_key`, one function per operation: read (refresh),
 * plan, create, update, delete and import. Each takes and returns objects
 * typed by the schema (`KeyObject`); the wire (msgpack, private bytes, what
 * to send back when one fails) is `./provider.ts`'s. Each throws the CLI's
 * errors; its warnings come back beside its result.
 *
 * The key's real state is read, and the key rotated, by the rotation code
 * (through `./rotation-seam.ts`, the provider's one seam to the rotation).
 */
import { MasterKeyError } from '../errors';
import { count } from '../format';
import { INSTALLATION_ARGUMENTS, declaredOf, retentionOf, validateKey } from './arguments';
import { UNKNOWN, Value, hasUnknown, sameValue } from './cty';
import { codeLine, error, failureList, warning } from './diagnostics';
import type { KeyFacts, KeyPlan } from './rotation-seam';
import type { Installation } from '../context/installation';
import { rotationSeam } from './rotation-seam-loader';
import { log } from './plugin-server';
import type { Diagnostic } from './protocol';
import { Computed, KEY_RESOURCE, KeyObject, objectOf } from './schema';

const DAY_MS = 86_400_000;

/** An operation's result and the warnings (or errors that leave a result, in a plan) it has for the user. */
export interface Outcome<T> {
  readonly value: T;
  readonly diagnostics: readonly Diagnostic[];
}

/** What the plan carries to apply (planned_private): the instant the plan was made for and what it decided. */
export interface PlannedPrivate {
  readonly at: string;
  readonly windowStart?: string;
  readonly policyDays?: number;
  readonly rotate: boolean;
}

const logLine = (line: string) => log('info', line);
/** Runs fn on the installation `o` describes, closed after (its SSH connections). */
const onInstallation = <T>(o: KeyObject, fn: (i: Installation) => Promise<T>): Promise<T> => rotationSeam().withInstallationOf(o, logLine, fn);
const ageDays = (keySetAt: string, at: Date): number => Math.max(0, Math.floor((at.getTime() - new Date(keySetAt).getTime()) / DAY_MS));
const isCounted = (v: Value): v is number => typeof v === 'number';

/** The resource's computed attributes from the key's real state. */
function keyComputed(o: KeyObject, f: KeyFacts, at: Date): Computed<typeof KEY_RESOURCE> {
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
    undecryptable: f.undecryptable ?? null,
  };
}

/**
 * Read (refresh): the key's real state. `generation` is read back as the
 * database's generation, as a resource reads back any argument the real
 * object may have changed: a key rotated outside terraform leaves the
 * database ahead of the configuration, and the resource plans a change.
 */
export async function readKey(prior: KeyObject): Promise<KeyObject> {
  const f = await onInstallation(prior, (i) => rotationSeam().keyFacts(i, { verify: prior.verify_secrets === true, refusePending: true }));
  return { ...prior, ...keyComputed(prior, f, new Date()), generation: f.generation, undecryptable: f.undecryptable ?? prior.undecryptable ?? null };
}

/** Whether everything needed to look at the installation is known at plan time. */
export function lookable(o: KeyObject): boolean {
  const needed = [...INSTALLATION_ARGUMENTS, 'name', 'generation', 'rotation_period_days', 'rotation_epoch', 'rotation_evaluated_at', 'verify_secrets', 'backup_dir', 'report_dir', 'backup_recipients', 'backup_retention'] as const;
  return !needed.some((a) => hasUnknown(o[a]));
}

/**
 * The counts of the secrets a plan shows: the refresh's, kept in the prior
 * state, when it read the same installation (terraform plans again at apply
 * time, from the state the user's plan was made with, and holds the
 * provider to the values it showed then); else the plan's own.
 */
function plannedCounts(prior: KeyObject | null, proposed: KeyObject, now: KeyPlan['plan']['secrets']): Pick<KeyObject, 'secrets' | 'secrets_by_kind'> {
  const sameInstallation = prior !== null && INSTALLATION_ARGUMENTS.every((a) => sameValue(prior[a], proposed[a]));
  if (sameInstallation && isCounted(prior.secrets) && prior.secrets_by_kind !== null && prior.secrets_by_kind !== UNKNOWN) {
    return { secrets: prior.secrets, secrets_by_kind: prior.secrets_by_kind };
  }
  return { secrets: now.total, secrets_by_kind: { ...now.byKind } };
}

/**
 * Values that do not open (with verify_secrets), rotation due or not: an
 * error whose detail lists the first of them by place (table, column, JSON
 * path, id; never a value) and how many there are, since terraform shows
 * nothing but a diagnostic's summary and detail.
 */
function undecryptableDiagnostics(kp: KeyPlan, rotate: boolean): Diagnostic[] {
  const u = kp.undecryptable;
  if (!u) return [];
  const rows = `The values that do not open:\n${failureList(u.rows, u.count)}\n\n`;
  return rotate
    ? [error(`${count(u.count)} stored value(s) do not open with the old key ${u.fingerprint}; restore or fix them before rotating.`, `${rows}${codeLine('UNDECRYPTABLE_ROWS', '`master-key apply` refuses the same way and exits')}`)]
    : [
        error(
          `${count(u.count)} stored value(s) do not open with the database's key ${u.fingerprint}; restore or fix them (\`master-key verify\` lists them all).`,
          `${rows}${codeLine('UNDECRYPTABLE_ROWS', '`master-key verify` reports the same and exits')}`,
        ),
      ];
}

/** The warning of a database ahead of the declared generation: the key was rotated outside terraform. */
function aheadWarning(name: Value, databaseGeneration: number, declared: number, fingerprint: string): Diagnostic {
  return warning(
    `The database of ${String(name)} is at generation ${databaseGeneration}, ahead of the declared generation ${declared}: the key was rotated outside Terraform (it is now ${fingerprint}).`,
    `Set generation = ${databaseGeneration} to declare the key as it is; raise it above ${databaseGeneration} to rotate. Until then this resource plans generation ${databaseGeneration} -> ${declared}, which apply refuses.`,
  );
}

/** The warning of a rotation whose backup will hold the old key in cleartext (no backup_recipients). */
function cleartextBackupWarning(name: Value, dir: string): Diagnostic {
  return warning(
    `The rotation of ${String(name)} will leave its backup under ${dir} holding the old key in cleartext: no backup_recipients are declared.`,
    'Anyone who can read the backup can open every secret as it stood before the rotation. Declare backup_recipients (age X25519 age1… or hybrid age1pq1… recipients) to seal it, and backup_retention to retire old backups.',
  );
}

/**
 * Plan: the data-level dry run. A rotation due is an in-place update whose
 * new fingerprint is known after apply. The counts shown are the refresh's
 * (`plannedCounts`), and so are the key's age and what is known of the
 * last report: what terraform's second plan at apply time sees too. Apply
 * counts again and refuses a rotation when they changed.
 */
export async function planKey(prior: KeyObject | null, proposed: KeyObject): Promise<Outcome<{ planned: KeyObject; private?: PlannedPrivate }>> {
  const planned: KeyObject = { ...proposed, id: proposed.name };
  if (!lookable(proposed)) {
    for (const a of KEY_RESOURCE.attributes) if (a.use === 'computed' && a.name !== 'id') planned[a.name] = UNKNOWN;
    return { value: { planned }, diagnostics: [] };
  }
  const at = new Date();
  const declared = declaredOf(proposed, at);
  const kp = await onInstallation(proposed, (i) => rotationSeam().rotationPlan(i, declared, { verify: proposed.verify_secrets === true }));
  const p = kp.plan;
  const rotate = p.action === 'rotate';
  const counts = plannedCounts(prior, proposed, p.secrets);
  const diagnostics: Diagnostic[] = undecryptableDiagnostics(kp, rotate);
  if (rotate) for (const x of kp.problems) diagnostics.push(error(x.message, codeLine(x.code, '`master-key apply` refuses the same way and exits')));
  if (rotate && p.backup.oldKeyInCleartext) diagnostics.push(cleartextBackupWarning(proposed.name, p.backup.dir));
  if (p.fromGeneration > declared.targetGeneration) diagnostics.push(aheadWarning(proposed.name, p.fromGeneration, declared.targetGeneration, p.oldFingerprint));
  if (rotate && counts.secrets !== p.secrets.total) {
    diagnostics.push(
      warning(
        `The database holds ${count(p.secrets.total)} secrets now, but held ${count(counts.secrets as number)} when Terraform read it; this plan shows those, and applying it will refuse with PLAN_STALE.`,
        'Run terraform plan again (with refresh, the default) to plan the rotation of the secrets as they are.',
      ),
    );
  }
  Object.assign(planned, {
    ...counts,
    nodes_in_sync: true,
    database_generation: p.toGeneration,
    ...(rotate
      ? { fingerprint: UNKNOWN, key_set_at: UNKNOWN, key_age_days: 0, last_report: UNKNOWN, undecryptable: 0 }
      : {
          fingerprint: p.oldFingerprint,
          key_set_at: p.keySetAt,
          key_age_days: prior && prior.key_set_at === p.keySetAt && isCounted(prior.key_age_days) ? prior.key_age_days : ageDays(p.keySetAt, at),
          last_report: prior ? prior.last_report : UNKNOWN,
          undecryptable: prior ? prior.undecryptable : null,
        }),
  } satisfies Partial<KeyObject>);
  const priv: PlannedPrivate = { at: at.toISOString(), windowStart: declared.windowStart?.toISOString(), policyDays: declared.policyDays, rotate };
  return { value: { planned, private: priv }, diagnostics };
}

/**
 * What apply re-checks before it changes anything: the plan is not for a
 * database ahead of the declared generation (no apply can lower it), and a
 * rotation's secrets are those the plan counted, of the same kinds.
 */
async function refuseUnlessPlanHolds(inst: Installation, planned: KeyObject, priv: PlannedPrivate | undefined): Promise<void> {
  const generation = planned.generation as number;
  if (isCounted(planned.database_generation) && planned.database_generation > generation) {
    throw new MasterKeyError(
      'USAGE',
      `The database of ${String(planned.name)} is at generation ${planned.database_generation}, ahead of the declared generation ${generation}: the key was rotated outside Terraform, and no apply can lower it; nothing was changed: set generation = ${planned.database_generation} to declare the key as it is.`,
      { providerOnly: `Refresh reads the database's generation into generation, so this resource plans ${planned.database_generation} -> ${generation} until the configuration declares what the database holds. (\`master-key apply --generation ${generation}\` would do nothing and exit 0.)` },
    );
  }
  if (!priv?.rotate || !isCounted(planned.secrets)) return;
  const now = await rotationSeam().countSecrets(inst);
  const kindsChanged = planned.secrets_by_kind !== null && planned.secrets_by_kind !== UNKNOWN && !sameValue(planned.secrets_by_kind, { ...now.byKind });
  if (now.values !== planned.secrets || kindsChanged) {
    const what = now.values !== planned.secrets ? `holds ${count(now.values)} secrets now but the plan counted ${count(planned.secrets)}` : `holds as many secrets as the plan counted (${count(now.values)}), but of other kinds`;
    throw new MasterKeyError('PLAN_STALE', `The database ${what}; nothing was changed: run terraform plan again and review it.`);
  }
}

/**
 * Create and update: `master-key apply` for what the plan declared, in this
 * process (a new key generated here, never leaving it except into the
 * config files and new_key_file). The new state keeps the values the plan
 * showed of what a rotation does not decide (the counts, the key's age:
 * terraform holds the provider to them) and fills in the rest from the key's
 * real state after it.
 */
function applyPlanned(planned: KeyObject, priv: PlannedPrivate | undefined): Promise<Outcome<KeyObject>> {
  return onInstallation(planned, (inst) => applyOn(inst, planned, priv));
}

async function applyOn(inst: Installation, planned: KeyObject, priv: PlannedPrivate | undefined): Promise<Outcome<KeyObject>> {
  const at = priv ? new Date(priv.at) : new Date();
  const declared = priv
    ? { targetGeneration: planned.generation as number, windowStart: priv.windowStart ? new Date(priv.windowStart) : undefined, policyDays: priv.policyDays }
    : declaredOf(planned, at);
  await refuseUnlessPlanHolds(inst, planned, priv);
  const r = await rotationSeam().applyDeclared(inst, declared, typeof planned.new_key_file === 'string' ? planned.new_key_file : undefined, retentionOf(planned));
  const f = await rotationSeam().keyFacts(inst);
  const facts = keyComputed(planned, f, r.rotated ? new Date() : at);
  const kept = <K extends keyof KeyObject>(k: K, fact: KeyObject[K]): KeyObject[K] => (planned[k] === UNKNOWN ? fact : planned[k]);
  const state: KeyObject = {
    ...planned,
    ...facts,
    secrets: kept('secrets', facts.secrets),
    secrets_by_kind: kept('secrets_by_kind', facts.secrets_by_kind),
    key_age_days: kept('key_age_days', facts.key_age_days),
    undecryptable: r.rotated ? (r.verificationFailures ?? 0) : kept('undecryptable', null),
    last_report: r.rotated ? (r.reportMarkdown ?? null) : kept('last_report', facts.last_report),
  };
  const outOfStep = r.outOfStep.map((n) =>
    warning(
      `The node ${n} did not get the database's key: it is out of step (nodes_in_sync = false).`,
      'Once its host is reachable, run terraform apply again (it sets the node with master-key set on its host) or `master-key set --config <its address>`.',
    ),
  );
  const diagnostics =
    state.secrets === facts.secrets
      ? outOfStep
      : [
          ...outOfStep,
          warning(
            `The database holds ${count(facts.secrets as number)} secrets now; the plan counted ${count(state.secrets as number)}, and the state keeps that count until the next refresh.`,
            r.rotated ? 'The rotation re-encrypted every secret the database held when it ran: a server wrote some after the plan.' : 'Nothing was re-encrypted.',
          ),
        ];
  return { value: state, diagnostics };
}

/** Create: adopt the installation, rotating the key when the declaration says it is due. */
export function createKey(planned: KeyObject, priv: PlannedPrivate | undefined): Promise<Outcome<KeyObject>> {
  return applyPlanned(planned, priv);
}

/** Update: rotate when due, or set out-of-step nodes to the database's key. */
export function updateKey(_prior: KeyObject, planned: KeyObject, priv: PlannedPrivate | undefined): Promise<Outcome<KeyObject>> {
  return applyPlanned(planned, priv);
}

/** Delete: forget the key; nothing on the server changes. */
export function deleteKey(prior: KeyObject | null): Outcome<null> {
  return {
    value: null,
    diagnostics: [
      warning(
        `${String(prior?.name ?? 'The key')} was removed from the Terraform state only: the master key, the database and the config files are left as they are.`,
        'Destroying masterkey_key forgets it; nothing on the server changed. Import it again to manage it.',
      ),
    ],
  };
}

/**
 * An import id names the installation: either a JSON object of the
 * resource's arguments, or `NAME:PATH[,PATH...]` (the key's name and its
 * config files, everything else at its default).
 */
export function parseImportId(id: string): KeyObject {
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
  const known = new Set<string>(KEY_RESOURCE.attributes.filter((a) => a.use !== 'computed').map((a) => a.name));
  const extra = Object.keys(args).filter((k) => !known.has(k));
  if (extra.length) throw new MasterKeyError('USAGE', `The import id names ${extra.map((k) => JSON.stringify(k)).join(', ')}, which masterkey_key does not take; use its argument names (name, config_files, key_name, ...).`);
  return objectOf(KEY_RESOURCE, args);
}

/** Import: adopt the installation the id names; `generation` is the database's unless the id gives it. Bad arguments come back as their diagnostics. */
export async function importKey(id: string): Promise<Outcome<KeyObject | null>> {
  const args = parseImportId(id);
  if (args.name === null) args.name = 'act';
  const bad = validateKey(args);
  if (bad.length) return { value: null, diagnostics: bad };
  const f = await onInstallation(args, (i) => rotationSeam().keyFacts(i, { refusePending: true }));
  if (args.generation === null) args.generation = f.generation;
  return { value: { ...args, ...keyComputed(args, f, new Date()), undecryptable: null }, diagnostics: [] };
}
