import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import {
  parseBackupCreated,
  parseManifest,
  type BackupConfig,
  type BackupCreatedMessage,
  type BackupManifest,
  type RetentionClass,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { DEFAULT_RETRY, withRetries, type RetryPolicy } from "../common/retry";
import { ForeignObject, intendedBody, isTaken, settleTaken } from "./create-only";
import { retentionTagging } from "./retention-class";

/**
 * Steps 7–9: where and how objects are written, then `manifest.json` — last, because a backup without a
 * manifest is incomplete by definition — and the `backup.created` message (the archive's chunks go up in
 * multipart.ts). Every object is sent with SSE-KMS and an S3 checksum, which object lock demands, and is
 * created only if its key is free (`If-None-Match: *`, create-only.ts): nothing a replica wrote is replaced.
 * The archive's parts are sent with the S3 client directly rather than lib-storage's `Upload`, which builds
 * every part by concatenating stream chunks (several times the part size in memory per part in flight);
 * reading each part into a reused buffer keeps the upload at exactly its budget.
 */

/** Where and how objects are written (from config `s3`). */
export interface UploadTarget {
  bucket: string;
  /** The KMS key for SSE-KMS; the bucket's default key when absent. */
  kmsKeyId?: string;
  /** Multipart part size in MiB. */
  partSizeMiB: number;
  /** Parts uploaded at once. */
  queueSize: number;
  /** How each call (each part on its own) is retried. Defaults to DEFAULT_RETRY. */
  retry?: RetryPolicy;
  /** The archive is created tagged `retention=<class>` (retention-class.ts); untagged when absent. */
  retention?: RetentionClass;
}

/**
 * The default part size: 4 parts of 16 MiB in flight fill the memory budget, and 10,000 of them cover a
 * 156 GiB archive before the size is raised.
 */
const DEFAULT_PART_SIZE_MIB = 16;

/** Parts in flight when the config does not say (`s3.queueSize`): as many as the budget holds at 16 MiB. */
const DEFAULT_QUEUE_SIZE = 4;

/** S3 allows at most this many parts in one upload. */
const MAX_PARTS = 10_000;
const MiB = 1024 * 1024;

/**
 * Parts are read straight from the archive into one buffer per upload slot, reused part after part, so the
 * upload holds exactly `parts in flight × part size` in memory and makes no garbage. The slots are capped
 * by this budget, so a generous config cannot push the agent past its memory target (256 MB peak RSS),
 * which the upload shares with the archive pipeline running beside it.
 */
export const UPLOAD_MEMORY_BUDGET_BYTES = 64 * MiB;

/**
 * The largest archive `rawBytes` of data can make: tar adds a 512-byte header and up to 511 bytes of padding
 * per entry, and zstd a few bytes per 128 KiB block of data it cannot compress. The part size is chosen from
 * this before the archive exists, so it must not be an underestimate.
 */
export function archiveBoundFor(rawBytes: number, entries = 0): number {
  return Math.ceil(rawBytes * 1.01) + entries * 1024 + 1 * MiB;
}

/** How this host writes objects, from config `s3`. */
export function uploadTargetOf(s3: BackupConfig["s3"]): UploadTarget {
  return {
    bucket: s3.bucket,
    kmsKeyId: s3.kmsKeyId,
    partSizeMiB: s3.partSizeMiB ?? DEFAULT_PART_SIZE_MIB,
    queueSize: s3.queueSize ?? DEFAULT_QUEUE_SIZE,
  };
}

/** The configured part size, raised (to whole MiB) when the archive would need more than S3's 10,000 parts. */
export function partSizeFor(archiveBytes: number, partSizeMiB: number): number {
  return Math.max(partSizeMiB, Math.ceil(archiveBytes / MAX_PARTS / MiB)) * MiB;
}

/** The parts in flight that fit the memory budget (at least one). */
export function effectiveQueueSize(queueSize: number, partSizeBytes: number): number {
  return Math.max(1, Math.min(queueSize, Math.floor(UPLOAD_MEMORY_BUDGET_BYTES / partSizeBytes)));
}

/** The SSE-KMS parameters of every object this tool writes. */
export function encryptionOf(target: UploadTarget): {
  ServerSideEncryption: "aws:kms";
  SSEKMSKeyId?: string;
} {
  return target.kmsKeyId
    ? { ServerSideEncryption: "aws:kms", SSEKMSKeyId: target.kmsKeyId }
    : { ServerSideEncryption: "aws:kms" };
}

/** The part size for an object of at most `maxBytes`, and the parts in flight the memory budget allows. */
export function partLayout(
  maxBytes: number,
  target: UploadTarget,
  log: Logger,
): { partSize: number; inFlight: number } {
  const partSize = partSizeFor(maxBytes, target.partSizeMiB);
  const inFlight = effectiveQueueSize(target.queueSize, partSize);
  if (inFlight < target.queueSize) {
    log.warn("fewer parts in flight than configured, to stay within the memory budget", {
      configured: target.queueSize,
      used: inFlight,
      partSizeBytes: partSize,
    });
  }
  return { partSize, inFlight };
}

/**
 * Validates the manifest, then uploads it, create-only: the write that makes the backup complete. A key
 * taken by this host's own manifest (a retry, or the next run completing this one) is success; by anything
 * else, ForeignObject.
 */
export async function uploadManifest(
  s3: S3Client,
  target: UploadTarget,
  key: string,
  manifest: BackupManifest,
  log: Logger,
): Promise<void> {
  const body = JSON.stringify(parseManifest(manifest), null, 2) + "\n";
  try {
    await withRetries(
      `PutObject s3://${target.bucket}/${key}`,
      (abortSignal) =>
        s3.send(
          new PutObjectCommand({
            Bucket: target.bucket,
            Key: key,
            Body: body,
            ContentType: "application/json",
            ChecksumAlgorithm: "SHA256",
            ...encryptionOf(target),
            // The manifest's own class, so that a manifest staged by a run killed earlier keeps it.
            ...retentionTagging(manifest.retention),
            IfNoneMatch: "*",
          }),
          { abortSignal },
        ),
      log,
      target.retry,
    ).catch((e: unknown) => {
      if (!isTaken(e)) throw e;
      return settleTaken(s3, { bucket: target.bucket, key }, intendedBody(body), e, log);
    });
  } catch (e) {
    if (e instanceof ForeignObject) throw e;
    throw new PipelineError(
      "UploadFailed",
      `uploading the manifest s3://${target.bucket}/${key} failed: ${messageOf(e)}`,
      "the archive is uploaded and the backup staged in its outbox.json: check S3 access; the next run puts the manifest and announces the backup",
      { cause: e },
    );
  }
}

/** Validates and sends `backup.created`; returns the SQS message id. */
export async function sendBackupCreated(
  sqs: SQSClient,
  queueUrl: string,
  message: BackupCreatedMessage,
  log: Logger,
  policy: RetryPolicy = DEFAULT_RETRY,
): Promise<string> {
  const body = JSON.stringify(message);
  parseBackupCreated(body);
  try {
    const sent = await withRetries(
      `SendMessage to ${queueUrl}`,
      (abortSignal) =>
        sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: body }), { abortSignal }),
      log,
      policy,
    );
    return sent.MessageId ?? "";
  } catch (e) {
    throw new PipelineError(
      "SignalFailed",
      `sending backup.created for ${message.backupId} to ${queueUrl} failed: ${messageOf(e)}`,
      "the backup is complete in S3 but the verifiers were not told; check sqs:SendMessage and the queue's KMS key, " +
        `or send the message by hand with manifestKey ${message.manifestKey}`,
      { cause: e },
    );
  }
}
