import type { ManifestTable, TableType } from "../../contracts";
import type { Query } from "./dialect";

/**
 * The table inventory (manifest `tables`): every object that holds data outside the system schemas — base
 * tables of every engine (partitioned or not), system-versioned tables, sequences — read the same way by the
 * backup (with the snapshot) and by the verifier (from the restored server), so the two lists compare.
 *
 * Left out, and why: views (a definition, no data; they come back with the datadir and a broken one shows
 * as an error when it is used, not as lost data), temporary tables (never in the datadir's dictionary), and
 * the system schemas, whose tables differ between server versions and which the restored server's startup
 * proves usable.
 */

/** Schemas every server has; their tables differ between versions and are never "unexpectedly added". */
export const SYSTEM_SCHEMAS = ["mysql", "information_schema", "performance_schema", "sys"];

/** The `TABLE_TYPE`s of objects that hold data. */
export const DATA_TABLE_TYPES: readonly TableType[] = ["BASE TABLE", "SYSTEM VERSIONED", "SEQUENCE"];

const quoted = (values: readonly string[]) => values.map((v) => `'${v}'`).join(", ");

/**
 * The inventory statement. Only name, engine, type and create options: on MariaDB they come from the table
 * definitions without opening the tables (no statistics), cheap enough to run under a lock or right before a
 * snapshot; MySQL 8 reads them from its data dictionary. Views are counted, to say what was left out.
 */
export const INVENTORY_SQL = `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, ENGINE AS e, TABLE_TYPE AS k, CREATE_OPTIONS AS o
  FROM information_schema.TABLES
  WHERE TABLE_TYPE IN (${quoted([...DATA_TABLE_TYPES, "VIEW"])})
    AND TABLE_SCHEMA NOT IN (${quoted(SYSTEM_SCHEMAS)})
  ORDER BY TABLE_SCHEMA, TABLE_NAME`;

/** What an inventory statement found: the objects that hold data, and the views it left out. */
export interface Inventory {
  tables: ManifestTable[];
  /** `schema.view` of every view outside the system schemas. */
  views: string[];
}

/** The inventory from the rows of {@link INVENTORY_SQL} (any client's spelling of them). */
export function inventoryOf(rows: Record<string, unknown>[]): Inventory {
  const inventory: Inventory = { tables: [], views: [] };
  for (const row of rows) {
    const schema = String(row.s);
    const table = String(row.t);
    const type = String(row.k) as TableType | "VIEW";
    if (type === "VIEW") {
      inventory.views.push(`${schema}.${table}`);
      continue;
    }
    const partitioned = /(^|\s)partitioned(\s|$)/i.test(String(row.o ?? ""));
    inventory.tables.push({
      schema,
      table,
      engine: String(row.e ?? ""),
      type,
      ...(partitioned ? { partitioned: true } : {}),
    });
  }
  return inventory;
}

/** Reads the inventory of the connected server. */
export async function readInventory(query: Query): Promise<Inventory> {
  return inventoryOf(await query(INVENTORY_SQL));
}

/** The type of an inventory entry, also of a manifest written before types were recorded. */
export function typeOf(table: Pick<ManifestTable, "type">): TableType {
  return table.type ?? "BASE TABLE";
}

/** One line that says what an inventory holds and what it left out, for the log. */
export function summarizeInventory(inventory: Inventory): string {
  const count = (type: TableType) => inventory.tables.filter((t) => typeOf(t) === type).length;
  const partitioned = inventory.tables.filter((t) => t.partitioned).length;
  return (
    `${inventory.tables.length} objects that hold data (${count("BASE TABLE")} tables, ` +
    `${count("SYSTEM VERSIONED")} system-versioned, ${count("SEQUENCE")} sequences; ${partitioned} partitioned); ` +
    `left out: ${inventory.views.length} views (no data)`
  );
}
