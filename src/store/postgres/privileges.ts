/**
 * What the rotation's transaction needs of the database, checked before
 * anything stops or locks (plan, and apply's preflight): a writable
 * database (not a hot standby, not read-only by default_transaction_read_only),
 * UPDATE on every secret column, the right to lock each secret table
 * against writers (LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE needs UPDATE,
 * DELETE or TRUNCATE on the table), and the writes it makes in schema
 * `master_key` (the canary, the history and its sequence). Each missing one
 * is one sentence naming the object and the GRANT to add; a rule ON UPDATE
 * that runs instead of the update is a blocker too. Seal-ahead's
 * staging tables need CREATE on `master_key` too (`stagingRight`); without
 * it the rotation runs in one pass, and the plan says why. Asked of the
 * catalog (has_table_privilege, has_column_privilege, ...): nothing is
 * locked or written.
 */
import type { ClientBase } from 'pg';
import { isMasterKeyError } from '../../errors';
import { Inventory, quoteIdent } from '../../inventory/inventory';
import type { RotationBlocker } from '../store';
import { assertWritable, translatePgError } from './client';
import { META_SCHEMA } from './meta';

/** The secret tables: which columns the rotation rewrites in each. */
function columnsByTable(inv: Inventory): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const e of inv.entries) {
    const cols = m.get(e.table) ?? [];
    if (!cols.includes(e.column)) cols.push(e.column);
    m.set(e.table, cols);
  }
  return m;
}

interface TableRights {
  readonly name: string;
  /** schema.table, quoted where needed, as a GRANT names it. */
  readonly qualified: string;
  readonly update: boolean;
  readonly lockable: boolean;
  /** Columns without UPDATE (table-level or column-level). */
  readonly missing: string[];
}

const privilegeMissing = (problem: string): RotationBlocker => ({ problem, code: 'DB_PRIVILEGE_MISSING' });

/** The blockers of a rotation on this session's database (empty: the transaction can run). */
export async function rotationBlockers(c: ClientBase, url: string, inv: Inventory): Promise<RotationBlocker[]> {
  try {
    await assertWritable(c, url);
  } catch (e) {
    if (isMasterKeyError(e, 'DB_READ_ONLY')) return [{ problem: e.message, code: e.code }];
    throw e;
  }
  try {
    const role = (await c.query<{ role: string }>('SELECT quote_ident(current_user) AS role')).rows[0].role;
    const grantTo = (what: string) => `${what} TO ${role}`;
    const blockers: RotationBlocker[] = [];
    const tables = columnsByTable(inv);
    for (const t of await tableRights(c, tables)) {
      if (t.update || (t.lockable && !t.missing.length)) continue;
      if (t.lockable) {
        blockers.push(
          privilegeMissing(
            `The database role ${role} may not update ${plural(t.missing, 'the column', 'the columns')} ${t.missing.join(', ')} of ${t.qualified}, which hold secrets the rotation re-encrypts: grant it with ${grantTo(`GRANT UPDATE (${t.missing.map(quoteIdent).join(', ')}) ON ${t.qualified}`)} (as the table's owner), then run the command again.`,
          ),
        );
      } else if (t.missing.length) {
        blockers.push(
          privilegeMissing(
            `The database role ${role} may not update ${t.qualified}, whose ${plural(t.missing, 'column', 'columns')} ${t.missing.join(', ')} ${plural(t.missing, 'holds', 'hold')} secrets the rotation re-encrypts: grant it with ${grantTo(`GRANT UPDATE ON ${t.qualified}`)} (as the table's owner), then run the command again.`,
          ),
        );
      } else {
        blockers.push(
          privilegeMissing(
            `The database role ${role} may update the secret columns of ${t.qualified} but not lock the table against writers for the rotation (that needs UPDATE, DELETE or TRUNCATE on the whole table): grant it with ${grantTo(`GRANT UPDATE ON ${t.qualified}`)} (as the table's owner), then run the command again.`,
          ),
        );
      }
    }
    for (const r of await updateRules(c, [...tables.keys()])) {
      if (!r.instead) continue;
      blockers.push({
        problem: `${r.table} has a rule ON UPDATE that runs instead of the update (${r.rule}), so the rotation's UPDATE would not rewrite its secrets: drop the rule (DROP RULE ${r.rule} ON ${r.table}) or take the table out of the inventory, then run the command again.`,
        code: 'INVENTORY_INVALID',
      });
    }
    blockers.push(...(await metadataRights(c, grantTo, role)));
    return blockers;
  } catch (e) {
    throw isMasterKeyError(e) ? e : translatePgError(e, 'checking the privileges the rotation needs', url);
  }
}

function plural(xs: readonly unknown[], one: string, many: string): string {
  return xs.length === 1 ? one : many;
}

/** Each secret table's rights for the current role (a table the database lacks is left to the inventory check). */
async function tableRights(c: ClientBase, tables: Map<string, string[]>): Promise<TableRights[]> {
  const names = [...tables.keys()];
  const r = await c.query<{ name: string; qualified: string; upd: boolean; lockable: boolean; cols: string[]; col_upd: boolean[] }>(
    `SELECT t.name, format('%I.%I', n.nspname, k.relname) AS qualified,
            has_table_privilege(k.oid, 'UPDATE') AS upd,
            has_table_privilege(k.oid, 'UPDATE, DELETE, TRUNCATE') AS lockable,
            t.cols,
            ARRAY(SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = k.oid AND a.attname = x.col AND NOT a.attisdropped)
                              THEN has_column_privilege(k.oid, x.col, 'UPDATE') END
                    FROM unnest(t.cols) WITH ORDINALITY AS x(col, i) ORDER BY i) AS col_upd
       FROM (SELECT n AS name, q, (SELECT array_agg(v) FROM jsonb_array_elements_text(c) AS v) AS cols
               FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS u(n, q, c)) AS t
       JOIN pg_class k ON k.oid = to_regclass(t.q)
       JOIN pg_namespace n ON n.oid = k.relnamespace`,
    [names, names.map(quoteIdent), names.map((n) => JSON.stringify(tables.get(n)))],
  );
  return r.rows.map((x) => ({
    name: x.name,
    qualified: x.qualified,
    update: x.upd,
    lockable: x.lockable,
    missing: x.cols.filter((_, i) => x.col_upd[i] === false),
  }));
}

/** A rule ON UPDATE of a secret table: `instead` when it runs in place of the update (DO INSTEAD). */
export interface UpdateRule {
  /** schema.table, quoted where needed. */
  readonly table: string;
  /** The rule's name, quoted where needed. */
  readonly rule: string;
  readonly instead: boolean;
}

/**
 * The rules ON UPDATE of `tables` (inventory names). A DO INSTEAD rule
 * replaces the rotation's UPDATE (a blocker); any rule, DO ALSO included,
 * makes PostgreSQL refuse COPY of an UPDATE, which seal-ahead's swap is
 * (then the rotation runs in one pass).
 */
export async function updateRules(c: ClientBase, tables: readonly string[]): Promise<UpdateRule[]> {
  const r = await c.query<UpdateRule>(
    `SELECT format('%I.%I', n.nspname, k.relname) AS "table", quote_ident(w.rulename) AS rule, w.is_instead AS instead
       FROM unnest($1::text[]) AS t(q)
       JOIN pg_class k ON k.oid = to_regclass(t.q)
       JOIN pg_namespace n ON n.oid = k.relnamespace
       JOIN pg_rewrite w ON w.ev_class = k.oid AND w.ev_type = '2'
      ORDER BY 1, 2`,
    [tables.map(quoteIdent)],
  );
  return r.rows;
}

/** The writes of the rotation in schema master_key: the canary (SELECT … FOR UPDATE, UPDATE), the history (INSERT, UPDATE) and its id sequence. */
async function metadataRights(c: ClientBase, grantTo: (what: string) => string, role: string): Promise<RotationBlocker[]> {
  const r = await c.query<{ schema: boolean | null; canary: boolean | null; history: boolean | null; seq: string | null; seq_ok: boolean | null }>(
    `SELECT CASE WHEN to_regnamespace($1) IS NULL THEN NULL ELSE has_schema_privilege($1, 'USAGE') END AS schema,
            CASE WHEN to_regclass($2) IS NULL THEN NULL ELSE has_table_privilege($2, 'SELECT') AND has_table_privilege($2, 'UPDATE') END AS canary,
            CASE WHEN to_regclass($3) IS NULL THEN NULL ELSE has_table_privilege($3, 'SELECT') AND has_table_privilege($3, 'INSERT') AND has_table_privilege($3, 'UPDATE') END AS history,
            s.seq,
            CASE WHEN s.seq IS NULL THEN NULL ELSE has_sequence_privilege(s.seq, 'USAGE, UPDATE') END AS seq_ok
       FROM (SELECT CASE WHEN to_regclass($3) IS NULL THEN NULL ELSE pg_get_serial_sequence($3, 'id') END AS seq) AS s`,
    [META_SCHEMA, `${META_SCHEMA}.canary`, `${META_SCHEMA}.history`],
  );
  const x = r.rows[0];
  const say = (what: string, grant: string) =>
    privilegeMissing(`The database role ${role} may not ${what}, which every rotation writes: grant it with ${grantTo(grant)} (as its owner), then run the command again.`);
  if (x.schema === false) return [say(`use the schema ${META_SCHEMA}`, `GRANT USAGE ON SCHEMA ${META_SCHEMA}`)];
  const out: RotationBlocker[] = [];
  if (x.canary === false) out.push(say(`update ${META_SCHEMA}.canary (the integrity canary)`, `GRANT SELECT, UPDATE ON ${META_SCHEMA}.canary`));
  if (x.history === false) out.push(say(`add to ${META_SCHEMA}.history (the rotation history)`, `GRANT SELECT, INSERT, UPDATE ON ${META_SCHEMA}.history`));
  if (x.seq_ok === false) out.push(say(`take ids from ${x.seq} (the rotation history's ids)`, `GRANT USAGE ON SEQUENCE ${x.seq}`));
  return out;
}

/**
 * Whether this role may create the staging tables of seal-ahead in schema
 * master_key (CREATE on it): undefined when it may (or the schema is not
 * there yet, which the rotation's own checks report), else why not, with
 * the GRANT to add. Not a blocker: without it a rotation runs in one pass.
 */
export async function stagingRight(c: ClientBase): Promise<string | undefined> {
  const r = await c.query<{ ok: boolean | null; role: string }>(
    `SELECT CASE WHEN to_regnamespace($1) IS NULL THEN NULL ELSE has_schema_privilege($1, 'CREATE') END AS ok, quote_ident(current_user) AS role`,
    [META_SCHEMA],
  );
  const { ok, role } = r.rows[0];
  if (ok !== false) return undefined;
  return `the database role ${role} may not create the staging tables in the schema ${META_SCHEMA}: to seal ahead, grant it with GRANT CREATE ON SCHEMA ${META_SCHEMA} TO ${role}`;
}
