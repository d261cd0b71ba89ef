import type { Connection, RowDataPacket } from "mysql2/promise";
import type { BackupManifest, CheckResult } from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { connect, readOptionFile, type ClientOptions } from "../common/mysql";

/**
 * Optional replication catch-up (`verify.catchUp`): the restored scratch server becomes a replica of a
 * configured source from the position in the manifest and must apply everything the source had logged
 * when it started, within a bound. It proves the recorded position is the right one to rejoin from — the
 * very thing `mysql-backup restore` tells the operator to do on the worst day.
 *
 * A replication account error (cannot connect, access denied) is the verifier's configuration, not the
 * backup's: a PipelineError, the message is retried. An applier error (a duplicate key, a missing row: the
 * data does not match the position) or not catching up in time fails the check.
 */

/** The catch-up settings of the verify config. */
export interface CatchUpOptions {
  /** `[client]` host, port, user, password of the replication account on the source. Mode 0600. */
  optionFile: string;
  /** How long the restored server may take to catch up. */
  timeoutSeconds: number;
}

/** The replica's threads as SHOW SLAVE STATUS / SHOW REPLICA STATUS report them. */
interface ReplicaThreads {
  io: string;
  sql: string;
  ioError: string;
  sqlError: string;
}

async function rows(
  conn: Connection,
  sql: string,
  values: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const [result] = await conn.query<RowDataPacket[]>(sql, values);
  return Array.isArray(result) ? (result as Record<string, unknown>[]) : [];
}

/** The source's current GTID position, read with the replication account (no privilege needed). */
async function sourcePosition(
  source: ClientOptions,
  flavor: BackupManifest["server"]["flavor"],
): Promise<string> {
  const conn = await connect(source, "the catch-up source").catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `catch-up: ${messageOf(error)}`,
      "check catchUp.optionFile (host, port, replication account) and the network path to the source",
      { cause: error },
    );
  });
  try {
    const variable = flavor === "mariadb" ? "@@gtid_binlog_pos" : "@@gtid_executed";
    const [row] = await rows(conn, `SELECT ${variable} AS pos`);
    return String(row?.pos ?? "");
  } finally {
    await conn.end().catch(() => undefined);
  }
}

/**
 * Where the restored server resumes (MariaDB): the manifest's position when it was captured under a lock that
 * held commits; otherwise (manifest `positionAfter`) the one the server recovered to, which the "position"
 * check proved and which is the backup's own.
 */
async function startingPosition(conn: Connection, manifest: BackupManifest): Promise<string> {
  if (manifest.positionAfter === undefined) {
    return manifest.position.gtidSlavePos || manifest.position.gtidBinlogPos || "";
  }
  if (manifest.server.flavor !== "mariadb") return "";
  const [row] = await rows(conn, "SELECT @@gtid_slave_pos AS slavePos, @@gtid_binlog_pos AS binlogPos");
  return String(row?.slavePos || row?.binlogPos || "");
}

/** Statements that point the scratch server at the source from the manifest's position, with placeholders. */
function pointAtSource(manifest: BackupManifest): string[] {
  if (manifest.server.flavor === "mysql") {
    return [
      "CHANGE REPLICATION SOURCE TO SOURCE_HOST=?, SOURCE_PORT=?, SOURCE_USER=?, SOURCE_PASSWORD=?, SOURCE_AUTO_POSITION=1",
      "START REPLICA",
    ];
  }
  return [
    "SET GLOBAL gtid_slave_pos = ?",
    "CHANGE MASTER TO MASTER_HOST=?, MASTER_PORT=?, MASTER_USER=?, MASTER_PASSWORD=?, MASTER_USE_GTID=slave_pos",
    "START SLAVE",
  ];
}

async function readThreads(
  conn: Connection,
  flavor: BackupManifest["server"]["flavor"],
): Promise<ReplicaThreads> {
  const [status] = await rows(conn, flavor === "mariadb" ? "SHOW SLAVE STATUS" : "SHOW REPLICA STATUS");
  const text = (key: string) => String(status?.[key] ?? "");
  return flavor === "mariadb"
    ? {
        io: text("Slave_IO_Running"),
        sql: text("Slave_SQL_Running"),
        ioError: text("Last_IO_Error"),
        sqlError: text("Last_SQL_Error"),
      }
    : {
        io: text("Replica_IO_Running"),
        sql: text("Replica_SQL_Running"),
        ioError: text("Last_IO_Error"),
        sqlError: text("Last_SQL_Error"),
      };
}

/**
 * Makes the scratch server (session `conn`) a replica of the source from the manifest's position, waits
 * until it has applied the source's position read at the start, and stops replication again.
 */
export async function catchUp(
  conn: Connection,
  manifest: BackupManifest,
  options: CatchUpOptions,
  clock: () => number = () => performance.now(),
): Promise<CheckResult> {
  const source = await readOptionFile(options.optionFile);
  const flavor = manifest.server.flavor;
  const target = await sourcePosition(source, flavor);
  const from = await startingPosition(conn, manifest);
  const account = [source.host ?? "127.0.0.1", source.port ?? 3306, source.user, source.password ?? ""];
  const [first, ...rest] = pointAtSource(manifest);
  await conn.query(first, flavor === "mariadb" ? [from] : account);
  if (flavor === "mariadb") await conn.query(rest.shift()!, account);
  for (const statement of rest) await conn.query(statement);

  const started = clock();
  const deadline = started + options.timeoutSeconds * 1000;
  try {
    while (clock() < deadline) {
      const wait =
        flavor === "mariadb"
          ? "SELECT MASTER_GTID_WAIT(?, 1) AS waited"
          : "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 1) AS waited";
      const [row] = await rows(conn, wait, [target]);
      if (Number(row?.waited) === 0) {
        const seconds = ((clock() - started) / 1000).toFixed(1);
        return {
          name: "replication",
          passed: true,
          detail: `caught up with the source's ${target} in ${seconds}s from ${from || "its gtid_executed"}`,
        };
      }
      const threads = await readThreads(conn, flavor);
      if (threads.sqlError !== "" || threads.sql === "No") {
        return {
          name: "replication",
          passed: false,
          detail: `the restored server cannot apply the source's events from the backup's position: ${threads.sqlError || "applier stopped"}`,
        };
      }
      if (threads.ioError !== "" && threads.io !== "Yes") {
        throw new PipelineError(
          "VerifierInfrastructure",
          `catch-up: the restored server cannot replicate from ${account[0]}:${account[1]}: ${threads.ioError}`,
          "check the replication account in catchUp.optionFile and that the source still has the binary logs since the backup",
        );
      }
    }
    return {
      name: "replication",
      passed: false,
      detail: `did not catch up with the source's ${target} within ${options.timeoutSeconds}s`,
    };
  } finally {
    await conn.query(flavor === "mariadb" ? "STOP SLAVE" : "STOP REPLICA").catch(() => undefined);
  }
}
