import type { Connection, RowDataPacket } from "mysql2/promise";
import {
  lockModeOf,
  type BackupManifest,
  type CapturedPosition,
  type CheckResult,
  type RecoveredPosition,
  type ServerFlavor,
} from "../../contracts";
import { mariadbBetween, mariadbMaxPerDomain, mysqlBetween } from "../common/gtid";

/**
 * The "position" check of DESIGN §4: the GTID state the restored server recovered to equals what was captured
 * under a lock that held commits, or, for a backup taken while commits went on (lock mode `none`, MySQL's
 * `commit`), lies between the positions the replica had just before and just after the snapshot — that
 * recovered position is then the backup's own. The comparisons are pure functions.
 */

/** The GTID state read from the restored server, and the XA transactions recovery left prepared. */
export type RestoredPosition = RecoveredPosition;

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

/**
 * The "position" check of a backup taken while commits went on (manifest `positionAfter`): the position the
 * restored server recovered to is the backup's, and it must lie between the replica's positions read just
 * before and just after the snapshot — on MariaDB both `gtid_slave_pos` (where a restored replica resumes)
 * and `gtid_binlog_pos`, on MySQL `gtid_executed`. A transaction can be in the snapshot (written to the binary
 * log, so recovery commits it) before the server counts it as applied: the upper bound of `gtid_slave_pos` is
 * therefore what the binary log held after the snapshot too (`mariadbMaxPerDomain`), and MySQL's after-read
 * holds the GTIDs being committed (`gtid_owned`).
 */
export function compareWithinBounds(
  flavor: ServerFlavor,
  before: CapturedPosition,
  after: CapturedPosition,
  restored: RestoredPosition,
): CheckResult {
  const pairs: Array<[string, string | null, string | null, string | null]> =
    flavor === "mariadb"
      ? [
          [
            "gtid_slave_pos",
            before.gtidSlavePos,
            restored.gtidSlavePos,
            mariadbMaxPerDomain(after.gtidSlavePos, after.gtidBinlogPos),
          ],
          ["gtid_binlog_pos", before.gtidBinlogPos, restored.gtidBinlogPos, after.gtidBinlogPos],
        ]
      : [["gtid_executed", before.gtidExecuted, restored.gtidExecuted, after.gtidExecuted]];
  const between = flavor === "mariadb" ? mariadbBetween : mysqlBetween;
  const problems: string[] = [];
  for (const [name, lo, at, hi] of pairs) {
    try {
      const off = between(lo, at, hi);
      if (off.length > 0) problems.push(`@@${name} "${at ?? ""}" after recovery: ${off.join("; ")}`);
    } catch (error) {
      problems.push(`@@${name}: ${(error as Error).message}`);
    }
  }
  if (problems.length > 0) return { name: "position", passed: false, detail: problems.join("; ") };
  const values = pairs
    .map(([name, lo, at, hi]) => `@@${name} "${at ?? ""}" (before "${lo ?? ""}", after "${hi ?? ""}")`)
    .join(", ");
  return {
    name: "position",
    passed: true,
    detail: `recovered position lies between the positions read before and after the snapshot: ${values}`,
  };
}

/**
 * The "position" check of a backup: exact for a lock that held commits, bounded otherwise; the XA transactions
 * recovery left prepared are named either way (a client's, decided by its coordinator: the server itself
 * refuses to start when it cannot decide one of its own).
 */
export function judgePosition(
  manifest: Pick<BackupManifest, "server" | "position" | "positionAfter" | "lock">,
  restored: RestoredPosition,
): CheckResult {
  const flavor = manifest.server.flavor;
  const result =
    manifest.positionAfter === undefined
      ? comparePositions(flavor, manifest.position, restored)
      : compareWithinBounds(flavor, manifest.position, manifest.positionAfter, restored);
  const xa =
    restored.preparedXa.length === 0
      ? "crash recovery left no transaction prepared"
      : `crash recovery left ${restored.preparedXa.length} client XA transaction(s) prepared, as on the source, for their coordinator to decide: ${restored.preparedXa.slice(0, 5).join(", ")}`;
  return { ...result, detail: `${result.detail} (lock mode ${lockModeOf(manifest)}; ${xa})` };
}

async function rows<T>(conn: Connection, sql: string): Promise<T[]> {
  const [result] = await conn.query<RowDataPacket[]>(sql);
  return result as unknown as T[];
}

/** The restored server's GTID state, and the XA transactions crash recovery left prepared. */
export async function readRestoredPosition(
  conn: Connection,
  flavor: ServerFlavor,
): Promise<RestoredPosition> {
  const prepared = await rows<{ formatID: number; gtrid_length: number; data: string | Buffer }>(
    conn,
    "XA RECOVER",
  );
  const preparedXa = prepared.map((x) => {
    const data = Buffer.isBuffer(x.data) ? x.data : Buffer.from(String(x.data), "binary");
    return `${x.formatID}:${data.subarray(0, Number(x.gtrid_length)).toString("hex")}:${data.subarray(Number(x.gtrid_length)).toString("hex")}`;
  });
  if (flavor === "mariadb") {
    const [row] = await rows<{ binlogPos: string; slavePos: string }>(
      conn,
      "SELECT @@gtid_binlog_pos AS binlogPos, @@gtid_slave_pos AS slavePos",
    );
    return { gtidBinlogPos: row.binlogPos, gtidSlavePos: row.slavePos, gtidExecuted: null, preparedXa };
  }
  const [row] = await rows<{ executed: string }>(conn, "SELECT @@gtid_executed AS executed");
  return { gtidBinlogPos: null, gtidSlavePos: null, gtidExecuted: row.executed, preparedXa };
}
