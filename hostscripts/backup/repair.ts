import { open, readFile, readdir, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, type S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import {
  BACKUP_ID_PATTERN,
  MANIFEST_OBJECT,
  parseBackupCreated,
  parseManifest,
  type BackupCreatedMessage,
} from "../../contracts";
import { messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { sendBackupCreated, uploadManifest, type UploadTarget } from "./upload";

/**
 * What a run killed at any step leaves behind, and how the next run repairs it before it starts (the
 * snapshot driver removes stale snapshots and mounts itself). Each local backup directory records its
 * progress in files written before the step they guard:
 *
 * - `<archive>.partial`: the archive being written; complete archives are renamed, so a partial is garbage.
 * - `upload.json`: an open multipart upload (bucket, key, upload id), removed once completed or aborted.
 * - `outbox.json`: the `backup.created` message, written once the archive is complete in S3 and the local
 *   `manifest.json` is written, before the manifest goes up; removed once SQS took the message. The next
 *   run puts the manifest again and sends the message.
 *
 * A directory without `manifest.json` is an incomplete backup: it is deleted, so it never counts among
 * the local backups kept.
 */

/** The open multipart upload a backup records in `upload.json`. */
export interface UploadRecord {
  bucket: string;
  key: string;
  uploadId: string;
}

/** The progress files of a local backup directory. */
export const UPLOAD_RECORD = "upload.json";
export const OUTBOX = "outbox.json";

/** What a repair did, for the log and the tests. */
export interface RepairReport {
  partialsRemoved: string[];
  uploadsAborted: string[];
  messagesSent: string[];
  incompleteRemoved: string[];
}

/** Inputs of `repairAfterCrash`. */
export interface RepairOptions {
  localDir: string;
  /** This host's key prefix (`<prefix>/<cluster>/<host>/`); only uploads below it are aborted. */
  hostPrefix: string;
  bucket: string;
  /** How this host writes objects (SSE-KMS key, retries): the manifest of an unannounced backup is put again. */
  target: UploadTarget;
  queueUrl: string;
  s3: S3Client;
  sqs: SQSClient;
  log: Logger;
}

const backupIdPattern = new RegExp(BACKUP_ID_PATTERN);

/**
 * Repairs what earlier runs left behind. Called with the run lock held, so no other run is mid-way.
 * Failures to reach S3 or SQS are logged and left for the next run: the new backup matters more.
 */
export async function repairAfterCrash(options: RepairOptions): Promise<RepairReport> {
  const report: RepairReport = {
    partialsRemoved: [],
    uploadsAborted: [],
    messagesSent: [],
    incompleteRemoved: [],
  };
  const names = (await readdir(options.localDir, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory() && backupIdPattern.test(entry.name))
    .map((entry) => entry.name)
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
  if (files.includes(UPLOAD_RECORD)) {
    const record = JSON.parse(await readFile(join(dir, UPLOAD_RECORD), "utf8")) as UploadRecord;
    if (await abortUpload(options, record)) {
      report.uploadsAborted.push(record.key);
      await unlink(join(dir, UPLOAD_RECORD));
    }
  }
  let complete = files.includes(MANIFEST_OBJECT) && !files.includes(OUTBOX);
  if (files.includes(OUTBOX)) {
    const outcome = await deliverOutbox(options, dir);
    if (outcome === "sent") report.messagesSent.push(backupId);
    if (outcome === "retry later") return;
    complete = outcome === "sent";
  }
  if (!complete) {
    await rm(dir, { recursive: true, force: true });
    report.incompleteRemoved.push(backupId);
  }
}

/**
 * Finishes a backup whose outbox exists. The outbox is written after the archive upload completed and after
 * the local manifest, so the archive is in S3: the manifest is put again (the same bytes; a replica may
 * write but not read, so it cannot ask whether the first put arrived) and the message is sent.
 */
async function deliverOutbox(
  options: RepairOptions,
  dir: string,
): Promise<"sent" | "incomplete" | "retry later"> {
  const message: BackupCreatedMessage = parseBackupCreated(await readFile(join(dir, OUTBOX), "utf8"));
  const log = options.log.with({ backupId: message.backupId });
  const manifestText = await readFile(join(dir, MANIFEST_OBJECT), "utf8").catch(() => null);
  if (manifestText === null) {
    log.warn("an earlier run stopped before its manifest was written; that backup is incomplete", {
      manifestKey: message.manifestKey,
    });
    return "incomplete";
  }
  try {
    const manifest = parseManifest(JSON.parse(manifestText));
    await uploadManifest(options.s3, options.target, message.manifestKey, manifest, log);
    const messageId = await sendBackupCreated(
      options.sqs,
      options.queueUrl,
      message,
      log,
      options.target.retry,
    );
    await unlink(join(dir, OUTBOX));
    log.info("completed a backup an earlier run uploaded but did not announce", {
      messageId,
      manifestKey: message.manifestKey,
    });
    return "sent";
  } catch (e) {
    log.warn("could not complete an earlier run's backup; the next run tries again", {
      error: messageOf(e),
    });
    return "retry later";
  }
}

/** Aborts one recorded upload; true when it is gone (aborted now, or already completed or aborted). */
async function abortUpload(options: RepairOptions, record: UploadRecord): Promise<boolean> {
  try {
    await options.s3.send(
      new AbortMultipartUploadCommand({ Bucket: record.bucket, Key: record.key, UploadId: record.uploadId }),
    );
    return true;
  } catch (e) {
    if ((e as { name?: string }).name === "NoSuchUpload") return true;
    options.log.warn("could not abort an earlier run's multipart upload; the next run tries again", {
      key: record.key,
      uploadId: record.uploadId,
      error: messageOf(e),
    });
    return false;
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
      if ((await abortUpload(options, record)) && !report.uploadsAborted.includes(upload.Key)) {
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

/** Writes a progress file and fsyncs it: it must outlive a crash of the host, not only of the process. */
export async function writeProgressFile(dir: string, name: string, value: unknown): Promise<void> {
  await writeDurably(join(dir, name), JSON.stringify(value) + "\n");
}

/** Writes `text` to `path` (mode 0600) and fsyncs it before returning. */
export async function writeDurably(path: string, text: string): Promise<void> {
  const file = await open(path, "w", 0o600);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
}
