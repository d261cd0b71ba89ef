import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { BinlogSegmentEntry } from "../../contracts";
import { BinlogFormatError } from "../common/binlog-events";
import { scanBinlog } from "../common/binlog-scan";
import type { BinlogTransaction } from "../common/binlog-transactions";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { isNotFound, s3Failure } from "../common/s3";
import { inParallel } from "./archive";

/**
 * The chain's segments, downloaded and proven before anything is replayed: the object's size and sha256
 * against its ledger entry, then every event read with its CRC32 checked and its end position matched against
 * its place in the source file, the transactions counted against the ledger. The first that fails refuses
 * the whole restore, naming the segment.
 */

/** A segment on local disk that matches its ledger entry. */
export interface VerifiedSegment {
  entry: BinlogSegmentEntry;
  /** The segment's bytes on local disk. */
  path: string;
  headerBytes: number;
  /** Its transactions, offsets within the segment. */
  transactions: BinlogTransaction[];
}

/** A segment that does not match its ledger entry: the restore is refused before any replay. */
export function segmentRefused(entry: BinlogSegmentEntry, bucket: string, why: string): PipelineError {
  return new PipelineError(
    "PitrRefused",
    `segment s3://${bucket}/${entry.segmentKey} (${entry.host}, epoch ${entry.epoch}, #${entry.sequence}, GTIDs ${entry.gtid.first ?? "-"}..${entry.gtid.last ?? "-"}) ${why}; nothing was replayed`,
    "the archive is damaged there: restore to a point before this segment, or from a snapshot taken after it; if another replica archives the cluster too, its copy may be intact (look at `restore list`)",
  );
}

/** Checks one segment's bytes against its ledger entry; returns its transactions. */
export function verifySegment(bytes: Buffer, entry: BinlogSegmentEntry, bucket: string): VerifiedSegmentBody {
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (bytes.length !== entry.bytes || sha256 !== entry.sha256)
    throw segmentRefused(
      entry,
      bucket,
      `does not match its ledger entry: ${bytes.length} bytes with sha256 ${sha256}, the ledger says ${entry.bytes} bytes with ${entry.sha256}`,
    );
  let scanned;
  try {
    scanned = scanBinlog(bytes, entry.segmentKey, entry.file.startOffset - entry.file.headerBytes);
  } catch (error) {
    if (!(error instanceof BinlogFormatError)) throw error;
    throw segmentRefused(entry, bucket, `cannot be read as the ledger describes it: ${error.message}`);
  }
  if (
    scanned.headerBytes !== entry.file.headerBytes ||
    scanned.transactions.length !== entry.transactions.count
  )
    throw segmentRefused(
      entry,
      bucket,
      `holds ${scanned.transactions.length} transactions after a ${scanned.headerBytes}-byte header; the ledger says ${entry.transactions.count} after ${entry.file.headerBytes}`,
    );
  return { headerBytes: scanned.headerBytes, transactions: scanned.transactions };
}

/** What `verifySegment` reads from a segment. */
export interface VerifiedSegmentBody {
  headerBytes: number;
  transactions: BinlogTransaction[];
}

/** Downloads and verifies the chain's segments into `dir`, two at a time, in chain order. */
export async function downloadSegments(
  s3: S3Client,
  bucket: string,
  entries: BinlogSegmentEntry[],
  dir: string,
  log: Logger,
  signal?: AbortSignal,
): Promise<VerifiedSegment[]> {
  await mkdir(dir, { recursive: true, mode: 0o750 });
  let bytes = 0;
  const segments = await inParallel(entries, 2, async (entry) => {
    // SIGTERM (the verifier's chain and drill): no more segments.
    signal?.throwIfAborted();
    const data = await getSegment(s3, bucket, entry);
    const body = verifySegment(data, entry, bucket);
    const path = join(dir, `${entry.host}-${entry.epoch}-${String(entry.sequence).padStart(10, "0")}.binlog`);
    await writeFile(path, data, { mode: 0o640 });
    bytes += data.length;
    return { entry, path, ...body };
  });
  log.info("segments downloaded and verified", { segments: segments.length, bytes });
  return segments;
}

async function getSegment(s3: S3Client, bucket: string, entry: BinlogSegmentEntry): Promise<Buffer> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: entry.segmentKey }));
    return Buffer.from(await response.Body!.transformToByteArray());
  } catch (error) {
    if (isNotFound(error)) throw segmentRefused(entry, bucket, "is listed in the ledger but missing from S3");
    throw s3Failure(`download s3://${bucket}/${entry.segmentKey} (${messageOf(error)})`, error);
  }
}
