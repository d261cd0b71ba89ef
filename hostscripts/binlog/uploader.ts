import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import {
  BINLOG_ARCHIVED,
  epochRecordKey,
  parseEpochRecord,
  parseSegmentEntry,
  type BinlogArchivedMessage,
  type BinlogSegmentEntry,
} from "../../contracts";
import { noCheckpoint, type Checkpoint } from "../common/checkpoint";
import type { Logger } from "../common/log";
import { DEFAULT_RETRY, withRetries, type RetryPolicy } from "../common/retry";
import { isAlreadyWritten } from "../common/s3";
import type { SpoolItem } from "./state";

/**
 * Spooled items to S3, in order: an epoch's record before its segments, each segment before its ledger
 * entry (a segment without one is incomplete), then the `binlog.archived` message, then the spool files go.
 * Every object is created with If-None-Match: a key is written once, never overwritten; S3's "already exists"
 * means an earlier attempt (before a crash) got through with the same bytes, which the spool fixed before the
 * first attempt. SSE-KMS and a SHA-256 checksum on every object, as the bucket policy demands.
 */

/** Where items go. */
export interface UploadTarget {
  bucket: string;
  prefix: string;
  /** The KMS key for SSE-KMS; the bucket's default key when absent. */
  kmsKeyId?: string;
  /** Where `binlog.archived` goes, or null when announcing is off. */
  announceQueueUrl: string | null;
}

/** What uploads run on. */
export interface UploadDeps {
  s3: S3Client;
  sqs: SQSClient;
  log: Logger;
  now: () => Date;
  /** How each call is retried. Defaults to DEFAULT_RETRY with a 60 s attempt timeout. */
  retry?: RetryPolicy;
  /** Called between the steps of a segment's upload (crash tests stop there). Defaults to none. */
  checkpoint?: Checkpoint;
}

const SEGMENT_RETRY: RetryPolicy = { ...DEFAULT_RETRY, attemptTimeoutMs: 60_000 };

/** Creates `key` unless it exists; returns false when it already did. */
async function createOnce(
  target: UploadTarget,
  deps: UploadDeps,
  key: string,
  body: () => Buffer | NodeJS.ReadableStream,
  bytes: number,
  sha256: string,
  contentType: string,
): Promise<boolean> {
  try {
    await withRetries(
      `put s3://${target.bucket}/${key}`,
      (abortSignal) =>
        deps.s3.send(
          new PutObjectCommand({
            Bucket: target.bucket,
            Key: key,
            // A fresh stream per attempt: a retried request cannot reuse a consumed one.
            Body: body() as Buffer,
            ContentLength: bytes,
            ContentType: contentType,
            IfNoneMatch: "*",
            ServerSideEncryption: "aws:kms",
            ...(target.kmsKeyId ? { SSEKMSKeyId: target.kmsKeyId } : {}),
            ChecksumSHA256: Buffer.from(sha256, "hex").toString("base64"),
          }),
          { abortSignal },
        ),
      deps.log,
      deps.retry ?? SEGMENT_RETRY,
    );
    return true;
  } catch (error) {
    if (isAlreadyWritten(error)) return false;
    throw error;
  }
}

async function createJson(
  target: UploadTarget,
  deps: UploadDeps,
  key: string,
  value: unknown,
): Promise<boolean> {
  const body = Buffer.from(JSON.stringify(value, null, 2) + "\n");
  const sha256 = createHash("sha256").update(body).digest("hex");
  return createOnce(target, deps, key, () => body, body.length, sha256, "application/json");
}

/** Uploads one spooled item and removes its spool files; returns the segment's ledger entry, if it was one. */
export async function uploadItem(
  item: SpoolItem,
  target: UploadTarget,
  deps: UploadDeps,
): Promise<BinlogSegmentEntry | null> {
  if (item.kind === "epoch") {
    const record = parseEpochRecord(item.record);
    const key = epochRecordKey({
      prefix: target.prefix,
      cluster: record.cluster,
      host: record.host,
      epoch: record.epoch,
    });
    const created = await createJson(target, deps, key, record);
    deps.log.info(created ? "epoch record archived" : "epoch record was already in S3", {
      key,
      reason: record.reason,
    });
    await rm(item.path, { force: true });
    return null;
  }
  const { ledgerKey, ...draft } = item.draft;
  const fresh = await createOnce(
    target,
    deps,
    draft.segmentKey,
    () => createReadStream(item.binlogPath),
    draft.bytes,
    draft.sha256,
    "application/octet-stream",
  );
  const checkpoint = deps.checkpoint ?? noCheckpoint;
  await checkpoint("binlog-segment-uploaded");
  const entry = parseSegmentEntry({ ...draft, archivedAt: deps.now().toISOString() });
  const ledgerFresh = await createJson(target, deps, ledgerKey, entry);
  await checkpoint("binlog-ledger-uploaded");
  if (!fresh || !ledgerFresh)
    deps.log.info("segment was already in S3 (an earlier run uploaded it before it stopped)", {
      key: draft.segmentKey,
      segment: fresh ? "new" : "existed",
      ledger: ledgerFresh ? "new" : "existed",
    });
  if (target.announceQueueUrl !== null) await announce(target, deps, entry, ledgerKey);
  await rm(item.binlogPath, { force: true });
  await rm(item.ledgerPath, { force: true });
  return entry;
}

async function announce(
  target: UploadTarget,
  deps: UploadDeps,
  entry: BinlogSegmentEntry,
  ledgerKey: string,
): Promise<void> {
  const message: BinlogArchivedMessage = {
    type: BINLOG_ARCHIVED,
    version: 1,
    bucket: target.bucket,
    cluster: entry.cluster,
    host: entry.host,
    epoch: entry.epoch,
    sequence: entry.sequence,
    ledgerKey,
    segmentKey: entry.segmentKey,
    sha256: entry.sha256,
    gtidAfter: entry.gtid.after,
    archivedAt: entry.archivedAt,
  };
  await withRetries(
    `send ${BINLOG_ARCHIVED} to ${target.announceQueueUrl}`,
    (abortSignal) =>
      deps.sqs.send(
        new SendMessageCommand({ QueueUrl: target.announceQueueUrl!, MessageBody: JSON.stringify(message) }),
        { abortSignal },
      ),
    deps.log,
    deps.retry ?? SEGMENT_RETRY,
  );
}
