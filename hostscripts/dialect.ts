import type {
  CapturedPosition,
  LockMethod,
  ManifestTable,
  RestoreSettings,
  ServerFlavor,
} from "../contracts";
import { parseServerVersion } from "./mysql";

/**
 * What differs between MariaDB and MySQL for a snapshot backup: the lock statements and how the position
 * is read under the lock. Everything else (settings, inventory) is the same SQL on both. The dialect is
 * chosen from `@@version`, never from the config, so a server upgrade cannot leave a wrong setting behind.
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
 * MySQL 8.0/8.4: `LOCK INSTANCE FOR BACKUP` blocks DDL and non-InnoDB writes but lets InnoDB commit, so
 * the position must come from one consistent read. Issue 5 completes this branch (performance_schema.log_status,
 * FTWRL when non-InnoDB tables are present) and tests it against recorded server outputs.
 */
export function mysqlDialect(version: string, major: number, minor: number): Dialect {
  const binlogStatus =
    major > 8 || (major === 8 && minor >= 2) ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS";
  return {
    flavor: "mysql",
    version,
    lockMethod: "LOCK INSTANCE FOR BACKUP",
    lockStatements: ["LOCK INSTANCE FOR BACKUP"],
    unlockStatement: "UNLOCK INSTANCE",
    async capturePosition(query) {
      const [gtid] = await query("SELECT @@global.gtid_executed AS executed");
      const [master] = await query(binlogStatus);
      const [replica] = await query("SHOW REPLICA STATUS");
      return {
        gtidBinlogPos: null,
        gtidSlavePos: null,
        gtidCurrentPos: null,
        gtidExecuted: text(gtid?.executed),
        binlog: binlogOf(master),
        source: replica
          ? {
              host: String(replica.Source_Host ?? ""),
              port: Number(replica.Source_Port ?? 0),
              file: String(replica.Relay_Source_Log_File ?? ""),
              pos: Number(replica.Exec_Source_Log_Pos ?? 0),
              usingGtid: replica.Auto_Position === undefined ? null : String(replica.Auto_Position),
            }
          : null,
      };
    },
  };
}

/** The dialect of the server that reported `@@version`. */
export function dialectFor(versionString: string): Dialect {
  const v = parseServerVersion(versionString);
  return v.flavor === "mariadb" ? mariadbDialect(v.version) : mysqlDialect(v.version, v.major, v.minor);
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
