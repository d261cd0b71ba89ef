import { createHash } from "node:crypto";
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
  type BackupConfig,
  type BackupCreatedMessage,
  type BackupManifest,
} from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { DEFAULT_RETRY, withRetries, type RetryPolicy } from "../common/retry";
import type { GrowingFile } from "./archive";
import {
  ForeignObject,
  intendedBody,
  intendedMultipart,
  isTaken,
  settleTaken,
  type IntendedObject,
} from "./create-only";

/**
 * Steps 7–9: the archive as a multipart upload, then `manifest.json` — last, because a backup without a
 * manifest is incomplete by definition — then the `backup.created` message. Every object is sent with
 * SSE-KMS and an S3 SHA-256 checksum (per part for the archive), which the bucket policy demands, and is
 * created only if its key is free (`If-None-Match: *`, create-only.ts): nothing a replica wrote is replaced.
 * The archive's parts are sent with the S3 client directly rather than lib-storage's `Upload`, which builds
 * every part by concatenating stream chunks (several times the part size in memory per part in flight);
 * reading each part into a reused buffer keeps the upload at exactly its budget.
 * The upload follows the archive while it is written (`GrowingFile`): a part goes up as soon as its bytes are
 * on the file, read back from the page cache, so the archive is never read a second time from disk.
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

/**
 * Hooks that let the caller record the open multipart upload, so a run killed mid-upload can be repaired:
 * `started` right after CreateMultipartUpload, `ended` once it is completed or aborted.
 */
export interface UploadProgress {
  started?(upload: { bucket: string; key: string; uploadId: string }): Promise<void>;
  ended?(): Promise<void>;
  /** A part of `bytes` is up (the progress bar). */
  partDone?(bytes: number): void;
  /** Called at the `upload` pause point after each part is up, and at `uploaded`. Defaults to `noCheckpoint`. */
  checkpoint?: Checkpoint;
  /**
   * Called once every part is up, before the upload is completed: the backup stages its manifest and
   * message there, so a run killed once the archive is complete can always be completed by the next one.
   * A failure aborts the upload.
   */
  beforeComplete?(): Promise<void>;
}

/** How the archive went up. */
export interface ArchiveUpload {
  parts: number;
  partSizeBytes: number;
  partsInFlight: number;
}

/**
 * Uploads the archive as a multipart upload while it is written: SSE-KMS on the upload, a SHA-256 checksum
 * computed here for every part (S3 checks each part against it, and the completion lists what S3
 * confirmed). The archive's own sha256 is known only at the end; the manifest carries it. The part size is
 * fixed up front from `maxBytes`, the most the archive can be. On failure the multipart upload is aborted,
 * leaving no parts behind, and the source is closed either way.
 */
export async function uploadArchive(
  s3: S3Client,
  target: UploadTarget,
  archive: { key: string; source: GrowingFile; maxBytes: number },
  log: Logger,
  progress: UploadProgress = {},
): Promise<ArchiveUpload> {
  const where = `s3://${target.bucket}/${archive.key}`;
  const { partSize, inFlight } = partLayout(archive.maxBytes, target, log);
  const object = { Bucket: target.bucket, Key: archive.key };
  const policy = target.retry ?? DEFAULT_RETRY;
  let uploadId: string | undefined;
  try {
    uploadId = await createUpload(s3, target, object, log, policy);
    await progress.started?.({ bucket: target.bucket, key: archive.key, uploadId });
    const upload = { ...object, UploadId: uploadId };
    const { parts, sent } = await uploadParts(
      s3,
      upload,
      { source: archive.source, partSize, slots: inFlight },
      log,
      policy,
      { partDone: progress.partDone ?? (() => undefined), checkpoint: progress.checkpoint ?? noCheckpoint },
    );
    await progress.beforeComplete?.();
    await completeUpload(s3, upload, parts, intendedMultipart(sent), log, policy);
    await progress.checkpoint?.("uploaded");
    await progress.ended?.();
    return { parts: parts.length, partSizeBytes: partSize, partsInFlight: inFlight };
  } catch (e) {
    if (uploadId) await abortUpload(s3, { ...object, UploadId: uploadId }, log, progress);
    if (e instanceof ForeignObject) throw e;
    throw new PipelineError(
      "UploadFailed",
      `uploading the archive to ${where} failed: ${messageOf(e)}`,
      "check network access to S3, the instance role's s3:PutObject on the prefix and kms:GenerateDataKey on the key; " +
        "the next run takes a fresh backup",
      { cause: e },
    );
  } finally {
    await archive.source.close();
  }
}

/** The part size for an archive of at most `maxBytes`, and the parts in flight the memory budget allows. */
function partLayout(
  maxBytes: number,
  target: UploadTarget,
  log: Logger,
): { partSize: number; inFlight: number } {
  const partSize = partSizeFor(maxBytes, target.partSizeMiB);
  const maxParts = Math.max(1, Math.ceil(maxBytes / partSize));
  const inFlight = Math.min(maxParts, effectiveQueueSize(target.queueSize, partSize));
  if (inFlight < Math.min(maxParts, target.queueSize)) {
    log.warn("fewer parts in flight than configured, to stay within the memory budget", {
      configured: target.queueSize,
      used: inFlight,
      partSizeBytes: partSize,
    });
  }
  return { partSize, inFlight };
}

/** Starts the multipart upload with SSE-KMS and SHA-256 checksums; returns its UploadId. */
async function createUpload(
  s3: S3Client,
  target: UploadTarget,
  object: { Bucket: string; Key: string },
  log: Logger,
  policy: RetryPolicy,
): Promise<string> {
  const created = await withRetries(
    `CreateMultipartUpload s3://${object.Bucket}/${object.Key}`,
    (abortSignal) =>
      s3.send(
        new CreateMultipartUploadCommand({
          ...object,
          ContentType: "application/zstd",
          ChecksumAlgorithm: "SHA256",
          ...encryptionOf(target),
        }),
        { abortSignal },
      ),
    log,
    policy,
  );
  if (!created.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
  return created.UploadId;
}

/**
 * Completes the upload, create-only: a retry after a completion whose answer was lost finds the archive
 * there, which is success when it is the one this host uploaded (create-only.ts).
 */
async function completeUpload(
  s3: S3Client,
  upload: { Bucket: string; Key: string; UploadId: string },
  parts: CompletedPart[],
  intended: IntendedObject,
  log: Logger,
  policy: RetryPolicy,
): Promise<void> {
  try {
    await withRetries(
      `CompleteMultipartUpload s3://${upload.Bucket}/${upload.Key}`,
      (abortSignal) =>
        s3.send(
          new CompleteMultipartUploadCommand({
            ...upload,
            MultipartUpload: { Parts: parts },
            IfNoneMatch: "*",
          }),
          { abortSignal },
        ),
      log,
      policy,
    );
  } catch (e) {
    if (!isTaken(e)) throw e;
    await settleTaken(s3, { bucket: upload.Bucket, key: upload.Key }, intended, e, log);
  }
}

/** Aborts a failed upload so no parts stay behind; a failed abort is left to the next run and the lifecycle. */
async function abortUpload(
  s3: S3Client,
  upload: { Bucket: string; Key: string; UploadId: string },
  log: Logger,
  progress: UploadProgress,
): Promise<void> {
  await s3
    .send(new AbortMultipartUploadCommand(upload))
    .catch((abort: unknown) =>
      log.warn(
        "could not abort the multipart upload; the next run or the bucket's lifecycle rule removes it",
        {
          uploadId: upload.UploadId,
          error: messageOf(abort),
        },
      ),
    )
    .then(() => progress.ended?.());
}

/**
 * Uploads the parts with `slots` workers as the archive grows, each reading into its own reused buffer: a
 * worker takes the next part number, waits until that part's bytes are on the file (or the archive ended
 * within it), and sends it. A part that fails is retried on its own; the parts already up stay up. Returns
 * the completion's list and what was sent of each part (its size, SHA-256 and ETag).
 */
async function uploadParts(
  s3: S3Client,
  upload: { Bucket: string; Key: string; UploadId: string },
  layout: { source: GrowingFile; partSize: number; slots: number },
  log: Logger,
  policy: RetryPolicy,
  hooks: { partDone: (bytes: number) => void; checkpoint: Checkpoint },
): Promise<{ parts: CompletedPart[]; sent: Array<{ bytes: number; sha256: string; etag?: string }> }> {
  const { source, partSize, slots } = layout;
  const parts: CompletedPart[] = [];
  const sentParts: Array<{ bytes: number; sha256: string; etag?: string }> = [];
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    let buffer: Buffer | undefined;
    for (let index = next++; !failed; index = next++) {
      const offset = index * partSize;
      const { available, complete } = await source.reach(offset + partSize);
      // Past the end; part 1 is sent even for an empty archive, as S3 needs one part.
      if (complete && offset >= available && index > 0) return;
      if (index >= MAX_PARTS)
        throw new Error(
          `the archive outgrew ${MAX_PARTS} parts of ${partSize} bytes, more than its size bound; this is a bug`,
        );
      const length = Math.min(partSize, available - offset);
      buffer ??= Buffer.allocUnsafeSlow(partSize);
      const body = await source.read(buffer, length, offset);
      const checksum = createHash("sha256").update(body).digest("base64");
      const sent = await withRetries(
        `UploadPart ${index + 1} of s3://${upload.Bucket}/${upload.Key}`,
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
      sentParts[index] = { bytes: body.length, sha256: checksum, etag: sent.ETag };
      hooks.partDone(body.length);
      await hooks.checkpoint("upload");
    }
  };
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
  return { parts, sent: sentParts };
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
