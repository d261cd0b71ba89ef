import { EPOCH_PATTERN, GTID_TEXT_PATTERN, LEDGER_SUFFIX, ledgerKey, type BinlogSegmentRef } from "./binlog";
import { NAME_PATTERN, SEGMENT_VERDICT_SUFFIX } from "./keys";
import { schemaFor } from "./schema";
import { parser } from "./validate";
import { verdictAuthorSchema, type VerifiedObject } from "./verification";

/**
 * The verifier's verdict on one binlog segment (DESIGN §1 B3), written once beside the segment:
 * `<prefix>/<cluster>/binlogs/<host>/<epoch>/<sequence>-<stamp>.segment-verification.json`. Proven without a
 * restore: the ledger entry exists and agrees with the announcement, the object is the one the ledger
 * describes (size, sha256), every event reads with its CRC32 and the transactions are the ledger's, the GTIDs
 * continue the predecessor's, and the commit times never go back. Only the verifier's role may write it
 * (VERDICT_OBJECTS), as `verification.json`.
 */

/** The checks of a segment, in the order they run; a verdict names the first that failed. */
export const SEGMENT_CHECKS = ["ledger", "object", "events", "continuity", "times"] as const;
export type SegmentCheckName = (typeof SEGMENT_CHECKS)[number];

/** One segment check's outcome, with a sentence a person can act on. */
export interface SegmentCheckResult {
  name: SegmentCheckName;
  passed: boolean;
  detail: string;
}

/** `<…>.segment-verification.json`. */
export interface SegmentVerdict {
  formatVersion: 1;
  bucket: string;
  cluster: string;
  host: string;
  epoch: string;
  sequence: number;
  segmentKey: string;
  ledgerKey: string;
  verdict: "verified" | "failed";
  failedCheck: SegmentCheckName | null;
  checks: SegmentCheckResult[];
  /** The segment object exactly as read (version, ETag, size, sha256); null when it could not be read. */
  object: VerifiedObject | null;
  /** The GTID state before and after the segment, as its ledger entry says; null without a ledger entry. */
  gtid: { before: string; after: string } | null;
  /** Events and whole transactions read from the object (0 when it could not be read). */
  events: number;
  transactions: number;
  verifiedAt: string;
  verifier: { host: string };
}

/** How the verifier checks announced segments (`VerifyConfig.segments`). */
export interface SegmentCheckSettings {
  /**
   * How often a segment whose predecessor is not in the archive yet is put back, before the missing
   * predecessor is judged a gap. Keep it below the queue's maxReceiveCount (3 by default), or the message
   * reaches the DLQ first. Defaults to 2.
   */
  maxDeferrals?: number;
  /** Seconds a deferred message stays invisible before it is tried again. Defaults to 60. */
  deferSeconds?: number;
  /**
   * How far a transaction's commit time may step back behind one committed before it. MariaDB stamps a
   * transaction with its last statement's start, so one long statement steps back by its duration; more is
   * a clock step or another history. Defaults to 60.
   */
  timeSkewSeconds?: number;
}

/** The JSON Schema of {@link SegmentCheckSettings}; `verifyConfigSchema` embeds it. */
export const segmentCheckSettingsSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    maxDeferrals: { type: "integer", minimum: 0, maximum: 100 },
    deferSeconds: { type: "integer", minimum: 0, maximum: 43200 },
    timeSkewSeconds: { type: "integer", minimum: 0, maximum: 86400 },
  },
} as const;

/** The verdict key of a segment. */
export function segmentVerdictKey(ref: BinlogSegmentRef): string {
  return ledgerKey(ref).slice(0, -LEDGER_SUFFIX.length) + SEGMENT_VERDICT_SUFFIX;
}

const gtidText = { type: "string", pattern: GTID_TEXT_PATTERN } as const;
const key = { type: "string", minLength: 1, maxLength: 1024 } as const;
const count = { type: "integer", minimum: 0 } as const;

export const segmentVerdictSchema = schemaFor<SegmentVerdict>()({
  $id: "https://mysql-backup-pipeline/segment-verification-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "formatVersion",
    "bucket",
    "cluster",
    "host",
    "epoch",
    "sequence",
    "segmentKey",
    "ledgerKey",
    "verdict",
    "failedCheck",
    "checks",
    "object",
    "gtid",
    "events",
    "transactions",
    "verifiedAt",
    "verifier",
  ],
  properties: {
    formatVersion: { const: 1 },
    bucket: { type: "string", minLength: 1 },
    cluster: { type: "string", pattern: NAME_PATTERN },
    host: { type: "string", pattern: NAME_PATTERN },
    epoch: { type: "string", pattern: EPOCH_PATTERN },
    sequence: { type: "integer", minimum: 1 },
    segmentKey: key,
    ledgerKey: key,
    verdict: { enum: ["verified", "failed"] },
    failedCheck: { enum: [...SEGMENT_CHECKS, null] },
    checks: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "passed", "detail"],
        properties: {
          name: { enum: SEGMENT_CHECKS },
          passed: { type: "boolean" },
          detail: { type: "string" },
        },
      },
    },
    object: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["key", "versionId", "etag", "bytes", "sha256"],
      properties: {
        key,
        versionId: { type: ["string", "null"], minLength: 1 },
        etag: { type: "string" },
        bytes: count,
        sha256: { type: ["string", "null"], pattern: "^[0-9a-f]{64}$" },
      },
    },
    gtid: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["before", "after"],
      properties: { before: gtidText, after: gtidText },
    },
    events: count,
    transactions: count,
    verifiedAt: { type: "string", format: "date-time" },
    verifier: verdictAuthorSchema,
  },
});

/** Validates a segment verdict (on write and on read). */
export const parseSegmentVerdict = parser("segment verdict", segmentVerdictSchema);
