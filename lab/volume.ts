import { mkdir, open, readFile, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ProcessOutput, ProcessPromise } from "zx";
import { sh } from "./processes";

/**
 * The lab's btrfs volume: a sparse loop file formatted as btrfs, so snapshots behave as on a replica
 * host, without a spare disk.
 */

/** Creates a sparse image of `sizeGiB`, formats it as btrfs, attaches it to a loop device and mounts it. */
export async function createBtrfsVolume(image: string, mountPoint: string, sizeGiB: number): Promise<string> {
  const file = await open(image, "wx", 0o600);
  await file.truncate(Math.round(sizeGiB * 1024 ** 3));
  await file.close();
  await must(`mkfs.btrfs of ${image} (${sizeGiB} GiB)`, sh`mkfs.btrfs -q -L mysql-lab ${image}`);
  const device = (await must(`losetup of ${image}`, sh`losetup --find --show ${image}`)).stdout.trim();
  await mkdir(mountPoint, { recursive: true });
  await must(`mounting ${device} at ${mountPoint}`, sh`mount -t btrfs ${device} ${mountPoint}`);
  return device;
}

/** Creates a btrfs subvolume. */
export async function createSubvolume(path: string): Promise<void> {
  await must(`creating the btrfs subvolume ${path}`, sh`btrfs subvolume create ${path}`);
}

/** Awaits a command; on failure throws what was being done, the exit code and the command's stderr. */
async function must(what: string, command: ProcessPromise): Promise<ProcessOutput> {
  const result = await command.nothrow();
  if (result.exitCode !== 0) {
    throw new Error(`${what} failed (exit ${result.exitCode}): ${(result.stderr || result.stdout).trim()}`);
  }
  return result;
}

/** Every mount point at or below `dir`, deepest first (the order they must be unmounted in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile("/proc/self/mountinfo", "utf8");
  const points = table
    .split("\n")
    .filter(Boolean)
    .map((line) => unescapeMountPath(line.split(" ")[4] ?? ""))
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Loop devices whose backing file is at or below `dir` (also when that file has been deleted). */
export async function loopsBacking(dir: string): Promise<string[]> {
  const result = await sh`losetup --list --json --output NAME,BACK-FILE`.nothrow();
  if (result.exitCode !== 0 || result.stdout.trim() === "") return [];
  const listing = JSON.parse(result.stdout) as {
    loopdevices?: { name: string; "back-file": string | null }[];
  };
  return (listing.loopdevices ?? [])
    .filter((loop) => {
      const file = (loop["back-file"] ?? "").replace(/ \(deleted\)$/, "");
      return file === dir || file.startsWith(`${dir}/`);
    })
    .map((loop) => loop.name);
}

/** Read-only btrfs snapshots (any subvolume) left in the snapshot directory. */
export async function snapshotsIn(snapshotDir: string): Promise<string[]> {
  const entries = await readdir(snapshotDir).catch(() => [] as string[]);
  const found: string[] = [];
  for (const entry of entries) {
    const path = join(snapshotDir, entry);
    // A btrfs subvolume's root directory always has inode number 256.
    const info = await stat(path).catch(() => undefined);
    if (info?.isDirectory() && info.ino === 256) found.push(path);
  }
  return found;
}

/** Deletes the given subvolumes (snapshots). */
export async function deleteSubvolumes(paths: string[]): Promise<void> {
  for (const path of paths) await sh`btrfs subvolume delete ${path}`.nothrow();
}

/** Unmounts everything at or below `dir`, deepest first; falls back to a lazy unmount for busy mounts. */
export async function unmountAll(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) {
    const plain = await sh`umount ${point}`.nothrow();
    if (plain.exitCode !== 0) await sh`umount --lazy ${point}`.nothrow();
  }
}

/** Detaches every loop device backed by a file under `dir`. */
export async function detachLoops(dir: string): Promise<void> {
  for (const device of await loopsBacking(dir)) await sh`losetup --detach ${device}`.nothrow();
}
