import { spawn } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Connection, RowDataPacket } from "mysql2/promise";
import type { CheckResult, ManifestTable, RecoveryPoint, RestoredTable } from "../../contracts";
import { INVENTORY_SQL, SYSTEM_SCHEMAS, inventoryOf, typeOf } from "../common/inventory";

/**
 * The checks of DESIGN §4 that run against the restored server, but for "position" (position.ts): "tables"
 * (the inventory matches and every object passes the check its kind allows, CHECK TABLE EXTENDED when
 * configured; exact row counts recorded), the recovery point and "pages". The comparisons are pure
 * functions; the rest only reads the server.
 */

export type { RestoredPosition } from "./position";

/** What differs between the manifest's table inventory and the restored server's. */
export interface InventoryComparison {
  missing: string[];
  unexpected: string[];
  engineChanged: string[];
}

const tableName = (t: { schema: string; table: string }) => `${t.schema}.${t.table}`;
const isSystem = (t: { schema: string }) => SYSTEM_SCHEMAS.includes(t.schema.toLowerCase());

/**
 * Compares the manifest's inventory with the restored objects that hold data. An object added outside the
 * system schemas is unexpected; one of the manifest is missing wherever it lived. A manifest written before
 * sequences were inventoried (no entry has a `type`) is not faulted for the sequences it could not list.
 */
export function compareInventory(expected: ManifestTable[], restored: ManifestTable[]): InventoryComparison {
  const typed = expected.some((t) => t.type !== undefined);
  const comparable = typed ? restored : restored.filter((t) => typeOf(t) !== "SEQUENCE");
  const found = new Map(comparable.map((t) => [tableName(t), t]));
  const listed = new Set(expected.map(tableName));
  const result: InventoryComparison = { missing: [], unexpected: [], engineChanged: [] };
  for (const table of expected) {
    const got = found.get(tableName(table));
    if (got === undefined) result.missing.push(tableName(table));
    else if (got.engine.toLowerCase() !== table.engine.toLowerCase()) {
      result.engineChanged.push(`${tableName(table)} (${got.engine}, manifest ${table.engine})`);
    }
  }
  for (const table of comparable) {
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

/** The restored objects that hold data outside the system schemas, read as the backup's inventory is. */
export async function readRestoredTables(conn: Connection): Promise<ManifestTable[]> {
  return inventoryOf(await rows<Record<string, unknown>>(conn, INVENTORY_SQL)).tables;
}

/** A sequence's one row, as `SELECT … FROM <sequence>` returns it. */
export interface SequenceRow {
  next_not_cached_value: string | number;
  minimum_value: string | number;
  maximum_value: string | number;
  increment: string | number;
}

/**
 * Judges a sequence by what it must always be: exactly one row, a minimum not above the maximum, a non-zero
 * increment (CHECK TABLE cannot check a sequence; its pages are checked by "pages" when it is InnoDB).
 */
export function judgeSequence(found: SequenceRow[]): { passed: boolean; text: string } {
  if (found.length !== 1) return { passed: false, text: `a sequence holds ${found.length} rows, not 1` };
  const [row] = found;
  const [next, min, max, increment] = [
    row.next_not_cached_value,
    row.minimum_value,
    row.maximum_value,
    row.increment,
  ].map((v) => BigInt(v));
  if (min > max) return { passed: false, text: `minimum ${min} is above maximum ${max}` };
  if (increment === 0n) return { passed: false, text: "increment is 0" };
  return { passed: true, text: `sequence OK: next value ${next} (${min}…${max}, increment ${increment})` };
}

/**
 * A table's content checksum: `CHECKSUM TABLE … EXTENDED`, which reads every row through the engine and
 * folds every column (NULLs and BLOBs included) into one number, whatever the engine (InnoDB, Aria, MyISAM,
 * partitioned). EXTENDED because without it MyISAM and Aria tables created with CHECKSUM=1 answer from a
 * stored live checksum instead of their rows. Null when the server returns none.
 */
export async function tableChecksum(conn: Connection, name: string): Promise<number | null> {
  const [row] = await rows<{ Checksum: string | number | null }>(conn, `CHECKSUM TABLE ${name} EXTENDED`);
  return row?.Checksum === null || row?.Checksum === undefined ? null : Number(row.Checksum);
}

/** Milliseconds spent in `tableChecksum` by `checkTable` (the report's checksumSeconds). */
export interface ChecksumClock {
  ms: number;
}

/**
 * Checks one object the way its kind allows, counts its rows exactly and takes its content checksum; a
 * failing statement is a failing check. Tables (partitioned or not): CHECK TABLE (EXTENDED when asked),
 * COUNT(*) and CHECKSUM TABLE; system-versioned tables also count their history (`FOR SYSTEM_TIME ALL`);
 * sequences are read and judged by `judgeSequence`.
 */
export async function checkTable(
  conn: Connection,
  table: ManifestTable,
  extended = false,
  clock: ChecksumClock = { ms: 0 },
): Promise<RestoredTable & { passed: boolean }> {
  const name = `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.table)}`;
  const type = typeOf(table);
  try {
    if (type === "SEQUENCE") {
      const verdict = judgeSequence(await rows<SequenceRow>(conn, `SELECT * FROM ${name}`));
      return { ...table, type, rows: 1, check: verdict.text, passed: verdict.passed, checksum: null };
    }
    const statement = `CHECK TABLE ${name}${extended ? " EXTENDED" : ""}`;
    const verdict = judgeCheckTable(await rows<CheckTableRow>(conn, statement));
    const [count] = await rows<{ n: string | number }>(conn, `SELECT COUNT(*) AS n FROM ${name}`);
    const history =
      type === "SYSTEM VERSIONED"
        ? await rows<{ n: string | number }>(conn, `SELECT COUNT(*) AS n FROM ${name} FOR SYSTEM_TIME ALL`)
        : null;
    const started = performance.now();
    const checksum = await tableChecksum(conn, name);
    clock.ms += performance.now() - started;
    return {
      ...table,
      type,
      rows: Number(count.n),
      ...(history ? { historyRows: Number(history[0].n) } : {}),
      check: verdict.text,
      passed: verdict.passed,
      checksum,
    };
  } catch (error) {
    return {
      ...table,
      type,
      rows: null,
      check: `failed: ${(error as Error).message}`,
      passed: false,
      checksum: null,
    };
  }
}

/** The "tables" check over an inventory comparison and each table's result. */
export function judgeTables(
  comparison: InventoryComparison,
  tables: Array<RestoredTable & { passed: boolean }>,
  extended = false,
): CheckResult {
  const inventory = describeInventory(comparison);
  const failing = tables.filter((t) => !t.passed).map((t) => `${tableName(t)}: ${t.check}`);
  const problems = [
    ...(inventory ? [inventory] : []),
    ...(failing.length ? [`CHECK TABLE failed for ${failing.join("; ")}`] : []),
  ];
  if (problems.length > 0) return { name: "tables", passed: false, detail: problems.join("; ") };
  const rowsTotal = tables.reduce((sum, t) => sum + (t.rows ?? 0), 0);
  const kinds = [
    [tables.filter((t) => typeOf(t) === "SEQUENCE").length, "sequences read and consistent"],
    [tables.filter((t) => typeOf(t) === "SYSTEM VERSIONED").length, "system-versioned with their history"],
    [tables.filter((t) => t.partitioned).length, "partitioned"],
  ] as const;
  const extra = kinds.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`);
  return {
    name: "tables",
    passed: true,
    detail:
      `${tables.length} tables present with their engines, CHECK TABLE${extended ? " EXTENDED" : ""} OK, ${rowsTotal} rows` +
      (extra.length ? ` (${extra.join(", ")})` : ""),
  };
}

/** The table name pt-heartbeat (and most heartbeat tools) write to, in a schema of the operator's choice. */
export const HEARTBEAT_TABLE = "heartbeat";

/**
 * A heartbeat `ts` as a time: pt-heartbeat writes `2026-11-24T02:00:00.001230` (UTC with `--utc`, which the
 * docs require); a DATETIME/TIMESTAMP column reads as `2026-11-24 02:00:00`. Both are taken as UTC.
 */
export function parseHeartbeat(ts: unknown): Date | null {
  if (ts instanceof Date) return Number.isNaN(ts.getTime()) ? null : ts;
  if (typeof ts !== "string") return null;
  const iso = ts.trim().replace(" ", "T");
  const date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);
  return Number.isNaN(date.getTime()) ? null : date;
}

/**
 * The newest heartbeat in the restored data and how far it lies before `lockedAt`, or null when the
 * inventory has no heartbeat table (or it is empty). The lag is the recovery point: how much data a
 * restore of this backup loses relative to the moment it was taken.
 */
export async function readRecoveryPoint(
  conn: Connection,
  inventory: ManifestTable[],
  lockedAt: Date,
): Promise<RecoveryPoint | null> {
  const table = inventory.find((t) => t.table === HEARTBEAT_TABLE && !SYSTEM_SCHEMAS.includes(t.schema));
  if (table === undefined) return null;
  const name = `${quoteIdentifier(table.schema)}.${quoteIdentifier(table.table)}`;
  const [row] = await rows<{ ts: unknown }>(conn, `SELECT CAST(MAX(ts) AS CHAR) AS ts FROM ${name}`);
  const newest = parseHeartbeat(row?.ts);
  if (newest === null) return null;
  return {
    table: `${table.schema}.${table.table}`,
    newestDataAt: newest.toISOString(),
    lagSeconds: Math.max(0, Math.round((lockedAt.getTime() - newest.getTime()) / 1000)),
  };
}

/** InnoDB tablespaces of a datadir: file-per-table `.ibd`, the system tablespace and undo tablespaces. */
export function isTablespace(relativePath: string): boolean {
  const name = relativePath.split("/").at(-1) ?? "";
  return name.endsWith(".ibd") || /^ibdata\d+$/.test(name) || /^undo\d+$/.test(name);
}

/** Pages per InnoDB extent: 1 MiB extents up to 16 KiB pages, 64 pages above. */
export function extentPages(pageSize: number): number {
  return pageSize <= 16384 ? 1048576 / pageSize : 64;
}

/**
 * The page ranges of a tablespace that hold InnoDB pages of their own: in the system tablespace the
 * doublewrite buffer (the two extents after the first) holds copies of other pages, which innochecksum
 * would misread, so it is left out.
 */
export function checkedRanges(
  relativePath: string,
  bytes: number,
  pageSize: number,
): Array<{ start: number; end: number | null }> {
  if (!/(^|\/)ibdata1$/.test(relativePath)) return [{ start: 0, end: null }];
  const extent = extentPages(pageSize);
  const pages = Math.floor(bytes / pageSize);
  return pages > 3 * extent
    ? [
        { start: 0, end: extent - 1 },
        { start: 3 * extent, end: null },
      ]
    : [{ start: 0, end: Math.min(extent, pages) - 1 }];
}

/**
 * The "pages" check: `innochecksum` over every tablespace of the restored datadir. Run after the scratch
 * server shut down cleanly: before crash recovery a snapshot may hold torn pages that the doublewrite
 * buffer repairs, which are no fault of the backup.
 */
export async function checkPages(
  datadir: string,
  pageSize: number,
  binary = "innochecksum",
): Promise<CheckResult> {
  const files = (await readdir(datadir, { recursive: true })).filter(isTablespace).sort();
  const failures: string[] = [];
  for (const file of files) {
    const path = join(datadir, file);
    for (const range of checkedRanges(file, (await stat(path)).size, pageSize)) {
      const args = [
        `--start-page=${range.start}`,
        ...(range.end === null ? [] : [`--end-page=${range.end}`]),
        path,
      ];
      const run = await runInnochecksum(binary, args);
      if (run.missing) {
        return {
          name: "pages",
          passed: true,
          detail: `${binary} is not installed: page checksums not validated`,
        };
      }
      if (run.code !== 0) {
        failures.push(`${file}: ${run.output.trim().split("\n").slice(-2).join(" ") || `exit ${run.code}`}`);
        break;
      }
    }
  }
  if (failures.length > 0) {
    return {
      name: "pages",
      passed: false,
      detail: `innochecksum found bad pages in ${failures.length} of ${files.length} tablespaces: ${failures.slice(0, 5).join("; ")}`,
    };
  }
  return {
    name: "pages",
    passed: true,
    detail: `innochecksum: all pages of ${files.length} tablespaces valid`,
  };
}

function runInnochecksum(
  binary: string,
  args: string[],
): Promise<{ code: number | null; output: string; missing: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const collect = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-2000));
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.once("error", (error: NodeJS.ErrnoException) =>
      resolve({ code: null, output: error.message, missing: error.code === "ENOENT" }),
    );
    child.once("close", (code) => resolve({ code, output, missing: false }));
  });
}
