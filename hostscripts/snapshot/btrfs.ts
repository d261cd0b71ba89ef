import { access, readdir, realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { BACKUP_ID_PATTERN } from "../../contracts";
import { PipelineError, messageOf } from "../errors";
import {
  SNAPSHOT_PREFIX,
  isInside,
  snapshotName,
  type CommandResult,
  type RunCommand,
  type ServerPaths,
  type Snapshot,
  type SnapshotDriver,
} from "./driver";

/** Settings of the btrfs driver (config `snapshot` with `driver: "btrfs"`). */
export interface BtrfsSettings {
  /** The subvolume that holds the datadir and its logs. */
  subvolume: string;
  /** Where snapshots go; on the same btrfs filesystem. */
  snapshotDir: string;
}

const staleName = new RegExp(`^${SNAPSHOT_PREFIX}${BACKUP_ID_PATTERN.slice(1)}`);

/**
 * btrfs: an atomic read-only snapshot of the subvolume (`btrfs subvolume snapshot -r`), read in place,
 * removed with `btrfs subvolume delete`. Taking it costs milliseconds whatever the data size.
 */
export function btrfsDriver(settings: BtrfsSettings, run: RunCommand): SnapshotDriver {
  const subvolume = resolve(settings.subvolume);
  const snapshotDir = resolve(settings.snapshotDir);
  const pathOf = (backupId: string) => join(snapshotDir, snapshotName(backupId));

  async function deleteSnapshot(path: string): Promise<void> {
    const result = await run(["btrfs", "subvolume", "delete", path]);
    if (result.exitCode !== 0) {
      throw new PipelineError(
        "SnapshotFailed",
        `btrfs subvolume delete ${path} failed: ${describe(result)}`,
        `delete it by hand (btrfs subvolume delete ${path}); a snapshot left behind pins old data on the volume`,
      );
    }
  }

  return {
    name: "btrfs",
    sourceRoot: subvolume,

    async prove(paths) {
      await mustBeSubvolume(run, subvolume);
      await mustExist(snapshotDir, "snapshot directory (snapshot.snapshotDir)");
      const root = await realpath(subvolume);
      for (const [what, path] of serverPathList(paths)) {
        const real = await realLocation(path);
        if (!isInside(real, root)) {
          throw new PipelineError(
            "SnapshotFailed",
            `${what} ${path} (${real}) is outside the btrfs subvolume ${subvolume}: a snapshot would not hold it`,
            `move ${what} into ${subvolume}, or set snapshot.subvolume to the subvolume that holds it`,
          );
        }
      }
    },

    async create(backupId, signal): Promise<Snapshot> {
      const path = pathOf(backupId);
      const result = await run(["btrfs", "subvolume", "snapshot", "-r", subvolume, path], { signal });
      if (signal.aborted) throw new Error(`btrfs subvolume snapshot of ${subvolume} was aborted`);
      if (result.exitCode !== 0) {
        throw new PipelineError(
          "SnapshotFailed",
          `btrfs subvolume snapshot -r ${subvolume} ${path} failed: ${describe(result)}`,
          `check that ${snapshotDir} is on the same btrfs filesystem as ${subvolume} and has room`,
        );
      }
      return { name: snapshotName(backupId), path };
    },

    async remove(backupId) {
      const path = pathOf(backupId);
      if (await exists(path)) await deleteSnapshot(path);
    },

    async removeStale() {
      const names = (await readdir(snapshotDir)).filter((name) => staleName.test(name));
      for (const name of names) await deleteSnapshot(join(snapshotDir, name));
      return names;
    },
  };
}

function serverPathList(paths: ServerPaths): Array<[string, string]> {
  const list: Array<[string, string]> = [
    ["the datadir (@@datadir)", paths.datadir],
    ["the InnoDB redo log directory (@@innodb_log_group_home_dir)", paths.innodbLogDir],
    ["the InnoDB undo directory (@@innodb_undo_directory)", paths.innodbUndoDir],
    ["the InnoDB system tablespace directory (@@innodb_data_home_dir)", paths.innodbDataHomeDir],
  ];
  if (paths.logBinBasename !== null) list.push(["the binary log (@@log_bin_basename)", paths.logBinBasename]);
  return list;
}

/**
 * The real location of a path (symlinks resolved). A binlog basename is a prefix, not a file, so its
 * directory is resolved instead; a path that does not exist at all is judged as written.
 */
async function realLocation(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return realpath(dirname(path)).then(
      (dir) => join(dir, basename(path)),
      () => resolve(path),
    );
  }
}

async function mustBeSubvolume(run: RunCommand, subvolume: string): Promise<void> {
  const result = await run(["btrfs", "subvolume", "show", subvolume]);
  if (result.exitCode !== 0) {
    throw new PipelineError(
      "SnapshotFailed",
      `${subvolume} is not a btrfs subvolume: ${describe(result)}`,
      "set snapshot.subvolume to the btrfs subvolume that holds the datadir",
    );
  }
}

async function mustExist(path: string, what: string): Promise<void> {
  try {
    await access(path);
  } catch (e) {
    throw new PipelineError(
      "SnapshotFailed",
      `the ${what} ${path} is not accessible: ${messageOf(e)}`,
      `create ${path} on the same btrfs filesystem as the subvolume`,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function describe(result: CommandResult): string {
  const how = result.signal ? `killed by ${result.signal}` : `exit ${result.exitCode}`;
  return `${how}: ${(result.stderr || result.stdout).trim() || "(no output)"}`;
}
