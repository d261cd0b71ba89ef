import { createHash } from "node:crypto";
import { open, stat, type FileHandle } from "node:fs/promises";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from "@aws-sdk/client-s3";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import {
  parseBackupCreated,
  parseManifest,
  type BackupCreatedMessage,
  type BackupManifest,
} from "../contracts";
import { PipelineError, messageOf } from "./errors";
import type { Logger } from "./log";
import { DEFAULT_RETRY, withRetries, type RetryPolicy } from "./retry";
import { pauseAt } from "./testhooks";

/**
 * Steps 7–9: the archive as a multipart upload, then `manifest.json` — last, because a backup without a
 * manifest is incomplete by definition — then the `backup.created` message. Every object is sent with
 * SSE-KMS and an S3 SHA-256 checksum (per part for the archive), which the bucket policy demands.
 * The archive's parts are sent with the S3 client directly rather than lib-storage's `Upload`: that one
 * builds every part by concatenating stream chunks, which measured 3.5× the part size in memory per part
 * in flight; reading each part into a reused buffer keeps the upload at exactly its budget.
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
}

/** S3 allows at most this many parts in one upload. */
const MAX_PARTS = 10_000;
const MiB = 1024 * 1024;

/**
 * Parts are read straight from the archive into one buffer per upload slot, reused part after part, so the
 * upload holds exactly `parts in flight × part size` in memory and makes no garbage. The slots are capped
 * by this budget, so a generous config cannot push the agent past its memory target (256 MB peak RSS).
 */
export const UPLOAD_MEMORY_BUDGET_BYTES = 96 * MiB;

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

/**
 * Hooks that let the caller record the open multipart upload, so a run killed mid-upload can be repaired:
 * `started` right after CreateMultipartUpload, `ended` once it is completed or aborted.
 */
export interface UploadProgress {
  started?(upload: { bucket: string; key: string; uploadId: string }): Promise<void>;
  ended?(): Promise<void>;
  /** A part of `bytes` is up (the progress bar). */
  partDone?(bytes: number): void;
}

/** How the archive went up. */
export interface ArchiveUpload {
  parts: number;
  partSizeBytes: number;
  partsInFlight: number;
}

/**
 * Uploads the local archive as a multipart upload: SSE-KMS on the upload, a SHA-256 checksum computed here
 * for every part (S3 checks each part against it, and the completion lists what S3 confirmed), and the
 * archive's whole-file sha256 as object metadata. On failure the multipart upload is aborted, leaving no parts behind.
 */
export async function uploadArchive(
  s3: S3Client,
  target: UploadTarget,
  archive: { key: string; path: string; sha256: string },
  log: Logger,
  progress: UploadProgress = {},
): Promise<ArchiveUpload> {
  const where = `s3://${target.bucket}/${archive.key}`;
  const size = (await stat(archive.path)).size;
  const partSize = partSizeFor(size, target.partSizeMiB);
  const partCount = Math.max(1, Math.ceil(size / partSize));
  const inFlight = Math.min(partCount, effectiveQueueSize(target.queueSize, partSize));
  if (inFlight < Math.min(partCount, target.queueSize)) {
    log.warn("fewer parts in flight than configured, to stay within the memory budget", {
      configured: target.queueSize,
      used: inFlight,
      partSizeBytes: partSize,
    });
  }
  const object = { Bucket: target.bucket, Key: archive.key };
  const policy = target.retry ?? DEFAULT_RETRY;
  let uploadId: string | undefined;
  try {
    const created = await withRetries(
      `CreateMultipartUpload ${where}`,
      (abortSignal) =>
        s3.send(
          new CreateMultipartUploadCommand({
            ...object,
            ContentType: "application/zstd",
            ChecksumAlgorithm: "SHA256",
            Metadata: { sha256: archive.sha256 },
            ...encryptionOf(target),
          }),
          { abortSignal },
        ),
      log,
      policy,
    );
    uploadId = created.UploadId;
    if (!uploadId) throw new Error("CreateMultipartUpload returned no UploadId");
    await progress.started?.({ bucket: target.bucket, key: archive.key, uploadId });
    const parts = await uploadParts(
      s3,
      { ...object, UploadId: uploadId },
      { path: archive.path, size, partSize, slots: inFlight },
      log,
      policy,
      progress.partDone ?? (() => undefined),
    );
    const upload = uploadId;
    await withRetries(
      `CompleteMultipartUpload ${where}`,
      (abortSignal) =>
        s3.send(
          new CompleteMultipartUploadCommand({
            ...object,
            UploadId: upload,
            MultipartUpload: { Parts: parts },
          }),
          { abortSignal },
        ),
      log,
      policy,
    );
    await progress.ended?.();
    return { parts: partCount, partSizeBytes: partSize, partsInFlight: inFlight };
  } catch (e) {
    if (uploadId) {
      await s3
        .send(new AbortMultipartUploadCommand({ ...object, UploadId: uploadId }))
        .catch((abort: unknown) =>
          log.warn(
            "could not abort the multipart upload; the next run or the bucket's lifecycle rule removes it",
            {
              uploadId,
              error: messageOf(abort),
            },
          ),
        )
        .then(() => progress.ended?.());
    }
    throw new PipelineError(
      "UploadFailed",
      `uploading ${archive.path} to ${where} failed: ${messageOf(e)}`,
      "check network access to S3, the instance role's s3:PutObject on the prefix and kms:GenerateDataKey on the key; " +
        "the local archive is kept until the next run, which aborts this upload and takes a fresh backup",
      { cause: e },
    );
  }
}

/**
 * Uploads every part with `slots` workers, each reading into its own reused buffer. A part that fails is
 * retried on its own; the parts already up stay up.
 */
async function uploadParts(
  s3: S3Client,
  upload: { Bucket: string; Key: string; UploadId: string },
  layout: { path: string; size: number; partSize: number; slots: number },
  log: Logger,
  policy: RetryPolicy,
  partDone: (bytes: number) => void,
): Promise<CompletedPart[]> {
  const { path, size, partSize, slots } = layout;
  const partCount = Math.max(1, Math.ceil(size / partSize));
  const parts: CompletedPart[] = [];
  const file = await open(path, "r");
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafeSlow(Math.max(1, Math.min(partSize, size)));
    for (let index = next++; index < partCount && !failed; index = next++) {
      const offset = index * partSize;
      const body = await readPart(file, buffer, offset, Math.min(partSize, size - offset));
      const checksum = createHash("sha256").update(body).digest("base64");
      const sent = await withRetries(
        `UploadPart ${index + 1}/${partCount} of s3://${upload.Bucket}/${upload.Key}`,
        (abortSignal) =>
          s3.send(
            new UploadPartCommand({
              ...upload,
              PartNumber: index + 1,
              Body: body,
              ContentLength: body.length,
              ChecksumAlgorithm: "SHA256",
              ChecksumSHA256: checksum,
            }),
            { abortSignal },
          ),
        log,
        policy,
      );
      // The completion repeats the checksum S3 confirmed for the part, as lib-storage does; an emulator that
      // confirms none gets none (fauxqs 1.9 stores an empty object when the completion carries one).
      parts[index] = sent.ChecksumSHA256
        ? { PartNumber: index + 1, ETag: sent.ETag, ChecksumSHA256: sent.ChecksumSHA256 }
        : { PartNumber: index + 1, ETag: sent.ETag };
      partDone(body.length);
      await pauseAt("upload");
    }
  };
  try {
    const results = await Promise.allSettled(
      Array.from({ length: slots }, () =>
        worker().catch((e: unknown) => {
          failed = true;
          throw e;
        }),
      ),
    );
    const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure) throw failure.reason;
    return parts;
  } finally {
    await file.close();
  }
}

/** Reads `length` bytes at `offset` into the start of `buffer`; the archive is complete, so a short read is an error. */
async function readPart(file: FileHandle, buffer: Buffer, offset: number, length: number): Promise<Buffer> {
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(buffer, filled, length - filled, offset + filled);
    if (bytesRead === 0)
      throw new Error(`the archive ended at byte ${offset + filled}, expected ${offset + length}`);
    filled += bytesRead;
  }
  return buffer.subarray(0, length);
}

/** Validates the manifest, then uploads it: the write that makes the backup complete. */
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
          }),
          { abortSignal },
        ),
      log,
      target.retry,
    );
  } catch (e) {
    throw new PipelineError(
      "UploadFailed",
      `uploading the manifest s3://${target.bucket}/${key} failed: ${messageOf(e)}`,
      "the archive is uploaded but the backup is incomplete without its manifest; check S3 access and run the backup again",
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
