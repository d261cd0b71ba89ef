/**
 * The free-space check on real directories and the real statfs: the data size it measures, the ratio it
 * plans with (configured, else learned from the last local manifest), and the DiskSpace refusal.
 */
import { mkdir, mkdtemp, rm, statfs, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BackupConfig } from "../../contracts";
import { buildManifest } from "../../hostscripts/backup/manifest";
import { oneChunkArchive } from "../support/archive";
import { dialectFor, readServerFacts, type Query } from "../../hostscripts/common/dialect";
import { checkDiskSpace, treeBytes } from "../../hostscripts/common/diskspace";
import { PipelineError } from "../../hostscripts/common/errors";

let root: string;
let source: string;
let localDir: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "backup-diskspace-"));
  source = join(root, "source");
  localDir = join(root, "local");
  await mkdir(join(source, "data", "sbtest"), { recursive: true });
  await mkdir(localDir);
  await writeFile(join(source, "data", "ibdata1"), Buffer.alloc(3000));
  await writeFile(join(source, "data", "sbtest", "sbtest1.ibd"), Buffer.alloc(7000));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A valid local manifest whose archive is `bytes` of `rawBytes`, from the recorded MySQL 8.0 server. */
async function writeLocalManifest(backupId: string, bytes: number, rawBytes: number): Promise<void> {
  const fixture = JSON.parse(
    readFileSync(join(__dirname, "..", "fixtures", "mysql8", "mysql-8.0.36-replica.json"), "utf8"),
  ) as { responses: Record<string, Record<string, unknown>[]> };
  const query: Query = async (sql) => {
    const key = Object.keys(fixture.responses).find((k) => sql.replace(/\s+/g, " ").trim().startsWith(k));
    return key === undefined ? [] : fixture.responses[key];
  };
  const facts = await readServerFacts(query);
  const dialect = dialectFor(facts.versionString);
  const plan = dialect.lockPlan("global");
  const config = {
    cluster: "c",
    host: "h",
    snapshot: { driver: "btrfs", subvolume: "/var/lib/mysql", snapshotDir: "/var/lib/.s" },
  } as BackupConfig;
  const manifest = buildManifest(config, {
    backupId,
    startedAt: new Date("2026-11-23T02:00:00Z"),
    completedAt: new Date("2026-11-23T02:01:00Z"),
    facts,
    dialect,
    lock: { plan, choice: { chosenBy: "config", reason: "lockMode in the config" } },
    lockMs: 3,
    frozen: {
      position: await plan.capturePosition(query),
      positionAfter: null,
      tables: [],
      snapshot: { name: `mysql-backup-${backupId}`, path: "/var/lib/.s/x" },
    },
    sourceRoot: "/var/lib",
    ...oneChunkArchive(
      { cluster: "c", host: "h", backupId },
      { bytes, rawBytes, files: [{ path: "data/ibdata1", bytes: rawBytes, sha256: "b".repeat(64) }] },
    ),
    retention: "daily",
  });
  await mkdir(join(localDir, backupId));
  await writeFile(join(localDir, backupId, "manifest.json"), JSON.stringify(manifest));
}

test("measures the data below the source root", async () => {
  expect(await treeBytes(source)).toBe(10_000);
  expect(await treeBytes(join(root, "missing"))).toBe(0);
});

test("plans with ratio 1 without history, and with the last backup's ratio × 1.25 once there is one", async () => {
  expect(await checkDiskSpace(localDir, source, { reserveMiB: 0 })).toMatchObject({
    dataBytes: 10_000,
    ratio: 1,
    archiveBytes: 10_000,
  });
  await writeLocalManifest("20261122T020000Z-aaaaaa", 100, 1000);
  await writeLocalManifest("20261123T020000Z-bbbbbb", 200, 1000);
  await mkdir(join(localDir, "20261124T020000Z-cccccc")); // incomplete: no manifest, skipped
  const estimate = await checkDiskSpace(localDir, source, { reserveMiB: 0 });
  expect(estimate.ratio).toBeCloseTo(0.25);
  expect(estimate.archiveBytes).toBe(2500);
  // The space an unprivileged writer may use (bavail), not the blocks free to root (bfree: ext4 keeps 5 % back).
  // Other processes write to this disk between the two reads, so the same figure within 256 MiB.
  const fs = await statfs(localDir);
  const available = Number(fs.bavail) * Number(fs.bsize);
  expect(Math.abs(estimate.freeBytes - available)).toBeLessThan(256 * 1024 * 1024);
});

test("refuses with DiskSpace when the estimate and the reserve exceed the free space", async () => {
  const error = await checkDiskSpace(localDir, source, { ratio: 1, reserveMiB: 1024 ** 3 }).catch(
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PipelineError);
  expect((error as PipelineError).kind).toBe("DiskSpace");
  expect((error as PipelineError).exitCode).toBe(13);
  expect((error as PipelineError).message).toContain(localDir);
  expect((error as PipelineError).hint).toContain("keepLocal");
});
