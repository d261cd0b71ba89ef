import type { BinlogServer } from "../../contracts";
import type { Query } from "../common/dialect";
import { PipelineError } from "../common/errors";
import { parseServerVersion } from "../common/mysql";

/**
 * What the archiver asks the server: where its binlogs are and whether they hold the cluster's transactions
 * (once), which files exist, where the committed end of the binlog is and how far the server is behind its
 * source (every poll). Cheap statements only: the archiver reads the binlog files themselves from disk, so the
 * server never rotates a log, serves a dump thread or holds a lock for it.
 */

/** The server's binlog settings. */
export interface BinlogServerFacts {
  server: BinlogServer;
  /** MySQL ≥ 8.2 renamed SHOW MASTER STATUS. */
  statusStatement: "SHOW MASTER STATUS" | "SHOW BINARY LOG STATUS";
  replicaStatusStatement: "SHOW SLAVE STATUS" | "SHOW REPLICA STATUS";
  /** Absolute directory of the binlog files (from `@@log_bin_basename`). */
  binlogDir: string;
}

/** One binlog file the server lists. */
export interface ListedBinlog {
  name: string;
  size: number;
}

/** The end of the last committed transaction group in the file being written. */
export interface BinlogEnd {
  file: string;
  position: number;
}

const text = (value: unknown): string => (value === null || value === undefined ? "" : String(value));
const on = (value: unknown): boolean => /^(1|on|yes)$/i.test(text(value));

/**
 * Reads the server's binlog settings and refuses a server whose binlog cannot serve point-in-time recovery,
 * naming every setting that is wrong.
 */
export async function readServerFacts(query: Query): Promise<BinlogServerFacts> {
  const [v] = await query("SELECT @@version AS version, @@server_id AS serverId, @@log_bin AS logBin");
  const version = parseServerVersion(text(v?.version));
  const mysql = version.flavor === "mysql";
  const [, , patch] = version.version.split(".").map(Number);
  // MySQL 8.0.26 renamed log_slave_updates; 8.4 dropped the old name.
  const newReplicaNames =
    mysql && (version.major > 8 || (version.major === 8 && (version.minor > 0 || patch >= 26)));
  const [row] = await query(
    mysql
      ? `SELECT @@server_uuid AS uuid, @@log_bin_basename AS basename, @@gtid_mode AS gtidMode,
           @@${newReplicaNames ? "log_replica_updates" : "log_slave_updates"} AS replicaUpdates,
           @@binlog_encryption AS encrypted`
      : `SELECT NULL AS uuid, @@log_bin_basename AS basename, @@gtid_strict_mode AS strict,
           @@log_slave_updates AS replicaUpdates, @@encrypt_binlog AS encrypted`,
  );
  const replicaStatusStatement = mysql ? "SHOW REPLICA STATUS" : "SHOW SLAVE STATUS";
  const isReplica = (await query(replicaStatusStatement)).length > 0;
  const problems: string[] = [];
  if (!on(v?.logBin)) problems.push("log_bin is OFF: the server writes no binary log");
  if (isReplica && !on(row?.replicaUpdates))
    problems.push(
      `${mysql ? "log_replica_updates" : "log_slave_updates"} is OFF on this replica: its binlog lacks what it replicates`,
    );
  if (mysql && text(row?.gtidMode).toUpperCase() !== "ON")
    problems.push(`gtid_mode is ${text(row?.gtidMode)}, not ON`);
  if (on(row?.encrypted)) problems.push("the binlog is encrypted, which the archiver cannot read");
  const basename = text(row?.basename);
  if (basename !== "" && !basename.startsWith("/"))
    problems.push(`log_bin_basename "${basename}" is not absolute`);
  if (problems.length > 0) {
    throw new PipelineError(
      "BinlogFailed",
      `this server's binary log cannot be archived for point-in-time recovery: ${problems.join("; ")}`,
      "fix the server settings named above (my.cnf) and restart the server; the archiver retries on its own",
    );
  }
  return {
    server: {
      flavor: version.flavor,
      version: version.version,
      serverId: Number(v?.serverId),
      serverUuid: mysql ? text(row?.uuid) : null,
    },
    statusStatement:
      mysql && (version.major > 8 || (version.major === 8 && version.minor >= 2))
        ? "SHOW BINARY LOG STATUS"
        : "SHOW MASTER STATUS",
    replicaStatusStatement,
    binlogDir: basename.slice(0, basename.lastIndexOf("/")) || "/",
  };
}

/** `SHOW BINARY LOGS`, oldest first. */
export async function listBinlogs(query: Query): Promise<ListedBinlog[]> {
  const rows = await query("SHOW BINARY LOGS");
  return rows.map((r) => ({ name: text(r.Log_name), size: Number(r.File_size) }));
}

/** Where the last committed group ends (`SHOW MASTER STATUS`). */
export async function readBinlogEnd(query: Query, facts: BinlogServerFacts): Promise<BinlogEnd> {
  const [row] = await query(facts.statusStatement);
  if (row === undefined || !row.File)
    throw new PipelineError(
      "BinlogFailed",
      `${facts.statusStatement} returned no row: binary logging is off`,
      "turn log_bin on",
    );
  return { file: text(row.File), position: Number(row.Position) };
}

/** Seconds the server is behind its source, or null when it is not a replica or does not know. */
export async function readReplicaLag(query: Query, facts: BinlogServerFacts): Promise<number | null> {
  const [row] = await query(facts.replicaStatusStatement);
  const behind = row?.Seconds_Behind_Master ?? row?.Seconds_Behind_Source;
  return behind === null || behind === undefined ? null : Number(behind);
}
