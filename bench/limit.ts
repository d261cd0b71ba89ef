import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { rootSession } from "../lab/mariadb";
import { sh } from "../lab/processes";
import { mustRunMeasured, type CommandRun } from "./measure";

/**
 * What this machine can do with the replica's data, independent of our code: read a snapshot of it,
 * and stream it through `tar | zstd -T0 -1`. Each measurement gets a snapshot of its own, taken under
 * FTWRL like ours: a fresh btrfs snapshot starts with a cold page cache of its own (its inodes are new),
 * exactly as the snapshot our backup reads, so neither side profits from the other's reads.
 */

/** The bench's snapshots live beside the pipeline's (same filesystem) but in a directory of their own. */
export function benchSnapshotDir(mountPoint: string): string {
  return join(mountPoint, "bench-snapshots");
}

/** One limit measurement on one fresh snapshot. */
export interface LimitRun {
  /** Bytes under the snapshot's data directory (`du -sb --apparent-size`). */
  bytes: number;
  run: CommandRun;
  /** Bytes per second through the command. */
  throughput: number;
  /** Size of the zstd output, where there is one. */
  outputBytes?: number;
}

/** A read-only snapshot of the replica's subvolume, taken under FTWRL; deleted by `deleteSnapshot`. */
export async function takeSnapshot(
  replicaSocket: string,
  subvolume: string,
  snapshotDir: string,
  name: string,
): Promise<string> {
  await mkdir(snapshotDir, { recursive: true });
  const path = join(snapshotDir, name);
  const session = await rootSession(replicaSocket);
  try {
    await session.query("FLUSH TABLES WITH READ LOCK");
    const made = await sh`btrfs subvolume snapshot -r ${subvolume} ${path}`.nothrow();
    if (made.exitCode !== 0) {
      throw new Error(`bench: btrfs snapshot of ${subvolume} at ${path} failed: ${made.stderr.trim()}`);
    }
  } finally {
    await session.query("UNLOCK TABLES").catch(() => undefined);
    await session.end();
  }
  return path;
}

/** Deletes a snapshot of the bench (no error when it is already gone). */
export async function deleteSnapshot(path: string): Promise<void> {
  await sh`btrfs subvolume delete ${path}`.nothrow();
}

/** Apparent size of a directory tree in bytes (what tar reads). */
export async function treeBytes(path: string): Promise<number> {
  const out = (await sh`du -sb --apparent-size ${path}`).stdout;
  return Number(out.split(/\s/)[0]);
}

/** The two limit pipelines, as run on a snapshot's data directory. */
export function limitCommands(dataDir: string): { rawRead: string; tarZstd: string } {
  return {
    // Through cat: GNU tar skips reading file contents when it writes straight to /dev/null.
    rawRead: `tar -C ${dataDir} -cf - . | cat > /dev/null`,
    tarZstd: `tar -C ${dataDir} -cf - . | zstd -T0 -1 -q -c | wc -c`,
  };
}

/**
 * Measures the raw read and the plain `tar | zstd -T0 -1` pipeline, each on its own fresh snapshot of
 * the replica (taken under FTWRL, deleted afterwards in every case).
 */
export async function measureLimit(
  replica: { socket: string; subvolume: string; mountPoint: string },
  tag: string,
): Promise<{ rawRead: LimitRun; tarZstd: LimitRun }> {
  const rawRead = await onFreshSnapshot(replica, `${tag}-read`, async (data) =>
    measured("raw read of a snapshot", data, limitCommands(data).rawRead),
  );
  const tarZstd = await onFreshSnapshot(replica, `${tag}-tarzstd`, async (data) => {
    const result = await measured("tar | zstd -T0 -1 of a snapshot", data, limitCommands(data).tarZstd);
    return { ...result, outputBytes: Number(result.run.stdout.trim()) };
  });
  return { rawRead, tarZstd };
}

async function onFreshSnapshot<T>(
  replica: { socket: string; subvolume: string; mountPoint: string },
  name: string,
  use: (dataDir: string) => Promise<T>,
): Promise<T> {
  const snapshot = await takeSnapshot(
    replica.socket,
    replica.subvolume,
    benchSnapshotDir(replica.mountPoint),
    name,
  );
  try {
    return await use(join(snapshot, "data"));
  } finally {
    await deleteSnapshot(snapshot);
  }
}

async function measured(step: string, dataDir: string, command: string): Promise<LimitRun> {
  const bytes = await treeBytes(dataDir);
  const run = await mustRunMeasured(step, command);
  return { bytes, run, throughput: bytes / run.wallSeconds };
}
