import type { BinlogServer } from "../../contracts";
import type { Query } from "./dialect";
import { PipelineError } from "./errors";
import { parseServerVersion } from "./mysql";

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

/** The server settings point-in-time recovery depends on, as read. */
export interface BinlogSettings {
  server: BinlogServer;
  /** `major.minor` decide the statements' names. */
  major: number;
  minor: number;
  logBin: boolean;
  isReplica: boolean;
  /** `log_slave_updates` / `log_replica_updates` (MySQL ≥ 8.0.26), and its name on this server. */
  replicaUpdates: boolean;
  replicaUpdatesName: string;
  /** MySQL `gtid_mode`; null on MariaDB. */
  gtidMode: string | null;
  /** MariaDB `gtid_strict_mode`; null on MySQL. */
  gtidStrict: boolean | null;
  encrypted: boolean;
  /** `@@log_bin_basename`. */
  basename: string;
  binlogFormat: string;
  binlogChecksum: string;
}

/** A setting that stands in the way: the archiver refuses to run (`refuse`), or runs with less (`warn`). */
export interface BinlogSettingProblem {
  setting: string;
  severity: "refuse" | "warn";
  problem: string;
  fix: string;
}

/** Reads the settings with cheap statements (one of them `SHOW SLAVE STATUS`, for whether it replicates). */
export async function readBinlogSettings(query: Query): Promise<BinlogSettings> {
  const [v] = await query("SELECT @@version AS version, @@server_id AS serverId, @@log_bin AS logBin");
  const version = parseServerVersion(text(v?.version));
  const mysql = version.flavor === "mysql";
  const [, , patch] = version.version.split(".").map(Number);
  // MySQL 8.0.26 renamed log_slave_updates; 8.4 dropped the old name.
  const newReplicaNames =
    mysql && (version.major > 8 || (version.major === 8 && (version.minor > 0 || patch >= 26)));
  const replicaUpdatesName = newReplicaNames ? "log_replica_updates" : "log_slave_updates";
  const [row] = await query(
    mysql
      ? `SELECT @@server_uuid AS uuid, @@log_bin_basename AS basename, @@gtid_mode AS gtidMode,
           @@${replicaUpdatesName} AS replicaUpdates, @@binlog_encryption AS encrypted,
           @@binlog_format AS format, @@binlog_checksum AS checksum`
      : `SELECT NULL AS uuid, @@log_bin_basename AS basename, @@gtid_strict_mode AS strict,
           @@log_slave_updates AS replicaUpdates, @@encrypt_binlog AS encrypted,
           @@binlog_format AS format, @@binlog_checksum AS checksum`,
  );
  return {
    server: {
      flavor: version.flavor,
      version: version.version,
      serverId: Number(v?.serverId),
      serverUuid: mysql ? text(row?.uuid) : null,
    },
    major: version.major,
    minor: version.minor,
    logBin: on(v?.logBin),
    isReplica: (await query(mysql ? "SHOW REPLICA STATUS" : "SHOW SLAVE STATUS")).length > 0,
    replicaUpdates: on(row?.replicaUpdates),
    replicaUpdatesName,
    gtidMode: mysql ? text(row?.gtidMode).toUpperCase() : null,
    gtidStrict: mysql ? null : on(row?.strict),
    encrypted: on(row?.encrypted),
    basename: text(row?.basename),
    binlogFormat: text(row?.format).toUpperCase(),
    binlogChecksum: text(row?.checksum).toUpperCase(),
  };
}

/** What in the settings stands in the way of archiving, each with its fix (`check` names them one by one). */
export function binlogSettingProblems(s: BinlogSettings): BinlogSettingProblem[] {
  const mysql = s.server.flavor === "mysql";
  const cnf = "in my.cnf under [mysqld], and restart the server";
  const problems: BinlogSettingProblem[] = [];
  const add = (setting: string, severity: "refuse" | "warn", problem: string, fix: string) =>
    problems.push({ setting, severity, problem, fix });
  if (!s.logBin)
    add(
      "log_bin",
      "refuse",
      "log_bin is OFF: the server writes no binary log",
      `set log_bin=mysql-bin ${cnf}`,
    );
  if (s.isReplica && !s.replicaUpdates)
    add(
      s.replicaUpdatesName,
      "refuse",
      `${s.replicaUpdatesName} is OFF on this replica: its binlog lacks what it replicates`,
      `set ${s.replicaUpdatesName}=ON ${cnf}`,
    );
  if (mysql && s.gtidMode !== "ON")
    add(
      "gtid_mode",
      "refuse",
      `gtid_mode is ${s.gtidMode}, not ON`,
      "set gtid_mode=ON and enforce_gtid_consistency=ON (online: through OFF_PERMISSIVE and ON_PERMISSIVE on every server of the cluster)",
    );
  if (s.encrypted)
    add(
      mysql ? "binlog_encryption" : "encrypt_binlog",
      "refuse",
      "the binlog is encrypted, which the archiver cannot read",
      `set ${mysql ? "binlog_encryption" : "encrypt_binlog"}=OFF ${cnf}: segments are encrypted in S3 with SSE-KMS`,
    );
  if (s.basename !== "" && !s.basename.startsWith("/"))
    add(
      "log_bin_basename",
      "refuse",
      `log_bin_basename "${s.basename}" is not absolute`,
      `give log_bin an absolute path ${cnf}`,
    );
  if (s.logBin && s.binlogFormat !== "ROW")
    add(
      "binlog_format",
      "warn",
      `binlog_format is ${s.binlogFormat}: a replay re-runs statements, and non-deterministic ones (NOW(), UUID(), LIMIT without ORDER BY) give other rows than they gave`,
      `set binlog_format=ROW ${cnf}`,
    );
  if (s.logBin && s.binlogChecksum !== "CRC32")
    add(
      "binlog_checksum",
      "warn",
      `binlog_checksum is ${s.binlogChecksum}: a segment's events cannot be checked one by one before a replay (its sha256 still is)`,
      `set binlog_checksum=CRC32 ${cnf}`,
    );
  if (s.gtidStrict === false)
    add(
      "gtid_strict_mode",
      "warn",
      "gtid_strict_mode is OFF: a restore chains segments by GTID sequence numbers, which only strict mode keeps growing per domain",
      `set gtid_strict_mode=ON ${cnf} (on every server of the cluster)`,
    );
  return problems;
}

/**
 * Reads the server's binlog settings and refuses a server whose binlog cannot serve point-in-time recovery,
 * naming every setting that is wrong.
 */
export async function readServerFacts(query: Query): Promise<BinlogServerFacts> {
  const settings = await readBinlogSettings(query);
  const refused = binlogSettingProblems(settings).filter((p) => p.severity === "refuse");
  if (refused.length > 0) {
    throw new PipelineError(
      "BinlogFailed",
      `this server's binary log cannot be archived for point-in-time recovery: ${refused.map((p) => p.problem).join("; ")}`,
      "fix the server settings named above (my.cnf) and restart the server; the archiver retries on its own (mysql-backup check names each fix)",
    );
  }
  const { server, major, minor, basename } = settings;
  const mysql = server.flavor === "mysql";
  return {
    server,
    statusStatement:
      mysql && (major > 8 || (major === 8 && minor >= 2)) ? "SHOW BINARY LOG STATUS" : "SHOW MASTER STATUS",
    replicaStatusStatement: mysql ? "SHOW REPLICA STATUS" : "SHOW SLAVE STATUS",
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
