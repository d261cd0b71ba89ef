import { chown, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createConnection, type Connection } from "mysql2/promise";
import { isAlive, sh, spawnDetached, tail, waitUntil } from "./processes";

/**
 * The lab's MariaDB servers: datadirs created with mariadb-install-db, `mariadbd` started directly
 * (no mysqld_safe, no distribution config) in its own session, and root sessions over the unix socket,
 * where root@localhost authenticates by its OS identity (unix_socket), so no root password exists.
 */

/** The OS account the servers run as and own their files. */
export const MYSQL_USER = "mysql";

/** How one lab server is laid out and configured. */
export interface ServerSpec {
  /** `primary` or `replica`: names the socket, pid and log files. */
  name: string;
  serverId: number;
  port: number;
  datadir: string;
  socket: string;
  pidFile: string;
  errorLog: string;
  /** Absolute basename of the binary log (so `mysql-bin.index` lists absolute paths). */
  binlogBasename: string;
  /** The server runs as a read-only replica that logs what it applies. */
  replica: boolean;
  /** The server's own temporary directory (not the shared /tmp, where other servers' files collide). */
  tmpdir: string;
  /** The lab directory; the server's working directory, so `down` finds it even without state.json. */
  labDir: string;
}

/** Creates the system tables in an empty datadir owned by the mysql user. */
export async function installDatadir(spec: ServerSpec): Promise<void> {
  for (const path of [spec.datadir, spec.tmpdir]) {
    await mkdir(path, { recursive: true, mode: 0o750 });
    await chownToMysql(path);
  }
  // Skips the test db and resolving names; the bootstrap server gets a small buffer pool.
  const installed =
    await sh`mariadb-install-db --no-defaults --user=${MYSQL_USER} --datadir=${spec.datadir} --tmpdir=${spec.tmpdir} --skip-test-db --skip-name-resolve --auth-root-authentication-method=socket --innodb-buffer-pool-size=64M`.nothrow();
  if (installed.exitCode !== 0) {
    throw new Error(
      `mariadb-install-db failed (exit ${installed.exitCode}) for the lab's ${spec.name} in ${spec.datadir}:\n` +
        `${(installed.stderr || installed.stdout).trim().split("\n").slice(-10).join("\n")}`,
    );
  }
}

/** Gives a path to the mysql user (uid and gid looked up once, via `id`, since Node lacks getpwnam). */
export async function chownToMysql(path: string): Promise<void> {
  const { uid, gid } = await mysqlIds();
  await chown(path, uid, gid);
}

let cachedIds: { uid: number; gid: number } | undefined;
async function mysqlIds(): Promise<{ uid: number; gid: number }> {
  if (cachedIds === undefined) {
    const uid = Number((await sh`id -u ${MYSQL_USER}`).stdout.trim());
    const gid = Number((await sh`id -g ${MYSQL_USER}`).stdout.trim());
    cachedIds = { uid, gid };
  }
  return cachedIds;
}

/** The command-line options of a lab server; durability settings match what a backup relies on. */
export function serverOptions(spec: ServerSpec): string[] {
  const options = [
    "--no-defaults",
    `--user=${MYSQL_USER}`,
    `--datadir=${spec.datadir}`,
    `--tmpdir=${spec.tmpdir}`,
    `--port=${spec.port}`,
    "--bind-address=127.0.0.1",
    `--socket=${spec.socket}`,
    `--pid-file=${spec.pidFile}`,
    `--log-error=${spec.errorLog}`,
    `--server-id=${spec.serverId}`,
    `--log-bin=${spec.binlogBasename}`,
    "--binlog-format=ROW",
    "--gtid-strict-mode=1",
    "--sync-binlog=1",
    "--innodb-flush-log-at-trx-commit=1",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=64M",
    "--skip-name-resolve",
    "--max-connections=100",
  ];
  if (spec.replica) {
    options.push(
      "--log-slave-updates",
      "--read-only=1",
      `--relay-log=${join(spec.datadir, "relay-bin")}`,
      `--relay-log-index=${join(spec.datadir, "relay-bin.index")}`,
    );
  }
  return options;
}

/** Starts `mariadbd` detached and waits until it accepts root sessions on its socket; returns its pid. */
export async function startServer(spec: ServerSpec, timeoutMs = 60_000): Promise<number> {
  const pid = spawnDetached({
    command: "mariadbd",
    args: serverOptions(spec),
    cwd: spec.labDir,
    logFile: join(spec.labDir, "log", `${spec.name}.stdout.log`),
    env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` },
  });
  const up = await waitUntil(async () => {
    if (!(await isAlive(pid))) return true; // fail fast below instead of waiting for the timeout
    return rootQuery(spec.socket, "SELECT 1").then(
      () => true,
      () => false,
    );
  }, timeoutMs);
  if (!up || !(await isAlive(pid))) {
    throw new Error(
      `the lab's ${spec.name} mariadbd (pid ${pid}) did not start within ${timeoutMs / 1000}s; ` +
        `its log says:\n${await tail(spec.errorLog)}\nFix the cause, then run \`npm run lab -- down\` and up again.`,
    );
  }
  return pid;
}

/** Opens a root session over the unix socket (unix_socket authentication: no password exists). */
export async function rootSession(socket: string): Promise<Connection> {
  return createConnection({ socketPath: socket, user: "root", connectTimeout: 5_000 });
}

/** Runs one statement as root over the unix socket and returns its rows (empty for statements without). */
export async function rootQuery(
  socket: string,
  query: string,
  values: unknown[] = [],
): Promise<Record<string, unknown>[]> {
  const session = await rootSession(socket);
  try {
    const [rows] = await session.query(query, values);
    return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
  } finally {
    await session.end();
  }
}

/** Runs statements in order in one root session. */
export async function rootScript(socket: string, statements: string[]): Promise<void> {
  const session = await rootSession(socket);
  try {
    for (const statement of statements) await session.query(statement);
  } finally {
    await session.end();
  }
}
