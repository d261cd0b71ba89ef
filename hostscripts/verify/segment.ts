import type { S3Client } from "@aws-sdk/client-s3";
import {
  VERIFY_DEFAULTS,
  VerifierMetric,
  epochRecordKey,
  metric,
  parseBinlogKey,
  parseEpochRecord,
  parseSegmentEntry,
  parseSegmentVerdict,
  segmentVerdictKey,
  type BinlogArchivedMessage,
  type BinlogSegmentEntry,
  type BinlogSegmentRef,
  type MetricDatum,
  type SegmentVerdict,
  type VerifiedObject,
  type VerifyConfig,
} from "../../contracts";
import { messageOf, PipelineError } from "../common/errors";
import type { Logger } from "../common/log";
import type { MetricsSink } from "../common/metrics";
import { getObjectOrNull, s3Call } from "../common/s3";
import { createVerdictOnce, readObjectText, readStoredVerdict } from "./objects";
import { checkSegment, type Predecessor, type SegmentEvidence } from "./segment-checks";

/**
 * A `binlog.archived` message (DESIGN §1 B3): the segment it announces is checked without a restore
 * (segment-checks.ts) and its verdict written once beside it, `…segment-verification.json`, create-only like
 * `verification.json`: a duplicate, or two verifiers given the same message, find the verdict and return it,
 * so each segment gets exactly one. A failed segment emits SegmentFailed, which pages.
 *
 * Messages arrive in any order. A segment is judged against its predecessor's ledger entry (or its epoch's
 * record), not its predecessor's verdict, so order does not matter while those are in S3; the archiver writes
 * them before it announces the next segment. When the predecessor is not (yet) there, the message is deferred
 * (made visible again after `segments.deferSeconds`) up to `segments.maxDeferrals` receives; after that the
 * missing predecessor is a gap and the verdict says so. Keep maxDeferrals below the queue's maxReceiveCount,
 * or the message reaches the DLQ first.
 */

/** What checking a segment runs on. */
export interface SegmentDeps {
  s3: S3Client;
  metrics: MetricsSink;
  log: Logger;
  now: () => Date;
  /** This verifier's name in verdicts. */
  hostname: string;
}

/** How one `binlog.archived` message ended. */
export interface SegmentResult {
  outcome: "verified" | "failed" | "deferred";
  verdict: SegmentVerdict | null;
  verdictKey: string;
  /** True when the segment already had a verdict: nothing was checked again. */
  alreadyReported: boolean;
}

/** The segment the message's keys name; they must follow the layout and name the message's segment. */
export function checkSegmentKeys(message: BinlogArchivedMessage): BinlogSegmentRef {
  const parts = message.ledgerKey.split("/");
  const prefix = parts.slice(0, -5).join("/");
  const ledger = parseBinlogKey(prefix, message.cluster, message.ledgerKey);
  const segment = parseBinlogKey(prefix, message.cluster, message.segmentKey);
  if (ledger?.kind !== "ledger" || segment?.kind !== "segment")
    throw new Error(
      `ledgerKey "${message.ledgerKey}" and segmentKey "${message.segmentKey}" are not a segment's keys (<prefix>/<cluster>/binlogs/<host>/<epoch>/<sequence>-<stamp>.ledger.json|.binlog)`,
    );
  const ref = ledger.ref;
  const same =
    segment.ref.host === ref.host &&
    segment.ref.epoch === ref.epoch &&
    segment.ref.sequence === ref.sequence &&
    segment.ref.firstAt.getTime() === ref.firstAt.getTime();
  const mismatched = (["host", "epoch", "sequence"] as const).filter((k) => ref[k] !== message[k]);
  if (!same || mismatched.length > 0)
    throw new Error(
      `the keys do not name the message's segment (${mismatched.map((k) => `${k} ${String(message[k])}`).join(", ") || "the two keys differ"})`,
    );
  return ref;
}

/** Checks the announced segment and writes its verdict once; see the module comment. */
export async function verifySegmentMessage(
  config: VerifyConfig,
  message: BinlogArchivedMessage,
  ref: BinlogSegmentRef,
  delivery: { receiveCount: number },
  deps: SegmentDeps,
): Promise<SegmentResult> {
  const verdictKey = segmentVerdictKey(ref);
  const stored = await readStored(deps.s3, message.bucket, verdictKey);
  if (stored !== null) {
    deps.log.info(`segment ${describe(message)} already has the verdict "${stored.verdict}"`, { verdictKey });
    // Received before and not deleted: whatever handled it may have stopped before the metrics went out.
    if (delivery.receiveCount > 1) await emit(stored, deps);
    return { outcome: stored.verdict, verdict: stored, verdictKey, alreadyReported: true };
  }
  const settings = { ...VERIFY_DEFAULTS.segments, ...config.segments };
  const evidence = await gather(message, settings.timeSkewSeconds, deps.s3);
  const { predecessor } = evidence.evidence;
  if (
    predecessor.kind === "missing" &&
    predecessor.problem === undefined &&
    delivery.receiveCount <= settings.maxDeferrals
  ) {
    deps.log.info(`segment ${describe(message)}: its predecessor is not in the archive yet; deferred`, {
      missing: predecessor.key,
      retryInSeconds: settings.deferSeconds,
      receiveCount: delivery.receiveCount,
    });
    return { outcome: "deferred", verdict: null, verdictKey, alreadyReported: false };
  }
  const verdict = buildVerdict(message, evidence, deps);
  const raced = await createVerdictOnce(deps.s3, verdict, verdictKey, config.s3?.kmsKeyId, () =>
    readStored(deps.s3, message.bucket, verdictKey),
  );
  if (raced !== null) return { outcome: raced.verdict, verdict: raced, verdictKey, alreadyReported: true };
  await emit(verdict, deps);
  const failed = verdict.checks.find((c) => !c.passed);
  (failed ? deps.log.error : deps.log.info)(
    `segment ${describe(message)} ${verdict.verdict}${failed ? ` (check "${failed.name}": ${failed.detail})` : ""}`,
    { verdictKey, events: verdict.events, transactions: verdict.transactions },
  );
  return { outcome: verdict.verdict, verdict, verdictKey, alreadyReported: false };
}

const describe = (m: BinlogArchivedMessage) => `${m.cluster}/${m.host}/${m.epoch} #${m.sequence}`;

/** What was read to judge the segment: the evidence, and the object as S3 served it. */
interface Gathered {
  evidence: SegmentEvidence;
  object: VerifiedObject | null;
}

/** Reads the ledger entry, the object and the predecessor; a failure to reach S3 is the verifier's. */
async function gather(message: BinlogArchivedMessage, skew: number, s3: S3Client): Promise<Gathered> {
  const { bucket } = message;
  const ledgerText = await readObjectText(s3, bucket, message.ledgerKey);
  let entry: SegmentEvidence["entry"];
  try {
    if (ledgerText === null) throw new Error("it is missing from S3, yet its segment was announced");
    entry = parseSegmentEntry(JSON.parse(ledgerText));
  } catch (error) {
    entry = { problem: `the ledger entry ${message.ledgerKey} cannot be used: ${messageOf(error)}` };
  }
  const response = await s3Call(`read s3://${bucket}/${message.segmentKey}`, () =>
    getObjectOrNull(s3, bucket, message.segmentKey),
  );
  const bytes = response === null ? null : Buffer.from(await response.Body!.transformToByteArray());
  const object: VerifiedObject | null =
    response === null
      ? null
      : {
          key: message.segmentKey,
          versionId: response.VersionId ?? null,
          etag: response.ETag ?? "",
          bytes: bytes!.length,
          sha256: null,
        };
  // Without a ledger entry nothing names the predecessor: one not written yet is waited for like one; one
  // that is there but invalid is judged at once ("ledger" fails).
  const predecessor: Predecessor =
    "problem" in entry
      ? {
          kind: "missing",
          key: message.ledgerKey,
          ...(ledgerText === null ? {} : { problem: entry.problem }),
        }
      : await predecessorOf(s3, bucket, entry);
  return { evidence: { message, entry, bytes, predecessor, timeSkewSeconds: skew }, object };
}

/** The previous segment's ledger entry, or for an epoch's first segment the epoch's record. */
async function predecessorOf(s3: S3Client, bucket: string, entry: BinlogSegmentEntry): Promise<Predecessor> {
  const prefix = entry.segmentKey.split("/").slice(0, -5).join("/");
  const key =
    entry.previousLedgerKey ??
    epochRecordKey({ prefix, cluster: entry.cluster, host: entry.host, epoch: entry.epoch });
  const text = await readObjectText(s3, bucket, key);
  if (text === null) return { kind: "missing", key };
  try {
    return entry.previousLedgerKey === null
      ? { kind: "epoch", record: parseEpochRecord(JSON.parse(text)) }
      : { kind: "segment", entry: parseSegmentEntry(JSON.parse(text)) };
  } catch (error) {
    // A damaged predecessor is judged (its own verdict fails too); waiting for it would not mend it.
    return { kind: "missing", key, problem: `cannot be used: ${messageOf(error)}` };
  }
}

function buildVerdict(message: BinlogArchivedMessage, gathered: Gathered, deps: SegmentDeps): SegmentVerdict {
  const findings = checkSegment(gathered.evidence);
  const failed = findings.checks.find((c) => !c.passed) ?? null;
  const entry = gathered.evidence.entry;
  return parseSegmentVerdict({
    formatVersion: 1,
    bucket: message.bucket,
    cluster: message.cluster,
    host: message.host,
    epoch: message.epoch,
    sequence: message.sequence,
    segmentKey: message.segmentKey,
    ledgerKey: message.ledgerKey,
    verdict: failed === null ? "verified" : "failed",
    failedCheck: failed?.name ?? null,
    checks: findings.checks,
    object: gathered.object && { ...gathered.object, sha256: findings.sha256 },
    gtid: "problem" in entry ? null : { before: entry.gtid.before, after: entry.gtid.after },
    events: findings.events,
    transactions: findings.transactions,
    verifiedAt: deps.now().toISOString(),
    verifier: { host: deps.hostname },
  });
}

/** The verdict already written, or null; one that is not a valid verdict throws (someone must look at it). */
function readStored(s3: S3Client, bucket: string, key: string): Promise<SegmentVerdict | null> {
  return readStoredVerdict(s3, bucket, key, parseSegmentVerdict, {
    name: "segment verdict",
    redo: "the segment checked again",
  });
}

/** The data point of a segment's verdict: SegmentVerified or SegmentFailed, dimension Cluster. */
export function segmentMetrics(
  verdict: Pick<SegmentVerdict, "verdict" | "cluster">,
  now: Date,
): MetricDatum[] {
  const name = verdict.verdict === "verified" ? VerifierMetric.SegmentVerified : VerifierMetric.SegmentFailed;
  return [metric(name, 1, { Cluster: verdict.cluster }, now)];
}

/** Emits a verdict's metric; a sink that fails leaves the message for a retry (which emits it again). */
async function emit(verdict: SegmentVerdict, deps: SegmentDeps): Promise<void> {
  await deps.metrics.put(segmentMetrics(verdict, deps.now())).catch((error: unknown) => {
    throw new PipelineError(
      "VerifierInfrastructure",
      `cannot emit the segment verdict's metric: ${messageOf(error)}`,
      "check the metrics sink; the verdict is written and its metric is emitted again when the message comes back",
      { cause: error },
    );
  });
}
