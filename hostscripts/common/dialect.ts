import type {
  CapturedPosition,
  LockMethod,
  ManifestTable,
  RestoreSettings,
  ServerFlavor,
} from "../../contracts";
import { parseServerVersion } from "./mysql";

/**
 * What differs between MariaDB and MySQL for a snapshot backup: the lock statements and how the position
 * is read under the lock. Everything else (settings, inventory) is the same SQL on both. The dialect is
 * chosen from the server (`@@version`, and on MySQL its table engines), never from the config, so a server
 * upgrade cannot leave a wrong setting behind.
 */

/** Runs one statement and returns its rows; the lock session and tests provide it. */
export type Query = (sql: string) => Promise<Record<string, unknown>[]>;

/** A server family's way to lock, read its position, and unlock. */
export interface Dialect {
  flavor: ServerFlavor;
  /** `x.y.z`. */
  version: string;
  lockMethod: LockMethod;
  /** Issued in order to take the lock; the lock window starts with the first. */
  lockStatements: string[];
  /** Releases what `lockStatements` took. */
  unlockStatement: string;
  /** Reads the position; called under the lock. */
  capturePosition(query: Query): Promise<CapturedPosition>;
  /** Why this lock was chosen when it is not the flavor's usual one (logged before locking). */
  lockReason?: string;
}

/** MariaDB: FTWRL blocks commits, so GTIDs, binlog and source coordinates all match the snapshot. */
export function mariadbDialect(version: string): Dialect {
  return {
    flavor: "mariadb",
    version,
    lockMethod: "FLUSH TABLES WITH READ LOCK",
    lockStatements: ["FLUSH TABLES WITH READ LOCK"],
    unlockStatement: "UNLOCK TABLES",
    async capturePosition(query) {
      const [gtid] = await query(
        "SELECT @@gtid_binlog_pos AS binlogPos, @@gtid_slave_pos AS slavePos, @@gtid_current_pos AS currentPos",
      );
      const [master] = await query("SHOW MASTER STATUS");
      const [slave] = await query("SHOW SLAVE STATUS");
      return {
        gtidBinlogPos: text(gtid?.binlogPos),
        gtidSlavePos: text(gtid?.slavePos),
        gtidCurrentPos: text(gtid?.currentPos),
        gtidExecuted: null,
        binlog: binlogOf(master),
        source: slave
          ? {
              host: String(slave.Master_Host ?? ""),
              port: Number(slave.Master_Port ?? 0),
              file: String(slave.Relay_Master_Log_File ?? ""),
              pos: Number(slave.Exec_Master_Log_Pos ?? 0),
              usingGtid: text(slave.Using_Gtid),
            }
          : null,
      };
    },
  };
}

/**
 * MySQL 8.0/8.4. When every user table is InnoDB, `LOCK INSTANCE FOR BACKUP` is enough: it blocks DDL and
 * writes to non-transactional tables but not InnoDB commits, so the position comes from one consistent read
 * of `performance_schema.log_status` (GTID set and binlog coordinates of the same instant), not from several
 * statements that commits could slip between. InnoDB commits may continue until the snapshot is taken; the
 * snapshot is crash-consistent and InnoDB recovery restores `mysql.gtid_executed` as of the snapshot (8.0.17+),
 * so the restored server's own GTID set is authoritative and the manifest's is at most that far behind.
 * With non-InnoDB user tables (MyISAM, ...), whose files are not crash-safe, FTWRL is taken instead and the
 * position is read with plain statements (`SHOW BINARY LOG STATUS` on 8.2+, `SHOW MASTER STATUS` before).
 */
export function mysqlDialect(
  version: string,
  major: number,
  minor: number,
  nonInnodbTables: readonly string[] = [],
): Dialect {
  const binlogStatus =
    major > 8 || (major === 8 && minor >= 2) ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS";
  const replicaStatus = async (query: Query) => replicaSourceOf((await query("SHOW REPLICA STATUS"))[0]);
  if (nonInnodbTables.length > 0) {
    return {
      flavor: "mysql",
      version,
      lockMethod: "FLUSH TABLES WITH READ LOCK",
      lockStatements: ["FLUSH TABLES WITH READ LOCK"],
      unlockStatement: "UNLOCK TABLES",
      lockReason: `non-InnoDB tables need FTWRL: ${nonInnodbTables.slice(0, 10).join(", ")}${
        nonInnodbTables.length > 10 ? ` and ${nonInnodbTables.length - 10} more` : ""
      }`,
      async capturePosition(query) {
        const [gtid] = await query("SELECT @@global.gtid_executed AS executed");
        const [binlog] = await query(binlogStatus);
        return mysqlPosition(text(gtid?.executed), binlogOf(binlog), await replicaStatus(query));
      },
    };
  }
  return {
    flavor: "mysql",
    version,
    lockMethod: "LOCK INSTANCE FOR BACKUP",
    lockStatements: ["LOCK INSTANCE FOR BACKUP"],
    unlockStatement: "UNLOCK INSTANCE",
    async capturePosition(query) {
      const [status] = await query("SELECT LOCAL FROM performance_schema.log_status");
      const local = jsonColumn(status?.LOCAL);
      const binlog =
        typeof local.binary_log_file === "string" && local.binary_log_file !== ""
          ? { file: local.binary_log_file, pos: Number(local.binary_log_position) }
          : null;
      return mysqlPosition(text(local.gtid_executed), binlog, await replicaStatus(query));
    },
  };
}

function mysqlPosition(
  gtidExecuted: string | null,
  binlog: CapturedPosition["binlog"],
  source: CapturedPosition["source"],
): CapturedPosition {
  return {
    gtidBinlogPos: null,
    gtidSlavePos: null,
    gtidCurrentPos: null,
    // MySQL prints long GTID sets over several lines; the set itself has no whitespace.
    gtidExecuted: gtidExecuted === null ? null : gtidExecuted.replace(/\s+/g, ""),
    binlog,
    source,
  };
}

/** `SHOW REPLICA STATUS` (MySQL 8.0.22+ column names), or null when the server is not a replica. */
function replicaSourceOf(row: Record<string, unknown> | undefined): CapturedPosition["source"] {
  if (!row) return null;
  return {
    host: String(row.Source_Host ?? ""),
    port: Number(row.Source_Port ?? 0),
    file: String(row.Relay_Source_Log_File ?? ""),
    pos: Number(row.Exec_Source_Log_Pos ?? 0),
    usingGtid: row.Auto_Position === undefined ? null : String(row.Auto_Position),
  };
}

/** A JSON column: mysql2 hands JSON over parsed, other clients as text. */
function jsonColumn(value: unknown): Record<string, unknown> {
  if (typeof value === "string") return JSON.parse(value) as Record<string, unknown>;
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>) : {};
}

/**
 * The dialect of the server that reported `@@version`; on MySQL, `nonInnodbTables` (see
 * `readNonInnodbTables`) decides between LOCK INSTANCE FOR BACKUP and FTWRL.
 */
export function dialectFor(versionString: string, nonInnodbTables: readonly string[] = []): Dialect {
  const v = parseServerVersion(versionString);
  return v.flavor === "mariadb"
    ? mariadbDialect(v.version)
    : mysqlDialect(v.version, v.major, v.minor, nonInnodbTables);
}

/** The dialect of the connected server, reading what it needs before any lock. */
export async function detectDialect(versionString: string, query: Query): Promise<Dialect> {
  if (parseServerVersion(versionString).flavor === "mariadb") return dialectFor(versionString);
  return dialectFor(versionString, await readNonInnodbTables(query));
}

/** User tables whose engine is not InnoDB (`schema.table (ENGINE)`): they need FTWRL on MySQL. */
export async function readNonInnodbTables(query: Query): Promise<string[]> {
  const rows = await query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, ENGINE AS e FROM information_schema.TABLES
     WHERE TABLE_TYPE = 'BASE TABLE' AND ENGINE <> 'InnoDB'
       AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
     ORDER BY TABLE_SCHEMA, TABLE_NAME`,
  );
  return rows.map((r) => `${String(r.s)}.${String(r.t)} (${String(r.e)})`);
}

/** Server settings read before the lock: what the manifest records and where the driver looks. */
export interface ServerFacts {
  versionString: string;
  serverId: number;
  settings: RestoreSettings;
  /** Directories resolved against the datadir (`./` means the datadir). */
  innodbLogDir: string;
  innodbUndoDir: string;
  innodbDataHomeDir: string;
}

/** Reads the server's version, id and restore settings in one cheap statement. */
export async function readServerFacts(query: Query): Promise<ServerFacts> {
  const [row] = await query(
    `SELECT @@version AS version, @@server_id AS serverId, @@datadir AS datadir, @@log_bin AS logBin,
       @@log_bin_basename AS logBinBasename, @@log_bin_index AS logBinIndex,
       @@innodb_page_size AS pageSize, @@lower_case_table_names AS lowerCase,
       @@innodb_log_file_size AS logFileSize, @@innodb_data_file_path AS dataFilePath,
       @@innodb_log_group_home_dir AS logDir, @@innodb_undo_directory AS undoDir,
       @@innodb_data_home_dir AS dataHomeDir`,
  );
  const datadir = String(row.datadir).replace(/\/+$/, "");
  const logBin = Number(row.logBin) === 1;
  const within = (dir: unknown) => resolveAgainst(datadir, text(dir));
  return {
    versionString: String(row.version),
    serverId: Number(row.serverId),
    settings: {
      innodbPageSize: Number(row.pageSize),
      lowerCaseTableNames: Number(row.lowerCase),
      logBinBasename: logBin ? text(row.logBinBasename) : null,
      logBinIndex: logBin ? text(row.logBinIndex) : null,
      datadir,
      innodbLogFileSize: row.logFileSize === null ? null : Number(row.logFileSize),
      innodbDataFilePath: text(row.dataFilePath),
    },
    innodbLogDir: within(row.logDir),
    innodbUndoDir: within(row.undoDir),
    innodbDataHomeDir: within(row.dataHomeDir),
  };
}

/** InnoDB directory settings are relative to the datadir; empty or null means the datadir itself. */
function resolveAgainst(datadir: string, dir: string | null): string {
  if (dir === null || dir === "" || dir === "." || dir === "./") return datadir;
  const path = dir.startsWith("/") ? dir : `${datadir}/${dir.replace(/^\.\//, "")}`;
  return path.replace(/\/+$/, "");
}

function binlogOf(row: Record<string, unknown> | undefined): CapturedPosition["binlog"] {
  return row && row.File ? { file: String(row.File), pos: Number(row.Position) } : null;
}

function text(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

/** The user tables a restore must bring back: base tables outside the system schemas, in a stable order. */
export async function readTableInventory(query: Query): Promise<ManifestTable[]> {
  // information_schema.TABLES with only these columns reads table definitions, not statistics: cheap enough
  // to run under the lock, where it must run so it matches the snapshot exactly.
  const rows = await query(
    `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, ENGINE AS e FROM information_schema.TABLES
     WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')
       AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
     ORDER BY TABLE_SCHEMA, TABLE_NAME`,
  );
  return rows.map((r) => ({ schema: String(r.s), table: String(r.t), engine: String(r.e ?? "") }));
}
