/**
 * The local half of the crash repair, on real directories: what is deleted, what is kept, and that one
 * unreadable directory does not stop the run. S3 and SQS are real clients aimed at a closed port, so every
 * call to them fails the way an unreachable endpoint does (the integration tests cover the reachable case).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { memoryLogger } from "../../hostscripts/common/log";
import { OUTBOX, repairAfterCrash } from "../../hostscripts/backup/repair";

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

test("deletes partial archives and incomplete backups, keeps complete ones and what it cannot read", async () => {
  await backupDir("20261120T020000Z-aaaaaa", { "manifest.json": "{}", "archive.tar.zst": "z" });
  await backupDir("20261121T020000Z-bbbbbb", { "archive.tar.zst.partial": "half" });
  await backupDir("20261122T020000Z-cccccc", { "archive.tar.zst": "z" });
  await backupDir("20261123T020000Z-dddddd", { "manifest.json": "{}", [OUTBOX]: '{"type": "backup.cr' });
  await mkdir(join(localDir, "not-a-backup"));
  const log = memoryLogger();

  const report = await repairAfterCrash({
    localDir,
    hostPrefix: "backups/c/h/",
    bucket: "b",
    target: { bucket: "b", partSizeMiB: 8, queueSize: 1 },
    queueUrl: "http://127.0.0.1:9/000000000000/q",
    s3: new S3Client({ ...unreachable, forcePathStyle: true }),
    sqs: new SQSClient(unreachable),
    log,
  });

  expect(report).toEqual({
    partialsRemoved: ["20261121T020000Z-bbbbbb/archive.tar.zst.partial"],
    uploadsAborted: [],
    messagesSent: [],
    incompleteRemoved: ["20261121T020000Z-bbbbbb", "20261122T020000Z-cccccc"],
  });
  expect((await readdir(localDir)).sort()).toEqual([
    "20261120T020000Z-aaaaaa",
    "20261123T020000Z-dddddd",
    "not-a-backup",
  ]);
  const messages = log.lines.map((l) => l.message);
  expect(messages).toContain("could not repair a local backup directory an earlier run left; skipped");
  expect(messages).toContain("could not list open multipart uploads to abort them");
});
