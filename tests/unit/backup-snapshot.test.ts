/**
 * The btrfs driver's command sequence with an injected `$` (the integration test runs it for real): what it
 * runs, in which order, and how it refuses a server whose files are not on the subvolume.
 */
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PipelineError } from "../../hostscripts/common/errors";
import { btrfsDriver, driverFor, type RunCommand, type ServerPaths } from "../../hostscripts/common/snapshot";

let root: string;
let subvolume: string;
let snapshotDir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "backup-snapshot-"));
  subvolume = join(root, "mnt", "replica");
  snapshotDir = join(root, "mnt", ".snapshots");
  await mkdir(join(subvolume, "data"), { recursive: true });
  await mkdir(snapshotDir, { recursive: true });
  await mkdir(join(root, "elsewhere"));
  await symlink(join(root, "elsewhere"), join(subvolume, "data", "undo-link"));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A `$` that records argv and answers from a script (exit 0 unless told). */
function recordingRun(fail: Record<string, { exitCode: number; stderr: string }> = {}) {
  const calls: string[][] = [];
  const run: RunCommand = async (argv) => {
    calls.push([...argv]);
    const failure = fail[argv.slice(0, 3).join(" ")];
    return { exitCode: failure?.exitCode ?? 0, signal: null, stdout: "", stderr: failure?.stderr ?? "" };
  };
  return { calls, run };
}

function paths(overrides: Partial<ServerPaths> = {}): ServerPaths {
  const datadir = join(subvolume, "data");
  return {
    datadir,
    logBinBasename: join(datadir, "mysql-bin"),
    innodbLogDir: datadir,
    innodbUndoDir: datadir,
    innodbDataHomeDir: datadir,
    ...overrides,
  };
}

test("proves the paths, snapshots read-only into the snapshot dir, and deletes the snapshot", async () => {
  const { calls, run } = recordingRun();
  const driver = btrfsDriver({ subvolume, snapshotDir }, run);
  await driver.prove(paths());
  const snapshot = await driver.create("20261124T020000Z-3fa9c1", new AbortController().signal);
  expect(snapshot).toEqual({
    name: "mysql-backup-20261124T020000Z-3fa9c1",
    path: join(snapshotDir, "mysql-backup-20261124T020000Z-3fa9c1"),
  });
  await mkdir(snapshot.path); // what btrfs would have made
  await driver.remove("20261124T020000Z-3fa9c1");
  await rm(snapshot.path, { recursive: true });
  await driver.remove("20261124T020000Z-3fa9c1"); // nothing there: no command
  expect(calls).toEqual([
    ["btrfs", "subvolume", "show", subvolume],
    ["btrfs", "subvolume", "snapshot", "-r", subvolume, snapshot.path],
    ["btrfs", "subvolume", "delete", snapshot.path],
  ]);
  expect(driver.sourceRoot).toBe(subvolume);
});

test("flushes the subvolume's dirty data before the lock, and a failed flush is no failure", async () => {
  const { calls, run } = recordingRun({ "sync -f /nowhere": { exitCode: 1, stderr: "No such file" } });
  await btrfsDriver({ subvolume, snapshotDir }, run).flush!();
  await btrfsDriver({ subvolume: "/nowhere", snapshotDir }, run).flush!();
  expect(calls).toEqual([
    ["sync", "-f", subvolume],
    ["sync", "-f", "/nowhere"],
  ]);
});

test("refuses, naming the path, when a server directory resolves outside the subvolume", async () => {
  const { run } = recordingRun();
  const driver = btrfsDriver({ subvolume, snapshotDir }, run);
  const error = await driver
    .prove(paths({ innodbUndoDir: join(subvolume, "data", "undo-link") }))
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PipelineError);
  expect((error as PipelineError).kind).toBe("SnapshotFailed");
  expect((error as PipelineError).message).toContain("@@innodb_undo_directory");
  expect((error as PipelineError).message).toContain(join(root, "elsewhere"));
  const binlog = await driver
    .prove(paths({ logBinBasename: "/var/log/mysql/mysql-bin" }))
    .catch((e: unknown) => e);
  expect((binlog as PipelineError).message).toContain("@@log_bin_basename");
});

test("refuses a path that is not a btrfs subvolume with btrfs's own words", async () => {
  const { run } = recordingRun({ "btrfs subvolume show": { exitCode: 1, stderr: "ERROR: not a subvolume" } });
  const error = await btrfsDriver({ subvolume, snapshotDir }, run)
    .prove(paths())
    .catch((e: unknown) => e);
  expect((error as PipelineError).message).toContain("is not a btrfs subvolume");
  expect((error as PipelineError).message).toContain("ERROR: not a subvolume");
});

test("a failed snapshot command is a SnapshotFailed error with its stderr", async () => {
  const { run } = recordingRun({
    "btrfs subvolume snapshot": { exitCode: 1, stderr: "ERROR: No space left" },
  });
  const error = await btrfsDriver({ subvolume, snapshotDir }, run)
    .create("20261124T020000Z-3fa9c1", new AbortController().signal)
    .catch((e: unknown) => e);
  expect((error as PipelineError).kind).toBe("SnapshotFailed");
  expect((error as PipelineError).message).toContain("exit 1: ERROR: No space left");
});

test("removes only this tool's stale snapshots", async () => {
  const { calls, run } = recordingRun();
  await mkdir(join(snapshotDir, "mysql-backup-20261123T020000Z-aaaaaa"));
  await mkdir(join(snapshotDir, "someone-elses-snapshot"));
  await mkdir(join(snapshotDir, "mysql-backup-notes"));
  const removed = await btrfsDriver({ subvolume, snapshotDir }, run).removeStale();
  expect(removed).toEqual(["mysql-backup-20261123T020000Z-aaaaaa"]);
  expect(calls).toEqual([
    ["btrfs", "subvolume", "delete", join(snapshotDir, "mysql-backup-20261123T020000Z-aaaaaa")],
  ]);
});

test("driverFor builds the driver the config names", () => {
  const { run } = recordingRun();
  expect(driverFor({ driver: "btrfs", subvolume, snapshotDir }, run).name).toBe("btrfs");
  expect(driverFor({ driver: "lvm", volume: "vg0/mysql", size: "10G", mountDir: "/mnt/s" }, run).name).toBe(
    "lvm",
  );
  expect(driverFor({ driver: "zfs", dataset: "tank/mysql" }, run).name).toBe("zfs");
});
