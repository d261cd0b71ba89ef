import { $ } from "zx";
import type { SnapshotDriverName } from "../../contracts";

/**
 * The snapshot driver interface. A driver knows one volume manager (btrfs now; LVM and ZFS in issue 5):
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

/** The real runner: zx, quiet, never throwing, with root's sbin directories on PATH. */
export const runCommand: RunCommand = async (argv, options = {}) => {
  const [file, ...args] = argv;
  const output = await $({
    quiet: true,
    nothrow: true,
    signal: options.signal,
    env: { ...process.env, PATH: `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin` },
  })`${file} ${args}`;
  return { exitCode: output.exitCode, signal: output.signal, stdout: output.stdout, stderr: output.stderr };
};

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
  /** The absolute path on this host that the snapshot's root stands for (manifest `snapshot.sourceRoot`). */
  readonly sourceRoot: string;
  /** Refuses (SnapshotFailed) unless every path is on the snapshotted volume; runs before any lock. */
  prove(paths: ServerPaths): Promise<void>;
  /** Takes the snapshot; called under the lock, so it must stop promptly when `signal` aborts. */
  create(backupId: string, signal: AbortSignal): Promise<Snapshot>;
  /** Removes a snapshot of `backupId`, complete or partial; a no-op when there is none. */
  remove(backupId: string): Promise<void>;
  /** Removes snapshots this tool left behind in earlier runs (a crash); returns their names. */
  removeStale(): Promise<string[]>;
}

/** Every snapshot this tool makes carries this prefix, so stale ones are recognisable and others untouched. */
export const SNAPSHOT_PREFIX = "mysql-backup-";

/** The snapshot name of a backup. */
export function snapshotName(backupId: string): string {
  return `${SNAPSHOT_PREFIX}${backupId}`;
}

/** True when `path` is `root` or below it (both absolute and normalised). */
export function isInside(path: string, root: string): boolean {
  const r = root.endsWith("/") ? root : root + "/";
  return path === root || path.startsWith(r);
}
