/**
 * The LVM and ZFS drivers' exact command sequences with an injected `$` (no LVM or ZFS on the test machine):
 * what they run and in which order, how they refuse a server whose files are not on the volume, and how a
 * partial failure is cleaned up. The scripted answers are what the tools print (findmnt -n, lvs --noheadings,
 * zfs list -H).
 */
import { access, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PipelineError } from "../../hostscripts/common/errors";
import {
  lvmDriver,
  zfsDriver,
  type CommandResult,
  type RunCommand,
  type ServerPaths,
} from "../../hostscripts/common/snapshot";

const ID = "20261124T020000Z-3fa9c1";
const SNAP = `mysql-backup-${ID}`;

let mountDir: string;

beforeEach(async () => {
  mountDir = await mkdtemp(join(tmpdir(), "backup-lvm-"));
});

afterEach(async () => {
  await rm(mountDir, { recursive: true, force: true });
});

type Answer = Partial<CommandResult>;

/**
 * A `$` that records argv and answers by the longest matching argv prefix; unmatched commands succeed
 * with no output. A list answers successive calls in turn (the last one repeats).
 */
function scripted(answers: Record<string, Answer | Answer[]>) {
  const calls: string[][] = [];
  const seen = new Map<string, number>();
  const run: RunCommand = async (argv) => {
    calls.push([...argv]);
    const line = argv.join(" ");
    const key = Object.keys(answers)
      .filter((prefix) => line === prefix || line.startsWith(prefix + " "))
      .sort((a, b) => b.length - a.length)[0];
    let answer: Answer = {};
    if (key !== undefined) {
      const given = answers[key];
      const n = seen.get(key) ?? 0;
      seen.set(key, n + 1);
      answer = Array.isArray(given) ? given[Math.min(n, given.length - 1)] : given;
    }
    return { exitCode: 0, signal: null, stdout: "", stderr: "", ...answer };
  };
  return { calls, run };
}

function paths(root: string, overrides: Partial<ServerPaths> = {}): ServerPaths {
  const datadir = `${root}/data`;
  return {
    datadir,
    logBinBasename: `${root}/binlog/mysql-bin`,
    innodbLogDir: datadir,
    innodbUndoDir: datadir,
    innodbDataHomeDir: datadir,
    ...overrides,
  };
}

async function failure(promise: Promise<unknown>): Promise<PipelineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PipelineError);
  return error as PipelineError;
}

const notMounted: Answer = { exitCode: 1 };

describe("LVM", () => {
  const settings = () => ({ volume: "vg0/mysql", size: "20%ORIGIN", mountDir });
  const onVolume = {
    "findmnt -n -o TARGET --source /dev/vg0/mysql": { stdout: "/var/lib/mysql\n" },
    "findmnt -n -o TARGET --target": { stdout: "/var/lib/mysql\n" },
  };

  test("proves, snapshots by extents, mounts XFS read-only with nouuid, unmounts and removes", async () => {
    const { calls, run } = scripted({
      ...onVolume,
      [`blkid -o value -s TYPE /dev/vg0/${SNAP}`]: { stdout: "xfs\n" },
      [`findmnt -n -o TARGET --mountpoint ${join(mountDir, SNAP)}`]: { stdout: "mounted\n" },
    });
    const driver = lvmDriver(settings(), run);
    await driver.prove(paths("/var/lib/mysql"));
    expect(driver.sourceRoot).toBe("/var/lib/mysql");
    const made = await driver.create(ID, new AbortController().signal);
    expect(made).toEqual({ name: SNAP, path: join(mountDir, SNAP) });
    await driver.open(made);
    await access(made.path);
    await driver.remove(ID);
    await expect(access(made.path)).rejects.toThrow(/ENOENT/);

    expect(calls).toEqual([
      ["findmnt", "-n", "-o", "TARGET", "--source", "/dev/vg0/mysql"],
      ...["data", "data", "data", "data", "binlog/mysql-bin"].map((p) => [
        "findmnt",
        "-n",
        "-o",
        "TARGET",
        "--target",
        `/var/lib/mysql/${p}`,
      ]),
      ["lvcreate", "-s", "-n", SNAP, "-l", "20%ORIGIN", "vg0/mysql"],
      ["blkid", "-o", "value", "-s", "TYPE", `/dev/vg0/${SNAP}`],
      ["mount", "-t", "xfs", "-o", "ro,nouuid", `/dev/vg0/${SNAP}`, made.path],
      ["findmnt", "-n", "-o", "TARGET", "--mountpoint", made.path],
      ["umount", made.path],
      ["lvs", "--noheadings", "-o", "lv_name", `vg0/${SNAP}`],
      ["lvremove", "-f", `vg0/${SNAP}`],
    ]);
    // `check` proves these commands are installed: every one the driver ran must be among them.
    expect(calls.map(([command]) => command).filter((c) => !driver.tools.includes(c))).toEqual([]);
  });

  test("an absolute size uses -L, and ext4 is mounted plain read-only", async () => {
    const { calls, run } = scripted({ ...onVolume, "blkid -o value -s TYPE": { stdout: "ext4\n" } });
    const driver = lvmDriver({ ...settings(), size: "10G" }, run);
    await driver.prove(paths("/var/lib/mysql"));
    await driver.open(await driver.create(ID, new AbortController().signal));
    expect(calls.filter((c) => c[0] === "lvcreate" || c[0] === "mount")).toEqual([
      ["lvcreate", "-s", "-n", SNAP, "-L", "10G", "vg0/mysql"],
      ["mount", "-t", "ext4", "-o", "ro", `/dev/vg0/${SNAP}`, join(mountDir, SNAP)],
    ]);
  });

  test("refuses, naming the path, when the binlog is on another filesystem", async () => {
    const { run } = scripted({
      ...onVolume,
      "findmnt -n -o TARGET --target /var/log/mysql/mysql-bin": { stdout: "/var/log\n" },
    });
    const error = await failure(
      lvmDriver(settings(), run).prove(
        paths("/var/lib/mysql", { logBinBasename: "/var/log/mysql/mysql-bin" }),
      ),
    );
    expect(error.kind).toBe("SnapshotFailed");
    expect(error.message).toContain("the binary log (@@log_bin_basename) /var/log/mysql/mysql-bin");
    expect(error.message).toContain("mounted at /var/log");
  });

  test("refuses a directory that is a separate mount below the volume's mount point", async () => {
    const { run } = scripted({
      ...onVolume,
      "findmnt -n -o TARGET --target /var/lib/mysql/undo": { stdout: "/var/lib/mysql/undo\n" },
    });
    const error = await failure(
      lvmDriver(settings(), run).prove(paths("/var/lib/mysql", { innodbUndoDir: "/var/lib/mysql/undo" })),
    );
    expect(error.message).toContain("@@innodb_undo_directory");
  });

  test("refuses a volume that is not mounted", async () => {
    const { run } = scripted({ "findmnt -n -o TARGET --source": { exitCode: 1 } });
    const error = await failure(lvmDriver(settings(), run).prove(paths("/var/lib/mysql")));
    expect(error.message).toContain("vg0/mysql (/dev/vg0/mysql) is not mounted");
  });

  test("a failed lvcreate is SnapshotFailed with lvcreate's words and the volume group to check", async () => {
    const { run } = scripted({
      lvcreate: {
        exitCode: 5,
        stderr: "  Insufficient free space: 2560 extents needed, but only 12 available",
      },
    });
    const error = await failure(lvmDriver(settings(), run).create(ID, new AbortController().signal));
    expect(error.kind).toBe("SnapshotFailed");
    expect(error.message).toContain("exit 5: Insufficient free space");
    expect(error.hint).toContain("vgs vg0");
  });

  test("a failed mount leaves state that remove() cleans up: directory and LV, no umount", async () => {
    const { calls, run } = scripted({
      ...onVolume,
      "blkid -o value -s TYPE": { stdout: "xfs\n" },
      mount: { exitCode: 32, stderr: "mount: wrong fs type, bad option" },
      "findmnt -n -o TARGET --mountpoint": notMounted,
    });
    const driver = lvmDriver(settings(), run);
    await driver.prove(paths("/var/lib/mysql"));
    const made = await driver.create(ID, new AbortController().signal);
    const error = await failure(driver.open(made));
    expect(error.message).toContain("mounting the snapshot");
    expect(error.message).toContain("wrong fs type");
    calls.length = 0;
    await driver.remove(ID);
    expect(calls).toEqual([
      ["findmnt", "-n", "-o", "TARGET", "--mountpoint", made.path],
      ["lvs", "--noheadings", "-o", "lv_name", `vg0/${SNAP}`],
      ["lvremove", "-f", `vg0/${SNAP}`],
    ]);
    expect(await readdir(mountDir)).toEqual([]);
  });

  test("a busy mount is a SnapshotFailed error that says how to find the holder; the LV is kept", async () => {
    const { calls, run } = scripted({
      umount: { exitCode: 32, stderr: "umount: target is busy." },
    });
    const error = await failure(lvmDriver(settings(), run).remove(ID));
    expect(error.message).toContain("target is busy");
    expect(error.hint).toContain("fuser -vm");
    expect(calls.some((c) => c[0] === "lvremove")).toBe(false);
  });

  test("removes only this tool's stale snapshots of this volume, mounted or not", async () => {
    const stale = "mysql-backup-20261123T020000Z-aaaaaa";
    const mountedOnly = "mysql-backup-20261122T020000Z-bbbbbb";
    await mkdir(join(mountDir, mountedOnly));
    await mkdir(join(mountDir, "not-ours"));
    const { calls, run } = scripted({
      "lvs --noheadings --separator , -o lv_name,origin vg0": {
        stdout: [
          "  mysql,",
          `  ${stale},mysql`,
          "  mysql-backup-20261120T020000Z-cccccc,other", // this tool's name, another origin: not ours to judge
          "  nightly-snap,mysql",
          "  mysql-backup-notes,mysql",
        ].join("\n"),
      },
      [`findmnt -n -o TARGET --mountpoint ${join(mountDir, mountedOnly)}`]: { stdout: "x" },
      [`findmnt -n -o TARGET --mountpoint ${join(mountDir, stale)}`]: notMounted,
      [`lvs --noheadings -o lv_name vg0/${mountedOnly}`]: { exitCode: 5 },
    });
    const removed = await lvmDriver(settings(), run).removeStale();
    expect(removed).toEqual([mountedOnly, stale]);
    expect(calls.filter((c) => ["umount", "lvremove"].includes(c[0]))).toEqual([
      ["umount", join(mountDir, mountedOnly)],
      ["lvremove", "-f", `vg0/${stale}`],
    ]);
    expect(await readdir(mountDir)).toEqual(["not-ours"]);
  });
});

describe("ZFS", () => {
  const onDataset = {
    "zfs list -H -o mountpoint tank/mysql": { stdout: "/srv/mysql\n" },
    "findmnt -n -o SOURCE --target": { stdout: "tank/mysql\n" },
  };

  test("proves, snapshots, reads through .zfs/snapshot and destroys", async () => {
    const { calls, run } = scripted(onDataset);
    const driver = zfsDriver({ dataset: "tank/mysql" }, run);
    await driver.prove(paths("/srv/mysql"));
    expect(driver.sourceRoot).toBe("/srv/mysql");
    const made = await driver.open(await driver.create(ID, new AbortController().signal));
    expect(made).toEqual({ name: SNAP, path: `/srv/mysql/.zfs/snapshot/${SNAP}` });
    await driver.remove(ID);
    expect(calls).toEqual([
      ["zfs", "list", "-H", "-o", "mountpoint", "tank/mysql"],
      ...["data", "data", "data", "data", "binlog/mysql-bin"].map((p) => [
        "findmnt",
        "-n",
        "-o",
        "SOURCE",
        "--target",
        `/srv/mysql/${p}`,
      ]),
      ["zfs", "snapshot", `tank/mysql@${SNAP}`],
      ["zfs", "list", "-H", "-t", "snapshot", "-o", "name", `tank/mysql@${SNAP}`],
      ["zfs", "destroy", `tank/mysql@${SNAP}`],
    ]);
    expect(calls.map(([command]) => command).filter((c) => !driver.tools.includes(c))).toEqual([]);
  });

  test("refuses a path on a child dataset, naming the path and the dataset it is on", async () => {
    const { run } = scripted({
      ...onDataset,
      "findmnt -n -o SOURCE --target /srv/mysql/redo": { stdout: "tank/mysql/redo\n" },
    });
    const error = await failure(
      zfsDriver({ dataset: "tank/mysql" }, run).prove(
        paths("/srv/mysql", { innodbLogDir: "/srv/mysql/redo" }),
      ),
    );
    expect(error.kind).toBe("SnapshotFailed");
    expect(error.message).toContain("@@innodb_log_group_home_dir) /srv/mysql/redo");
    expect(error.message).toContain("it is on tank/mysql/redo");
  });

  test("refuses a legacy mountpoint, whose snapshots cannot be read through .zfs", async () => {
    const { run } = scripted({ "zfs list -H -o mountpoint": { stdout: "legacy\n" } });
    const error = await failure(zfsDriver({ dataset: "tank/mysql" }, run).prove(paths("/srv/mysql")));
    expect(error.message).toContain('mountpoint "legacy"');
  });

  test("a failed zfs snapshot is SnapshotFailed with zfs's words; nothing to remove afterwards", async () => {
    const { calls, run } = scripted({
      ...onDataset,
      "zfs snapshot": { exitCode: 1, stderr: "cannot create snapshot: out of space" },
      "zfs list -H -t snapshot": { exitCode: 1, stderr: "dataset does not exist" },
    });
    const driver = zfsDriver({ dataset: "tank/mysql" }, run);
    await driver.prove(paths("/srv/mysql"));
    const error = await failure(driver.create(ID, new AbortController().signal));
    expect(error.message).toContain("exit 1: cannot create snapshot: out of space");
    await driver.remove(ID);
    expect(calls.some((c) => c[1] === "destroy")).toBe(false);
  });

  test("removes only this tool's stale snapshots of this dataset", async () => {
    const { calls, run } = scripted({
      "zfs list -H -t snapshot -o name -d 1 tank/mysql": {
        stdout: [
          "tank/mysql@mysql-backup-20261123T020000Z-aaaaaa",
          "tank/mysql@hourly-2026-11-24",
          "tank/mysql@mysql-backup-notes",
        ].join("\n"),
      },
    });
    const removed = await zfsDriver({ dataset: "tank/mysql" }, run).removeStale();
    expect(removed).toEqual(["mysql-backup-20261123T020000Z-aaaaaa"]);
    expect(calls.filter((c) => c[1] === "destroy")).toEqual([
      ["zfs", "destroy", "tank/mysql@mysql-backup-20261123T020000Z-aaaaaa"],
    ]);
  });
});
