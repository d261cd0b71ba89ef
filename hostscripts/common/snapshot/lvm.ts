import { mkdir, readdir, rmdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PipelineError } from "../errors";
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
  type ServerPaths,
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
  const volume: Volume = { settings, run, vg, lv, mountDir: resolve(settings.mountDir) };
  let originMount: string | undefined;

  return {
    name: "lvm",
    tools: ["lvcreate", "lvs", "lvremove", "mount", "umount", "findmnt", "blkid"],
    get sourceRoot(): string {
      if (originMount === undefined)
        throw new Error("the LVM driver's sourceRoot is known only after prove()");
      return originMount;
    },

    async prove(paths) {
      originMount = await mountPointOf(run, `/dev/${vg}/${lv}`, settings.volume);
      await proveOnVolume(volume, originMount, paths);
    },

    async create(backupId, signal): Promise<Snapshot> {
      const name = snapshotName(backupId);
      const size = settings.size.includes("%") ? ["-l", settings.size] : ["-L", settings.size];
      await must(
        volume,
        ["lvcreate", "-s", "-n", name, ...size, settings.volume],
        `snapshotting ${settings.volume}`,
        `check the free extents of volume group ${vg} (vgs ${vg}); snapshot.size is ${settings.size}`,
        signal,
      );
      return { name, path: mountOf(volume, name) };
    },

    async open(snapshot) {
      return mountReadOnly(volume, snapshot);
    },

    async remove(backupId) {
      await removeByName(volume, snapshotName(backupId));
    },

    async removeStale() {
      const names = await staleNames(volume);
      for (const name of names) await removeByName(volume, name);
      return names;
    },
  };
}

/** The origin volume, as the driver's steps use it. */
interface Volume {
  settings: LvmSettings;
  run: RunCommand;
  /** Volume group and logical volume of `settings.volume`. */
  vg: string;
  lv: string;
  /** `settings.mountDir`, absolute. */
  mountDir: string;
}

function must(volume: Volume, argv: string[], what: string, hint: string, signal?: AbortSignal) {
  return runOrFail(volume.run, argv, what, hint, signal);
}

function lvOf(volume: Volume, name: string): string {
  return `${volume.vg}/${name}`;
}

function mountOf(volume: Volume, name: string): string {
  return join(volume.mountDir, name);
}

/** Every server path is on the origin's filesystem, mounted at `originMount`; the mount directory exists. */
async function proveOnVolume(volume: Volume, originMount: string, paths: ServerPaths): Promise<void> {
  for (const [what, path] of serverPathList(paths)) {
    const real = await realLocation(path);
    const mountedOn = await mountTargetOf(volume.run, real);
    if (!isInside(real, originMount) || mountedOn !== originMount) {
      throw new PipelineError(
        "SnapshotFailed",
        `${what} ${path} (${real}) is not on the logical volume ${volume.settings.volume} mounted at ${originMount} ` +
          `(it is on the filesystem mounted at ${mountedOn}): an LVM snapshot would not hold it`,
        `move ${what} onto ${originMount}, or set snapshot.volume to the logical volume that holds it`,
      );
    }
  }
  await mkdir(volume.mountDir, { recursive: true, mode: 0o700 });
}

/** Mounts the snapshot read-only at its path (`nouuid` for XFS, which refuses two mounts of one UUID). */
async function mountReadOnly(volume: Volume, snapshot: Snapshot): Promise<Snapshot> {
  const device = `/dev/${volume.vg}/${snapshot.name}`;
  const fsType = (
    await must(
      volume,
      ["blkid", "-o", "value", "-s", "TYPE", device],
      `reading the filesystem type of ${device}`,
      `check that ${device} exists (lvs ${volume.vg})`,
    )
  ).trim();
  const options = fsType === "xfs" ? "ro,nouuid" : "ro";
  await mkdir(snapshot.path, { mode: 0o700 });
  await must(
    volume,
    ["mount", "-t", fsType, "-o", options, device, snapshot.path],
    `mounting the snapshot ${device} read-only`,
    `check dmesg for the ${fsType} error; the snapshot is removed and the next run takes a new one`,
  );
  return snapshot;
}

/** This tool's snapshots of the origin, as LVM lists them and as mount directories left behind. */
async function staleNames(volume: Volume): Promise<string[]> {
  const { vg, lv } = volume;
  const listed = await must(
    volume,
    ["lvs", "--noheadings", "--separator", ",", "-o", "lv_name,origin", vg],
    `listing the logical volumes of ${vg}`,
    `check that volume group ${vg} exists (vgs)`,
  );
  const fromLvs = listed
    .split("\n")
    .map((line) => line.trim().split(","))
    .filter(([name, from]) => SNAPSHOT_NAME.test(name ?? "") && from === lv)
    .map(([name]) => name);
  const fromMounts = (await readdir(volume.mountDir).catch(() => [] as string[])).filter((n) =>
    SNAPSHOT_NAME.test(n),
  );
  return [...new Set([...fromMounts, ...fromLvs])].sort();
}

/** Unmounts and deletes the mount directory, then removes the LV: each step only if its state exists. */
async function removeByName(volume: Volume, name: string): Promise<void> {
  const mount = mountOf(volume, name);
  const lvName = lvOf(volume, name);
  if (await isMounted(volume.run, mount)) {
    await must(volume, ["umount", mount], `unmounting the snapshot ${lvName}`, busyHint(mount));
  }
  await rmdir(mount).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
  if (await lvExists(volume.run, lvName)) {
    await must(
      volume,
      ["lvremove", "-f", lvName],
      `removing the snapshot ${lvName}`,
      `remove it by hand (lvremove -f ${lvName}); a full snapshot is invalidated and slows writes to ${volume.settings.volume}`,
    );
  }
}

async function isMounted(run: RunCommand, path: string): Promise<boolean> {
  return (await run(["findmnt", "-n", "-o", "TARGET", "--mountpoint", path])).exitCode === 0;
}

async function lvExists(run: RunCommand, lvName: string): Promise<boolean> {
  return (await run(["lvs", "--noheadings", "-o", "lv_name", lvName])).exitCode === 0;
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
