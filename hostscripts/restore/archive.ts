import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import {
  binlogArchivePrefix,
  parseBinlogKey,
  parseEpochRecord,
  parseSegmentEntry,
  type BinlogEpochRecord,
  type BinlogSegmentEntry,
} from "../../contracts";
import { PipelineError, messageOf } from "../common/errors";
import { s3Call } from "../common/s3";

/**
 * A cluster's binlog archive as the readers see it (`restore --until`, `restore list`, and the verifier's
 * segment and chain checks): the keys below `<prefix>/<cluster>/binlogs/`, grouped into the chains (host,
 * epoch) that wrote them, with each epoch's record and each segment's ledger entry, validated against the
 * contract. A segment without a ledger entry is incomplete and left out, as a backup without its manifest.
 */

/** One segment as listed: its keys, and whether its ledger entry exists. */
export interface ListedSegment {
  sequence: number;
  firstAt: Date;
  segmentKey: string | null;
  ledgerKey: string | null;
}

/** One chain (host, epoch) as listed. */
export interface ListedEpoch {
  host: string;
  epoch: string;
  recordKey: string | null;
  /** By sequence. */
  segments: ListedSegment[];
}

/** Lists the archive of a cluster: every chain with its segments, epochs and segments in order. */
export async function listArchive(
  s3: S3Client,
  bucket: string,
  prefix: string,
  cluster: string,
): Promise<ListedEpoch[]> {
  const root = binlogArchivePrefix(prefix, cluster);
  const epochs = new Map<string, ListedEpoch>();
  let token: string | undefined;
  do {
    const page = await s3Call(`list s3://${bucket}/${root}`, () =>
      s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: root, ContinuationToken: token })),
    );
    for (const object of page.Contents ?? []) {
      const parsed = parseBinlogKey(prefix, cluster, object.Key ?? "");
      if (parsed === null) continue;
      const id = `${parsed.ref.host}/${parsed.ref.epoch}`;
      const epoch = epochs.get(id) ?? {
        host: parsed.ref.host,
        epoch: parsed.ref.epoch,
        recordKey: null,
        segments: [],
      };
      epochs.set(id, epoch);
      if (parsed.kind === "epoch") {
        epoch.recordKey = object.Key!;
        continue;
      }
      const { sequence, firstAt } = parsed.ref;
      let segment = epoch.segments.find((s) => s.sequence === sequence);
      if (segment === undefined) {
        segment = { sequence, firstAt, segmentKey: null, ledgerKey: null };
        epoch.segments.push(segment);
      }
      if (parsed.kind === "segment") segment.segmentKey = object.Key!;
      else segment.ledgerKey = object.Key!;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  const listed = [...epochs.values()];
  for (const epoch of listed) epoch.segments.sort((a, b) => a.sequence - b.sequence);
  return listed.sort((a, b) => a.epoch.localeCompare(b.epoch) || a.host.localeCompare(b.host));
}

/** A JSON object of the archive, parsed; an object that does not match its contract is an error naming it. */
async function readJson<T>(
  s3: S3Client,
  bucket: string,
  key: string,
  parse: (value: unknown) => T,
): Promise<T> {
  const text = await s3Call(`read s3://${bucket}/${key}`, async () => {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await response.Body?.transformToString()) ?? "";
  });
  try {
    return parse(JSON.parse(text));
  } catch (error) {
    throw new PipelineError(
      "PitrRefused",
      `s3://${bucket}/${key} is not a valid binlog archive object: ${messageOf(error)}`,
      "the archive is damaged there; a restore cannot rely on it. Look at the object (and its previous versions)",
      { cause: error },
    );
  }
}

/** An epoch's record. */
export function readEpochRecord(s3: S3Client, bucket: string, key: string): Promise<BinlogEpochRecord> {
  return readJson(s3, bucket, key, parseEpochRecord);
}

/** A segment's ledger entry, which must name the segment it is listed beside. */
export async function readLedgerEntry(
  s3: S3Client,
  bucket: string,
  key: string,
): Promise<BinlogSegmentEntry> {
  const entry = await readJson(s3, bucket, key, parseSegmentEntry);
  if (key.replace(/\.ledger\.json$/, ".binlog") !== entry.segmentKey) {
    throw new PipelineError(
      "PitrRefused",
      `the ledger entry s3://${bucket}/${key} describes ${entry.segmentKey}, not the segment beside it`,
      "the archive is damaged there; a restore cannot rely on it",
    );
  }
  return entry;
}

/** Runs `work` over `items`, `concurrency` at a time, keeping the order of the results. */
export async function inParallel<T, R>(
  items: T[],
  concurrency: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const at = next++;
      results[at] = await work(items[at]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** One chain with what a restore needs of it: the epoch's record and its complete segments' ledger entries. */
export interface ArchivedEpoch {
  host: string;
  epoch: string;
  record: BinlogEpochRecord | null;
  /** Complete segments (with a ledger entry), by sequence. */
  entries: BinlogSegmentEntry[];
  /** Segments whose object exists but whose ledger entry does not (an upload cut short): not usable. */
  incomplete: number[];
}

/**
 * Reads the records and the ledger entries of the listed chains; `wanted` picks the segments worth reading
 * (e.g. only those that began before the point a restore goes to). 16 GETs at a time.
 */
export async function readArchive(
  s3: S3Client,
  bucket: string,
  listed: ListedEpoch[],
  wanted: (segment: ListedSegment) => boolean = () => true,
): Promise<ArchivedEpoch[]> {
  return inParallel(listed, 2, async (epoch) => {
    const complete = epoch.segments.filter((s) => s.ledgerKey !== null && s.segmentKey !== null && wanted(s));
    const entries = await inParallel(complete, 8, (s) => readLedgerEntry(s3, bucket, s.ledgerKey!));
    return {
      host: epoch.host,
      epoch: epoch.epoch,
      record: epoch.recordKey === null ? null : await readEpochRecord(s3, bucket, epoch.recordKey),
      entries,
      incomplete: epoch.segments.filter((s) => s.ledgerKey === null).map((s) => s.sequence),
    };
  });
}
