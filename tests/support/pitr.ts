/**
 * What the point-in-time recovery tests share: the real CLI's `restore` on the lab, a server started on a
 * restored datadir, the archive's ledger as the readers see it, and an oracle for "the last GTID committed at
 * or before T" that does not use this project's binlog reader: `mariadb-binlog` itself, run on the primary's
 * binlogs.
 */
import { execFile } from "node:child_process";
import { mkdir, readdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { archivedSegments as ledger } from "../../lab/demo-pitr";
import type { Lab } from "../../lab/lab";
import { freePort } from "../../lab/emulator";
import { chownToMysql, rootQuery, startServer, type ServerSpec } from "../../lab/mariadb";
import { terminate, waitUntil } from "../../lab/processes";

/** The ledger entries of the lab cluster's archive, by host, epoch and sequence. */
export { ledger };

const repo = resolve(__dirname, "..", "..");
const run = promisify(execFile);

/** Runs the real CLI with `--json`; returns its exit code, the JSON of its last stdout line, and stderr. */
export async function cli(
  args: string[],
): Promise<{ code: number; json: Record<string, unknown>; stderr: string }> {
  const outcome = await run(process.execPath, [join(repo, "bin", "mysql-backup.js"), ...args, "--json"], {
    cwd: repo,
    maxBuffer: 64 * 1024 * 1024,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  const last = outcome.stdout.trim().split("\n").at(-1) ?? "";
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(last);
  } catch {
    throw new Error(
      `mysql-backup ${args.join(" ")} printed no JSON (exit ${outcome.code}):\n${outcome.stderr.slice(-3000)}`,
    );
  }
  return { code: outcome.code, json, stderr: outcome.stderr };
}

/** A server started on a restored datadir, as a person would after `restore`. */
export interface RestoredServer {
  socket: string;
  query(sql: string): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

/** Starts mariadbd on `datadir` (with its binlog beside it) under the lab dir; `name` names its run files. */
export async function startRestored(lab: Lab, datadir: string, name: string): Promise<RestoredServer> {
  const spec: ServerSpec = {
    name,
    serverId: 3,
    port: await freePort(),
    datadir,
    socket: join(lab.dir, "run", `${name}.sock`),
    pidFile: join(lab.dir, "run", `${name}.pid`),
    errorLog: join(lab.dir, "log", `${name}.err`),
    binlogBasename: join(datadir, "mysql-bin"),
    replica: true,
    tmpdir: join(lab.dir, "run", `${name}.tmp`),
    labDir: lab.dir,
  };
  await mkdir(spec.tmpdir, { recursive: true });
  await chownToMysql(spec.tmpdir);
  const pid = await startServer(spec);
  return {
    socket: spec.socket,
    query: (sql) => rootQuery(spec.socket, sql),
    stop: async () => {
      await terminate([pid], 60_000);
    },
  };
}

/** Every table of the restored server passes CHECK TABLE; returns the ones that do not, with the message. */
export async function failingTables(server: RestoredServer): Promise<string[]> {
  const tables = await server.query(
    `SELECT CONCAT('\`', TABLE_SCHEMA, '\`.\`', TABLE_NAME, '\`') AS t FROM information_schema.TABLES
     WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')`,
  );
  expect(tables.length).toBeGreaterThan(5);
  const failing: string[] = [];
  for (const { t } of tables) {
    const rows = await server.query(`CHECK TABLE ${String(t)}`);
    const status = rows.find((r) => r.Msg_type === "status");
    if (!status || !/^(OK|Table is already up to date)$/.test(String(status.Msg_text)))
      failing.push(
        `${String(t)}: ${rows.map((r) => `${String(r.Msg_type)} ${String(r.Msg_text)}`).join("; ")}`,
      );
  }
  return failing;
}

/** Waits until the archive holds a transaction committed after `afterMs` (the archiver caught up past it). */
export async function waitForArchive(lab: Lab, afterMs: number, timeoutMs = 120_000): Promise<void> {
  const reached = await waitUntil(
    async () => (await ledger(lab)).some((e) => Date.parse(e.transactions.lastCommitAt ?? "") > afterMs),
    timeoutMs,
    1000,
  );
  if (!reached)
    throw new Error(
      `the archive did not reach ${new Date(afterMs).toISOString()} within ${timeoutMs / 1000}s`,
    );
}

/** One transaction as `mariadb-binlog` prints it: its GTID and the second it committed (UTC). */
export interface OracleTransaction {
  gtid: string;
  atMs: number;
}

/** Every transaction of the binlog files in `dir` (named `mysql-bin.NNNNNN`), in order, per mariadb-binlog. */
export async function binlogOracle(dir: string): Promise<OracleTransaction[]> {
  const files = (await readdir(dir)).filter((f) => /^mysql-bin\.\d{6}$/.test(f)).sort();
  const { stdout } = await run(
    "mariadb-binlog",
    files.map((f) => join(dir, f)),
    {
      env: { ...process.env, TZ: "UTC" },
      maxBuffer: 1024 * 1024 * 1024,
    },
  );
  const transactions: OracleTransaction[] = [];
  for (const m of stdout.matchAll(
    /^#(\d{2})(\d{2})(\d{2}) +(\d{1,2}):(\d{2}):(\d{2}) server id \d+ +end_log_pos \d+ .*?\tGTID (\d+-\d+-\d+)/gm,
  )) {
    const [, yy, mo, dd, hh, mi, ss, gtid] = m;
    transactions.push({ gtid, atMs: Date.parse(`20${yy}-${mo}-${dd}T${hh.padStart(2, "0")}:${mi}:${ss}Z`) });
  }
  return transactions;
}

/** The last GTID committed at or before `atMs` (second resolution, as the binlog stamps commits). */
export function lastCommittedAtOrBefore(transactions: OracleTransaction[], atMs: number): string {
  const cut = Math.floor(atMs / 1000) * 1000;
  const first = transactions.findIndex((t) => t.atMs > cut);
  const last = transactions[(first === -1 ? transactions.length : first) - 1];
  if (last === undefined) throw new Error(`no transaction at or before ${new Date(atMs).toISOString()}`);
  return last.gtid;
}
