import { awsSettingsSchema, type AwsSettings } from "./config";
import { EPOCH_PATTERN, GTID_TEXT_PATTERN } from "./binlog";
import { binlogArchiveConfigSchema } from "./binlog-config";
import { BACKUP_ID_PATTERN, NAME_PATTERN } from "./keys";
import { schemaFor } from "./schema";
import { parser } from "./validate";
import { CHECKS, OPTIONAL_CHECKS, type CheckName, type Verdict } from "./verification";

/**
 * `mysql-backup status`: its config (which bucket, which clusters and hosts must have backups, and when a
 * host's health turns), and its `--json` result, which monitoring reads (Nagios-style checks, dashboards).
 */

/** A cluster `status` expects backups of; one listed here with no backup at all is critical. */
export interface StatusCluster {
  /** The cluster's name in keys and metrics. */
  name: string;
  /**
   * Hours within which a host must have a complete backup and a verified one: the alarms' `windowHours`.
   * Defaults to the config's `windowHours`.
   */
  windowHours?: number;
  /** Its replicas; one listed here with no backup is critical (a host never seen in S3 is otherwise invisible). Defaults to the hosts found in S3. */
  hosts?: string[];
  /**
   * Point-in-time recovery (the stack's `clusters[].pitr`): with `enabled`, every host of the cluster must
   * have a binlog archive (none is critical); `rpoSeconds` is what the archive lag is judged against. An
   * archive found in S3 is judged whatever this says. Defaults to not expected, an RPO of 10 s.
   */
  pitr?: { enabled?: boolean; rpoSeconds?: number };
}

/** `mysql-backup status --config FILE`. Reads only S3: an operator's read-only role is enough. */
export interface StatusConfig {
  /** The backup bucket and the key prefix above `<cluster>/`, as in the replicas' configs. */
  s3: {
    bucket: string;
    /** Defaults to "backups". */
    prefix?: string;
  };
  /** How to reach AWS. Defaults to the SDK's chain. */
  aws?: AwsSettings;
  /** Hours within which every host needs a complete and a verified backup (the alarms' window). Defaults to 26. */
  windowHours?: number;
  /**
   * Hours a complete backup may wait for its verdict, and an archive for its manifest, before they count as
   * overdue (warning): the queue's "oldest message" alarm. Defaults to 6.
   */
  verifyWithinHours?: number;
  /** Clusters (and hosts) that must have backups; clusters found in S3 are shown too. Defaults to none. */
  clusters?: StatusCluster[];
}

/** Nagios' states: exit codes 0, 1, 2. */
export type HealthState = "ok" | "warning" | "critical";

/** The exit code of `status` for a state (Nagios plugin convention); 3 (UNKNOWN) is any failure to judge. */
export const HEALTH_EXIT_CODE: Record<HealthState, number> = { ok: 0, warning: 1, critical: 2 };

/** One finding about a host or cluster, worded for the person on call: what is wrong and what to do. */
export interface HealthReason {
  state: HealthState;
  message: string;
}

/** The newest complete backup of a host. */
export interface NewestBackup {
  backupId: string;
  /** Seconds since the backup was taken (its id's time). */
  ageSeconds: number;
  /** The archive's size, from the listing. */
  archiveBytes: number;
  /** How long the server was locked (the manifest's `lock.ms`). */
  lockMs: number;
  /** Its verdict, or null while none is written. */
  verdict: Verdict | null;
}

/** The newest backup of a host that a verifier proved restorable. */
export interface NewestVerified {
  backupId: string;
  ageSeconds: number;
  verifiedAt: string;
  /** The measured restore: download, extract, recovery and checks (the report's `timings.restoreSeconds`). */
  restoreSeconds: number;
}

/** A backup newer than the newest verified one that is not verified. */
export interface BackupSinceVerified {
  backupId: string;
  ageSeconds: number;
  /**
   * `failed` / `unsupported`: the verifier's verdict; `unverified`: complete, no verdict yet;
   * `incomplete`: an archive without a manifest (the backup never finished, or is still uploading).
   */
  state: "failed" | "unsupported" | "unverified" | "incomplete";
  /** The check that failed (verdict `failed`), else null. */
  failedCheck: CheckName | null;
}

/** A span of time any second of which `restore --until` reaches. */
export interface RecoveryWindow {
  /** When the oldest snapshot the window starts from completed. */
  from: string;
  /** The newest commit the chain reaches from it without a gap. */
  to: string;
  seconds: number;
  /** The verified backup a restore to `from` starts from. */
  fromBackupId: string;
  /** The GTID state at `to`. */
  toGtid: string;
}

/** The newest point-in-time restore drill of a cluster (contracts/drill-verdict.ts), as `status` shows it. */
export interface DrillStatus {
  /** The snapshot beside which it lies (B), and when it ran. */
  backupId: string;
  verifiedAt: string;
  /** The point restored to. */
  at: string;
  verdict: "passed" | "failed";
  /** Seconds to queryable at the point (the measured PITR RTO); null when the restore never answered. */
  rtoSeconds: number | null;
}

/** A gap an epoch record names: transactions purged before the archiver read them. */
export interface BinlogGap {
  epoch: string;
  /** When the archiver found it (the epoch's start). */
  foundAt: string;
  /** The GTIDs no segment of this host holds. */
  missing: string;
  /** A verified backup taken after the gap (restores past it start there), or null: the gap is unresolved. */
  resolvedBy: string | null;
}

/** A host's binlog archive (point-in-time recovery) as `status` reads it from S3. */
export interface BinlogArchiveStatus {
  /** The RPO the lag is judged against (status config `clusters[].pitr.rpoSeconds`). */
  rpoSeconds: number;
  /** The config expects an archive of this host (`pitr.enabled`); false when one was only found. */
  expected: boolean;
  /** Now minus the newest archived transaction's commit; null when no transaction is archived. */
  lagSeconds: number | null;
  newestCommitAt: string | null;
  /** Seconds since the newest segment reached S3 (its ledger's `archivedAt`); null without a segment. */
  silentSeconds: number | null;
  /** The newest complete segment (with its ledger entry). */
  newestSegment: { epoch: string; sequence: number; archivedAt: string; gtidAfter: string } | null;
  /** Chains (epochs) of this host. */
  epochs: number;
  /**
   * From the oldest verified snapshot this host's archive reaches the newest archived commit from without a
   * gap, to that commit; null when no verified snapshot is covered.
   */
  archivedWindow: RecoveryWindow | null;
  /**
   * The window the verifier proved by replaying the archive between verified snapshots (the cluster's newest
   * run of verified `chain-verification.json`, followed back at most 8 links); null until a chain is proven.
   * The cluster's, on each of its archiving hosts. Same shape as `archivedWindow`.
   */
  provenWindow: RecoveryWindow | null;
  /** The cluster's newest restore drill (on each of its archiving hosts); null until one ran. */
  lastDrill: DrillStatus | null;
  /** Every gap an epoch record of this host names, oldest first. */
  gaps: BinlogGap[];
}

/** One replica of a cluster. */
export interface HostStatus {
  host: string;
  health: HealthState;
  /** Every finding, worst first; an ok host has one ok line. */
  reasons: HealthReason[];
  /** Complete backups (with a manifest) found. */
  backups: number;
  newestBackup: NewestBackup | null;
  newestVerified: NewestVerified | null;
  /** Newest first; verdicts older than the newest verified backup are history and not read. */
  sinceVerified: BackupSinceVerified[];
  /** Its binlog archive; null when it has none and none is expected. */
  binlog: BinlogArchiveStatus | null;
}

/** One cluster: its hosts and its worst state. */
export interface ClusterStatus {
  cluster: string;
  health: HealthState;
  windowHours: number;
  /** Findings about the cluster as a whole (e.g. an expected cluster without backups). */
  reasons: HealthReason[];
  hosts: HostStatus[];
}

/** What `status --json` prints. */
export interface StatusReport {
  formatVersion: 1;
  generatedAt: string;
  bucket: string;
  prefix: string;
  /** The worst state of every cluster shown. */
  health: HealthState;
  /** The process's exit code: 0 ok, 1 warning, 2 critical. */
  exitCode: number;
  clusters: ClusterStatus[];
  /** What the answer cost: S3 list pages and objects listed, and objects fetched (manifests, verdicts). */
  reads: { listRequests: number; keysListed: number; objectsFetched: number };
}

const health = { enum: ["ok", "warning", "critical"] } as const;
const seconds = { type: "number", minimum: 0 } as const;
const backupId = { type: "string", pattern: BACKUP_ID_PATTERN } as const;
const reasons = {
  type: "array",
  items: {
    type: "object",
    additionalProperties: false,
    required: ["state", "message"],
    properties: { state: health, message: { type: "string", minLength: 1 } },
  },
} as const;
const hours = { type: "integer", minimum: 1, maximum: 720 } as const;
const time = { type: "string", format: "date-time" } as const;
const nullableTime = { type: ["string", "null"], format: "date-time" } as const;
const gtid = { type: "string", pattern: GTID_TEXT_PATTERN } as const;
const epoch = { type: "string", pattern: EPOCH_PATTERN } as const;
const recoveryWindow = {
  type: ["object", "null"],
  additionalProperties: false,
  required: ["from", "to", "seconds", "fromBackupId", "toGtid"],
  properties: { from: time, to: time, seconds, fromBackupId: backupId, toGtid: gtid },
} as const;
const binlogArchive = {
  type: ["object", "null"],
  additionalProperties: false,
  required: [
    "rpoSeconds",
    "expected",
    "lagSeconds",
    "newestCommitAt",
    "silentSeconds",
    "newestSegment",
    "epochs",
    "archivedWindow",
    "provenWindow",
    "lastDrill",
    "gaps",
  ],
  properties: {
    rpoSeconds: binlogArchiveConfigSchema.properties.rpoSeconds,
    expected: { type: "boolean" },
    lagSeconds: { type: ["number", "null"], minimum: 0 },
    newestCommitAt: nullableTime,
    silentSeconds: { type: ["number", "null"], minimum: 0 },
    newestSegment: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["epoch", "sequence", "archivedAt", "gtidAfter"],
      properties: { epoch, sequence: { type: "integer", minimum: 1 }, archivedAt: time, gtidAfter: gtid },
    },
    epochs: { type: "integer", minimum: 0 },
    archivedWindow: recoveryWindow,
    provenWindow: recoveryWindow,
    lastDrill: {
      type: ["object", "null"],
      additionalProperties: false,
      required: ["backupId", "verifiedAt", "at", "verdict", "rtoSeconds"],
      properties: {
        backupId: { type: "string", pattern: BACKUP_ID_PATTERN },
        verifiedAt: time,
        at: time,
        verdict: { enum: ["passed", "failed"] },
        rtoSeconds: { type: ["number", "null"], minimum: 0 },
      },
    },
    gaps: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["epoch", "foundAt", "missing", "resolvedBy"],
        properties: {
          epoch,
          foundAt: time,
          missing: { type: "string", minLength: 1 },
          resolvedBy: { type: ["string", "null"], pattern: BACKUP_ID_PATTERN },
        },
      },
    },
  },
} as const;
const bucket = { type: "string", pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" } as const;

export const statusConfigSchema = schemaFor<StatusConfig>()({
  type: "object",
  additionalProperties: false,
  required: ["s3"],
  properties: {
    s3: {
      type: "object",
      additionalProperties: false,
      required: ["bucket"],
      properties: { bucket, prefix: { type: "string", pattern: "^[A-Za-z0-9._/-]*$" } },
    },
    aws: awsSettingsSchema,
    windowHours: hours,
    verifyWithinHours: hours,
    clusters: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name: { type: "string", pattern: NAME_PATTERN },
          windowHours: hours,
          hosts: { type: "array", items: { type: "string", pattern: NAME_PATTERN } },
          pitr: {
            type: "object",
            additionalProperties: false,
            properties: {
              enabled: { type: "boolean" },
              rpoSeconds: binlogArchiveConfigSchema.properties.rpoSeconds,
            },
          },
        },
      },
    },
  },
});

export const statusReportSchema = schemaFor<StatusReport>()({
  $id: "https://mysql-backup-pipeline/status-v1.json",
  type: "object",
  additionalProperties: false,
  required: ["formatVersion", "generatedAt", "bucket", "prefix", "health", "exitCode", "clusters", "reads"],
  properties: {
    formatVersion: { const: 1 },
    generatedAt: { type: "string", format: "date-time" },
    bucket: { type: "string" },
    prefix: { type: "string" },
    health,
    exitCode: { enum: [0, 1, 2] },
    clusters: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["cluster", "health", "windowHours", "reasons", "hosts"],
        properties: {
          cluster: { type: "string", pattern: NAME_PATTERN },
          health,
          windowHours: hours,
          reasons,
          hosts: {
            type: "array",
            items: {
              type: "object",
              additionalProperties: false,
              required: [
                "host",
                "health",
                "reasons",
                "backups",
                "newestBackup",
                "newestVerified",
                "sinceVerified",
                "binlog",
              ],
              properties: {
                host: { type: "string", pattern: NAME_PATTERN },
                health,
                reasons: { ...reasons, minItems: 1 },
                backups: { type: "integer", minimum: 0 },
                newestBackup: {
                  type: ["object", "null"],
                  additionalProperties: false,
                  required: ["backupId", "ageSeconds", "archiveBytes", "lockMs", "verdict"],
                  properties: {
                    backupId,
                    ageSeconds: seconds,
                    archiveBytes: { type: "integer", minimum: 0 },
                    lockMs: seconds,
                    verdict: { enum: ["verified", "failed", "unsupported", null] },
                  },
                },
                newestVerified: {
                  type: ["object", "null"],
                  additionalProperties: false,
                  required: ["backupId", "ageSeconds", "verifiedAt", "restoreSeconds"],
                  properties: {
                    backupId,
                    ageSeconds: seconds,
                    verifiedAt: { type: "string", format: "date-time" },
                    restoreSeconds: seconds,
                  },
                },
                sinceVerified: {
                  type: "array",
                  items: {
                    type: "object",
                    additionalProperties: false,
                    required: ["backupId", "ageSeconds", "state", "failedCheck"],
                    properties: {
                      backupId,
                      ageSeconds: seconds,
                      state: { enum: ["failed", "unsupported", "unverified", "incomplete"] },
                      failedCheck: { enum: [...CHECKS, ...OPTIONAL_CHECKS, null] },
                    },
                  },
                },
                binlog: binlogArchive,
              },
            },
          },
        },
      },
    },
    reads: {
      type: "object",
      additionalProperties: false,
      required: ["listRequests", "keysListed", "objectsFetched"],
      properties: {
        listRequests: { type: "integer", minimum: 0 },
        keysListed: { type: "integer", minimum: 0 },
        objectsFetched: { type: "integer", minimum: 0 },
      },
    },
  },
});

export const parseStatusConfig = parser("status config", statusConfigSchema);
/** Validates `status --json` output; the command checks its own result with it before printing. */
export const parseStatusReport = parser("status report", statusReportSchema);
