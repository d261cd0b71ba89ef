import { createHash } from "node:crypto";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import {
  epochRecordKey,
  ledgerKey,
  parseEpochRecord,
  parseSegmentEntry,
  segmentKey,
  type BinlogEpochRecord,
  type BinlogSegmentEntry,
  type BinlogSegmentRef,
} from "../contracts";

/**
 * A synthetic binlog archive for the `status` benchmark: one epoch of a host with as many segments as a busy
 * host writes in weeks (8,640 a day at RPO 10 s), each with a ledger entry that passes the contract, holding
 * ten MariaDB transactions of domain 0 (segment n: 0-1-10(n-1) → 0-1-10n), spread evenly up to `newestAt`.
 * The segment objects are a few filler bytes: status never reads them; only their keys count.
 */

/** The archive to write. */
export interface SyntheticArchive {
  prefix: string;
  cluster: string;
  host: string;
  epoch: string;
  segments: number;
  /** The commit time of the first transaction and of the newest one. */
  firstAt: Date;
  newestAt: Date;
}

const server = { flavor: "mariadb", version: "10.11.19", serverId: 1, serverUuid: null } as const;

/** The ledger entry of segment `sequence`, which passes `parseSegmentEntry`. */
export function syntheticLedger(a: SyntheticArchive, sequence: number): BinlogSegmentEntry {
  const span = Math.floor((a.newestAt.getTime() - a.firstAt.getTime()) / Math.max(1, a.segments));
  const at = (n: number) => new Date(a.firstAt.getTime() + n * span);
  const first = at(sequence - 1);
  const last = at(sequence);
  const ref: BinlogSegmentRef = { ...a, sequence, firstAt: first };
  const previous: BinlogSegmentRef = { ...a, sequence: sequence - 1, firstAt: at(sequence - 2) };
  const seq = (n: number) => (n === 0 ? "" : `0-1-${n}`);
  return parseSegmentEntry({
    formatVersion: 1,
    cluster: a.cluster,
    host: a.host,
    epoch: a.epoch,
    sequence,
    segmentKey: segmentKey(ref),
    previousLedgerKey: sequence === 1 ? null : ledgerKey(previous),
    server,
    file: {
      name: `mysql-bin.${String(1 + Math.floor(sequence / 1000)).padStart(6, "0")}`,
      identity: sha256(`file-${Math.floor(sequence / 1000)}`),
      headerBytes: 256,
      startOffset: 256,
      endOffset: 8448,
      endsFile: false,
    },
    gtid: {
      before: seq(10 * (sequence - 1)),
      after: seq(10 * sequence),
      first: `0-1-${10 * (sequence - 1) + 1}`,
      last: `0-1-${10 * sequence}`,
      set: null,
    },
    events: { count: 40, firstAt: first.toISOString(), lastAt: last.toISOString() },
    transactions: { count: 10, firstCommitAt: first.toISOString(), lastCommitAt: last.toISOString() },
    bytes: 8448,
    sha256: sha256(`segment-${sequence}`),
    archivedAt: new Date(last.getTime() + 1000).toISOString(),
  });
}

function epochRecord(a: SyntheticArchive): BinlogEpochRecord {
  return parseEpochRecord({
    formatVersion: 1,
    cluster: a.cluster,
    host: a.host,
    epoch: a.epoch,
    startedAt: a.firstAt.toISOString(),
    reason: "first-run",
    detail: "synthetic archive (bench/status.ts)",
    server,
    previous: null,
    gtidStart: "",
    missing: null,
  });
}

/** Writes the archive's epoch record, segments and ledger entries, `parallel` PUTs at a time; returns the count. */
export async function seedArchive(
  s3: S3Client,
  bucket: string,
  a: SyntheticArchive,
  parallel = 32,
): Promise<number> {
  await put(s3, bucket, epochRecordKey(a), JSON.stringify(epochRecord(a)));
  let next = 1;
  const worker = async () => {
    while (next <= a.segments) {
      const entry = syntheticLedger(a, next++);
      await put(s3, bucket, entry.segmentKey, "synthetic segment");
      await put(s3, bucket, entry.segmentKey.replace(/\.binlog$/, ".ledger.json"), JSON.stringify(entry));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return 1 + 2 * a.segments;
}

async function put(s3: S3Client, bucket: string, key: string, body: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
