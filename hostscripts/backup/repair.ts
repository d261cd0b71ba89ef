import { readdir, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import {
  AbortMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { BACKUP_ID_PATTERN, MANIFEST_OBJECT, archiveObjectsOf, type BackupManifest } from "../../contracts";
import { messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import type { MetricsSink } from "../common/metrics";
import { isNotFound } from "../common/s3";
import { writeDurably } from "../common/durable";
import { ForeignObject, isTaken } from "./create-only";
import { emitAbandoned } from "./metrics";
import { PRUNING_SUFFIX } from "./retention";
import {
  OUTBOX,
  UPLOAD_RECORD,
  readOutbox,
  readUploadRecords,
  type Outbox,
  type RecordedCompletion,
  type UploadRecord,
} from "./staging";
import { completeUpload } from "./multipart";
import { sendBackupCreated, uploadManifest, type UploadTarget } from "./upload";

/**
 * What a run killed at any step leaves behind, and how the next run repairs it before it starts (the
 * snapshot driver removes stale snapshots and mounts itself). A local backup directory says how far its run
 * got (staging.ts):
 *
 * - no `outbox.json`, no `manifest.json`: the backup never reached S3 whole. Its open multipart uploads (the
 *   archive chunks' that `upload.json` records) are aborted and the directory removed: "incomplete".
 * - `outbox.json`: every part of every chunk was up, each upload's completion was recorded in `upload.json`,
 *   and the manifest and message were staged. An upload the kill left open is completed with what was
 *   recorded (create-only), so every chunk exists in S3 (an upload recorded without its completion, by an
 *   earlier release, is aborted instead: "incomplete", as above). Then the backup is completed: the manifest
 *   goes up (create-only: finding this backup's own manifest there is success) and the message is sent
 *   (again, maybe: the verifier gives a duplicate the same one verdict). One that cannot be completed — an archive object in S3 has another size,
 *   the manifest key holds someone else's object, the outbox is unreadable — is "abandoned": an error in the
 *   log and BackupAbandoned, which pages; it is never left to silence.
 * - `manifest.json` alone: complete and announced; kept.
 * - `<backupId>.pruning`: a removal by the retention that was cut short; finished.
 *
 * Every kill point from "archive uploaded" to "message sent" thus ends, after the next run, in an announced
 * backup the verifier verifies, or in an alarmed abandonment (tests/integration/backup-crash.test.ts kills
 * the CLI at each of its log lines and pause points to prove it).
 */

/** What a repair did, for the log and the tests; each list names backup ids unless it says otherwise. */
export interface RepairReport {
  /** `*.partial` files removed, as `<backupId>/<file>`. */
  partialsRemoved: string[];
  /** Keys of open multipart uploads this repair aborted. */
  uploadsAborted: string[];
  /** Keys of open multipart uploads of staged backups this repair completed. */
  uploadsCompleted: string[];
  /** Staged backups completed: manifest in S3, `backup.created` sent. */
  messagesSent: string[];
  /** Backups that never reached S3 whole, removed. */
  incompleteRemoved: string[];
  /** Staged backups that cannot be completed, and why; alarmed with BackupAbandoned. */
  abandoned: Array<{ backupId: string; why: string }>;
  /** Old local backups whose removal by the retention was cut short, removed. */
  pruneFinished: string[];
}

/** Inputs of `repairAfterCrash`. */
export interface RepairOptions {
  localDir: string;
  /** This host's key prefix (`<prefix>/<cluster>/<host>/`); only uploads below it are aborted. */
  hostPrefix: string;
  bucket: string;
  /** How this host writes objects (SSE-KMS key, retries): the manifest of a staged backup is put again. */
  target: UploadTarget;
  queueUrl: string;
  s3: S3Client;
  sqs: SQSClient;
  log: Logger;
  /** Where BackupAbandoned goes, with this host's cluster and name. */
  metrics: MetricsSink;
  cluster: string;
  host: string;
  now: () => Date;
}

const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);
const pruningPattern = new RegExp(BACKUP_ID_PATTERN.replace(/\$$/, `\\${PRUNING_SUFFIX}$`));

/**
 * Repairs what earlier runs left behind. Called with the run lock held, so no other run is mid-way.
 * Failures to reach S3 or SQS are logged and left for the next run: the new backup matters more.
 */
export async function repairAfterCrash(options: RepairOptions): Promise<RepairReport> {
  const report: RepairReport = {
    partialsRemoved: [],
    uploadsAborted: [],
    uploadsCompleted: [],
    messagesSent: [],
    incompleteRemoved: [],
    abandoned: [],
    pruneFinished: [],
  };
  const entries = (await readdir(options.localDir, { withFileTypes: true })).filter((e) => e.isDirectory());
  for (const pruning of entries.filter((e) => pruningPattern.test(e.name))) {
    await rm(join(options.localDir, pruning.name), { recursive: true, force: true });
    report.pruneFinished.push(pruning.name.slice(0, -PRUNING_SUFFIX.length));
  }
  const names = entries
    .map((entry) => entry.name)
    .filter((name) => backupIdPattern.test(name))
    .sort();
  for (const backupId of names) {
    try {
      await repairBackupDir(options, backupId, report);
    } catch (e) {
      // One unreadable directory must not stop every future backup: it is left for a person.
      options.log.warn("could not repair a local backup directory an earlier run left; skipped", {
        directory: join(options.localDir, backupId),
        error: messageOf(e),
        hint: "look at its files; remove the directory if the backup is not needed",
      });
    }
  }
  await abortListedUploads(options, report);
  if (report.abandoned.length > 0) {
    await emitAbandoned(options.metrics, options.log, options, report.abandoned.length, options.now());
  }
  const changed = Object.values(report).some((list) => list.length > 0);
  if (changed) options.log.warn("repaired what an earlier run left behind", { ...report });
  return report;
}

async function repairBackupDir(
  options: RepairOptions,
  backupId: string,
  report: RepairReport,
): Promise<void> {
  const dir = join(options.localDir, backupId);
  const files = await readdir(dir);
  for (const partial of files.filter((f) => f.endsWith(".partial"))) {
    await unlink(join(dir, partial));
    report.partialsRemoved.push(`${backupId}/${partial}`);
  }
  const staged = files.includes(OUTBOX);
  const upload = files.includes(UPLOAD_RECORD) ? await settleUpload(options, dir, staged, report) : "none";
  if (upload === "unknown") return;
  if (upload === "foreign")
    return abandon(options, backupId, report, "an archive key holds someone else's object");
  if (staged && upload !== "aborted") return completeStaged(options, backupId, report);
  if (!staged && files.includes(MANIFEST_OBJECT)) return;
  await rm(dir, { recursive: true, force: true });
  report.incompleteRemoved.push(backupId);
  options.log.info("removed a backup an earlier run did not finish; nothing of it is in S3", {
    backupId,
    why: staged ? "its archive upload was never completed" : "it stopped before its archive was complete",
  });
}

/**
 * The uploads `upload.json` records, each settled: of a staged backup, completed with its recorded completion
 * (an upload completed before, or aborted, is "gone"); otherwise aborted. The outcome: "aborted" when one was
 * still open and is aborted now, "gone" when every one is completed (now or before) or gone, "foreign" when
 * an archive key holds someone else's object, "unknown" when S3 could not be asked (the next run tries again).
 */
async function settleUpload(
  options: RepairOptions,
  dir: string,
  staged: boolean,
  report: RepairReport,
): Promise<"aborted" | "gone" | "foreign" | "unknown"> {
  const outcomes: string[] = [];
  for (const record of await readUploadRecords(dir)) {
    if (staged && record.completion) {
      const outcome = await completeRecorded(options, record, record.completion);
      if (outcome === "completed") report.uploadsCompleted.push(record.key);
      outcomes.push(outcome === "completed" ? "gone" : outcome);
      continue;
    }
    const outcome = await abortUpload(options, record);
    if (outcome === "aborted") report.uploadsAborted.push(record.key);
    outcomes.push(outcome);
  }
  for (const worst of ["foreign", "unknown"] as const) if (outcomes.includes(worst)) return worst;
  await unlink(join(dir, UPLOAD_RECORD));
  return outcomes.includes("aborted") ? "aborted" : "gone";
}

/**
 * Completes a staged backup's upload with its recorded completion: "completed" now, "gone" when S3 no longer
 * knows the upload (completed before: settled create-only), "foreign" when the key holds someone else's
 * object, or "unknown".
 */
async function completeRecorded(
  options: RepairOptions,
  record: UploadRecord,
  completion: RecordedCompletion,
): Promise<"completed" | "gone" | "foreign" | "unknown"> {
  try {
    await completeUpload(options.s3, record, completion, options.log, options.target.retry);
    return "completed";
  } catch (e) {
    if (e instanceof ForeignObject) return "foreign";
    if (isTaken(e)) return "gone";
    options.log.warn("could not complete an earlier run's multipart upload; the next run tries again", {
      key: record.key,
      uploadId: record.uploadId,
      error: messageOf(e),
    });
    return "unknown";
  }
}

/**
 * Completes a staged backup whose archive upload is no longer open: puts the manifest (create-only) and
 * sends the message, or abandons the backup when that cannot be done.
 */
async function completeStaged(options: RepairOptions, backupId: string, report: RepairReport): Promise<void> {
  const dir = join(options.localDir, backupId);
  const log = options.log.with({ backupId });
  let outbox: Outbox;
  try {
    outbox = await readOutbox(dir);
  } catch (e) {
    return abandon(options, backupId, report, `its outbox cannot be read: ${messageOf(e)}`);
  }
  const archive = await archiveInS3(options, outbox.manifest);
  if (archive === "absent") {
    await rm(dir, { recursive: true, force: true });
    report.incompleteRemoved.push(backupId);
    log.info("removed a staged backup whose archive never completed in S3", {
      archiveKeys: archiveObjectsOf(outbox.manifest).map((o) => o.key),
    });
    return;
  }
  if (archive !== "present" && archive !== "unknown") return abandon(options, backupId, report, archive);
  try {
    await writeDurably(join(dir, MANIFEST_OBJECT), JSON.stringify(outbox.manifest, null, 2) + "\n");
    await uploadManifest(options.s3, options.target, outbox.message.manifestKey, outbox.manifest, log);
    const messageId = await sendBackupCreated(
      options.sqs,
      options.queueUrl,
      outbox.message,
      log,
      options.target.retry,
    );
    await unlink(join(dir, OUTBOX));
    report.messagesSent.push(backupId);
    log.info(
      "announced a backup an earlier run had staged (a duplicate of its message gets the same verdict)",
      {
        messageId,
        manifestKey: outbox.message.manifestKey,
      },
    );
  } catch (e) {
    if (e instanceof ForeignObject) return abandon(options, backupId, report, e.message);
    log.warn("could not complete an earlier run's backup; the next run tries again", { error: messageOf(e) });
  }
}

/**
 * Whether the staged backup's archive is in S3: "present" when every archive object is there with the
 * manifest's size, "absent" when one is missing, "unknown" when HEAD is not allowed or fails (the backup is
 * then announced and the verifier judges it), or why an object there is not this backup's.
 */
async function archiveInS3(options: RepairOptions, manifest: BackupManifest): Promise<string> {
  let unknown = false;
  for (const { key, bytes } of archiveObjectsOf(manifest)) {
    try {
      const head = await options.s3.send(new HeadObjectCommand({ Bucket: options.bucket, Key: key }));
      if (head.ContentLength !== bytes)
        return `the archive object s3://${options.bucket}/${key} holds ${head.ContentLength} bytes, its manifest says ${bytes}`;
    } catch (e) {
      if (isNotFound(e)) return "absent";
      options.log.info("cannot tell whether a staged backup's archive is in S3; announcing it", {
        key,
        error: messageOf(e),
        hint: "the verifier checks it; grant the replica s3:GetObject on its own prefix to have it checked here",
      });
      unknown = true;
    }
  }
  return unknown ? "unknown" : "present";
}

/** Gives a staged backup up for good: removed locally, logged as an error and counted for BackupAbandoned. */
async function abandon(
  options: RepairOptions,
  backupId: string,
  report: RepairReport,
  why: string,
): Promise<void> {
  await rm(join(options.localDir, backupId), { recursive: true, force: true });
  report.abandoned.push({ backupId, why });
  options.log.error("abandoned a backup an earlier run had staged: it will never be verified", {
    backupId,
    why,
    hint: "whatever of it is in S3 stays unannounced until the lifecycle expires it; the backup just taken replaces it",
  });
}

/** Aborts one recorded upload: "aborted" now, "gone" (already completed or aborted), or "unknown". */
async function abortUpload(
  options: RepairOptions,
  record: UploadRecord,
): Promise<"aborted" | "gone" | "unknown"> {
  try {
    await options.s3.send(
      new AbortMultipartUploadCommand({ Bucket: record.bucket, Key: record.key, UploadId: record.uploadId }),
    );
    return "aborted";
  } catch (e) {
    if ((e as { name?: string }).name === "NoSuchUpload") return "gone";
    options.log.warn("could not abort an earlier run's multipart upload; the next run tries again", {
      key: record.key,
      uploadId: record.uploadId,
      error: messageOf(e),
    });
    return "unknown";
  }
}

/**
 * Aborts the open multipart uploads below this host's prefix that S3 lists: the ones a run killed before
 * it could record them. Runs with the run lock held, so none of them belongs to a live run of this host.
 */
async function abortListedUploads(options: RepairOptions, report: RepairReport): Promise<void> {
  try {
    const listed = await options.s3.send(
      new ListMultipartUploadsCommand({ Bucket: options.bucket, Prefix: options.hostPrefix }),
    );
    for (const upload of listed.Uploads ?? []) {
      if (!upload.Key?.startsWith(options.hostPrefix) || !upload.UploadId) continue;
      const record = { bucket: options.bucket, key: upload.Key, uploadId: upload.UploadId };
      if ((await abortUpload(options, record)) === "aborted" && !report.uploadsAborted.includes(upload.Key)) {
        report.uploadsAborted.push(upload.Key);
      }
    }
  } catch (e) {
    // Not fatal: the bucket's lifecycle rule aborts incomplete uploads after a day anyway. The managed
    // replica role is deliberately not granted ListBucketMultipartUploads (IAM cannot limit it to a
    // prefix, so it would reveal other clusters' keys): there a refusal is expected, not news.
    const denied = (e as { name?: string }).name === "AccessDenied";
    options.log[denied ? "info" : "warn"]("could not list open multipart uploads to abort them", {
      prefix: options.hostPrefix,
      error: messageOf(e),
    });
  }
}
