import { BACKUP_ID_PATTERN, CHAIN_VERDICT_OBJECT, NAME_PATTERN, backupPrefix, type BackupRef } from "./keys";
import { schemaFor } from "./schema";
import { parser } from "./validate";
import { verdictAuthorSchema } from "./verification";

/**
 * The verifier's proof of the point-in-time chain between two verified snapshots of a cluster (DESIGN §1 B4,
 * §4): snapshot A restored, the archived binlog replayed from A's GTID state exactly up to B's, and the
 * result compared with B — the same GTID state, and every table's content checksum equal to the one B's
 * `verification.json` recorded. Written once beside B: `<prefix>/<cluster>/<host>/<B>/chain-verification.json`,
 * by the verifier's role only (VERDICT_OBJECTS).
 */

/** Why a chain failed. */
export type ChainFailure =
  /** The archive does not reach B from A: the GTIDs no archived segment holds (`missing`). */
  | "gap"
  /** A segment of the chain does not match its ledger entry, or cannot be read. */
  | "segment"
  /** A's snapshot did not restore, or the replay stopped (the applier's error). */
  | "replay"
  /** The replay ended at another GTID state than B's. */
  | "gtid"
  /** Tables differ from B's: their checksums, or tables only one side has (`tables`). */
  | "tables";

/** One snapshot of the chain. */
export interface ChainEnd {
  backupId: string;
  host: string;
  /** The GTID state the snapshot holds (A: where the replay starts; B: where it must end). */
  gtid: string;
  /** When the snapshot was taken (its manifest's start). */
  takenAt: string;
}

/** `chain-verification.json`. */
export interface ChainVerdict {
  formatVersion: 1;
  bucket: string;
  cluster: string;
  from: ChainEnd;
  to: ChainEnd;
  verdict: "verified" | "failed";
  /** Null when verified. */
  failure: { kind: ChainFailure; detail: string; missing: string | null; tables: string[] } | null;
  /** The replay, when it ran: how long, how many transactions from how many segments, where it ended. */
  replay: { seconds: number; transactions: number; segments: number; reachedGtid: string } | null;
  /** Tables whose checksums were compared, and how many of them B recorded without a checksum. */
  tablesCompared: number;
  /**
   * Seconds of the whole proof: restoring A (begun alongside B's verification unless
   * `chain.restoreAlongside` is false), replaying, comparing.
   */
  seconds: number;
  verifiedAt: string;
  verifier: { host: string };
}

/** How the verifier proves chains (`VerifyConfig.chain`). */
export interface ChainCheckSettings {
  /**
   * Prove the chain from the previous verified snapshot after every verified snapshot: the verifier restores
   * that snapshot again and replays the archive onto it (the cost of one restore plus the replay). Defaults
   * to true.
   */
  enabled?: boolean;
  /**
   * How long the proof waits for the binlog archive to reach B's GTID state (the archiver ships within its
   * RPO, or lags); after that B's message is retried later. Defaults to 300.
   */
  archiveWaitSeconds?: number;
  /**
   * Restore A while B is being verified (two restores at once for that while: twice the scratch disk and the
   * download's memory), so that B's chain verdict can follow B's own by the replay and the comparison alone.
   * Both restores are CPU-bound (decompression, hashing, extraction): on 2 cores they take as long together as
   * one after the other, and B's own verdict comes later (BENCHMARKS.md, `--chain`). False restores A after
   * B's verdict, one restore at a time. Defaults to true on a verifier with at least
   * `RESTORE_ALONGSIDE_MIN_CORES` cores, false below.
   */
  restoreAlongside?: boolean;
  /**
   * Keep the newest verified snapshot's restored tree (files only, its server stopped) on the scratch disk,
   * per cluster with a binlog archive, so that the next chain proof on this verifier replays onto it instead
   * of restoring it again; the oldest trees are removed first when the scratch volume would keep less free than
   * twice a tree's size. Off with `catchUp` (its tree is replicated past the snapshot). Defaults to true.
   */
  keepVerified?: boolean;
  /**
   * On A's kept tree, begin the replay while B is being verified (towards the state B's manifest captured),
   * so that B's chain verdict follows B's own by the comparison alone; both compete for the verifier's cores,
   * so B's own verdict comes later. False replays after B's verdict. Defaults to true.
   */
  replayAlongside?: boolean;
}

/** The cores from which a verifier restores A alongside B by default (`ChainCheckSettings.restoreAlongside`). */
export const RESTORE_ALONGSIDE_MIN_CORES = 4;

/** The JSON Schema of {@link ChainCheckSettings}; `verifyConfigSchema` embeds it. */
export const chainCheckSettingsSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    enabled: { type: "boolean" },
    archiveWaitSeconds: { type: "integer", minimum: 0, maximum: 3600 },
    restoreAlongside: { type: "boolean" },
    keepVerified: { type: "boolean" },
    replayAlongside: { type: "boolean" },
  },
} as const;

/** The chain verdict's key: beside snapshot B's `verification.json`. */
export const chainVerdictKey = (to: BackupRef): string => backupPrefix(to) + CHAIN_VERDICT_OBJECT;

const end = {
  type: "object",
  additionalProperties: false,
  required: ["backupId", "host", "gtid", "takenAt"],
  properties: {
    backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
    host: { type: "string", pattern: NAME_PATTERN },
    gtid: { type: "string" },
    takenAt: { type: "string", format: "date-time" },
  },
} as const;
const seconds = { type: "number", minimum: 0 } as const;

export const chainVerdictSchema = schemaFor<ChainVerdict>()({
  $id: "https://mysql-backup-pipeline/chain-verification-v1.json",
  type: "object",
  additionalProperties: false,
  required: [
    "formatVersion",
    "bucket",
    "cluster",
    "from",
    "to",
    "verdict",
    "failure",
    "replay",
    "tablesCompared",
    "seconds",
    "verifiedAt",
    "verifier",
  ],
  properties: {
    formatVersion: { const: 1 },
    bucket: { type: "string", minLength: 1 },
    cluster: { type: "string", pattern: NAME_PATTERN },
    from: end,
    to: end,
    verdict: { enum: ["verified", "failed"] },
    failure: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["kind", "detail", "missing", "tables"],
      properties: {
        kind: { enum: ["gap", "segment", "replay", "gtid", "tables"] },
        detail: { type: "string", minLength: 1 },
        missing: { type: ["string", "null"] },
        tables: { type: "array", items: { type: "string" } },
      },
    },
    replay: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["seconds", "transactions", "segments", "reachedGtid"],
      properties: {
        seconds,
        transactions: { type: "integer", minimum: 0 },
        segments: { type: "integer", minimum: 0 },
        reachedGtid: { type: "string" },
      },
    },
    tablesCompared: { type: "integer", minimum: 0 },
    seconds,
    verifiedAt: { type: "string", format: "date-time" },
    verifier: verdictAuthorSchema,
  },
});

/** Validates a chain verdict (on write and on read). */
export const parseChainVerdict = parser("chain verdict", chainVerdictSchema);
