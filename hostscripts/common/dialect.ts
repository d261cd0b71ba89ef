import type { CapturedPosition, LockMethod, LockMode, RestoreSettings, ServerFlavor } from "../../contracts";
import { parseServerVersion } from "./mysql";

/**
 * What differs between MariaDB and MySQL for a snapshot backup: the statements of each lock mode and how the
 * position is read. The dialect is chosen from the server (`@@version`), never from the config, so a server
 * upgrade cannot leave a wrong setting behind; which mode a backup uses is decided by what the server proves
 * (`backup/lockmode.ts`).
 */

/** Runs one statement and returns its rows; the lock session and tests provide it. */
export type Query = (sql: string) => Promise<Record<string, unknown>[]>;

/** How one lock mode is taken on one server family. */
export interface LockPlan {
  mode: LockMode;
  /** What the manifest records as the lock's method. */
  method: LockMethod;
  /** Issued in order to take the lock; the lock window starts with the first. Empty for `none`. */
  lockStatements: string[];
  /**
   * Index in `lockStatements` of the statement that takes the hold the snapshot needs (commits, where
   * `holdsCommits`). The ones before it hold only DDL and writes to non-transactional tables, so what needs no
   * more than that (the table inventory) is done between them and it, before the replica's commits wait. 0
   * when the first statement takes the whole lock.
   */
  holdFrom: number;
  /** Releases what `lockStatements` took; null when nothing was taken. */
  unlockStatement: string | null;
  /**
   * True when no transaction commits while the lock is held: the position read under it is the snapshot's
   * exactly. False when commits go on (no lock, or MySQL's LOCK INSTANCE FOR BACKUP): the position is then
   * read just before and just after the snapshot, and the restored server's recovered one lies between.
   */
  holdsCommits: boolean;
  /** Reads the position (under the lock, or just before the snapshot: a lower bound). */
  capturePosition(query: Query): Promise<CapturedPosition>;
  /**
   * Reads the position just after the snapshot, as an upper bound of what it holds: MySQL's `gtid_executed`
   * with the GTIDs still being committed (`gtid_owned`), which recovery may commit from the binary log.
   */
  captureUpperBound(query: Query): Promise<CapturedPosition>;
}

/** A server family's lock plans and version. */
export interface Dialect {
  flavor: ServerFlavor;
  /** `x.y.z`. */
  version: string;
  /** The statements and the position reader of `mode` on this server. */
  lockPlan(mode: LockMode): LockPlan;
}

/**
 * The replica's position as `mysql.gtid_slave_pos` holds it: per domain, the row with the highest `sub_id`,
 * which is what a server recovered from the snapshot loads into `@@gtid_slave_pos`. The variable itself is
 * updated after the applier's commit: read straight after BLOCK_COMMIT it can still lack the last transaction
 * the table (and so the snapshot) holds — seen on the lab at the maximum rate, captured 0-1-3728 against 0-1-3729
 * recovered. Undefined when the table cannot be read (the variable is used then).
 */
async function slavePosFromTable(query: Query): Promise<string | null | undefined> {
  try {
    const [row] = await query(
      "SELECT GROUP_CONCAT(CONCAT(t.domain_id, '-', t.server_id, '-', t.seq_no) ORDER BY t.domain_id) AS pos " +
        "FROM mysql.gtid_slave_pos t WHERE t.sub_id = " +
        "(SELECT MAX(u.sub_id) FROM mysql.gtid_slave_pos u WHERE u.domain_id = t.domain_id)",
    );
    // No row: no position, as the variable says it ("").
    return text(row?.pos) ?? "";
  } catch {
    return undefined;
  }
}

const FTWRL = { method: "FLUSH TABLES WITH READ LOCK", statement: "FLUSH TABLES WITH READ LOCK" } as const;

/**
 * MariaDB. `global`: FTWRL. `commit`: the BACKUP STAGEs one by one: new writes to non-transactional tables
 * wait from FLUSH on, BLOCK_DDL waits for the running ones, flushes those tables and holds DDL (also the final
 * rename of a running ALTER TABLE), and BLOCK_COMMIT holds every commit and the binary log — so InnoDB, Aria,
 * MyISAM, the binlog and the GTID positions all match the snapshot, while statements on InnoDB tables keep
 * running. It is what `BACKUP STAGE BLOCK_COMMIT` straight after START does (MariaDB's "storage snapshots"
 * procedure, and mariabackup): the server runs the stages in between on the way, in the same order. Issued
 * one by one, what needs only DDL held (the inventory) is done under BLOCK_DDL, before the replica's commits
 * wait. Both modes hold commits, so the position read under them is exact; `none` reads it around the snapshot.
 */
export function mariadbDialect(version: string): Dialect {
  const capturePosition = async (query: Query): Promise<CapturedPosition> => {
    const [gtid] = await query(
      "SELECT @@gtid_binlog_pos AS binlogPos, @@gtid_slave_pos AS slavePos, @@gtid_current_pos AS currentPos",
    );
    const slavePos = await slavePosFromTable(query);
    const [master] = await query("SHOW MASTER STATUS");
    const [slave] = await query("SHOW SLAVE STATUS");
    return {
      gtidBinlogPos: text(gtid?.binlogPos),
      gtidSlavePos: slavePos === undefined ? text(gtid?.slavePos) : slavePos,
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
  };
  return {
    flavor: "mariadb",
    version,
    lockPlan(mode) {
      switch (mode) {
        // The binary log state read afterwards bounds what recovery commits (see verify/position.ts).
        case "none":
          return noLock(capturePosition, capturePosition);
        case "commit":
          return {
            mode,
            method: "BACKUP STAGE BLOCK_COMMIT",
            lockStatements: [
              "BACKUP STAGE START",
              "BACKUP STAGE FLUSH",
              "BACKUP STAGE BLOCK_DDL",
              "BACKUP STAGE BLOCK_COMMIT",
            ],
            holdFrom: 3,
            unlockStatement: "BACKUP STAGE END",
            holdsCommits: true,
            capturePosition,
            captureUpperBound: capturePosition,
          };
        case "global":
          return globalLock(capturePosition);
      }
    },
  };
}

/**
 * MySQL 8.0/8.4. `global`: FTWRL, the position from plain statements (`SHOW BINARY LOG STATUS` on 8.2+,
 * `SHOW MASTER STATUS` before). `commit`: `LOCK INSTANCE FOR BACKUP`, which blocks DDL and file operations
 * but lets every commit through — MySQL has no statement that holds only commits — so the snapshot is
 * crash-consistent (it needs the proof of `none`) and the position comes from
 * `performance_schema.log_status` (GTID set and binlog coordinates of one instant) around the snapshot.
 */
export function mysqlDialect(version: string, major: number, minor: number): Dialect {
  const binlogStatus =
    major > 8 || (major === 8 && minor >= 2) ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS";
  const replicaStatus = async (query: Query) => replicaSourceOf((await query("SHOW REPLICA STATUS"))[0]);
  const plainPosition = async (query: Query): Promise<CapturedPosition> => {
    const [gtid] = await query("SELECT @@global.gtid_executed AS executed");
    const [binlog] = await query(binlogStatus);
    return mysqlPosition(text(gtid?.executed), binlogOf(binlog), await replicaStatus(query));
  };
  // A transaction in the binary log is committed by recovery, but joins gtid_executed only once committed.
  const withOwned =
    (read: (query: Query) => Promise<CapturedPosition>) =>
    async (query: Query): Promise<CapturedPosition> => {
      const position = await read(query);
      const [row] = await query("SELECT @@global.gtid_owned AS owned");
      const owned = String(row?.owned ?? "")
        .replace(/#\d+/g, "")
        .replace(/\s+/g, "");
      if (owned === "" || position.gtidExecuted === null) return position;
      return { ...position, gtidExecuted: [position.gtidExecuted, owned].filter(Boolean).join(",") };
    };
  const logStatusPosition = async (query: Query): Promise<CapturedPosition> => {
    const [status] = await query("SELECT LOCAL FROM performance_schema.log_status");
    const local = jsonColumn(status?.LOCAL);
    const binlog =
      typeof local.binary_log_file === "string" && local.binary_log_file !== ""
        ? { file: local.binary_log_file, pos: Number(local.binary_log_position) }
        : null;
    return mysqlPosition(text(local.gtid_executed), binlog, await replicaStatus(query));
  };
  return {
    flavor: "mysql",
    version,
    lockPlan(mode) {
      switch (mode) {
        case "none":
          return noLock(plainPosition, withOwned(plainPosition));
        case "commit":
          return {
            mode,
            method: "LOCK INSTANCE FOR BACKUP",
            lockStatements: ["LOCK INSTANCE FOR BACKUP"],
            holdFrom: 0,
            unlockStatement: "UNLOCK INSTANCE",
            holdsCommits: false,
            capturePosition: logStatusPosition,
            captureUpperBound: withOwned(logStatusPosition),
          };
        case "global":
          return globalLock(plainPosition);
      }
    },
  };
}

function noLock(
  capturePosition: LockPlan["capturePosition"],
  captureUpperBound: LockPlan["captureUpperBound"],
): LockPlan {
  return {
    mode: "none",
    method: "none",
    lockStatements: [],
    holdFrom: 0,
    unlockStatement: null,
    holdsCommits: false,
    capturePosition,
    captureUpperBound,
  };
}

function globalLock(capturePosition: LockPlan["capturePosition"]): LockPlan {
  return {
    mode: "global",
    method: FTWRL.method,
    lockStatements: [FTWRL.statement],
    holdFrom: 0,
    unlockStatement: "UNLOCK TABLES",
    holdsCommits: true,
    capturePosition,
    captureUpperBound: capturePosition,
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
  /** MariaDB's `@@aria_log_dir_path` (the Aria recovery log) resolved against the datadir; null on MySQL. */
  ariaLogDir: string | null;
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
  const mariadb = parseServerVersion(String(row.version)).flavor === "mariadb";
  const [aria] = mariadb ? await query("SELECT @@aria_log_dir_path AS ariaLogDir") : [];
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
    ariaLogDir: mariadb ? within(aria?.ariaLogDir) : null,
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

/** A column as text, keeping SQL NULL (and a missing column) as null. */
export function text(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}
