/**
 * Crash safety, for real: the CLI is paused at each named point (`tests/support/pausing-cli.ts`, the CLI
 * with a checkpoint that stops at MYSQL_BACKUP_PAUSE_AT), killed with SIGKILL there, and the next run must
 * repair what it left (run lock, snapshot, partial archive, open multipart upload, unsent message) and then
 * succeed with an archive in S3 whose sha256 is the manifest's. MariaDB, btrfs, zstd and fauxqs are all real.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { access, readFile, readdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GetObjectCommand, UploadPartCommand, type S3Client } from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { parseBackupConfig, parseBackupCreated, parseManifest, type BackupConfig } from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import { RUN_LOCK_FILE, runBackup, type BackupDeps } from "../../hostscripts/backup/run";
import { PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";
import { OUTBOX, UPLOAD_RECORD, type UploadRecord } from "../../hostscripts/backup/repair";
import type { PausePoint } from "../../hostscripts/common/checkpoint";
import { withLab } from "../support/lab";

const lab = withLab();
const PAUSING_CLI = resolve(__dirname, "..", "support", "pausing-cli.ts");
const BACKUP_ID = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;

let config: BackupConfig;
let configPath: string;
let deps: BackupDeps;

beforeAll(async () => {
  const base = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  // 5 MiB parts, one at a time, so the lab's archive goes up in several parts and "upload" is mid-way.
  config = { ...base, s3: { ...base.s3, partSizeMiB: 5, queueSize: 1 }, keepLocal: 10 };
  configPath = join(lab().dir, "backup-crash.json");
  await writeFile(configPath, JSON.stringify(config));
  deps = await backupDeps(config, memoryLogger());
});

/** The CLI, paused at `point`: resolves once it wrote the marker, i.e. stands exactly there. */
async function cliPausedAt(point: PausePoint): Promise<ChildProcess> {
  const marker = join(lab().dir, `paused-${point}`);
  const cli = ["--require", require.resolve("tsx/cjs"), PAUSING_CLI];
  const child = spawn(process.execPath, [...cli, "backup", "--config", configPath], {
    env: { ...process.env, MYSQL_BACKUP_PAUSE_AT: point, MYSQL_BACKUP_PAUSE_MARKER: marker },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (t: string) => (stderr = (stderr + t).slice(-4000)));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`the CLI exited ${child.exitCode} before "${point}": ${stderr}`);
    if (await exists(marker)) return child;
    await sleep(50);
  }
  child.kill("SIGKILL");
  throw new Error(`the CLI did not reach "${point}" within 60 s: ${stderr}`);
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function localBackups(): Promise<string[]> {
  return (await readdir(config.localDir)).filter((n) => BACKUP_ID.test(n)).sort();
}

async function filesOf(backupId: string): Promise<string[]> {
  return readdir(join(config.localDir, backupId)).catch(() => []);
}

async function snapshotsLeft(): Promise<string[]> {
  return (await readdir(lab().snapshotDir)).filter((n) => n.startsWith("mysql-backup-"));
}

async function sha256Of(s3: S3Client, key: string): Promise<string> {
  const object = await s3.send(new GetObjectCommand({ Bucket: config.s3.bucket, Key: key }));
  const hash = createHash("sha256");
  for await (const chunk of object.Body as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest("hex");
}

async function manifestOf(s3: S3Client, key: string) {
  const object = await s3.send(new GetObjectCommand({ Bucket: config.s3.bucket, Key: key }));
  return parseManifest(JSON.parse(await object.Body!.transformToString()));
}

/** Every backup.created message in the queue, drained. */
async function drainMessages(sqs: SQSClient): Promise<string[]> {
  const ids: string[] = [];
  for (;;) {
    const got = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
      }),
    );
    if (!got.Messages?.length) return ids;
    for (const m of got.Messages) {
      ids.push(parseBackupCreated(m.Body!).backupId);
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
    }
  }
}

/** The run after a crash: it repairs, then succeeds with an archive in S3 that matches its manifest. */
async function nextRunRepairsAndSucceeds(): Promise<string> {
  const result = await runBackup(config, deps);
  const manifest = await manifestOf(deps.s3, result.manifestKey);
  expect(await sha256Of(deps.s3, result.archiveKey)).toBe(manifest.archive.sha256);
  expect(manifest.archive.sha256).toBe(result.archiveSha256);
  expect(await snapshotsLeft()).toEqual([]);
  expect(await exists(join(config.localDir, RUN_LOCK_FILE))).toBe(false);
  for (const id of await localBackups()) {
    const files = await filesOf(id);
    expect(files.filter((f) => f.endsWith(".partial") || f === OUTBOX || f === UPLOAD_RECORD)).toEqual([]);
    expect(files).toContain("manifest.json");
  }
  return result.backupId;
}

afterEach(async () => {
  await drainMessages(deps.sqs);
});

test("killed holding only the run lock: the stale lock is taken over", async () => {
  const child = await cliPausedAt("started");
  const lock = JSON.parse(await readFile(join(config.localDir, RUN_LOCK_FILE), "utf8")) as { pid: number };
  expect(lock.pid).toBe(child.pid);
  await kill9(child);
  await nextRunRepairsAndSucceeds();
}, 90_000);

test("a second run while one is alive exits AlreadyRunning (12); killed under FTWRL, the next run succeeds", async () => {
  const child = await cliPausedAt("locked");
  const second = await runBackup(config, deps).catch((e: unknown) => e);
  expect(second).toBeInstanceOf(PipelineError);
  expect((second as PipelineError).exitCode).toBe(12);
  expect((second as PipelineError).message).toContain(`pid ${child.pid}`);
  await kill9(child);
  // The server ends the killed client's session and with it the global read lock: the next run's own
  // FTWRL is granted within its lock timeout, or it would fail with LockTimeout.
  await nextRunRepairsAndSucceeds();
}, 90_000);

test("killed with the snapshot present: the next run deletes it (only this tool's)", async () => {
  const child = await cliPausedAt("snapshot");
  await kill9(child);
  const left = await snapshotsLeft();
  expect(left).toHaveLength(1);
  const [crashed] = await localBackups().then((ids) => ids.slice(-1));
  expect(left[0]).toBe(`mysql-backup-${crashed}`);
  await nextRunRepairsAndSucceeds();
  expect(await localBackups()).not.toContain(crashed);
}, 90_000);

test("killed with the archive half written: the partial archive, its directory and the upload following it go", async () => {
  const child = await cliPausedAt("archive");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  // The upload follows the archive, so its multipart upload is already open and recorded.
  expect((await filesOf(crashed)).sort()).toEqual(["archive.tar.zst.partial", UPLOAD_RECORD].sort());
  const record = await uploadRecordOf(crashed);
  await nextRunRepairsAndSucceeds();
  expect(await localBackups()).not.toContain(crashed);
  expect(await latePartError(record)).toBe("NoSuchUpload");
}, 90_000);

test("killed mid-upload: the open multipart upload is aborted", async () => {
  const child = await cliPausedAt("upload");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  const record = await uploadRecordOf(crashed);
  await nextRunRepairsAndSucceeds();
  expect(await localBackups()).not.toContain(crashed);
  expect(await latePartError(record)).toBe("NoSuchUpload");
}, 90_000);

async function uploadRecordOf(backup: string): Promise<UploadRecord> {
  return JSON.parse(await readFile(join(config.localDir, backup, UPLOAD_RECORD), "utf8")) as UploadRecord;
}

/** The error name S3 gives a part sent to the recorded upload: an aborted upload takes no more parts. */
async function latePartError(record: UploadRecord): Promise<string | undefined> {
  const part = await deps.s3
    .send(
      new UploadPartCommand({
        Bucket: record.bucket,
        Key: record.key,
        UploadId: record.uploadId,
        PartNumber: 2,
        Body: Buffer.from("late part"),
      }),
    )
    .catch((e: unknown) => e);
  return (part as { name?: string }).name;
}

test("killed after the upload, before the message: the outbox delivers it, and that backup stays", async () => {
  const child = await cliPausedAt("signal");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  expect(await filesOf(crashed)).toContain(OUTBOX);
  const outbox = parseBackupCreated(await readFile(join(config.localDir, crashed, OUTBOX), "utf8"));
  expect(await drainMessages(deps.sqs)).toEqual([]);

  const next = await nextRunRepairsAndSucceeds();
  expect((await drainMessages(deps.sqs)).sort()).toEqual([crashed, next].sort());
  expect(await localBackups()).toContain(crashed);
  const manifest = await manifestOf(deps.s3, outbox.manifestKey);
  expect(await sha256Of(deps.s3, manifest.archive.key)).toBe(manifest.archive.sha256);
  expect(outbox.archiveSha256).toBe(manifest.archive.sha256);
}, 90_000);
