import { BACKUP_ID_PATTERN, NAME_PATTERN } from "./keys";
import { parser } from "./validate";

/** The checks of DESIGN §4, in the order they run; a report names the first that failed. */
export const CHECKS = ["objects", "startup", "position", "tables"] as const;
export type CheckName = (typeof CHECKS)[number];

export type Verdict = "verified" | "failed" | "unsupported";

/** The outcome of one check, with a sentence a person can act on. */
export interface CheckResult {
  name: CheckName;
  passed: boolean;
  detail: string;
}

/** One restored table: its check result and its exact row count. */
export interface RestoredTable {
  schema: string;
  table: string;
  engine: string;
  rows: number | null;
  check: string;
}

/** `verification.json`, written next to the backup it judges. */
export interface VerificationReport {
  formatVersion: 1;
  bucket: string;
  manifestKey: string;
  backupId: string;
  cluster: string;
  host: string;
  verdict: Verdict;
  /** The first check that failed, or null when verified. */
  failedCheck: CheckName | null;
  checks: CheckResult[];
  verifiedAt: string;
  verifier: { host: string; serverVersion: string | null };
  position: {
    captured: { gtid: string | null; binlog: { file: string; pos: number } | null };
    restored: { gtid: string | null; binlog: { file: string; pos: number } | null } | null;
  };
  tables: RestoredTable[];
  timings: {
    downloadExtractSeconds: number;
    recoverySeconds: number;
    checksSeconds: number;
    restoreSeconds: number;
  };
  /** Seconds from the snapshot to this report. */
  backupAgeSeconds: number;
}

const binlog = {
  type: ["object", "null"],
  additionalProperties: false,
  required: ["file", "pos"],
  properties: { file: { type: "string" }, pos: { type: "integer", minimum: 0 } },
};
const seconds = { type: "number", minimum: 0 };

export const verificationSchema = {
  $id: "https://mysql-backup-pipeline/verification-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "formatVersion",
    "bucket",
    "manifestKey",
    "backupId",
    "cluster",
    "host",
    "verdict",
    "failedCheck",
    "checks",
    "verifiedAt",
    "verifier",
    "position",
    "tables",
    "timings",
    "backupAgeSeconds",
  ],
  properties: {
    formatVersion: { const: 1 },
    bucket: { type: "string" },
    manifestKey: { type: "string" },
    backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
    cluster: { type: "string", pattern: NAME_PATTERN },
    host: { type: "string", pattern: NAME_PATTERN },
    verdict: { enum: ["verified", "failed", "unsupported"] },
    failedCheck: { enum: [...CHECKS, null] },
    checks: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "passed", "detail"],
        properties: { name: { enum: [...CHECKS] }, passed: { type: "boolean" }, detail: { type: "string" } },
      },
    },
    verifiedAt: { type: "string", format: "date-time" },
    verifier: {
      type: "object",
      additionalProperties: false,
      required: ["host", "serverVersion"],
      properties: { host: { type: "string" }, serverVersion: { type: ["string", "null"] } },
    },
    position: {
      type: "object",
      additionalProperties: false,
      required: ["captured", "restored"],
      properties: {
        captured: {
          type: "object",
          additionalProperties: false,
          required: ["gtid", "binlog"],
          properties: { gtid: { type: ["string", "null"] }, binlog },
        },
        restored: {
          type: ["object", "null"],
          additionalProperties: false,
          required: ["gtid", "binlog"],
          properties: { gtid: { type: ["string", "null"] }, binlog },
        },
      },
    },
    tables: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["schema", "table", "engine", "rows", "check"],
        properties: {
          schema: { type: "string" },
          table: { type: "string" },
          engine: { type: "string" },
          rows: { type: ["integer", "null"], minimum: 0 },
          check: { type: "string" },
        },
      },
    },
    timings: {
      type: "object",
      additionalProperties: false,
      required: ["downloadExtractSeconds", "recoverySeconds", "checksSeconds", "restoreSeconds"],
      properties: {
        downloadExtractSeconds: seconds,
        recoverySeconds: seconds,
        checksSeconds: seconds,
        restoreSeconds: seconds,
      },
    },
    backupAgeSeconds: { type: "number" },
  },
} as const;

export const parseVerificationReport = parser<VerificationReport>("verification.json", verificationSchema);
