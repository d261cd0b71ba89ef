import { readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { BINLOG_NODE_OPTIONS } from "../contracts/units";
import { rootQuery, rootScript } from "./mariadb";
import { isAlive, spawnDetached, tail, terminate, waitUntil } from "./processes";

/**
 * Point-in-time recovery in the lab: the binlog archiver running beside the replica as its systemd service
 * would (`mysql-backup binlog --config <dir>/backup.json`, detached, restarted by whoever stopped it), and a
 * marker table on the primary that gets one row per second with its commit time (a MariaDB event), so a
 * restore to a second can be checked against what was committed then.
 */

/** The marker table: one row per second, `committed_at` the time of the insert (its transaction's commit). */
export const MARKER_TABLE = "lab_pitr.marker";
const MARKER_EVENT = "lab_pitr.tick";

const repo = resolve(__dirname, "..");
const cli = join(repo, "bin", "mysql-backup.js");

function pidFile(labDir: string): string {
  return join(labDir, "run", "binlog.pid");
}

/** The archiver's log (JSON lines). */
export function archiverLog(labDir: string): string {
  return join(labDir, "log", "binlog.log");
}

/** Creates the marker table and its event on `socket` (the primary); the event starts disabled. */
export async function createMarker(socket: string): Promise<void> {
  await rootScript(socket, [
    "CREATE DATABASE IF NOT EXISTS lab_pitr",
    `CREATE TABLE IF NOT EXISTS ${MARKER_TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, committed_at DATETIME(6) NOT NULL) ENGINE=InnoDB`,
    `CREATE EVENT IF NOT EXISTS ${MARKER_EVENT} ON SCHEDULE EVERY 1 SECOND DISABLE DO INSERT INTO ${MARKER_TABLE} (committed_at) VALUES (NOW(6))`,
  ]);
}

/**
 * Starts (or, on a promoted replica, takes over) the marker: the event enabled and the scheduler on, on the
 * server that takes writes.
 */
export async function startMarker(socket: string): Promise<void> {
  await rootScript(socket, [`ALTER EVENT ${MARKER_EVENT} ENABLE`, "SET GLOBAL event_scheduler = ON"]);
}

/** Stops the marker on `socket`. */
export async function stopMarker(socket: string): Promise<void> {
  await rootScript(socket, ["SET GLOBAL event_scheduler = OFF", `ALTER EVENT ${MARKER_EVENT} DISABLE`]);
}

/**
 * Marker rows, oldest first (`newest`: only the newest): id and commit time in ms since the epoch. The server
 * converts (UNIX_TIMESTAMP in the session's zone, the one NOW() wrote in), so no client time zone is involved.
 */
export async function markerRows(socket: string, newest = false): Promise<Array<{ id: number; at: number }>> {
  const rows = await rootQuery(
    socket,
    `SELECT id, CAST(UNIX_TIMESTAMP(committed_at) * 1000 AS UNSIGNED) AS at FROM ${MARKER_TABLE} ORDER BY id ${newest ? "DESC LIMIT 1" : ""}`,
  );
  return rows.map((r) => ({ id: Number(r.id), at: Number(r.at) }));
}

/** The running archiver's pid, if one runs (a recycled pid of another program does not count). */
export async function archiverPid(labDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(pidFile(labDir), "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0 || !(await isAlive(pid))) return undefined;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  return cmdline.includes("binlog") ? pid : undefined;
}

/**
 * Starts the archiver on the lab replica's config (no-op when it runs); it keeps running, detached, until
 * `stopArchiver`. Waits until it logged that it began or resumed its chain.
 */
export async function startArchiver(
  labDir: string,
  configPath = join(labDir, "backup.json"),
): Promise<number> {
  const running = await archiverPid(labDir);
  if (running !== undefined) return running;
  const log = archiverLog(labDir);
  const before = (await readFile(log, "utf8").catch(() => "")).length;
  const pid = spawnDetached({
    command: process.execPath,
    args: [cli, "binlog", "--config", configPath],
    cwd: labDir,
    logFile: log,
    // As its unit runs it (Environment=NODE_OPTIONS=…).
    env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} ${BINLOG_NODE_OPTIONS}`.trim() },
  });
  await writeFile(pidFile(labDir), `${pid}\n`);
  const started = await waitUntil(async () => {
    if (!(await isAlive(pid))) return true;
    const text = (await readFile(log, "utf8").catch(() => "")).slice(before);
    return text.includes('"message":"archiving"');
  }, 30_000);
  if (!started || !(await isAlive(pid)))
    throw new Error(
      `the lab's binlog archiver (pid ${pid}) did not start; its log says:\n${await tail(log)}`,
    );
  return pid;
}

/** Stops the archiver as systemd does (SIGTERM: it cuts and uploads what it read, then exits). */
export async function stopArchiver(labDir: string): Promise<void> {
  const pid = await archiverPid(labDir);
  if (pid !== undefined) await terminate([pid], 60_000);
  await rm(pidFile(labDir), { force: true });
}

/** Kills the archiver with SIGKILL, as a crash or an OOM kill would. */
export async function killArchiver(labDir: string): Promise<void> {
  const pid = await archiverPid(labDir);
  if (pid !== undefined) {
    process.kill(pid, "SIGKILL");
    await waitUntil(async () => !(await isAlive(pid)), 10_000);
  }
  await rm(pidFile(labDir), { force: true });
}
