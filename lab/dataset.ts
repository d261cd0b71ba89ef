import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { rootScript } from "./mariadb";
import { isAlive, sh, spawnDetached, tail, terminate, waitUntil } from "./processes";

/**
 * The lab's data: sysbench tables in `sbtest`, plus objects that make a verification meaningful
 * (non-InnoDB engines, a FULLTEXT index, partitions, a view, a second schema), and an optional
 * background write load. sysbench connects as root over the unix socket, so no password is on its argv.
 */

/** Size of the sysbench dataset. */
export interface DatasetSize {
  tables: number;
  tableSize: number;
}

/** The schema holding the extra objects. */
export const EXTRAS_SCHEMA = "lab_extras";

function sysbenchConnection(socket: string, size: DatasetSize): string[] {
  return [
    "--db-driver=mysql",
    `--mysql-socket=${socket}`,
    "--mysql-user=root",
    "--mysql-db=sbtest",
    `--tables=${size.tables}`,
    `--table-size=${size.tableSize}`,
  ];
}

/** Creates and fills the sysbench tables (`sbtest.sbtest1..N`) on the primary. */
export async function prepareSysbench(socket: string, size: DatasetSize): Promise<void> {
  const threads = Math.min(size.tables, 2);
  const result =
    await sh`sysbench oltp_read_write ${sysbenchConnection(socket, size)} --threads=${threads} prepare`.nothrow();
  if (result.exitCode !== 0) {
    throw new Error(
      `sysbench prepare failed (exit ${result.exitCode}) on ${socket}:\n${result.stderr || result.stdout}`,
    );
  }
}

/** Creates the extra schema and objects on the primary. */
export async function createExtraObjects(socket: string): Promise<void> {
  const s = EXTRAS_SCHEMA;
  await rootScript(socket, [
    `CREATE DATABASE ${s}`,
    // The sequence engine's seq_1_to_N tables exist only in the current database.
    `USE ${s}`,
    `CREATE TABLE ${s}.legacy_myisam (id INT PRIMARY KEY, note VARCHAR(64) NOT NULL) ENGINE=MyISAM`,
    `INSERT INTO ${s}.legacy_myisam SELECT seq, CONCAT('note ', seq) FROM seq_1_to_500`,
    `CREATE TABLE ${s}.audit_aria (id INT PRIMARY KEY, happened DATETIME NOT NULL, what VARCHAR(64) NOT NULL) ENGINE=Aria`,
    `INSERT INTO ${s}.audit_aria SELECT seq, '2026-01-01' + INTERVAL seq MINUTE, CONCAT('event ', seq) FROM seq_1_to_500`,
    `CREATE TABLE ${s}.articles (id INT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(200) NOT NULL, body TEXT NOT NULL, ` +
      "FULLTEXT KEY articles_text (title, body)) ENGINE=InnoDB",
    `INSERT INTO ${s}.articles (title, body) SELECT CONCAT('backup article ', seq), ` +
      `REPEAT(CONCAT('snapshot restore verify ', seq, ' '), 8) FROM seq_1_to_300`,
    `CREATE TABLE ${s}.events (id INT NOT NULL, created DATE NOT NULL, payload VARCHAR(64) NOT NULL, ` +
      "PRIMARY KEY (id, created)) ENGINE=InnoDB PARTITION BY RANGE (YEAR(created)) (" +
      "PARTITION p2025 VALUES LESS THAN (2026), PARTITION p2026 VALUES LESS THAN (2027), " +
      "PARTITION pmax VALUES LESS THAN MAXVALUE)",
    `INSERT INTO ${s}.events SELECT seq, '2025-06-01' + INTERVAL seq DAY, CONCAT('payload ', seq) FROM seq_1_to_1000`,
    `CREATE VIEW ${s}.recent_events AS SELECT id, created, payload FROM ${s}.events WHERE created >= '2026-01-01'`,
  ]);
}

function loadPidFile(labDir: string): string {
  return join(labDir, "run", "load.pid");
}

/** How hard the background load writes. */
export interface LoadOptions {
  /** Transactions per second across all threads. Defaults to 200. */
  rate?: number;
  /** Client threads. Defaults to 2. */
  threads?: number;
}

/**
 * Starts `sysbench oltp_write_only` against the primary, detached, with a pid file; no-op when it runs
 * already. It runs until `stopLoad`.
 */
export async function startLoad(
  labDir: string,
  socket: string,
  size: DatasetSize,
  opts: LoadOptions = {},
): Promise<number> {
  const running = await loadPid(labDir);
  if (running !== undefined) return running;
  const logFile = join(labDir, "log", "load.log");
  const pid = spawnDetached({
    command: "sysbench",
    args: [
      "oltp_write_only",
      ...sysbenchConnection(socket, size),
      `--rate=${opts.rate ?? 200}`,
      `--threads=${opts.threads ?? 2}`,
      "--time=0",
      "--report-interval=10",
      "run",
    ],
    cwd: labDir,
    logFile,
  });
  await writeFile(loadPidFile(labDir), `${pid}\n`);
  // sysbench exits at once on a bad option or connection; give it a moment to prove it runs.
  const died = await waitUntil(async () => !(await isAlive(pid)), 1_000);
  if (died) {
    await rm(loadPidFile(labDir), { force: true });
    throw new Error(`the lab's write load (sysbench) exited at once; its log says:\n${await tail(logFile)}`);
  }
  return pid;
}

/** Stops the background load, if any. */
export async function stopLoad(labDir: string): Promise<void> {
  const pid = await loadPid(labDir);
  if (pid !== undefined) await terminate([pid], 10_000);
  await rm(loadPidFile(labDir), { force: true });
}

/** The pid of the running load, if one runs (a recycled pid of another program does not count). */
export async function loadPid(labDir: string): Promise<number | undefined> {
  const text = await readFile(loadPidFile(labDir), "utf8").catch(() => "");
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0 || !(await isAlive(pid))) return undefined;
  const name = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "");
  return name.trim() === "sysbench" ? pid : undefined;
}
