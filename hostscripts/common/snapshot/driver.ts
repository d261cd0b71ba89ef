import { realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { spawn } from "node:child_process";
import { BACKUP_ID_PATTERN, type SnapshotDriverName } from "../../../contracts";
import { PipelineError } from "../errors";

/**
 * The snapshot driver interface. A driver knows one volume manager (btrfs, LVM or ZFS):
 * it proves the server's files live on the volume it snapshots, takes a read-only snapshot under the
 * lock, hands the archiver a directory to read, and removes the snapshot again — also one a crashed run
 * left behind.
 */

/** What a command run ended with; a driver turns a non-zero exit into an error naming the step. */
export interface CommandResult {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs one command without a shell (argv as given). `signal` aborts it: the process and its children
 * are killed and the promise settles. This is the injected `$` of the drivers: tests wrap the real one
 * to make a step hang or fail.
 */
export type RunCommand = (
  argv: readonly string[],
  options?: { signal?: AbortSignal },
) => Promise<CommandResult>;

/**
 * The real runner: the command spawned directly, never throwing, with root's sbin directories on PATH. Not
 * through zx's `$`, which starts a shell for every command: the snapshot command runs while the replica's
 * commits wait, and the shell added 2–6 ms to starting it on the lab's busy 2-core host (`btrfs --version`:
 * median 4.2–5.1 ms through `$`, 2.6 ms spawned). The command leads its own process group, so an abort
 * kills whatever it started too.
 */
export const runCommand: RunCommand = (argv, options = {}) =>
  new Promise((settle) => {
    const [file, ...args] = argv;
    const { signal } = options;
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const child = spawn(file, args, {
      env: { ...process.env, PATH: `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin` },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const kill = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
    };
    signal?.addEventListener("abort", kill, { once: true });
    if (signal?.aborted) kill();
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    const done = (result: CommandResult) => {
      signal?.removeEventListener("abort", kill);
      settle(result);
    };
    // A command that cannot be started ends like one the shell could not find (exit 127).
    child.on("error", (e) =>
      done({ exitCode: 127, signal: null, stdout: "", stderr: `${file}: ${e.message}` }),
    );
    child.on("close", (exitCode, killedBy) =>
      done({
        exitCode,
        signal: killedBy,
        stdout: Buffer.concat(stdout).toString(),
        stderr: Buffer.concat(stderr).toString(),
      }),
    );
  });

/** The server's files a driver must find on its volume before anything is locked. */
export interface ServerPaths {
  datadir: string;
  /** `@@log_bin_basename`, or null when binary logging is off. */
  logBinBasename: string | null;
  /** `@@innodb_log_group_home_dir` resolved against the datadir. */
  innodbLogDir: string;
  /** `@@innodb_undo_directory` resolved against the datadir. */
  innodbUndoDir: string;
  /** `@@innodb_data_home_dir` resolved against the datadir (the system tablespace). */
  innodbDataHomeDir: string;
  /**
   * MariaDB's `@@aria_log_dir_path`: Aria's recovery log, without which the system tables (Aria) of a
   * snapshot taken without FTWRL cannot be recovered. Absent or null on MySQL.
   */
  ariaLogDir?: string | null;
}

/** A snapshot that exists: where to read it, and what to call it in the manifest. */
export interface Snapshot {
  /** The driver's name for it, e.g. `mysql-backup-20261124T020000Z-3fa9c1`. */
  name: string;
  /** A readable directory whose contents stand for `sourceRoot`. */
  path: string;
}

/** One volume manager's way to snapshot the server's volume. */
export interface SnapshotDriver {
  readonly name: SnapshotDriverName;
  /** The commands the driver runs (on PATH or in /usr/sbin, /sbin); `check` proves they are installed. */
  readonly tools: readonly string[];
  /**
   * The absolute path on this host that the snapshot's root stands for (manifest `snapshot.sourceRoot`).
   * LVM and ZFS learn it from the volume manager, so it is known once `prove` has run.
   */
  readonly sourceRoot: string;
  /** Refuses (SnapshotFailed) unless every path is on the snapshotted volume; runs before any lock. */
  prove(paths: ServerPaths): Promise<void>;
  /** Takes the snapshot; called under the lock, so it must stop promptly when `signal` aborts. */
  create(backupId: string, signal: AbortSignal): Promise<Snapshot>;
  /**
   * Makes a snapshot readable, after the lock is released (LVM mounts it here, so the mount never lengthens
   * the lock); returns the snapshot with the directory to read. btrfs and ZFS snapshots are readable as made.
   */
  open(snapshot: Snapshot): Promise<Snapshot>;
  /** Removes a snapshot of `backupId`, complete or partial; a no-op when there is none. */
  remove(backupId: string): Promise<void>;
  /** Removes snapshots this tool left behind in earlier runs (a crash); returns their names. */
  removeStale(): Promise<string[]>;
  /**
   * Writes the volume's dirty data out just before the lock, and again just before the hold where the lock
   * mode has stages before it (BLOCK_DDL → BLOCK_COMMIT), so the snapshot taken while commits wait has little
   * left to flush (btrfs under write load: lock median 26 → 14 ms, `bench/lock-experiment.ts`).
   * Best effort: a failure only costs lock time.
   */
  flush?(): Promise<void>;
}

/** Every snapshot this tool makes carries this prefix, so stale ones are recognisable and others untouched. */
export const SNAPSHOT_PREFIX = "mysql-backup-";

/** The snapshot name of a backup. */
export function snapshotName(backupId: string): string {
  return `${SNAPSHOT_PREFIX}${backupId}`;
}

/** Matches the names of this tool's snapshots (the prefix, then a backup id) and nothing else. */
export const SNAPSHOT_NAME = new RegExp(`^${SNAPSHOT_PREFIX}${BACKUP_ID_PATTERN.slice(1)}`);

/** A failed command as one line: how it ended and what it said. */
export function describe(result: CommandResult): string {
  const how = result.signal ? `killed by ${result.signal}` : `exit ${result.exitCode}`;
  return `${how}: ${(result.stderr || result.stdout).trim() || "(no output)"}`;
}

/**
 * Runs a snapshot command that must succeed and returns its stdout; a failure is SnapshotFailed naming
 * `what` was being done, the command, its exit and output, and `hint` for the person on call.
 */
export async function runOrFail(
  run: RunCommand,
  argv: string[],
  what: string,
  hint: string,
  signal?: AbortSignal,
): Promise<string> {
  const result = await run(argv, { signal });
  if (signal?.aborted) throw new Error(`${argv.join(" ")} was aborted`);
  if (result.exitCode !== 0) {
    throw new PipelineError("SnapshotFailed", `${what}: ${argv.join(" ")} failed: ${describe(result)}`, hint);
  }
  return result.stdout;
}

/** The server paths a driver checks, each with the words that name it for a person. */
export function serverPathList(paths: ServerPaths): Array<[string, string]> {
  const list: Array<[string, string]> = [
    ["the datadir (@@datadir)", paths.datadir],
    ["the InnoDB redo log directory (@@innodb_log_group_home_dir)", paths.innodbLogDir],
    ["the InnoDB undo directory (@@innodb_undo_directory)", paths.innodbUndoDir],
    ["the InnoDB system tablespace directory (@@innodb_data_home_dir)", paths.innodbDataHomeDir],
  ];
  if (paths.logBinBasename !== null) list.push(["the binary log (@@log_bin_basename)", paths.logBinBasename]);
  if (paths.ariaLogDir) list.push(["the Aria log directory (@@aria_log_dir_path)", paths.ariaLogDir]);
  return list;
}

/**
 * The real location of a path (symlinks resolved). A binlog basename is a prefix, not a file, so its
 * directory is resolved instead; a path that does not exist at all is judged as written.
 */
export async function realLocation(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return realpath(dirname(path)).then(
      (dir) => join(dir, basename(path)),
      () => resolve(path),
    );
  }
}

/** True when `path` is `root` or below it (both absolute and normalised). */
export function isInside(path: string, root: string): boolean {
  const r = root.endsWith("/") ? root : root + "/";
  return path === root || path.startsWith(r);
}
