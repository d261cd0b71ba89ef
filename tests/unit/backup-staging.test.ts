/**
 * The progress files a backup keeps locally (staging.ts), on a real directory: written whole or not at all,
 * and the staged publication read back, also in the format of the release before (the message alone, the
 * manifest in manifest.json), so an outbox left by a run killed just before an upgrade is still completed.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BackupConfig } from "../../contracts";
import { backupCreatedOf, buildManifest } from "../../hostscripts/backup/manifest";
import { oneChunkArchive } from "../support/archive";
import { writeDurably } from "../../hostscripts/common/durable";
import { OUTBOX, readOutbox, stagePublication } from "../../hostscripts/backup/staging";
import { dialectFor, readServerFacts, type Query } from "../../hostscripts/common/dialect";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "backup-staging-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A valid manifest and its message, from the recorded MySQL 8.0 server. */
async function publication() {
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
  const backupId = "20261123T020000Z-abcdef";
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
    lock: { plan, choice: { chosenBy: "config" as const, reason: "lockMode is global" } },
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
      { bytes: 10, rawBytes: 20, files: [{ path: "data/ibdata1", bytes: 20, sha256: "b".repeat(64) }] },
    ),
    retention: "daily",
  });
  return {
    manifest,
    message: backupCreatedOf(manifest, "bucket-1", `backups/c/h/${backupId}/manifest.json`),
  };
}

test("a durable write replaces the file whole, mode 0600, and leaves no .partial", async () => {
  await writeFile(join(dir, "f.json"), "old");
  await writeDurably(join(dir, "f.json"), "new\n");
  expect(await readFile(join(dir, "f.json"), "utf8")).toBe("new\n");
  expect((await stat(join(dir, "f.json"))).mode & 0o777).toBe(0o600);
  expect(await readdir(dir)).toEqual(["f.json"]);
});

test("the staged publication is the outbox (manifest and message) and manifest.json, read back as staged", async () => {
  const staged = await publication();
  await stagePublication(dir, staged);
  expect((await readdir(dir)).sort()).toEqual(["manifest.json", OUTBOX]);
  expect(JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"))).toEqual(staged.manifest);
  expect(await readOutbox(dir)).toEqual(staged);
});

test("an outbox of the release before (the message alone) is read with manifest.json; without it, refused", async () => {
  const staged = await publication();
  await writeFile(join(dir, OUTBOX), JSON.stringify(staged.message));
  await expect(readOutbox(dir)).rejects.toThrow(/manifest\.json/);
  await writeFile(join(dir, "manifest.json"), JSON.stringify(staged.manifest));
  expect(await readOutbox(dir)).toEqual(staged);
});
