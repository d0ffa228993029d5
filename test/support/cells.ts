/**
 * Stored values as the tests compare them: every value of an inventory's
 * columns by place (`table.column:id`), from the live database or from a
 * backup's secrets.jsonl, and their plaintexts (a JSON document's sealed
 * members opened in place), with a checksum over all of them.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { codecByName } from '../../src/crypto/codec';
import { MasterKey } from '../../src/crypto/key';
import { Keyring } from '../../src/crypto/keyring';
import { findEntrySlots, parseJsonLossless, stringifyJsonLossless } from '../../src/engine/json-document';
import { Inventory, quoteIdent } from '../../src/inventory/inventory';
import { inventoryLocations } from '../../src/store/store';
import { withTestClient } from './db';

/** Stored text by place. */
export type Cells = Map<string, string>;

/** Every non-NULL value of the inventory's columns in the live database. */
export function liveCells(url: string, inv: Inventory): Promise<Cells> {
  return withTestClient(url, async (c) => {
    const out: Cells = new Map();
    for (const loc of inventoryLocations(inv)) {
      const r = await c.query<{ id: string; v: string }>(`SELECT ${quoteIdent(loc.idColumn)}::text AS id, ${quoteIdent(loc.column)}::text AS v FROM ${quoteIdent(loc.table)} WHERE ${quoteIdent(loc.column)} IS NOT NULL`);
      for (const row of r.rows) out.set(`${loc.table}.${loc.column}:${row.id}`, row.v);
    }
    return out;
  });
}

/** Every value a backup directory holds (PostgreSQL store: secrets.jsonl). */
export function backupCells(dir: string): Cells {
  const out: Cells = new Map();
  for (const line of readFileSync(join(dir, 'secrets.jsonl'), 'utf8').split('\n')) {
    if (!line) continue;
    const o = JSON.parse(line) as { t: string; c: string; id: string; v: string };
    out.set(`${o.t}.${o.c}:${o.id}`, o.v);
  }
  return out;
}

/** The plaintext of each value (a document with its sealed members opened in place); `!<code>` for one that does not open with `key`. */
export function plaintextsOf(cells: Cells, inv: Inventory, key: MasterKey): Map<string, string> {
  const ring = new Keyring([key]);
  const out = new Map<string, string>();
  for (const [place, text] of cells) {
    const [, table, column] = /^(.+)\.([^.:]+):/.exec(place)!;
    const entries = inv.entries.filter((e) => e.table === table && e.column === column);
    try {
      if (!entries.some((e) => e.jsonPath)) {
        out.set(place, ring.openText(codecByName(entries[0].codec), text));
        continue;
      }
      const doc = parseJsonLossless(text);
      for (const { entry, slot } of findEntrySlots(doc, entries)) slot.set(`plain:${ring.openText(codecByName(entry.codec), slot.value)}`);
      out.set(place, stringifyJsonLossless(doc));
    } catch (e) {
      out.set(place, `!${(e as { code?: string }).code ?? 'ERROR'}`);
    }
  }
  return out;
}

/** SHA-256 over every (place, plaintext), in place order. */
export function checksum(values: Map<string, string>): string {
  const h = createHash('sha256');
  for (const k of [...values.keys()].sort()) h.update(`${k}\u0000${values.get(k)}\u0000`);
  return h.digest('hex');
}
