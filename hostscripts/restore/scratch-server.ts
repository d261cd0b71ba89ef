import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { isAbsolute, join, posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createConnection, type Connection } from "mysql2/promise";
import { VERIFY_DEFAULTS, type BackupManifest } from "../../contracts";
import { SCRATCH_SERVER_STOP_GRACE_SECONDS } from "../../contracts/units";
import { messageOf } from "../common/errors";

/**
 * The scratch server: the restored datadir started by `mariadbd`/`mysqld` with the source's settings from
 * the manifest, socket-only, without grant tables (the verifier holds no credentials), and stopped again.
 *
 * Paths: the archive's root stands for `snapshot.sourceRoot` on the source host, so every absolute source
 * path below it (datadir, binlog basename, binlog index and the index's entries) maps to the same path
 * below the scratch root. A prepared XA transaction needs the binary log to be decided (DESIGN §7): the
 * server is started with the mapped binlog basename and an index rewritten to the scratch location.
 */

/** Raised when the restored server does not come up: a definitive "startup" failure of the backup. */
export class StartupFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartupFailure";
  }
}

/**
 * The scratch path that stands for `sourcePath`, an absolute path on the source host below `sourceRoot`.
 * Throws when the path lies outside the snapshot: the backup cannot hold it.
 */
export function mapSourcePath(sourceRoot: string, scratchRoot: string, sourcePath: string): string {
  const root = posix.normalize(sourceRoot).replace(/\/+$/, "") || "/";
  const path = posix.normalize(sourcePath);
  const relative = posix.relative(root, path);
  if (!isAbsolute(sourcePath) || relative.startsWith("..") || isAbsolute(relative)) {
    throw new StartupFailure(
      `${sourcePath} is outside the snapshot root ${sourceRoot}: the archive cannot hold it, so the restore cannot start`,
    );
  }
  return relative === "" ? scratchRoot : join(scratchRoot, relative);
}

/**
 * The binlog index with every absolute entry mapped to the scratch root. Relative entries (`./mysql-bin.000001`)
 * are relative to the datadir, which moves with the restore, so they stay as they are.
 */
export function rewriteBinlogIndex(text: string, map: (sourcePath: string) => string): string {
  return text
    .split("\n")
    .map((line) => (line.startsWith("/") ? map(line) : line))
    .join("\n");
}

/** Everything a scratch server is started with. */
export interface ScratchServerPlan {
  binary: string;
  /** The scratch root the archive was extracted into; it stands for `snapshot.sourceRoot`. */
  root: string;
  user: string;
  datadir: string;
  /** Mapped binlog basename and index, or null when the source logged no binlog. */
  logBin: string | null;
  logBinIndex: string | null;
  socket: string;
  pidFile: string;
  errorLog: string;
  tmpdir: string;
  serverId: number;
  innodbPageSize: number;
  lowerCaseTableNames: number;
  bufferPoolMiB: number;
  /** Options appended after the plan's own (later ones win), e.g. a point-in-time replay's relay log. */
  extraArgs?: string[];
}

/** A server id that differs from the source's, so nothing the restore logs can pass for the source's. */
export function scratchServerId(sourceServerId: number): number {
  return sourceServerId === 4_000_000_000 ? 4_000_000_001 : 4_000_000_000;
}

/** Plans the scratch server for `manifest` restored at `<dir>/root`, with its run files in `<dir>`. */
export function planScratchServer(
  manifest: BackupManifest,
  dir: string,
  server: { binary: string; user: string; bufferPoolMiB?: number },
): ScratchServerPlan {
  const root = join(dir, "root");
  const map = (path: string) => mapSourcePath(manifest.snapshot.sourceRoot, root, path);
  const { settings } = manifest;
  const logBin = settings.logBinBasename === null ? null : map(settings.logBinBasename);
  const logBinIndex =
    settings.logBinIndex !== null ? map(settings.logBinIndex) : logBin === null ? null : `${logBin}.index`;
  return {
    ...server,
    bufferPoolMiB: server.bufferPoolMiB ?? VERIFY_DEFAULTS.mysqld.bufferPoolMiB,
    root,
    datadir: map(settings.datadir),
    logBin,
    logBinIndex,
    // Short names: a unix socket path must stay under 108 bytes.
    socket: join(dir, "mysqld.sock"),
    pidFile: join(dir, "mysqld.pid"),
    errorLog: join(dir, "mysqld.err"),
    tmpdir: join(dir, "tmp"),
    serverId: scratchServerId(manifest.server.serverId),
    innodbPageSize: settings.innodbPageSize,
    lowerCaseTableNames: settings.lowerCaseTableNames,
  };
}

/** The server's command line: no config file is read, no network, no replication, no grant tables. */
export function scratchServerArgs(plan: ScratchServerPlan): string[] {
  const args = [
    "--no-defaults",
    `--user=${plan.user}`,
    `--datadir=${plan.datadir}`,
    `--tmpdir=${plan.tmpdir}`,
    `--socket=${plan.socket}`,
    `--pid-file=${plan.pidFile}`,
    `--log-error=${plan.errorLog}`,
    "--skip-networking",
    "--skip-grant-tables",
    "--skip-slave-start",
    `--server-id=${plan.serverId}`,
    `--innodb-page-size=${plan.innodbPageSize}`,
    `--lower-case-table-names=${plan.lowerCaseTableNames}`,
    `--innodb-buffer-pool-size=${plan.bufferPoolMiB}M`,
    "--skip-name-resolve",
  ];
  if (plan.logBin !== null) args.push(`--log-bin=${plan.logBin}`);
  if (plan.logBinIndex !== null) args.push(`--log-bin-index=${plan.logBinIndex}`);
  return [...args, ...(plan.extraArgs ?? [])];
}

/**
 * Readies the restored tree for the server: its own temporary directory (InnoDB writes there during
 * recovery) and the binlog index rewritten for the scratch location. The caller then gives it to the user.
 */
export async function prepareScratchTree(manifest: BackupManifest, plan: ScratchServerPlan): Promise<void> {
  await mkdir(plan.tmpdir, { recursive: true, mode: 0o750 });
  await rewriteRestoredBinlogIndex(manifest, plan);
}

/** Rewrites the restored binlog index in place for the location `plan.root` (no-op without binlog). */
export async function rewriteRestoredBinlogIndex(
  manifest: BackupManifest,
  plan: Pick<ScratchServerPlan, "root" | "logBinIndex">,
): Promise<void> {
  if (plan.logBinIndex === null) return;
  const text = await readFile(plan.logBinIndex, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") {
      throw new StartupFailure(
        `the binlog index ${manifest.settings.logBinIndex} is not in the archive: the server cannot find its binary log`,
      );
    }
    throw error;
  });
  const map = (path: string) => mapSourcePath(manifest.snapshot.sourceRoot, plan.root, path);
  await writeFile(plan.logBinIndex, rewriteBinlogIndex(text, map));
}

/** A running scratch server. */
export interface ScratchServer {
  pid: number;
  socket: string;
  /** A session over the socket (no password: grant tables are off). */
  connect(): Promise<Connection>;
  /** Graceful shutdown, SIGKILL after `graceMs`; resolves once the process is gone. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts the server and waits until crash recovery is done and the socket answers, at most `timeoutMs`.
 * A server that dies or does not answer in time is stopped and reported as a StartupFailure carrying the
 * last lines of its error log.
 */
export async function startScratchServer(
  plan: ScratchServerPlan,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ScratchServer> {
  const child = spawn(plan.binary, scratchServerArgs(plan), { stdio: "ignore" });
  const exited = new Promise<string>((resolve) => {
    child.once("error", (error) => resolve(`could not be started: ${messageOf(error)}`));
    child.once("exit", (code, signal) => resolve(signal ? `was killed by ${signal}` : `exited with ${code}`));
  });
  const server = scratchServer(child, plan, exited);
  // SIGTERM of the verifier: the server goes down at once, whatever it is doing, and nothing waits for it.
  const onAbort = () => void server.stop(5_000);
  signal?.addEventListener("abort", onAbort, { once: true });
  exited.then(() => signal?.removeEventListener("abort", onAbort));
  const running = () => child.exitCode === null && child.signalCode === null && !signal?.aborted;
  const outcome = await Promise.race([
    waitForSocket(plan.socket, timeoutMs, running).then((up) =>
      up ? null : `did not answer within ${timeoutMs / 1000}s`,
    ),
    exited,
  ]);
  if (outcome === null) return server;
  await server.stop();
  throw new StartupFailure(
    `the restored server ${outcome} before crash recovery finished; its error log ends with:\n${await tailFile(plan.errorLog)}`,
  );
}

function scratchServer(child: ChildProcess, plan: ScratchServerPlan, exited: Promise<string>): ScratchServer {
  return {
    pid: child.pid ?? -1,
    socket: plan.socket,
    connect: () => openSession(plan.socket),
    async stop(graceMs = SCRATCH_SERVER_STOP_GRACE_SECONDS * 1000) {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      child.kill("SIGTERM");
      const grace = new AbortController();
      const gone = await Promise.race([
        exited.then(() => true),
        sleep(graceMs, false, { signal: grace.signal }).catch(() => false),
      ]);
      grace.abort();
      if (!gone) {
        child.kill("SIGKILL");
        await exited;
      }
    },
  };
}

function openSession(socket: string): Promise<Connection> {
  return createConnection({
    socketPath: socket,
    user: "root",
    connectTimeout: 5_000,
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
}

/** Polls the socket until a session answers; gives up at the deadline or once the server is gone. */
async function waitForSocket(socket: string, timeoutMs: number, running: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && running()) {
    const session = await openSession(socket).catch(() => undefined);
    if (session !== undefined) {
      const answered = await session.query("SELECT 1").then(
        () => true,
        () => false,
      );
      await session.end().catch(() => undefined);
      if (answered) return true;
    }
    await sleep(200);
  }
  return false;
}

/** The last lines of a log file, or a note that it is missing. */
export async function tailFile(path: string, lines = 20): Promise<string> {
  const text = await readFile(path, "utf8").catch(
    (error: Error) => `(cannot read ${path}: ${error.message})`,
  );
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * The source replica's connection to its own source, which neither a restore nor a catch-up may inherit: MariaDB keeps it in
 * `master.info`/`relay-log.info` files and relay logs; the printed statements set the new one.
 */
export async function removeReplicationState(datadir: string): Promise<string[]> {
  const names = await readdir(datadir);
  const relayIndexes = names.filter((n) => /relay-bin\.index$/.test(n));
  const listed = new Set<string>();
  for (const index of relayIndexes) {
    const text = await readFile(join(datadir, index), "utf8");
    for (const line of text.split("\n").filter(Boolean)) listed.add(line.split("/").at(-1) ?? line);
  }
  const doomed = names.filter(
    (n) =>
      /^(multi-)?master(-.+)?\.info$/.test(n) ||
      /^relay-log(-.+)?\.info$/.test(n) ||
      relayIndexes.includes(n) ||
      listed.has(n) ||
      /relay-bin\.\d{6}$/.test(n),
  );
  for (const name of doomed) await rm(join(datadir, name), { force: true });
  return doomed;
}
