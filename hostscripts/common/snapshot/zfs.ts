import { PipelineError } from "../errors";
import {
  SNAPSHOT_NAME,
  describe,
  isInside,
  runOrFail,
  realLocation,
  serverPathList,
  snapshotName,
  type RunCommand,
  type ServerPaths,
  type Snapshot,
  type SnapshotDriver,
} from "./driver";

/** Settings of the ZFS driver (config `snapshot` with `driver: "zfs"`). */
export interface ZfsSettings {
  /** The dataset that holds the datadir and its logs, e.g. `tank/mysql`. */
  dataset: string;
}

/**
 * ZFS: an atomic snapshot of the dataset (`zfs snapshot`), read in place through
 * `<mountpoint>/.zfs/snapshot/<name>` (ZFS mounts it on first access, read-only), removed with
 * `zfs destroy`. Child datasets are separate filesystems a snapshot does not hold, so `prove` checks that
 * every server path is on the dataset itself.
 */
export function zfsDriver(settings: ZfsSettings, run: RunCommand): SnapshotDriver {
  const { dataset } = settings;
  let mountpoint: string | undefined;
  const full = (name: string) => `${dataset}@${name}`;

  const must = (argv: string[], what: string, hint: string, signal?: AbortSignal) =>
    runOrFail(run, argv, what, hint, signal);

  async function destroy(name: string): Promise<void> {
    await must(
      ["zfs", "destroy", full(name)],
      `removing the snapshot ${full(name)}`,
      `destroy it by hand (zfs destroy ${full(name)}); a snapshot left behind pins old blocks of ${dataset}`,
    );
  }

  async function snapshotsOfThisTool(): Promise<string[]> {
    const listed = await must(
      ["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-d", "1", dataset],
      `listing the snapshots of ${dataset}`,
      `check that the dataset ${dataset} exists (zfs list)`,
    );
    return listed
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line.startsWith(`${dataset}@`))
      .map((line) => line.slice(dataset.length + 1))
      .filter((name) => SNAPSHOT_NAME.test(name));
  }

  return {
    name: "zfs",
    tools: ["zfs", "findmnt"],
    get sourceRoot(): string {
      if (mountpoint === undefined)
        throw new Error("the ZFS driver's sourceRoot is known only after prove()");
      return mountpoint;
    },

    async prove(paths) {
      mountpoint = await mountpointOf(run, dataset);
      await proveOnDataset(run, dataset, mountpoint, paths);
    },

    async create(backupId, signal): Promise<Snapshot> {
      const name = snapshotName(backupId);
      await must(
        ["zfs", "snapshot", full(name)],
        `snapshotting ${dataset}`,
        `check the pool's free space and that this user may snapshot ${dataset} (zfs allow)`,
        signal,
      );
      if (mountpoint === undefined) throw new Error("the ZFS driver created a snapshot before prove()");
      return { name, path: `${mountpoint}/.zfs/snapshot/${name}` };
    },

    async open(snapshot) {
      return snapshot;
    },

    async remove(backupId) {
      const name = snapshotName(backupId);
      const exists = await run(["zfs", "list", "-H", "-t", "snapshot", "-o", "name", full(name)]);
      if (exists.exitCode === 0) await destroy(name);
    },

    async removeStale() {
      const names = await snapshotsOfThisTool();
      for (const name of names) await destroy(name);
      return names;
    },
  };
}

/** Every server path is on the dataset itself (mounted at `mountpoint`), not on a child dataset or elsewhere. */
async function proveOnDataset(
  run: RunCommand,
  dataset: string,
  mountpoint: string,
  paths: ServerPaths,
): Promise<void> {
  for (const [what, path] of serverPathList(paths)) {
    const real = await realLocation(path);
    const source = await filesystemOf(run, real);
    if (!isInside(real, mountpoint) || source !== dataset) {
      throw new PipelineError(
        "SnapshotFailed",
        `${what} ${path} (${real}) is not on the ZFS dataset ${dataset} mounted at ${mountpoint} ` +
          `(it is on ${source}): a snapshot of ${dataset} would not hold it`,
        `move ${what} into ${mountpoint} (not a child dataset), or set snapshot.dataset to the dataset that holds it`,
      );
    }
  }
}

/** The dataset's mountpoint; `legacy` and `none` cannot be read through `.zfs/snapshot` and are refused. */
async function mountpointOf(run: RunCommand, dataset: string): Promise<string> {
  const result = await run(["zfs", "list", "-H", "-o", "mountpoint", dataset]);
  const mountpoint = result.stdout.trim();
  if (result.exitCode !== 0 || !mountpoint.startsWith("/")) {
    throw new PipelineError(
      "SnapshotFailed",
      result.exitCode !== 0
        ? `the ZFS dataset ${dataset} cannot be listed: ${describe(result)}`
        : `the ZFS dataset ${dataset} has mountpoint "${mountpoint}", so its snapshots cannot be read through .zfs/snapshot`,
      "set snapshot.dataset to the mounted dataset that holds the datadir (zfs list -o name,mountpoint)",
    );
  }
  return mountpoint;
}

/** The source (for ZFS: the dataset name) of the filesystem that holds `path`. */
async function filesystemOf(run: RunCommand, path: string): Promise<string> {
  const result = await run(["findmnt", "-n", "-o", "SOURCE", "--target", path]);
  const source = result.stdout.split("\n")[0]?.trim() ?? "";
  if (result.exitCode !== 0 || !source) {
    throw new PipelineError(
      "SnapshotFailed",
      `cannot tell which filesystem holds ${path}: ${describe(result)}`,
      `check that ${path} exists`,
    );
  }
  return source;
}
