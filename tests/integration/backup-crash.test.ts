/**
 * Crash safety, for real: the CLI is paused at each named point or frozen right after one of its log lines
 * (`tests/support/pausing-cli.ts`), killed with SIGKILL there, and the next run must repair what it left
 * (run lock, snapshot, partial archive, open multipart upload, unsent message, cut-short prune) and then
 * succeed with an archive in S3 whose sha256 is the manifest's. The sweep kills a backup at every one of its
 * log lines and pause points and proves each ends verified, never in S3, or abandoned with an alarm.
 * MariaDB, btrfs, zstd and fauxqs are all real.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { access, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { $ } from "zx";
import {
  archiveObjectsOf,
  backupIdTime,
  backupPrefix,
  manifestKey,
  parseBackupConfig,
  parseBackupCreated,
  parseManifest,
  verificationKey,
  type BackupConfig,
  type BackupCreatedMessage,
} from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import type { RepairReport } from "../../hostscripts/backup/repair";
import { RETENTION_STATE, utcMonth } from "../../hostscripts/backup/retention-class";
import { RUN_LOCK_FILE, runBackup, type BackupDeps } from "../../hostscripts/backup/run";
import { PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";
import {
  OUTBOX,
  UPLOAD_RECORD,
  readOutbox,
  readUploadRecords,
  type UploadRecord,
} from "../../hostscripts/backup/staging";
import { PAUSE_POINTS, type PausePoint } from "../../hostscripts/common/checkpoint";
import { fileSink } from "../../hostscripts/common/metrics";
import { checkManifestKey } from "../../hostscripts/verify/daemon";
import { verifyAndReport } from "../../hostscripts/verify/verification";
import { enforceCreateOnly } from "../support/create-only-s3";
import { withLab } from "../support/lab";
import { labVerifyConfig } from "./verify-support";

const lab = withLab();
const PAUSING_CLI = resolve(__dirname, "..", "support", "pausing-cli.ts");
const BACKUP_ID = /^\d{8}T\d{6}Z-[0-9a-f]{6}$/;

let config: BackupConfig;
let configPath: string;
let deps: BackupDeps;
/** The retention tag of every object the in-process runs created, by key. */
let tagsSent: Map<string, string | undefined>;

beforeAll(async () => {
  const base = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  // 5 MiB parts, one at a time, so the lab's archive goes up in several parts and "upload" is mid-way.
  config = { ...base, s3: { ...base.s3, partSizeMiB: 5, queueSize: 1 }, keepLocal: 10 };
  configPath = join(lab().dir, "backup-crash.json");
  await writeFile(configPath, JSON.stringify(config));
  deps = await backupDeps(config, memoryLogger());
  // The emulator overwrites where S3 refuses (If-None-Match: *): the runs here get S3's answer.
  enforceCreateOnly(deps.s3);
  tagsSent = recordTagging(deps.s3);
});

/** Records the `x-amz-tagging` header of each write that creates an object, as the SDK sent it. */
function recordTagging(s3: S3Client): Map<string, string | undefined> {
  const sent = new Map<string, string | undefined>();
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const key = (args.input as { Key?: string }).Key;
      if (key && ["CreateMultipartUploadCommand", "PutObjectCommand"].includes(String(context.commandName)))
        sent.set(key, (args.request as { headers: Record<string, string> }).headers["x-amz-tagging"]);
      return next(args);
    },
    { step: "finalizeRequest", priority: "low", name: "recordTagging" },
  );
  return sent;
}

/** The CLI, paused at `point`: resolves once it wrote the marker, i.e. stands exactly there. */
async function cliPausedAt(point: PausePoint): Promise<ChildProcess> {
  const stopped = await cliStoppedAt(point, configPath);
  if (stopped === null) throw new Error(`the CLI finished without reaching "${point}"`);
  return stopped.child;
}

/**
 * The CLI with `config`, stopped at `point` (a pause point or `line:<n>`): its process and the marker's
 * text (for a line, the log line itself); null when it finished (exit 0) without getting there.
 */
async function cliStoppedAt(
  point: string,
  config: string,
): Promise<{ child: ChildProcess; marker: string } | null> {
  const marker = join(lab().dir, `paused-${point.replace(":", "-")}`);
  await rm(marker, { force: true });
  const cli = ["--require", require.resolve("tsx/cjs"), PAUSING_CLI];
  const child = spawn(process.execPath, [...cli, "backup", "--config", config], {
    env: { ...process.env, MYSQL_BACKUP_PAUSE_AT: point, MYSQL_BACKUP_PAUSE_MARKER: marker },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (t: string) => (stderr = (stderr + t).slice(-4000)));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (await exists(marker)) return { child, marker: await readFile(marker, "utf8") };
    if (child.exitCode === 0) return null;
    if (child.exitCode !== null)
      throw new Error(`the CLI exited ${child.exitCode} before "${point}": ${stderr}`);
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
  for (const object of archiveObjectsOf(manifest))
    expect(await sha256Of(deps.s3, object.key)).toBe(object.sha256);
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

test("a second run while one is alive exits AlreadyRunning (12); killed inside the lock window, the next run succeeds", async () => {
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

test("killed with the archive half written: the partial chunk, its directory and the upload following it go", async () => {
  const child = await cliPausedAt("archive");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  // The upload follows the archive, so the first chunk's multipart upload is already open and recorded.
  expect((await filesOf(crashed)).sort()).toEqual(["archive-0001.tar.zst.partial", UPLOAD_RECORD].sort());
  const records = await uploadRecordsOf(crashed);
  expect(records.map((r) => r.key)).toEqual([expect.stringMatching(/archive-0001\.tar\.zst$/)]);
  await nextRunRepairsAndSucceeds();
  expect(await localBackups()).not.toContain(crashed);
  expect(await latePartError(records[0])).toBe("NoSuchUpload");
}, 90_000);

test("killed mid-upload: every open multipart upload is aborted", async () => {
  const child = await cliPausedAt("upload");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  const records = await uploadRecordsOf(crashed);
  await nextRunRepairsAndSucceeds();
  expect(await localBackups()).not.toContain(crashed);
  for (const record of records) expect(await latePartError(record)).toBe("NoSuchUpload");
}, 90_000);

test("killed once the publication is staged, before the uploads complete: the next run completes them and announces it", async () => {
  const child = await cliPausedAt("sealed");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  expect(await filesOf(crashed)).toContain(OUTBOX);
  const records = await uploadRecordsOf(crashed);
  expect(records.length).toBeGreaterThan(1);
  expect(records.every((r) => r.completion !== undefined)).toBe(true);
  for (const record of records) expect(await objectExists(record.key)).toBe(false);
  // Read before the next run: once it completes the backup, only manifest.json stays in the directory.
  const outbox = (await readOutbox(join(config.localDir, crashed))).message;
  const next = await nextRunRepairsAndSucceeds();
  expect((await drainMessages(deps.sqs)).sort()).toEqual([crashed, next].sort());
  const manifest = await manifestOf(deps.s3, outbox.manifestKey);
  for (const object of archiveObjectsOf(manifest))
    expect(await sha256Of(deps.s3, object.key)).toBe(object.sha256);
}, 90_000);

async function uploadRecordsOf(backup: string): Promise<UploadRecord[]> {
  return readUploadRecords(join(config.localDir, backup));
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
  const outbox = (await readOutbox(join(config.localDir, crashed))).message;
  expect(await drainMessages(deps.sqs)).toEqual([]);

  const next = await nextRunRepairsAndSucceeds();
  expect((await drainMessages(deps.sqs)).sort()).toEqual([crashed, next].sort());
  expect(await localBackups()).toContain(crashed);
  const manifest = await manifestOf(deps.s3, outbox.manifestKey);
  for (const object of archiveObjectsOf(manifest))
    expect(await sha256Of(deps.s3, object.key)).toBe(object.sha256);
  expect(outbox.archiveSha256).toBe(manifest.archive.sha256);
}, 90_000);

test("killed once the archive is complete, before its manifest: the repair tags the manifest with the archive's class", async () => {
  // The month is free, so the killed backup is the month's monthly; it is complete only once repaired.
  await rm(join(config.localDir, RETENTION_STATE), { force: true });
  const child = await cliPausedAt("uploaded");
  await kill9(child);
  const crashed = (await localBackups()).at(-1)!;
  const staged = await readOutbox(join(config.localDir, crashed));
  expect(staged.manifest.retention).toBe("monthly");
  for (const object of archiveObjectsOf(staged.manifest)) expect(await objectExists(object.key)).toBe(true);
  expect(await objectExists(staged.message.manifestKey)).toBe(false);
  expect(await exists(join(config.localDir, RETENTION_STATE))).toBe(false);

  const next = await runBackup(config, deps);
  expect(await drainMessages(deps.sqs)).toEqual(expect.arrayContaining([crashed, next.backupId]));
  // The repair put the staged manifest with the class its archive was created with, not the new run's…
  expect(tagsSent.get(staged.message.manifestKey)).toBe("retention=monthly");
  expect((await manifestOf(deps.s3, staged.message.manifestKey)).retention).toBe("monthly");
  // …and the repaired backup took its month, so the new one is daily (monthly only across a month's turn).
  const month = (id: string) => utcMonth(backupIdTime(id));
  const expected = month(next.backupId) === month(crashed) ? "daily" : "monthly";
  expect(next.retention).toBe(expected);
  for (const key of next.archiveKeys) expect(tagsSent.get(key)).toBe(`retention=${expected}`);
  expect(tagsSent.get(next.manifestKey)).toBe(`retention=${expected}`);
  expect(JSON.parse(await readFile(join(config.localDir, RETENTION_STATE), "utf8"))).toEqual({
    month: month(expected === "daily" ? crashed : next.backupId),
    backupId: expected === "daily" ? crashed : next.backupId,
  });
}, 90_000);

/** What became of a backup killed at one point, once the next run is over. */
interface SweepOutcome {
  /** The pause point, or `line:<n> <message>`. */
  at: string;
  backupId: string | null;
  /** Its archive was in S3 when it was killed. */
  archiveAtKill: boolean;
  end: "verified" | "abandoned" | "never in S3" | "SILENT";
  /** What the next run's repair said about it. */
  repair: string;
}

test("killed at each of its log lines and pause points, a backup ends verified, never in S3, or abandoned with an alarm", async () => {
  const sweep: BackupConfig = { ...config, keepLocal: 1 };
  const sweepPath = join(lab().dir, "backup-sweep.json");
  await writeFile(sweepPath, JSON.stringify(sweep));
  // A finished backup first, so that every run has one to prune.
  await runBackup(sweep, deps);
  await drainMessages(deps.sqs);
  const outcomes: SweepOutcome[] = [];
  for (let n = 1; ; n++) {
    const outcome = await killAndRecover(sweep, sweepPath, `line:${n}`);
    if (outcome === null) break;
    outcomes.push(outcome);
  }
  for (const point of PAUSE_POINTS) outcomes.push((await killAndRecover(sweep, sweepPath, point))!);
  console.log(
    `kill sweep, ${outcomes.length} points:\n` +
      outcomes
        .map((o) => `${o.end.padEnd(12)} ${o.archiveAtKill ? "in S3 " : "      "} ${o.at}  [${o.repair}]`)
        .join("\n"),
  );
  expect(outcomes.filter((o) => o.end === "SILENT")).toEqual([]);
  // The sweep reached every stage: killed before the archive existed in S3, and after.
  expect(outcomes.filter((o) => o.end === "never in S3").length).toBeGreaterThan(5);
  expect(outcomes.filter((o) => o.archiveAtKill && o.end === "verified").length).toBeGreaterThan(5);
}, 1_200_000);

/**
 * Kills the CLI at `point`, runs the next backup in-process and judges the killed backup's end (see
 * SweepOutcome); null when the CLI finished before `point` (no such log line).
 */
async function killAndRecover(
  sweep: BackupConfig,
  sweepPath: string,
  point: string,
): Promise<SweepOutcome | null> {
  const before = new Set(await localBackups());
  const stopped = await cliStoppedAt(point, sweepPath);
  if (stopped === null) return null;
  await kill9(stopped.child);
  const line = point.startsWith("line:")
    ? (JSON.parse(stopped.marker.split("\n")[1]) as { message: string; backupId?: string })
    : null;
  const backupId = line?.backupId ?? (await localBackups()).find((id) => !before.has(id)) ?? null;
  const at = line ? `${point} "${line.message}"` : point;
  const archive = backupId === null ? [] : await archiveObjectsIn(backupId);
  const archiveAtKill = archive.length > 0;
  const sent = await drainMessageBodies(deps.sqs);
  const abandonedBefore = await abandonedMetrics();

  const log = memoryLogger();
  const next = await runBackup(sweep, { ...deps, log });
  sent.push(...(await drainMessageBodies(deps.sqs)));
  const report = log.lines.find((l) => l.message === "repaired what an earlier run left behind") as
    (RepairReport & { message: string }) | undefined;
  const mentions = report
    ? (Object.keys(report) as Array<keyof RepairReport>)
        .filter((k) => Array.isArray(report[k]) && JSON.stringify(report[k]).includes(backupId ?? "-"))
        .join(", ")
    : "";
  // Names what it did precisely: nothing complete in S3 counts as incomplete or aborted; a prune is a prune.
  if (archiveAtKill) {
    expect(report?.incompleteRemoved ?? []).not.toContain(backupId);
    for (const key of archive) expect(report?.uploadsAborted ?? []).not.toContain(key);
  }
  for (const removed of report?.incompleteRemoved ?? []) expect(await archiveObjectsIn(removed)).toEqual([]);
  if (point === "pruning") expect(report?.pruneFinished).toHaveLength(1);

  const announced = sent.filter((m) => m.backupId === backupId);
  const abandoned = report?.abandoned.some((a) => a.backupId === backupId) ?? false;
  let end: SweepOutcome["end"];
  if (abandoned) {
    expect(announced).toEqual([]);
    expect(await abandonedMetrics()).toBeGreaterThan(abandonedBefore);
    end = "abandoned";
  } else if (announced.length > 0) {
    const verdict = await verifyAnnounced(announced[0]);
    expect(`${backupId}: ${verdict}`).toBe(`${backupId}: verified`);
    end = "verified";
  } else {
    end = backupId !== null && (await archiveObjectsIn(backupId)).length > 0 ? "SILENT" : "never in S3";
  }
  await removeObjects([backupId, next.backupId]);
  return { at, backupId, archiveAtKill, end, repair: mentions };
}

/** The archive objects (chunks) of a backup that exist in S3. */
async function archiveObjectsIn(backupId: string): Promise<string[]> {
  const prefix = backupPrefix({ prefix: "backups", cluster: config.cluster, host: config.host, backupId });
  const listed = await deps.s3.send(new ListObjectsV2Command({ Bucket: config.s3.bucket, Prefix: prefix }));
  return (listed.Contents ?? []).flatMap((o) =>
    o.Key && /\/archive-\d{4,}\.tar\.zst$/.test(o.Key) ? [o.Key] : [],
  );
}

async function objectExists(key: string): Promise<boolean> {
  return deps.s3.send(new HeadObjectCommand({ Bucket: config.s3.bucket, Key: key })).then(
    () => true,
    () => false,
  );
}

/** Every backup.created message in the queue, drained, as messages. */
async function drainMessageBodies(sqs: SQSClient): Promise<BackupCreatedMessage[]> {
  const messages: BackupCreatedMessage[] = [];
  for (;;) {
    const got = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: config.sqs.queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
      }),
    );
    if (!got.Messages?.length) return messages;
    for (const m of got.Messages) {
      messages.push(parseBackupCreated(m.Body!));
      await sqs.send(
        new DeleteMessageCommand({ QueueUrl: config.sqs.queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
    }
  }
}

/** BackupAbandoned data points written so far. */
async function abandonedMetrics(): Promise<number> {
  const text = await readFile(lab().metricsPath, "utf8").catch(() => "");
  return text.split("\n").filter((l) => l.includes('"BackupAbandoned"')).length;
}

/** The verdict of a real verification (download, restore into a scratch server, checks) of an announced backup. */
async function verifyAnnounced(message: BackupCreatedMessage): Promise<string> {
  const result = await verifyAndReport(await labVerifyConfig(lab()), message, checkManifestKey(message), {
    s3: deps.s3,
    $: $({ quiet: true }),
    metrics: fileSink(lab().metricsPath),
    log: memoryLogger(),
    now: () => new Date(),
    hostname: "kill-sweep",
  });
  return result.verdict ?? result.outcome;
}

/** Removes the objects of these backups, so the emulator's memory stays small over the sweep. */
async function removeObjects(backupIds: Array<string | null>): Promise<void> {
  for (const backupId of backupIds) {
    if (backupId === null) continue;
    const ref = { prefix: "backups", cluster: config.cluster, host: config.host, backupId };
    for (const Key of [...(await archiveObjectsIn(backupId)), manifestKey(ref), verificationKey(ref)])
      await deps.s3.send(new DeleteObjectCommand({ Bucket: config.s3.bucket, Key }));
  }
}
