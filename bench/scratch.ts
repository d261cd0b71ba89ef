import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { chownToMysql, installDatadir, rootQuery, MYSQL_USER } from "../lab/mariadb";
import { isAlive, spawnDetached, tail, terminate, waitUntil } from "../lab/processes";

/**
 * Scratch MariaDB servers the competitors restore into: one per restore, under the bench's work
 * directory inside the lab dir (so `lab down` finds and stops them even after a crash of the bench),
 * socket only (`--skip-networking`), no binary log, the same InnoDB sizes as the lab's servers.
 */

/** One scratch server. */
export interface ScratchServer {
  name: string;
  root: string;
  datadir: string;
  socket: string;
  errorLog: string;
  /** Set while it runs. */
  pid?: number;
}

/** The settings every scratch server runs with (also printed in BENCHMARKS.md). */
export const SCRATCH_SERVER_SETTINGS = [
  "--no-defaults",
  `--user=${MYSQL_USER}`,
  "--skip-networking",
  "--innodb-buffer-pool-size=128M",
  "--innodb-log-file-size=64M",
  "--innodb-flush-log-at-trx-commit=1",
  "--skip-name-resolve",
];

/** Lays out a scratch server's directories under `parent` (the datadir is left empty). */
export async function scratchServer(parent: string, name: string): Promise<ScratchServer> {
  const root = join(parent, name);
  await rm(root, { recursive: true, force: true });
  await mkdir(join(root, "tmp"), { recursive: true, mode: 0o755 });
  await chownToMysql(root);
  await chownToMysql(join(root, "tmp"));
  return {
    name,
    root,
    datadir: join(root, "data"),
    socket: join(root, "mysqld.sock"),
    errorLog: join(root, "mysqld.err"),
  };
}

/** Creates the system tables in the scratch server's empty datadir (mariadb-install-db). */
export async function initializeDatadir(server: ScratchServer): Promise<void> {
  await installDatadir({
    name: server.name,
    serverId: 900,
    port: 0,
    datadir: server.datadir,
    socket: server.socket,
    pidFile: join(server.root, "mysqld.pid"),
    errorLog: server.errorLog,
    binlogBasename: join(server.datadir, "mysql-bin"),
    replica: false,
    tmpdir: join(server.root, "tmp"),
    labDir: server.root,
  });
}

/** The mariadbd command line of a scratch server. */
export function scratchServerArgs(server: ScratchServer): string[] {
  return [
    ...SCRATCH_SERVER_SETTINGS,
    `--datadir=${server.datadir}`,
    `--tmpdir=${join(server.root, "tmp")}`,
    `--socket=${server.socket}`,
    `--pid-file=${join(server.root, "mysqld.pid")}`,
    `--log-error=${server.errorLog}`,
    "--server-id=900",
  ];
}

/**
 * Starts the scratch server and waits until it answers a query (polling every 20 ms, so the time to
 * "queryable" is measured closely). Returns when it is queryable.
 */
export async function startScratch(server: ScratchServer, timeoutMs = 300_000): Promise<void> {
  server.pid = spawnDetached({
    command: "mariadbd",
    args: scratchServerArgs(server),
    cwd: server.root,
    logFile: join(server.root, "mysqld.stdout.log"),
    env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` },
  });
  const pid = server.pid;
  const up = await waitUntil(
    async () => {
      if (!(await isAlive(pid))) return true;
      return rootQuery(server.socket, "SELECT 1").then(
        () => true,
        () => false,
      );
    },
    timeoutMs,
    20,
  );
  if (!up || !(await isAlive(pid))) {
    throw new Error(
      `bench: the scratch server ${server.name} (mariadbd pid ${pid}) did not become queryable within ` +
        `${timeoutMs / 1000}s; its log ${server.errorLog} says:\n${await tail(server.errorLog)}`,
    );
  }
}

/** Stops the scratch server (SIGTERM: a clean shutdown; SIGKILL after 60 s) and removes its files. */
export async function removeScratch(server: ScratchServer): Promise<void> {
  if (server.pid !== undefined) {
    const stubborn = await terminate([server.pid], 60_000);
    if (stubborn.length > 0) {
      throw new Error(`bench: scratch server ${server.name} (pid ${server.pid}) survived SIGKILL`);
    }
    server.pid = undefined;
  }
  await rm(server.root, { recursive: true, force: true });
}
