import { mkdir, readdir, rmdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PipelineError } from "../../common/errors";
import {
  SNAPSHOT_NAME,
  describe,
  isInside,
  runOrFail,
  realLocation,
  serverPathList,
  snapshotName,
  type CommandResult,
  type RunCommand,
  type Snapshot,
  type SnapshotDriver,
} from "./driver";

/** Settings of the LVM driver (config `snapshot` with `driver: "lvm"`). */
export interface LvmSettings {
  /** `vg/lv` of the logical volume that holds the datadir and its logs. */
  volume: string;
  /** Snapshot size: `10G` (absolute, `-L`) or `20%ORIGIN` / `%FREE` / `%VG` (extents, `-l`). */
  size: string;
  /** Where a snapshot is mounted read-only while it is archived, one directory per snapshot. */
  mountDir: string;
}

/**
 * LVM: a copy-on-write snapshot of the logical volume (`lvcreate -s`), taken under the lock; mounted
 * read-only after the lock is released (`nouuid` for XFS, which refuses two mounts of one UUID), read
 * there, then unmounted and removed with `lvremove -f`. The volume's mount point is `sourceRoot`.
 */
export function lvmDriver(settings: LvmSettings, run: RunCommand): SnapshotDriver {
  const [vg, lv] = settings.volume.split("/");
  const origin = `/dev/${vg}/${lv}`;
  const mountDir = resolve(settings.mountDir);
  const lvOf = (name: string) => `${vg}/${name}`;
  const mountOf = (name: string) => join(mountDir, name);
  let originMount: string | undefined;

  const must = (argv: string[], what: string, hint: string, signal?: AbortSignal) =>
    runOrFail(run, argv, what, hint, signal);

  async function isMounted(path: string): Promise<boolean> {
    return (await run(["findmnt", "-n", "-o", "TARGET", "--mountpoint", path])).exitCode === 0;
  }

  async function lvExists(name: string): Promise<boolean> {
    return (await run(["lvs", "--noheadings", "-o", "lv_name", lvOf(name)])).exitCode === 0;
  }

  /** Unmounts and deletes the mount directory, then removes the LV: each step only if its state exists. */
  async function removeByName(name: string): Promise<void> {
    const mount = mountOf(name);
    if (await isMounted(mount)) {
      await must(["umount", mount], `unmounting the snapshot ${lvOf(name)}`, busyHint(mount));
    }
    await rmdir(mount).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "ENOENT") throw e;
    });
    if (await lvExists(name)) {
      await must(
        ["lvremove", "-f", lvOf(name)],
        `removing the snapshot ${lvOf(name)}`,
        `remove it by hand (lvremove -f ${lvOf(name)}); a full snapshot is invalidated and slows writes to ${settings.volume}`,
      );
    }
  }

  return {
    name: "lvm",
    get sourceRoot(): string {
      if (originMount === undefined)
        throw new Error("the LVM driver's sourceRoot is known only after prove()");
      return originMount;
    },

    async prove(paths) {
      originMount = await mountPointOf(run, origin, settings.volume);
      for (const [what, path] of serverPathList(paths)) {
        const real = await realLocation(path);
        const mountedOn = await mountTargetOf(run, real);
        if (!isInside(real, originMount) || mountedOn !== originMount) {
          throw new PipelineError(
            "SnapshotFailed",
            `${what} ${path} (${real}) is not on the logical volume ${settings.volume} mounted at ${originMount} ` +
              `(it is on the filesystem mounted at ${mountedOn}): an LVM snapshot would not hold it`,
            `move ${what} onto ${originMount}, or set snapshot.volume to the logical volume that holds it`,
          );
        }
      }
      await mkdir(mountDir, { recursive: true, mode: 0o700 });
    },

    async create(backupId, signal): Promise<Snapshot> {
      const name = snapshotName(backupId);
      const size = settings.size.includes("%") ? ["-l", settings.size] : ["-L", settings.size];
      await must(
        ["lvcreate", "-s", "-n", name, ...size, settings.volume],
        `snapshotting ${settings.volume}`,
        `check the free extents of volume group ${vg} (vgs ${vg}); snapshot.size is ${settings.size}`,
        signal,
      );
      return { name, path: mountOf(name) };
    },

    async open(snapshot) {
      const device = `/dev/${vg}/${snapshot.name}`;
      const fsType = (
        await must(
          ["blkid", "-o", "value", "-s", "TYPE", device],
          `reading the filesystem type of ${device}`,
          `check that ${device} exists (lvs ${vg})`,
        )
      ).trim();
      const options = fsType === "xfs" ? "ro,nouuid" : "ro";
      await mkdir(snapshot.path, { mode: 0o700 });
      await must(
        ["mount", "-t", fsType, "-o", options, device, snapshot.path],
        `mounting the snapshot ${device} read-only`,
        `check dmesg for the ${fsType} error; the snapshot is removed and the next run takes a new one`,
      );
      return snapshot;
    },

    async remove(backupId) {
      await removeByName(snapshotName(backupId));
    },

    async removeStale() {
      const listed = await must(
        ["lvs", "--noheadings", "--separator", ",", "-o", "lv_name,origin", vg],
        `listing the logical volumes of ${vg}`,
        `check that volume group ${vg} exists (vgs)`,
      );
      const fromLvs = listed
        .split("\n")
        .map((line) => line.trim().split(","))
        .filter(([name, from]) => SNAPSHOT_NAME.test(name ?? "") && from === lv)
        .map(([name]) => name);
      const fromMounts = (await readdir(mountDir).catch(() => [] as string[])).filter((n) =>
        SNAPSHOT_NAME.test(n),
      );
      const names = [...new Set([...fromMounts, ...fromLvs])].sort();
      for (const name of names) await removeByName(name);
      return names;
    },
  };
}

/** Where the origin LV is mounted (findmnt resolves `/dev/vg/lv` to its device-mapper node). */
async function mountPointOf(run: RunCommand, device: string, volume: string): Promise<string> {
  const result = await run(["findmnt", "-n", "-o", "TARGET", "--source", device]);
  const target = firstLine(result);
  if (result.exitCode !== 0 || !target) {
    throw new PipelineError(
      "SnapshotFailed",
      `the logical volume ${volume} (${device}) is not mounted: ${describe(result)}`,
      "set snapshot.volume to the vg/lv that holds the datadir (lsblk, findmnt)",
    );
  }
  return target;
}

/** The mount point of the filesystem that holds `path`. */
async function mountTargetOf(run: RunCommand, path: string): Promise<string> {
  const result = await run(["findmnt", "-n", "-o", "TARGET", "--target", path]);
  const target = firstLine(result);
  if (result.exitCode !== 0 || !target) {
    throw new PipelineError(
      "SnapshotFailed",
      `cannot tell which filesystem holds ${path}: ${describe(result)}`,
      `check that ${path} exists`,
    );
  }
  return target;
}

function firstLine(result: CommandResult): string {
  return result.stdout.split("\n")[0]?.trim() ?? "";
}

function busyHint(mount: string): string {
  return `find what holds it open (fuser -vm ${mount}), then umount ${mount}; the next run removes the snapshot`;
}
