import { lstat, readFile, readdir, statfs } from "node:fs/promises";
import { join } from "node:path";
import { BACKUP_ID_PATTERN, MANIFEST_OBJECT, parseManifest } from "../../contracts";
import { PipelineError } from "./errors";

/**
 * The free-space check before archiving: refuse clearly (DiskSpace) rather than fill the disk that
 * `localDir` shares with who knows what. The archive's size is bounded by the size of the data times a
 * compression ratio: the ratio configured, else the one the last local backup achieved plus a margin,
 * else 1 (incompressible data; zstd never grows it by more than its framing).
 */

/** Settings of the check (config `diskSpace`). */
export interface DiskSpaceSettings {
  /** Archive bytes per data byte to plan for. Defaults to the last local backup's ratio × 1.25, else 1. */
  ratio?: number;
  /** Space to leave free after the archive, in MiB. Defaults to 1024. */
  reserveMiB?: number;
}

/** What the check measured; logged, and in the error when it refuses. */
export interface DiskSpaceEstimate {
  dataBytes: number;
  ratio: number;
  /** `dataBytes × ratio`, rounded up. */
  archiveBytes: number;
  reserveBytes: number;
  freeBytes: number;
}

const MiB = 1024 * 1024;
const DEFAULT_RESERVE_MIB = 1024;
/** Data changes between runs; a margin over the last ratio keeps one compressible day from misleading. */
const RATIO_MARGIN = 1.25;
const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);

/** Throws DiskSpace when `localDir` cannot hold an archive of `sourceRoot` plus the reserve. */
export async function checkDiskSpace(
  localDir: string,
  sourceRoot: string,
  settings: DiskSpaceSettings = {},
): Promise<DiskSpaceEstimate> {
  const dataBytes = await treeBytes(sourceRoot);
  const ratio = settings.ratio ?? (await lastRatio(localDir)) ?? 1;
  const archiveBytes = Math.ceil(dataBytes * ratio);
  const reserveBytes = (settings.reserveMiB ?? DEFAULT_RESERVE_MIB) * MiB;
  const free = await freeBytes(localDir);
  const estimate = { dataBytes, ratio, archiveBytes, reserveBytes, freeBytes: free };
  if (archiveBytes + reserveBytes > free) {
    const gib = (n: number) => `${(n / 1024 ** 3).toFixed(2)} GiB`;
    throw new PipelineError(
      "DiskSpace",
      `${localDir} has ${gib(free)} free, but an archive of ${sourceRoot} (${gib(dataBytes)} × ratio ` +
        `${ratio.toFixed(2)} = ${gib(archiveBytes)}) plus the reserve of ${gib(reserveBytes)} needs more; nothing was locked or written`,
      "free space in localDir, lower keepLocal, move localDir to a larger volume, or set diskSpace.ratio / " +
        "diskSpace.reserveMiB if the estimate is too cautious for this data",
    );
  }
  return estimate;
}

/** Bytes of the regular files below `root`; files that vanish while it walks (a live datadir) count as 0. */
export async function treeBytes(root: string): Promise<number> {
  let total = 0;
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) total += await treeBytes(path);
    else if (entry.isFile())
      total += await lstat(path).then(
        (s) => s.size,
        () => 0,
      );
  }
  return total;
}

/** The archive/raw ratio of the newest local backup with a manifest, with the margin; null if none. */
async function lastRatio(localDir: string): Promise<number | null> {
  const names = (await readdir(localDir).catch(() => [] as string[]))
    .filter((n) => backupIdPattern.test(n))
    .sort()
    .reverse();
  for (const name of names) {
    try {
      const manifest = parseManifest(
        JSON.parse(await readFile(join(localDir, name, MANIFEST_OBJECT), "utf8")),
      );
      if (manifest.archive.rawBytes > 0) {
        return Math.min(1, (manifest.archive.bytes / manifest.archive.rawBytes) * RATIO_MARGIN);
      }
    } catch {
      // An incomplete or unreadable backup directory says nothing about the ratio: try the next one.
    }
  }
  return null;
}

/** The free space (for an unprivileged user) of the file system that holds `path`. */
export async function freeBytes(path: string): Promise<number> {
  const fs = await statfs(path);
  return Number(fs.bavail) * Number(fs.bsize);
}
