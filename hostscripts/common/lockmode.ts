import type { LockMode, LockModeSource, ServerFlavor } from "../../contracts";
import type { Query } from "./dialect";
import { PipelineError } from "./errors";

/**
 * Which lock mode a backup may use (docs/lock-modes.md), decided before anything is locked from what the
 * server proves. `none` needs a server that restores from an atomic snapshot exactly like one that lost
 * power: every table that holds data crash-safe together with the replication position, commits and binary
 * log synced when acknowledged, the replica's position transactional. A mode the config asks for and the
 * server cannot prove is refused with the setting or table named; `auto` takes the least blocking mode the
 * server proves, and says why.
 */

/** One thing that rules a lock-free snapshot out: a setting or a table, named as a person would fix it. */
export interface Obstacle {
  /** The setting with its value (`sync_binlog=0`) or the table (`app.sessions (MyISAM, 500 rows)`). */
  subject: string;
  /** Why it rules the mode out, and what would lift it. */
  why: string;
}

/** A non-InnoDB object that may hold data, with its row count. */
export interface DataTable {
  schema: string;
  table: string;
  engine: string;
  /** `transactional=1` / `transactional=0` in its create options (Aria), else null. */
  transactional: boolean | null;
  /** `TABLE_ROWS`: exact for MyISAM and Aria, an estimate for others; null when the server has none. */
  rows: number | null;
}

/** What the server says about its own crash safety, read before the lock. */
export interface CrashSafetyFacts {
  flavor: ServerFlavor;
  innodbFlushLogAtTrxCommit: number;
  syncBinlog: number;
  logBin: boolean;
  /** MariaDB `@@log_slave_updates`; null on MySQL (whose after-read takes `gtid_owned` instead). */
  logSlaveUpdates: boolean | null;
  /** The server's replication, or null when it is not a replica. */
  replica: {
    /** MariaDB `Using_Gtid` (`No`, `Slave_Pos`, `Current_Pos`); MySQL `Auto_Position` (`0`/`1`). */
    usingGtid: string;
  } | null;
  /** MySQL `@@gtid_mode`; null on MariaDB. */
  gtidMode: string | null;
  /** MySQL `relay_log_info_repository` (`TABLE` where 8.3+ removed the setting); null on MariaDB. */
  relayLogInfoRepository: string | null;
  /** Objects that are not InnoDB, in every schema but the virtual ones. */
  tables: DataTable[];
}

/** Engines whose tables keep no data in the datadir: a snapshot cannot tear what it does not hold. */
const NO_LOCAL_DATA = new Set(["MEMORY", "BLACKHOLE", "FEDERATED", "CONNECT", "SPIDER", "S3", "SEQUENCE"]);

/**
 * System tables whose contents are derived or logs, written only by ANALYZE … PERSISTENT, the server's
 * installer and upgrades, or the general/slow log: a torn copy costs statistics or log lines, never data.
 */
const DERIVED_SYSTEM_TABLES = new Set([
  "mysql.help_topic",
  "mysql.help_category",
  "mysql.help_relation",
  "mysql.help_keyword",
  "mysql.table_stats",
  "mysql.column_stats",
  "mysql.index_stats",
  "mysql.general_log",
  "mysql.slow_log",
]);

/** The tables in which the replica keeps its own position (they must commit with the data). */
function isPositionTable(t: DataTable): boolean {
  return (
    t.schema === "mysql" &&
    (/^gtid_slave_pos/.test(t.table) || t.table === "slave_relay_log_info" || t.table === "gtid_executed")
  );
}

const name = (t: DataTable) => `${t.schema}.${t.table}`;

/** What rules out a lock-free snapshot on a server with these facts; empty when it is proven safe. */
export function crashSafetyObstacles(facts: CrashSafetyFacts): Obstacle[] {
  return [...settingObstacles(facts), ...facts.tables.flatMap((t) => tableObstacle(t) ?? [])];
}

function settingObstacles(facts: CrashSafetyFacts): Obstacle[] {
  const found: Obstacle[] = [];
  if (facts.innodbFlushLogAtTrxCommit !== 1) {
    found.push({
      subject: `innodb_flush_log_at_trx_commit=${facts.innodbFlushLogAtTrxCommit}`,
      why: "InnoDB does not write and sync its redo log at each commit, so a committed transaction may be missing from the snapshot; set it to 1",
    });
  }
  if (facts.logBin && facts.syncBinlog !== 1) {
    found.push({
      subject: `sync_binlog=${facts.syncBinlog}`,
      why: "the binary log is not synced at each commit, so crash recovery can disagree with it about which transactions committed; set it to 1",
    });
  }
  if (facts.flavor === "mariadb" && facts.replica !== null) {
    if (facts.replica.usingGtid === "No") {
      found.push({
        subject: "Using_Gtid=No",
        why: "the replica's position is then in relay-log.info, a file written apart from the data; use CHANGE MASTER TO MASTER_USE_GTID=slave_pos (the position then lives in mysql.gtid_slave_pos, committed with the data)",
      });
    }
    if (!facts.logBin || facts.logSlaveUpdates !== true) {
      found.push({
        subject: facts.logBin ? "log_slave_updates=OFF" : "log_bin=OFF",
        why: "a transaction can be in the snapshot before the replica counts it as applied, and only the binary log's state (written before InnoDB commits) bounds what a lock-free snapshot holds; turn on log_bin and log_slave_updates",
      });
    }
  }
  if (facts.flavor === "mysql") {
    if (facts.gtidMode !== "ON") {
      found.push({
        subject: `gtid_mode=${facts.gtidMode ?? "OFF"}`,
        why: "a lock-free backup's position is the GTID set the restored server recovers, proven between the sets read before and after the snapshot; set gtid_mode=ON",
      });
    }
    if (facts.replica !== null && (facts.relayLogInfoRepository ?? "TABLE") !== "TABLE") {
      found.push({
        subject: `relay_log_info_repository=${facts.relayLogInfoRepository}`,
        why: "the replica's position is then a file written apart from the data; set it to TABLE (the 8.0 default)",
      });
    }
  }
  return found;
}

/** Why one non-InnoDB object rules the mode out, or null when it does not. */
function tableObstacle(t: DataTable): Obstacle | null {
  const engine = t.engine.toUpperCase();
  if (NO_LOCAL_DATA.has(engine) || DERIVED_SYSTEM_TABLES.has(name(t))) return null;
  if (isPositionTable(t)) {
    return {
      subject: `${name(t)} (${t.engine})`,
      why: "the replica's position must commit together with the data: make it InnoDB (ALTER TABLE … ENGINE=InnoDB)",
    };
  }
  // MariaDB's own Aria tables (privileges, events, routines) change only with DDL and account statements.
  if (t.schema === "mysql" && engine === "ARIA" && t.transactional === true) return null;
  if ((t.rows ?? 0) === 0) return null;
  const subject = `${name(t)} (${t.engine}${t.transactional ? ", TRANSACTIONAL=1" : ""}, ${t.rows} rows)`;
  if (engine === "ARIA" && t.transactional === true) {
    return {
      subject,
      why:
        "Aria recovers each table to a statement boundary, but not together with the replication position: a write " +
        "being applied when the snapshot is taken can be in the table and not in the position, and the restored replica " +
        "applies it again (seen in 2 of 8 lock-free snapshots on MariaDB 10.11); make it InnoDB",
    };
  }
  return {
    subject,
    why: `${t.engine} is not crash-safe: a snapshot taken while it is written holds a torn table; make it InnoDB`,
  };
}

/** The lock mode a backup uses, who chose it and why. */
export interface LockChoice {
  mode: LockMode;
  chosenBy: LockModeSource;
  reason: string;
  /** What ruled out `none` (empty when it was proven or not considered). */
  obstacles: Obstacle[];
}

/**
 * Whether `mode` needs the proof of `none`: `none` itself, and `commit` on MySQL, where LOCK INSTANCE FOR
 * BACKUP lets commits through and the snapshot is only crash-consistent.
 */
export function needsCrashSafety(mode: LockMode, flavor: ServerFlavor): boolean {
  return mode === "none" || (mode === "commit" && flavor === "mysql");
}

/** Obstacles as one text, those with the same reason together. */
export function describeObstacles(obstacles: Obstacle[]): string {
  const byWhy = new Map<string, string[]>();
  for (const o of obstacles) byWhy.set(o.why, [...(byWhy.get(o.why) ?? []), o.subject]);
  return [...byWhy].map(([why, named]) => `${named.join(", ")}: ${why}`).join("; ");
}
const subjects = (obstacles: Obstacle[]) => obstacles.map((o) => o.subject).join(", ");

/**
 * The mode of this backup. A configured mode the server cannot prove is refused (LockModeRefused) with every
 * obstacle named — never weakened; `auto` picks the least blocking proven mode.
 */
export function chooseLockMode(
  requested: "auto" | LockMode,
  flavor: ServerFlavor,
  obstacles: Obstacle[],
): LockChoice {
  if (requested !== "auto") {
    if (needsCrashSafety(requested, flavor) && obstacles.length > 0) {
      throw new PipelineError(
        "LockModeRefused",
        `lockMode "${requested}" is not safe on this server${
          requested === "commit" ? " (on MySQL, LOCK INSTANCE FOR BACKUP lets commits through)" : ""
        }: ${describeObstacles(obstacles)}`,
        `fix what is named, or set lockMode to "auto" (or "global") in the backup config; nothing was locked or snapshotted`,
      );
    }
    return {
      mode: requested,
      chosenBy: "config",
      reason: `lockMode "${requested}" in the backup config`,
      obstacles,
    };
  }
  if (obstacles.length === 0) {
    return {
      mode: "none",
      chosenBy: "auto",
      reason: "every table that holds data is crash-safe and the server is configured crash-safe",
      obstacles,
    };
  }
  return flavor === "mariadb"
    ? {
        mode: "commit",
        chosenBy: "auto",
        reason: `not lock-free because of ${subjects(obstacles)}; BACKUP STAGE BLOCK_COMMIT holds commits and non-transactional writes only`,
        obstacles,
      }
    : {
        mode: "global",
        chosenBy: "auto",
        reason: `neither lock-free nor LOCK INSTANCE FOR BACKUP (which lets commits through) because of ${subjects(obstacles)}`,
        obstacles,
      };
}

/** A SQL string literal (identifiers from information_schema, never user input, but quoted all the same). */
function literal(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

/** Reads the facts `crashSafetyObstacles` judges. Before the lock; row counts only for non-InnoDB objects. */
export async function readCrashSafetyFacts(query: Query, flavor: ServerFlavor): Promise<CrashSafetyFacts> {
  // MySQL serves TABLE_ROWS from a cache up to a day old by default; this backup needs today's.
  if (flavor === "mysql") await query("SET SESSION information_schema_stats_expiry = 0");
  const [settings] = await query(
    "SELECT @@innodb_flush_log_at_trx_commit AS flushLog, @@sync_binlog AS syncBinlog, @@log_bin AS logBin" +
      (flavor === "mysql" ? ", @@gtid_mode AS gtidMode" : ", @@log_slave_updates AS logSlaveUpdates"),
  );
  const [replica] = await query(flavor === "mariadb" ? "SHOW SLAVE STATUS" : "SHOW REPLICA STATUS");
  const [repository] =
    flavor === "mysql" ? await query("SHOW GLOBAL VARIABLES LIKE 'relay_log_info_repository'") : [];
  return {
    flavor,
    innodbFlushLogAtTrxCommit: Number(settings?.flushLog),
    syncBinlog: Number(settings?.syncBinlog),
    logBin: Number(settings?.logBin) === 1,
    logSlaveUpdates: flavor === "mariadb" ? Number(settings?.logSlaveUpdates) === 1 : null,
    replica: replica
      ? { usingGtid: String(flavor === "mariadb" ? replica.Using_Gtid : replica.Auto_Position) }
      : null,
    gtidMode: flavor === "mysql" ? String(settings?.gtidMode ?? "OFF") : null,
    relayLogInfoRepository: flavor === "mysql" ? String(repository?.Value ?? "TABLE") : null,
    tables: await readNonInnodbTables(query),
  };
}

/**
 * Non-InnoDB objects and their row counts. The list comes from table definitions alone; the rows are then read
 * one object at a time (information_schema opens only the named table), so a server with thousands of InnoDB
 * tables does not open them all.
 */
async function readNonInnodbTables(query: Query): Promise<DataTable[]> {
  const listed = await query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, ENGINE AS e, CREATE_OPTIONS AS o FROM information_schema.TABLES
     WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') AND ENGINE <> 'InnoDB'
       AND TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'sys')
     ORDER BY TABLE_SCHEMA, TABLE_NAME`,
  );
  const tables: DataTable[] = [];
  for (const row of listed) {
    const options = String(row.o ?? "");
    const match = /transactional=([01])/i.exec(options);
    const table: DataTable = {
      schema: String(row.s),
      table: String(row.t),
      engine: String(row.e ?? ""),
      transactional: match ? match[1] === "1" : null,
      rows: null,
    };
    if (needsRowCount(table)) {
      const [counted] = await query(
        `SELECT TABLE_ROWS AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${literal(table.schema)} AND TABLE_NAME = ${literal(table.table)}`,
      );
      table.rows = counted?.n === null || counted?.n === undefined ? null : Number(counted.n);
    }
    tables.push(table);
  }
  return tables;
}

/** Whether the rows of an object decide anything (MEMORY: the warning about rows no snapshot holds). */
function needsRowCount(t: DataTable): boolean {
  if (t.engine.toUpperCase() === "MEMORY") return true;
  return tableObstacle({ ...t, rows: 1 }) !== null && !isPositionTable(t);
}

/** MEMORY tables with rows: no snapshot holds them (they are empty after any restart), in any mode. */
export function memoryTablesWithRows(facts: CrashSafetyFacts): string[] {
  return facts.tables
    .filter((t) => t.engine.toUpperCase() === "MEMORY" && (t.rows ?? 0) > 0)
    .map((t) => `${name(t)} (${t.rows} rows)`);
}
