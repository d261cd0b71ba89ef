import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from "@aws-sdk/client-s3";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import { sha256Stream, type StreamHash } from "../common/hash-offload";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { DEFAULT_RETRY, withRetries, type RetryPolicy } from "../common/retry";
import { combinedCrc32, crc32Base64, crc32Of } from "./checksums";
import { ForeignObject, intendedMultipart, isTaken, settleTaken } from "./create-only";
import type { ChunkFeed, GrowingChunk } from "./growing";
import type { RecordedCompletion, UploadRecord } from "./staging";
import { retentionTagging } from "./retention-class";
import { encryptionOf, partLayout, type UploadTarget } from "./upload";

/**
 * Step 7: every chunk of the archive as a multipart upload of its own, while the archive is written. One
 * reader goes through each chunk's file in order as it grows, part by part from the page cache, and computes
 * on the way the chunk's sha256 (for the manifest) and each part's CRC32 (for S3); the parts go up
 * `partsInFlight` at a time, each read into one of as many reused buffers, so the upload holds exactly its
 * budget in memory. Every upload stays open until all parts of all chunks are up; then the caller stages the
 * publication (`beforeComplete`), and only then are the uploads completed, create-only — so from the moment
 * any archive object exists in S3 the next run can announce the backup (repair.ts). On failure every open
 * upload is aborted.
 *
 * Each part carries its CRC32 (S3 checks it on arrival) and each completion the object's full CRC32, combined
 * from the parts' (S3 checks it against them), so each compressed byte is checksummed once, natively; the
 * request body is sent as UNSIGNED-PAYLOAD, since signing it would hash every byte with SHA-256 once more for
 * what TLS and the CRC32 already guarantee. The integrity of the backup itself rests on the manifest's sha256s.
 */

/** How the archive went up. */
export interface ArchiveUpload {
  chunks: number;
  parts: number;
  partSizeBytes: number;
  partsInFlight: number;
}

/** A chunk as uploaded: its key and size, and its sha256 (of every byte, read in order). */
export interface UploadedChunk {
  index: number;
  key: string;
  bytes: number;
  sha256: string;
}

/**
 * Hooks that let the caller record the open multipart uploads, so a run killed mid-upload can be repaired,
 * and stage the publication before any upload completes.
 */
export interface UploadProgress {
  /**
   * The uploads open so far, after each new one is created; once more with their completions when every part
   * is up, before `beforeComplete`.
   */
  started?(uploads: UploadRecord[]): Promise<void>;
  /** Every upload is completed or aborted. */
  ended?(): Promise<void>;
  /** A part of `bytes` is up (the progress bar). */
  partDone?(bytes: number): void;
  /** Called at the `upload` pause point after each part is up, and at `uploaded`. Defaults to `noCheckpoint`. */
  checkpoint?: Checkpoint;
  /**
   * Called once every part of every chunk is up, with each chunk's sha256, before any upload is completed: the
   * backup stages its manifest and message there. A failure aborts the uploads.
   */
  beforeComplete?(chunks: UploadedChunk[]): Promise<void>;
}

/** What the archive is: its chunks as they come, where each goes, and the most bytes one can have. */
export interface ArchiveSource {
  feed: ChunkFeed;
  keyOf: (index: number) => string;
  maxChunkBytes: number;
}

/** One chunk's upload while its parts go up. */
interface OpenUpload {
  index: number;
  key: string;
  uploadId: string;
  hash: StreamHash;
  bytes: number;
  parts: Array<{ completed: CompletedPart; bytes: number; crc32: number; etag?: string }>;
}

const MAX_PARTS = 10_000;

/** Uploads every chunk of the archive as it is written; see the module comment. */
export async function uploadArchive(
  s3: S3Client,
  target: UploadTarget,
  archive: ArchiveSource,
  log: Logger,
  progress: UploadProgress = {},
): Promise<{ upload: ArchiveUpload; chunks: UploadedChunk[] }> {
  const { partSize, inFlight } = partLayout(archive.maxChunkBytes, target, log);
  const policy = target.retry ?? DEFAULT_RETRY;
  const uploads: OpenUpload[] = [];
  const sender = new PartSender(s3, target.bucket, inFlight, partSize, policy, log, {
    partDone: progress.partDone ?? (() => undefined),
    checkpoint: progress.checkpoint ?? noCheckpoint,
  });
  try {
    for await (const chunk of archive.feed) {
      const key = archive.keyOf(chunk.index);
      const uploadId = await createUpload(s3, target, key, log, policy);
      const upload: OpenUpload = {
        index: chunk.index,
        key,
        uploadId,
        hash: sha256Stream("UploadFailed"),
        bytes: 0,
        parts: [],
      };
      uploads.push(upload);
      await progress.started?.(
        uploads.map((u) => ({ bucket: target.bucket, key: u.key, uploadId: u.uploadId })),
      );
      await sender.sendChunk(chunk, upload);
    }
    await sender.drain();
    const records = uploads.map((u) => ({
      bucket: target.bucket,
      key: u.key,
      uploadId: u.uploadId,
      completion: completionOf(u),
    }));
    await progress.started?.(records);
    const chunks = await Promise.all(
      uploads.map(async (u) => ({
        index: u.index,
        key: u.key,
        bytes: u.bytes,
        sha256: await u.hash.digest(),
      })),
    );
    await progress.beforeComplete?.(chunks);
    await Promise.all(records.map((record) => completeUpload(s3, record, record.completion, log, policy)));
    await progress.checkpoint?.("uploaded");
    await progress.ended?.();
    const parts = uploads.reduce((sum, u) => sum + u.parts.length, 0);
    return {
      upload: { chunks: uploads.length, parts, partSizeBytes: partSize, partsInFlight: inFlight },
      chunks,
    };
  } catch (e) {
    await sender.drain().catch(() => undefined);
    await Promise.all(uploads.map((u) => abortUpload(s3, target.bucket, u, log)));
    await progress.ended?.().catch(() => undefined);
    if (e instanceof ForeignObject) throw e;
    const where = `s3://${target.bucket}/${uploads.at(-1)?.key ?? archive.keyOf(0)}`;
    throw new PipelineError(
      "UploadFailed",
      `uploading the archive (${uploads.length} chunks started) to ${where} failed: ${messageOf(e)}`,
      "check network access to S3, the instance role's s3:PutObject on the prefix and kms:GenerateDataKey on the key; " +
        "the next run takes a fresh backup",
      { cause: e },
    );
  } finally {
    await archive.feed.close();
  }
}

/**
 * Reads chunks part by part in order (hashing them) and sends the parts with at most `slots` in flight, each
 * in a reused buffer. A part that fails is retried on its own; the first that fails for good stops the rest.
 */
class PartSender {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<() => void> = [];
  private readonly sending = new Set<Promise<void>>();
  private allocated = 0;
  private failure?: unknown;

  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly slots: number,
    private readonly partSize: number,
    private readonly policy: RetryPolicy,
    private readonly log: Logger,
    private readonly hooks: { partDone: (bytes: number) => void; checkpoint: Checkpoint },
  ) {}

  /** Reads and sends every part of `chunk` as its bytes arrive; returns once the last is sent off. */
  async sendChunk(chunk: GrowingChunk, upload: OpenUpload): Promise<void> {
    for (let index = 0; ; index++) {
      const offset = index * this.partSize;
      const { available, complete } = await chunk.source.reach(offset + this.partSize);
      if (complete && offset >= available && index > 0) return;
      if (index >= MAX_PARTS)
        throw new Error(
          `chunk ${upload.key} outgrew ${MAX_PARTS} parts of ${this.partSize} bytes; this is a bug`,
        );
      const buffer = await this.take();
      if (this.failure !== undefined) {
        this.give(buffer);
        throw this.failure;
      }
      const body = await chunk.source.read(buffer, Math.min(this.partSize, available - offset), offset);
      await upload.hash.update(body);
      upload.bytes += body.length;
      const sending = this.sendPart(upload, index, body)
        .catch((e: unknown) => {
          this.failure ??= e;
        })
        .finally(() => {
          this.give(buffer);
          this.sending.delete(sending);
        });
      this.sending.add(sending);
    }
  }

  /** Waits for every part in flight; throws the first failure. */
  async drain(): Promise<void> {
    while (this.sending.size > 0) await Promise.all(this.sending);
    if (this.failure !== undefined) throw this.failure;
  }

  private async sendPart(upload: OpenUpload, index: number, body: Buffer): Promise<void> {
    const crc32 = crc32Of(body);
    const command = new UploadPartCommand({
      Bucket: this.bucket,
      Key: upload.key,
      UploadId: upload.uploadId,
      PartNumber: index + 1,
      Body: body,
      ContentLength: body.length,
      ChecksumAlgorithm: "CRC32",
      ChecksumCRC32: crc32Base64(crc32),
    });
    unsignedPayload(command);
    const sent = await withRetries(
      `UploadPart ${index + 1} of s3://${this.bucket}/${upload.key}`,
      (abortSignal) => this.s3.send(command, { abortSignal }),
      this.log,
      this.policy,
    );
    // The completion repeats the checksum S3 confirmed for the part, as lib-storage does; an emulator that
    // confirms none gets none (fauxqs 1.9 stores an empty object when the completion carries one).
    const completed: CompletedPart = sent.ChecksumCRC32
      ? { PartNumber: index + 1, ETag: sent.ETag, ChecksumCRC32: sent.ChecksumCRC32 }
      : { PartNumber: index + 1, ETag: sent.ETag };
    upload.parts[index] = { completed, bytes: body.length, crc32, etag: sent.ETag };
    this.hooks.partDone(body.length);
    await this.hooks.checkpoint("upload");
  }

  private take(): Promise<Buffer> {
    const buffer = this.free.pop();
    if (buffer) return Promise.resolve(buffer);
    if (this.allocated < this.slots) {
      this.allocated++;
      return Promise.resolve(Buffer.allocUnsafeSlow(this.partSize));
    }
    return new Promise((resolve) => this.waiting.push(() => resolve(this.free.pop()!)));
  }

  private give(buffer: Buffer): void {
    this.free.push(buffer);
    this.waiting.shift()?.();
  }
}

/**
 * Sends the request body unsigned (`x-amz-content-sha256: UNSIGNED-PAYLOAD`): otherwise SigV4 hashes every
 * byte of a Buffer body with SHA-256 for the signature, on top of the part's own checksum.
 */
function unsignedPayload(command: UploadPartCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      return next(args);
    },
    { step: "build", name: "unsignedPayload" },
  );
}

/** Starts a multipart upload with SSE-KMS and full-object CRC32 checksums; returns its UploadId. */
async function createUpload(
  s3: S3Client,
  target: UploadTarget,
  key: string,
  log: Logger,
  policy: RetryPolicy,
): Promise<string> {
  const created = await withRetries(
    `CreateMultipartUpload s3://${target.bucket}/${key}`,
    (abortSignal) =>
      s3.send(
        new CreateMultipartUploadCommand({
          Bucket: target.bucket,
          Key: key,
          ContentType: "application/zstd",
          ChecksumAlgorithm: "CRC32",
          ChecksumType: "FULL_OBJECT",
          ...encryptionOf(target),
          ...retentionTagging(target.retention),
        }),
        { abortSignal },
      ),
    log,
    policy,
  );
  if (!created.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
  return created.UploadId;
}

/** What completes an upload whose parts are all up. */
function completionOf(upload: OpenUpload): RecordedCompletion {
  return {
    bytes: upload.bytes,
    crc32: crc32Base64(combinedCrc32(upload.parts)),
    parts: upload.parts.map((part) => ({
      ...part.completed,
      PartNumber: part.completed.PartNumber!,
      bytes: part.bytes,
    })),
  };
}

/**
 * Completes an upload, create-only and with the object's size and full CRC32 for S3 to check: a retry after
 * a completion whose answer was lost finds the object there, which is success when it is the one this host
 * uploaded (create-only.ts). The next run completes a staged backup's uploads with this too (repair.ts).
 */
export async function completeUpload(
  s3: S3Client,
  upload: Pick<UploadRecord, "bucket" | "key" | "uploadId">,
  completion: RecordedCompletion,
  log: Logger,
  policy: RetryPolicy = DEFAULT_RETRY,
): Promise<void> {
  const { bucket, key } = upload;
  try {
    await withRetries(
      `CompleteMultipartUpload s3://${bucket}/${key}`,
      (abortSignal) =>
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId: upload.uploadId,
            MultipartUpload: { Parts: completion.parts.map(({ bytes: _bytes, ...part }) => part) },
            ChecksumCRC32: completion.crc32,
            ChecksumType: "FULL_OBJECT",
            MpuObjectSize: completion.bytes,
            IfNoneMatch: "*",
          }),
          { abortSignal },
        ),
      log,
      policy,
    );
  } catch (e) {
    if (!isTaken(e)) throw e;
    const parts = completion.parts.map((part) => ({ bytes: part.bytes, etag: part.ETag }));
    await settleTaken(s3, { bucket, key }, intendedMultipart(parts, completion.crc32), e, log);
  }
}

/** Aborts a failed upload so no parts stay behind; a failed abort is left to the next run and the lifecycle. */
async function abortUpload(s3: S3Client, bucket: string, upload: OpenUpload, log: Logger): Promise<void> {
  await s3
    .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId }))
    .catch((abort: unknown) =>
      log.warn(
        "could not abort the multipart upload; the next run or the bucket's lifecycle rule removes it",
        {
          key: upload.key,
          uploadId: upload.uploadId,
          error: messageOf(abort),
        },
      ),
    );
}
