import { BACKUP_ID_PATTERN, DRILL_VERDICT_OBJECT, NAME_PATTERN, backupPrefix, type BackupRef } from "./keys";
import { schemaFor } from "./schema";
import { parser } from "./validate";
import { verdictAuthorSchema } from "./verification";

/**
 * The verifier's point-in-time restore drill (DESIGN §1 B4, issue 14 item 3): once per snapshot interval of a
 * cluster, after the chain A → B is proven, a restore to a random second T strictly between A (from when
 * `restore --until` can start from it: its completion) and B's snapshot, by the machinery of the operator's
 * `restore --until T`. It must start, hold exactly the GTID state the archive says a restore to T must hold
 * (computed from the ledger and the segments' own events, not by the restore's selection), and pass
 * CHECK TABLE on every table. Its time to queryable is the cluster's measured PITR RTO. Written once beside B:
 * `<prefix>/<cluster>/<host>/<B>/pitr-drill.json`, by the verifier's role only (VERDICT_OBJECTS).
 */

/** Why a drill failed. */
export type DrillFailure =
  /** The restore to T was refused or stopped (a gap, a damaged segment, the applier's error). */
  | "restore"
  /** The restored snapshot did not start. */
  | "start"
  /** The server answered at another GTID state than the archive's at T. */
  | "gtid"
  /** CHECK TABLE failed on at least one table (`tables`). */
  | "tables";

/** The random point and where it was drawn from, enough to draw it again. */
export interface DrillPoint {
  /** The draw: T = window.from + 1 s + (seed mod the number of whole seconds strictly inside the window). */
  seed: number;
  /**
   * A's completion (a restore to T can start from A only from then) and B's snapshot time, or the archive's
   * newest commit when that is earlier (a lagging replica's archive carries the primary's commit times).
   */
  window: { from: string; to: string };
  /** T, a whole second. */
  at: string;
}

/** `pitr-drill.json`. */
export interface DrillVerdict {
  formatVersion: 1;
  bucket: string;
  cluster: string;
  /** The snapshot the restore starts from (A), with the GTID state its data holds. */
  from: { backupId: string; host: string; gtid: string; completedAt: string };
  /** The snapshot beside which the verdict lies (B). */
  to: { backupId: string; host: string; takenAt: string };
  point: DrillPoint;
  /**
   * The GTID state a restore to T must reach, computed by the verifier from the archive: the ledger's `after`
   * of each segment wholly at or before T, the events of the segments T may fall into.
   */
  expected: { gtid: string; segmentsFromLedger: number; segmentsRead: number; lastGtid: string | null };
  verdict: "passed" | "failed";
  /** Null when passed. */
  failure: { kind: DrillFailure; detail: string; tables: string[] } | null;
  /**
   * The restore, when it answered: the seconds from the drill's start to the restored server answering at T
   * (download, extract, crash recovery, replay: the measured RTO), the state it answered at, the replay.
   */
  restore: {
    secondsToQueryable: number;
    reachedGtid: string;
    transactions: number;
    segments: number;
    replaySeconds: number;
  } | null;
  /** Tables CHECK TABLE passed on (sequences are read instead). */
  tablesChecked: number;
  /** Seconds of the whole drill (RTO, the checks, the clean shutdown, the clean-up). */
  seconds: number;
  verifiedAt: string;
  verifier: { host: string };
}

/** How the verifier drills point-in-time restores (`VerifyConfig.pitrDrill`). */
export interface DrillSettings {
  /**
   * After each chain A → B proven, restore to a random second between A and B and check it (the cost of one
   * more restore and part of the replay). Defaults to true; a cluster without a binlog archive has no chain,
   * so no drill.
   */
  enabled?: boolean;
}

/** The JSON Schema of {@link DrillSettings}; `verifyConfigSchema` embeds it. */
export const drillSettingsSchema = {
  type: "object",
  additionalProperties: false,
  properties: { enabled: { type: "boolean" } },
} as const;

/** The drill verdict's key: beside snapshot B's `verification.json`. */
export const drillVerdictKey = (to: BackupRef): string => backupPrefix(to) + DRILL_VERDICT_OBJECT;

const time = { type: "string", format: "date-time" } as const;
const seconds = { type: "number", minimum: 0 } as const;
const count = { type: "integer", minimum: 0 } as const;
const backupId = { type: "string", pattern: BACKUP_ID_PATTERN } as const;
const host = { type: "string", pattern: NAME_PATTERN } as const;

export const drillVerdictSchema = schemaFor<DrillVerdict>()({
  $id: "https://mysql-backup-pipeline/pitr-drill-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "formatVersion",
    "bucket",
    "cluster",
    "from",
    "to",
    "point",
    "expected",
    "verdict",
    "failure",
    "restore",
    "tablesChecked",
    "seconds",
    "verifiedAt",
    "verifier",
  ],
  properties: {
    formatVersion: { const: 1 },
    bucket: { type: "string", minLength: 1 },
    cluster: { type: "string", pattern: NAME_PATTERN },
    from: {
      type: "object",
      additionalProperties: false,
      required: ["backupId", "host", "gtid", "completedAt"],
      properties: { backupId, host, gtid: { type: "string" }, completedAt: time },
    },
    to: {
      type: "object",
      additionalProperties: false,
      required: ["backupId", "host", "takenAt"],
      properties: { backupId, host, takenAt: time },
    },
    point: {
      type: "object",
      additionalProperties: false,
      required: ["seed", "window", "at"],
      properties: {
        seed: { type: "integer", minimum: 0 },
        window: {
          type: "object",
          additionalProperties: false,
          required: ["from", "to"],
          properties: { from: time, to: time },
        },
        at: time,
      },
    },
    expected: {
      type: "object",
      additionalProperties: false,
      required: ["gtid", "segmentsFromLedger", "segmentsRead", "lastGtid"],
      properties: {
        gtid: { type: "string" },
        segmentsFromLedger: count,
        segmentsRead: count,
        lastGtid: { type: ["string", "null"] },
      },
    },
    verdict: { enum: ["passed", "failed"] },
    failure: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["kind", "detail", "tables"],
      properties: {
        kind: { enum: ["restore", "start", "gtid", "tables"] },
        detail: { type: "string", minLength: 1 },
        tables: { type: "array", items: { type: "string" } },
      },
    },
    restore: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["secondsToQueryable", "reachedGtid", "transactions", "segments", "replaySeconds"],
      properties: {
        secondsToQueryable: seconds,
        reachedGtid: { type: "string" },
        transactions: count,
        segments: count,
        replaySeconds: seconds,
      },
    },
    tablesChecked: count,
    seconds,
    verifiedAt: time,
    verifier: verdictAuthorSchema,
  },
});

/** Validates a drill verdict (on write and on read). */
export const parseDrillVerdict = parser("PITR drill verdict", drillVerdictSchema);
