import { BACKUP_ID_PATTERN, NAME_PATTERN } from "./keys";
import { LOCK_MODES, type LockMode, type TableType } from "./manifest";
import { schemaFor } from "./schema";
import { parser } from "./validate";

/**
 * The checks of DESIGN §4, in the order they run; a report names the first that failed. "pages" validates
 * every InnoDB page checksum of the cleanly shut down restore with `innochecksum` (passed with a note when
 * the verifier host has no innochecksum).
 */
export const CHECKS = ["objects", "startup", "position", "tables", "pages"] as const;
/**
 * Checks that run only when configured (`replication`: catch-up from the manifest's position, see
 * `VerifyConfig.catchUp`); when one ran, it must pass too.
 */
export const OPTIONAL_CHECKS = ["replication"] as const;
export type CheckName = (typeof CHECKS)[number] | (typeof OPTIONAL_CHECKS)[number];

export type Verdict = "verified" | "failed" | "unsupported";

/** The verifier host that wrote a segment, chain or drill verdict, as their schemas accept it. */
export const verdictAuthorSchema = {
  type: "object",
  additionalProperties: false,
  required: ["host"],
  properties: { host: { type: "string", minLength: 1 } },
} as const;

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
  /** Current rows (a sequence has one); null when they could not be counted. */
  rows: number | null;
  check: string;
  /** As in the manifest's inventory; absent for a base table of a manifest that predates it. */
  type?: TableType;
  /** True for a partitioned table. */
  partitioned?: boolean;
  /** A system-versioned table's rows including history (`FOR SYSTEM_TIME ALL`). */
  historyRows?: number | null;
  /**
   * The table's content checksum, `CHECKSUM TABLE … EXTENDED` on the restored server (every row read, every
   * column included): the point-in-time chain proof compares it with the same table replayed from the
   * previous snapshot. Null when none could be computed (a sequence; a statement that failed). Absent in
   * reports written before per-table checksums.
   */
  checksum?: number | null;
}

/** The GTID state a restored server recovered to, and what crash recovery left undecided. */
export interface RecoveredPosition {
  /** MariaDB `@@gtid_binlog_pos`. */
  gtidBinlogPos: string | null;
  /** MariaDB `@@gtid_slave_pos`: where a restored replica resumes. */
  gtidSlavePos: string | null;
  /** MySQL `@@gtid_executed`. */
  gtidExecuted: string | null;
  /**
   * XA transactions in the prepared state after crash recovery (`XA RECOVER`, as `formatID:gtrid:bqual`):
   * a client's XA transaction prepared when the snapshot was taken, which its coordinator (or replication)
   * decides. The server's own two-phase commits are never left here: recovery decides them from the binary
   * log, or the server does not start.
   */
  preparedXa: string[];
}

/**
 * One object of the backup exactly as the verifier read it: what its verdict covers, and what `restore`
 * fetches. S3's version id pins it where the bucket versions objects; the ETag, size and sha256 bind it
 * where it does not (the lab's emulator has no versions), and check it in both cases.
 */
export interface VerifiedObject {
  key: string;
  /** The version S3 said it served; null when the bucket does not version objects. */
  versionId: string | null;
  /** The ETag S3 gave for what was read. */
  etag: string;
  /** Its size, as S3 announced it. */
  bytes: number;
  /**
   * sha256 (hex) of every byte read; null when the verdict came before the whole object was read (its size
   * already disagreed with the manifest).
   */
  sha256: string | null;
}

/**
 * The objects a verdict was reached on; null for one that was not read (missing, or the checks stopped first).
 * A format 1 backup has one `archive`; a format 2 backup has `chunks`, every one of them (`archive` null).
 */
export interface VerifiedObjects {
  manifest: VerifiedObject | null;
  archive: VerifiedObject | null;
  /**
   * The archive's chunks (format 2), in order, each as read (null for one not read). Absent in reports on
   * format 1 backups and in reports written before format 2.
   */
  chunks?: Array<VerifiedObject | null>;
}

/** Every archive object a verdict binds, in order (the one object of format 1, the chunks of format 2). */
export function boundArchiveObjects(objects: VerifiedObjects): Array<VerifiedObject | null> {
  return objects.chunks ?? [objects.archive];
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
    /** The backup's lock mode (manifest `lock.mode`). Absent in reports written before lock modes. */
    lockMode?: LockMode;
    /**
     * Every GTID value the restored server recovered to. For a backup whose position was not frozen (lock
     * mode `none`) this is the backup's exact position: rejoining and point-in-time recovery start here.
     */
    recovered?: RecoveredPosition | null;
    /** For such a backup, the replica's GTID read just before and just after the snapshot. */
    bounds?: { before: string | null; after: string | null };
  };
  tables: RestoredTable[];
  timings: {
    downloadExtractSeconds: number;
    recoverySeconds: number;
    checksSeconds: number;
    restoreSeconds: number;
    /** Of `checksSeconds`: the per-table checksums. Absent in reports written before them. */
    checksumSeconds?: number;
  };
  /** Seconds from the snapshot to this report. */
  backupAgeSeconds: number;
  /**
   * The exact objects the verdict covers. A duplicate message and `restore` use these versions and refuse
   * objects that differ. Absent in reports written before this field existed: such a verdict binds no version.
   */
  objects?: VerifiedObjects;
  /**
   * With verdict "unsupported" only: why this verifier cannot restore the backup (server flavor or version
   * it cannot run) and what it runs instead. No check ran, so `checks` is empty and `failedCheck` null.
   */
  unsupportedReason?: string;
  /**
   * The table inventory and row counts compared with the previous verified backup of the same cluster.
   * Findings are warnings: the backup is a faithful copy of what the server held, so the verdict stands;
   * they say the data itself changed suspiciously (a table vanished, or lost more than the configured share
   * of its rows). Absent in reports written before this field existed.
   */
  drift?: DriftReport;
  /**
   * How old the newest data was at snapshot time, from a heartbeat table (pt-heartbeat style) when the
   * backup holds one; null when it holds none.
   */
  recoveryPoint?: RecoveryPoint | null;
}

/** One suspicious change against the previous verified backup. */
export interface DriftFinding {
  schema: string;
  table: string;
  kind: "vanished" | "shrank";
  previousRows: number | null;
  /** Null for a vanished table. */
  rows: number | null;
}

/** The comparison with the previous verified backup. */
export interface DriftReport {
  /** The backup compared with, or null when there is none (the cluster's first verified backup). */
  previousBackupId: string | null;
  /** Tables whose rows may shrink by at most this share before they are flagged. */
  maxShrinkShare: number;
  findings: DriftFinding[];
  /** Why no comparison was made, when none was (e.g. the reports cannot be listed). */
  note: string | null;
}

/** The recovery point of the backup, from its heartbeat table. */
export interface RecoveryPoint {
  /** `schema.table` the heartbeat was read from. */
  table: string;
  /** The newest heartbeat in the backup (UTC). */
  newestDataAt: string;
  /** Seconds between that heartbeat and the backup's lock. */
  lagSeconds: number;
}

const binlog = {
  type: ["object", "null"],
  additionalProperties: false,
  required: ["file", "pos"],
  properties: { file: { type: "string" }, pos: { type: "integer", minimum: 0 } },
} as const;
const seconds = { type: "number", minimum: 0 } as const;
const verifiedObject = {
  type: ["object", "null"],
  additionalProperties: false,
  required: ["key", "versionId", "etag", "bytes", "sha256"],
  properties: {
    key: { type: "string", minLength: 1 },
    versionId: { type: ["string", "null"], minLength: 1 },
    etag: { type: "string" },
    bytes: { type: "integer", minimum: 0 },
    sha256: { type: ["string", "null"], pattern: "^[0-9a-f]{64}$" },
  },
} as const;

export const verificationSchema = schemaFor<VerificationReport>()({
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
    failedCheck: { enum: [...CHECKS, ...OPTIONAL_CHECKS, null] },
    checks: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "passed", "detail"],
        properties: {
          name: { enum: [...CHECKS, ...OPTIONAL_CHECKS] },
          passed: { type: "boolean" },
          detail: { type: "string" },
        },
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
        lockMode: { enum: LOCK_MODES },
        recovered: {
          type: ["object", "null"],
          additionalProperties: false,
          required: ["gtidBinlogPos", "gtidSlavePos", "gtidExecuted", "preparedXa"],
          properties: {
            gtidBinlogPos: { type: ["string", "null"] },
            gtidSlavePos: { type: ["string", "null"] },
            gtidExecuted: { type: ["string", "null"] },
            preparedXa: { type: "array", items: { type: "string" } },
          },
        },
        bounds: {
          type: "object",
          additionalProperties: false,
          required: ["before", "after"],
          properties: { before: { type: ["string", "null"] }, after: { type: ["string", "null"] } },
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
          type: { enum: ["BASE TABLE", "SYSTEM VERSIONED", "SEQUENCE"] },
          partitioned: { type: "boolean" },
          historyRows: { type: ["integer", "null"], minimum: 0 },
          checksum: { type: ["integer", "null"], minimum: 0 },
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
        checksumSeconds: seconds,
      },
    },
    backupAgeSeconds: { type: "number" },
    objects: {
      type: "object",
      additionalProperties: false,
      required: ["manifest", "archive"],
      properties: {
        manifest: verifiedObject,
        archive: verifiedObject,
        chunks: { type: "array", minItems: 1, items: verifiedObject },
      },
    },
    unsupportedReason: { type: "string", minLength: 1 },
    drift: {
      type: "object",
      additionalProperties: false,
      required: ["previousBackupId", "maxShrinkShare", "findings", "note"],
      properties: {
        previousBackupId: { type: ["string", "null"], pattern: BACKUP_ID_PATTERN },
        maxShrinkShare: { type: "number", minimum: 0, maximum: 1 },
        findings: {
          type: "array",
          items: {
            type: "object",
            additionalProperties: false,
            required: ["schema", "table", "kind", "previousRows", "rows"],
            properties: {
              schema: { type: "string" },
              table: { type: "string" },
              kind: { enum: ["vanished", "shrank"] },
              previousRows: { type: ["integer", "null"], minimum: 0 },
              rows: { type: ["integer", "null"], minimum: 0 },
            },
          },
        },
        note: { type: ["string", "null"] },
      },
    },
    recoveryPoint: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["table", "newestDataAt", "lagSeconds"],
      properties: {
        table: { type: "string" },
        newestDataAt: { type: "string", format: "date-time" },
        lagSeconds: { type: "number" },
      },
    },
  },
});

export const parseVerificationReport = parser("verification.json", verificationSchema);
