import { rootQuery, rootScript } from "./mariadb";
import { waitUntil } from "./processes";

/**
 * Accounts and GTID replication of the lab pair. Everything is created on the primary so that it reaches
 * the replica through replication: the replica never gets local (errant) GTIDs.
 */

/** The privileges the backup agent needs on MariaDB 10.11: FTWRL (RELOAD), SHOW MASTER STATUS
 * (BINLOG MONITOR), SHOW SLAVE STATUS (SLAVE MONITOR), and reading the table inventory. */
export const BACKUP_GRANTS = [
  "RELOAD",
  "PROCESS",
  "BINLOG MONITOR",
  "SLAVE MONITOR",
  "SELECT",
  "SHOW VIEW",
  "LOCK TABLES",
  "EVENT",
  "TRIGGER",
];

/** The account the replica's IO thread connects as. */
export const REPLICATION_USER = "repl";
/** The account of the backup agent (`<dir>/secrets/backup.cnf`). */
export const BACKUP_USER = "backup";

/** Creates the replication and backup accounts and the sysbench schema on the primary. */
export async function createAccounts(
  primarySocket: string,
  passwords: { replication: string; backup: string },
): Promise<void> {
  // The replica connects over TCP from 127.0.0.1; names are not resolved (--skip-name-resolve).
  await rootQuery(primarySocket, `CREATE USER '${REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY ?`, [
    passwords.replication,
  ]);
  await rootQuery(primarySocket, `GRANT REPLICATION SLAVE ON *.* TO '${REPLICATION_USER}'@'127.0.0.1'`);
  await rootQuery(primarySocket, `CREATE USER '${BACKUP_USER}'@'localhost' IDENTIFIED BY ?`, [
    passwords.backup,
  ]);
  await rootQuery(primarySocket, `GRANT ${BACKUP_GRANTS.join(", ")} ON *.* TO '${BACKUP_USER}'@'localhost'`);
  await rootScript(primarySocket, ["CREATE DATABASE sbtest"]);
}

/** Points the replica at the primary by GTID (from the replica's own slave position) and starts it. */
export async function startReplication(
  replicaSocket: string,
  primaryPort: number,
  replicationPassword: string,
): Promise<void> {
  await rootQuery(
    replicaSocket,
    `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=?, MASTER_USER='${REPLICATION_USER}', ` +
      "MASTER_PASSWORD=?, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
    [primaryPort, replicationPassword],
  );
  await rootQuery(replicaSocket, "START SLAVE");
}

/** The replica's replication threads and position. */
export interface ReplicaStatus {
  ioRunning: boolean;
  sqlRunning: boolean;
  gtidSlavePos: string;
  secondsBehind: number | null;
  /** The last IO or SQL thread error; empty when there is none. */
  lastError: string;
}

/** Reads SHOW SLAVE STATUS and @@gtid_slave_pos on the replica. */
export async function readReplicaStatus(replicaSocket: string): Promise<ReplicaStatus> {
  const [status] = await rootQuery(replicaSocket, "SHOW SLAVE STATUS");
  const [position] = await rootQuery(replicaSocket, "SELECT @@gtid_slave_pos AS pos");
  const behind = status?.Seconds_Behind_Master;
  const errors = [status?.Last_IO_Error, status?.Last_SQL_Error].filter(
    (e) => typeof e === "string" && e !== "",
  );
  return {
    ioRunning: status?.Slave_IO_Running === "Yes",
    sqlRunning: status?.Slave_SQL_Running === "Yes",
    gtidSlavePos: String(position?.pos ?? ""),
    secondsBehind: behind === null || behind === undefined ? null : Number(behind),
    lastError: errors.join("; "),
  };
}

/** The primary's binary log position as a GTID list. */
export async function primaryGtidPosition(primarySocket: string): Promise<string> {
  const [row] = await rootQuery(primarySocket, "SELECT @@gtid_binlog_pos AS pos");
  return String(row?.pos ?? "");
}

/**
 * Waits until the replica has applied everything the primary had logged when the wait began.
 * Fails early, with the replica's error, when a replication thread stops.
 */
export async function waitForCatchUp(
  primarySocket: string,
  replicaSocket: string,
  timeoutMs: number,
): Promise<void> {
  const target = await primaryGtidPosition(primarySocket);
  let last: ReplicaStatus | undefined;
  const caughtUp = await waitUntil(async () => {
    // MASTER_GTID_WAIT returns 0 once the position is reached, -1 after its own (short) timeout.
    const [row] = await rootQuery(replicaSocket, "SELECT MASTER_GTID_WAIT(?, 0.5) AS waited", [target]);
    if (Number(row?.waited) === 0) return true;
    last = await readReplicaStatus(replicaSocket);
    if (!last.sqlRunning || (!last.ioRunning && last.lastError !== "")) {
      throw new Error(
        `the lab replica stopped replicating before reaching ${target}: ${last.lastError || "threads stopped"}. ` +
          "Look at log/replica.err in the lab dir, then `npm run lab -- down` and up again.",
      );
    }
    return false;
  }, timeoutMs);
  if (!caughtUp) {
    throw new Error(
      `the lab replica did not reach the primary's GTID ${target} within ${timeoutMs / 1000}s ` +
        `(replica at ${last?.gtidSlavePos ?? "?"}, ${last?.secondsBehind ?? "?"} s behind)`,
    );
  }
}
