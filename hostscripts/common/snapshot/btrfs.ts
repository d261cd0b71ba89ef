import { access, readdir, realpath } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PipelineError, messageOf } from "../errors";
import {
  SNAPSHOT_NAME,
  describe,
  isInside,
  realLocation,
  serverPathList,
  snapshotName,
  type RunCommand,
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
    tools: ["btrfs", "sync"],
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

    async flush(): Promise<void> {
      await run(["sync", "-f", subvolume]);
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

    async open(snapshot) {
      return snapshot;
    },

    async remove(backupId) {
      const path = pathOf(backupId);
      if (await exists(path)) await deleteSnapshot(path);
    },

    async removeStale() {
      const names = (await readdir(snapshotDir)).filter((name) => SNAPSHOT_NAME.test(name));
      for (const name of names) await deleteSnapshot(join(snapshotDir, name));
      return names;
    },
  };
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
