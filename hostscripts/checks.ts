import type { Connection, RowDataPacket } from "mysql2/promise";
import type {
  CapturedPosition,
  CheckName,
  CheckResult,
  ManifestTable,
  RestoredTable,
  ServerFlavor,
} from "../contracts";

/**
 * The checks of DESIGN §4 that run against the restored server: "position" (the GTID state after crash
 * recovery equals what was captured under the lock) and "tables" (the inventory matches and every table
 * passes CHECK TABLE ... EXTENDED; exact row counts recorded). The comparisons are pure functions; the
 * rest only reads the server.
 */

/** A verdict on the backup: the named check failed. The report says so and the message is deleted. */
export class CheckFailure extends Error {
  constructor(
    readonly check: CheckName,
    message: string,
  ) {
    super(message);
    this.name = "CheckFailure";
  }
}

/** Schemas every server has; their tables differ between versions and are never "unexpectedly added". */
export const SYSTEM_SCHEMAS = ["mysql", "information_schema", "performance_schema", "sys"];

/** The GTID state read from the restored server. */
export interface RestoredPosition {
  /** MariaDB `@@gtid_binlog_pos`. */
  gtidBinlogPos: string | null;
  /** MariaDB `@@gtid_slave_pos`. */
  gtidSlavePos: string | null;
  /** MySQL `@@gtid_executed`. */
  gtidExecuted: string | null;
}

/** A GTID list as a sorted set of its members, so `0-1-5,1-1-2` equals `1-1-2, 0-1-5`; null reads as empty. */
export function normalizeGtidList(list: string | null): string {
  return (list ?? "")
    .split(",")
    .map((gtid) => gtid.replace(/\s+/g, ""))
    .filter(Boolean)
    .sort()
    .join(",");
}

/** The "position" check: every captured GTID value equals the restored one; a mismatch names both. */
export function comparePositions(
  flavor: ServerFlavor,
  captured: CapturedPosition,
  restored: RestoredPosition,
): CheckResult {
  const pairs: Array<[string, string | null, string | null]> =
    flavor === "mariadb"
      ? [
          ["gtid_binlog_pos", captured.gtidBinlogPos, restored.gtidBinlogPos],
          ["gtid_slave_pos", captured.gtidSlavePos, restored.gtidSlavePos],
        ]
      : [["gtid_executed", captured.gtidExecuted, restored.gtidExecuted]];
  const mismatches = pairs
    .filter(([, want, got]) => normalizeGtidList(want) !== normalizeGtidList(got))
    .map(([name, want, got]) => `@@${name} is "${got ?? ""}" after recovery, captured "${want ?? ""}"`);
  if (mismatches.length > 0) {
    return { name: "position", passed: false, detail: `${mismatches.join("; ")}` };
  }
  const values = pairs.map(([name, want]) => `@@${name} = "${want ?? ""}"`).join(", ");
  return { name: "position", passed: true, detail: `restored position equals the captured one: ${values}` };
}

/** What differs between the manifest's table inventory and the restored server's. */
export interface InventoryComparison {
  missing: string[];
  unexpected: string[];
  engineChanged: string[];
}

const tableName = (t: { schema: string; table: string }) => `${t.schema}.${t.table}`;
const isSystem = (t: { schema: string }) => SYSTEM_SCHEMAS.includes(t.schema.toLowerCase());

/**
 * Compares the inventory taken under the lock with the restored base tables. A table added outside the
 * system schemas is unexpected; a table of the manifest is missing wherever it lived.
 */
export function compareInventory(expected: ManifestTable[], restored: ManifestTable[]): InventoryComparison {
  const found = new Map(restored.map((t) => [tableName(t), t]));
  const listed = new Set(expected.map(tableName));
  const result: InventoryComparison = { missing: [], unexpected: [], engineChanged: [] };
  for (const table of expected) {
    const got = found.get(tableName(table));
    if (got === undefined) result.missing.push(tableName(table));
    else if (got.engine.toLowerCase() !== table.engine.toLowerCase()) {
      result.engineChanged.push(`${tableName(table)} (${got.engine}, manifest ${table.engine})`);
    }
  }
  for (const table of restored) {
    if (!isSystem(table) && !listed.has(tableName(table))) result.unexpected.push(tableName(table));
  }
  return result;
}

/** One sentence naming the inventory differences, or null when there are none. */
export function describeInventory(comparison: InventoryComparison): string | null {
  const parts: string[] = [];
  if (comparison.missing.length) parts.push(`missing after restore: ${comparison.missing.join(", ")}`);
  if (comparison.unexpected.length) parts.push(`not in the manifest: ${comparison.unexpected.join(", ")}`);
  if (comparison.engineChanged.length) parts.push(`engine differs: ${comparison.engineChanged.join(", ")}`);
  return parts.length ? parts.join("; ") : null;
}

/** A row of CHECK TABLE's result. */
export interface CheckTableRow {
  Msg_type: string;
  Msg_text: string;
}

/**
 * Judges CHECK TABLE's rows: any "error", or a final status other than OK, fails. An engine that cannot
 * check (a "note" saying so) passes with that note recorded: there is nothing stronger to run.
 */
export function judgeCheckTable(rows: CheckTableRow[]): { passed: boolean; text: string } {
  const errors = rows.filter((r) => r.Msg_type.toLowerCase() === "error");
  if (errors.length > 0) return { passed: false, text: errors.map((r) => r.Msg_text).join("; ") };
  const status = rows.filter((r) => r.Msg_type.toLowerCase() === "status").pop();
  if (status !== undefined) {
    return { passed: status.Msg_text.toUpperCase() === "OK", text: status.Msg_text };
  }
  const note = rows.find((r) => r.Msg_type.toLowerCase() === "note");
  if (note !== undefined && /doesn't support check/i.test(note.Msg_text))
    return { passed: true, text: note.Msg_text };
  return { passed: false, text: rows.map((r) => `${r.Msg_type}: ${r.Msg_text}`).join("; ") || "no result" };
}

/** An identifier quoted for MySQL/MariaDB. */
export function quoteIdentifier(name: string): string {
  return "`" + name.replace(/`/g, "``") + "`";
}

async function rows<T>(conn: Connection, sql: string): Promise<T[]> {
  const [result] = await conn.query<RowDataPacket[]>(sql);
  return result as unknown as T[];
}

/** The restored server's GTID state. */
export async function readRestoredPosition(
  conn: Connection,
  flavor: ServerFlavor,
): Promise<RestoredPosition> {
  if (flavor === "mariadb") {
    const [row] = await rows<{ binlogPos: string; slavePos: string }>(
      conn,
      "SELECT @@gtid_binlog_pos AS binlogPos, @@gtid_slave_pos AS slavePos",
    );
    return { gtidBinlogPos: row.binlogPos, gtidSlavePos: row.slavePos, gtidExecuted: null };
  }
  const [row] = await rows<{ executed: string }>(conn, "SELECT @@gtid_executed AS executed");
  return { gtidBinlogPos: null, gtidSlavePos: null, gtidExecuted: row.executed };
}

/** Every base table on the restored server (system-versioned ones too; views and sequences are not data). */
export async function readRestoredTables(conn: Connection): Promise<ManifestTable[]> {
  const found = await rows<{ schema: string; table: string; engine: string | null }>(
    conn,
    "SELECT TABLE_SCHEMA AS `schema`, TABLE_NAME AS `table`, ENGINE AS engine FROM information_schema.TABLES " +
      "WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_SCHEMA, TABLE_NAME",
  );
  return found.map((t) => ({ schema: t.schema, table: t.table, engine: t.engine ?? "" }));
}

/** Runs CHECK TABLE ... EXTENDED and an exact COUNT(*) on one table; a failing statement is a failing check. */
export async function checkTable(
  conn: Connection,
  table: ManifestTable,
): Promise<RestoredTable & { passed: boolean }> {
  const name = `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.table)}`;
  try {
    const verdict = judgeCheckTable(await rows<CheckTableRow>(conn, `CHECK TABLE ${name} EXTENDED`));
    const [count] = await rows<{ n: string | number }>(conn, `SELECT COUNT(*) AS n FROM ${name}`);
    return { ...table, rows: Number(count.n), check: verdict.text, passed: verdict.passed };
  } catch (error) {
    return { ...table, rows: null, check: `failed: ${(error as Error).message}`, passed: false };
  }
}

/** The "tables" check over an inventory comparison and each table's result. */
export function judgeTables(
  comparison: InventoryComparison,
  tables: Array<RestoredTable & { passed: boolean }>,
): CheckResult {
  const inventory = describeInventory(comparison);
  const failing = tables.filter((t) => !t.passed).map((t) => `${tableName(t)}: ${t.check}`);
  const problems = [
    ...(inventory ? [inventory] : []),
    ...(failing.length ? [`CHECK TABLE failed for ${failing.join("; ")}`] : []),
  ];
  if (problems.length > 0) return { name: "tables", passed: false, detail: problems.join("; ") };
  const rowsTotal = tables.reduce((sum, t) => sum + (t.rows ?? 0), 0);
  return {
    name: "tables",
    passed: true,
    detail: `${tables.length} tables present with their engines, CHECK TABLE EXTENDED OK, ${rowsTotal} rows`,
  };
}
