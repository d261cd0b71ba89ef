/**
 * The local half of the crash repair, on real directories: what is deleted, what is kept, what is given up
 * (alarmed), and that one unreadable directory does not stop the run. S3 and SQS are real clients aimed at a closed port, so every
 * call to them fails the way an unreachable endpoint does (the integration tests cover the reachable case).
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { memoryLogger } from "../../hostscripts/common/log";
import { fileSink } from "../../hostscripts/common/metrics";
import { repairAfterCrash } from "../../hostscripts/backup/repair";
import { PRUNING_SUFFIX } from "../../hostscripts/backup/retention";
import { OUTBOX, UPLOAD_RECORD } from "../../hostscripts/backup/staging";

let localDir: string;

beforeEach(async () => {
  localDir = await mkdtemp(join(tmpdir(), "backup-repair-"));
});

afterEach(async () => {
  await rm(localDir, { recursive: true, force: true });
});

const unreachable = {
  region: "us-east-1",
  endpoint: "http://127.0.0.1:9",
  credentials: { accessKeyId: "x", secretAccessKey: "y" },
  maxAttempts: 1,
};

async function backupDir(name: string, files: Record<string, string>): Promise<void> {
  await mkdir(join(localDir, name));
  for (const [file, text] of Object.entries(files)) await writeFile(join(localDir, name, file), text);
}

test("deletes partials, incomplete backups and cut-short prunes; keeps complete ones; abandons an unreadable outbox, alarmed", async () => {
  await backupDir("20261120T020000Z-aaaaaa", { "manifest.json": "{}", "archive.tar.zst": "z" });
  await backupDir("20261121T020000Z-bbbbbb", { "archive.tar.zst.partial": "half" });
  await backupDir("20261122T020000Z-cccccc", { "archive.tar.zst": "z", "manifest.json.partial": "{" });
  await backupDir("20261123T020000Z-dddddd", { "manifest.json": "{}", [OUTBOX]: '{"type": "backup.cr' });
  await backupDir("20261124T020000Z-eeeeee", { [UPLOAD_RECORD]: "{not json" });
  await backupDir(`20261119T020000Z-ffffff${PRUNING_SUFFIX}`, { "manifest.json": "{}" });
  await mkdir(join(localDir, "not-a-backup"));
  const log = memoryLogger();
  const metricsPath = join(localDir, "metrics.jsonl");

  const report = await repairAfterCrash({
    localDir,
    hostPrefix: "backups/c/h/",
    bucket: "b",
    target: { bucket: "b", partSizeMiB: 8, queueSize: 1 },
    queueUrl: "http://127.0.0.1:9/000000000000/q",
    s3: new S3Client({ ...unreachable, forcePathStyle: true }),
    sqs: new SQSClient(unreachable),
    log,
    metrics: fileSink(metricsPath),
    cluster: "c",
    host: "h",
    now: () => new Date("2026-11-24T03:00:00Z"),
  });

  expect(report).toEqual({
    partialsRemoved: [
      "20261121T020000Z-bbbbbb/archive.tar.zst.partial",
      "20261122T020000Z-cccccc/manifest.json.partial",
    ],
    uploadsAborted: [],
    uploadsCompleted: [],
    messagesSent: [],
    incompleteRemoved: ["20261121T020000Z-bbbbbb", "20261122T020000Z-cccccc"],
    abandoned: [
      { backupId: "20261123T020000Z-dddddd", why: expect.stringMatching(/^its outbox cannot be read: /) },
    ],
    pruneFinished: ["20261119T020000Z-ffffff"],
  });
  expect((await readdir(localDir)).sort()).toEqual([
    "20261120T020000Z-aaaaaa",
    "20261124T020000Z-eeeeee",
    "metrics.jsonl",
    "not-a-backup",
  ]);
  const lines = log.lines.map((l) => [l.level, l.message]);
  expect(lines).toContainEqual([
    "warn",
    "could not repair a local backup directory an earlier run left; skipped",
  ]);
  expect(lines).toContainEqual(["warn", "could not list open multipart uploads to abort them"]);
  expect(lines).toContainEqual([
    "error",
    "abandoned a backup an earlier run had staged: it will never be verified",
  ]);
  const metrics = (await readFile(metricsPath, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(metrics.map((m) => [m.name, m.value, m.dimensions])).toEqual([
    ["BackupAbandoned", 1, { Cluster: "c", Host: "h" }],
    ["BackupAbandoned", 1, { Cluster: "c" }],
  ]);
});
