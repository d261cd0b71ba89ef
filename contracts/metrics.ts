/**
 * Metric names and dimensions shared by the host scripts (which emit) and the alarms (which watch).
 * Nobody re-types these strings: an alarm on a metric that is never emitted would stay silent forever.
 */
export const METRIC_NAMESPACE = "MysqlBackupPipeline";

export const Dimension = {
  Cluster: "Cluster",
  Host: "Host",
  /**
   * The failure class (exit code name, e.g. `DiskSpace`) of a BackupFailed datum. Sent as an extra datum
   * with Cluster and Reason, besides the Cluster+Host and Cluster ones, so alarms on those keep matching.
   */
  Reason: "Reason",
} as const;

/**
 * Emitted by `mysql-backup backup` with dimensions Cluster and Host, and Cluster alone; BackupFailed also
 * with Cluster and Reason.
 */
export const ReplicaMetric = {
  BackupSucceeded: "BackupSucceeded",
  BackupFailed: "BackupFailed",
  LockMilliseconds: "LockMilliseconds",
  BackupSeconds: "BackupSeconds",
  ArchiveBytes: "ArchiveBytes",
  /**
   * 1 when a run gives up a backup an earlier, killed run had staged for publication (its outbox) and that
   * can no longer be completed: its archive may sit in S3 unannounced, and it will never be verified. The
   * log line "abandoned a backup" names it and why. Never emitted in normal operation: alarm on any.
   */
  BackupAbandoned: "BackupAbandoned",
} as const;

/** Emitted by `mysql-backup verify` with dimension Cluster. */
export const VerifierMetric = {
  VerificationSucceeded: "VerificationSucceeded",
  VerificationFailed: "VerificationFailed",
  RestoreSeconds: "RestoreSeconds",
  BackupAgeAtVerificationSeconds: "BackupAgeAtVerificationSeconds",
  RecoveryPointLagSeconds: "RecoveryPointLagSeconds",
  /** A binlog segment proven on arrival (sha256, every event's CRC32, GTID continuity, times). */
  SegmentVerified: "SegmentVerified",
  /** A binlog segment that failed its checks (its verdict names the check). Alarm on any. */
  SegmentFailed: "SegmentFailed",
  /** A point-in-time chain proven between two verified snapshots (contracts/chain-verdict.ts). */
  PitrChainVerified: "PitrChainVerified",
  /** A chain that failed its proof (a gap, a damaged segment, tables that differ). Alarm on any. */
  PitrChainFailed: "PitrChainFailed",
  /**
   * Age of the newest point the chain is proven up to (the newest snapshot B of a verified chain), when a
   * chain is proven. Alarm on silence of PitrChainVerified rather than on this gauge.
   */
  PitrVerifiedUntilSeconds: "PitrVerifiedUntilSeconds",
  /** A point-in-time restore drill that passed (contracts/drill-verdict.ts). */
  PitrDrillPassed: "PitrDrillPassed",
  /** A drill that failed: refused, not started, another GTID state than the archive's, CHECK TABLE. Alarm on any. */
  PitrDrillFailed: "PitrDrillFailed",
  /** The passed drill's time to queryable (download, extract, recovery, replay): the measured PITR RTO. */
  PitrRestoreSeconds: "PitrRestoreSeconds",
} as const;

/**
 * Emitted by `mysql-backup binlog` (the archiver) about once a minute, with dimensions Cluster and Host, and
 * Cluster alone (the alarms watch the Cluster datum: with several archiving replicas, the Minimum of the lag
 * is the cluster's exposure).
 */
export const BinlogMetric = {
  /**
   * Seconds from the newest archived transaction's commit to now; while everything the server has committed
   * is archived, from the last poll that found it so (an idle server is not late). The maximum over the
   * minute. Alarm above the RPO, and on silence (missing data = breaching: the archiver is down).
   */
  BinlogArchiveLagSeconds: "BinlogArchiveLagSeconds",
  /** 1 for each gap found (transactions purged before they were archived); 0 otherwise. Alarm on any. */
  BinlogGaps: "BinlogGaps",
  /**
   * How far back the archive reaches without a gap from the newest archived transaction: the span of the
   * host's current epoch, capped at the binlog retention.
   */
  PitrWindowSeconds: "PitrWindowSeconds",
  /** Segments uploaded in the minute. */
  BinlogSegmentsArchived: "BinlogSegmentsArchived",
  /** Bytes of binary log uploaded in the minute. */
  BinlogArchivedBytes: "BinlogArchivedBytes",
} as const;

export type MetricName =
  | (typeof ReplicaMetric)[keyof typeof ReplicaMetric]
  | (typeof VerifierMetric)[keyof typeof VerifierMetric]
  | (typeof BinlogMetric)[keyof typeof BinlogMetric];

/** CloudWatch units, as PutMetricData spells them. */
export type MetricUnit = "Count" | "Milliseconds" | "Seconds" | "Bytes";

/** Every metric the host scripts emit, with its CloudWatch unit. */
export const METRIC_UNITS: Record<MetricName, MetricUnit> = {
  BackupSucceeded: "Count",
  BackupFailed: "Count",
  LockMilliseconds: "Milliseconds",
  BackupSeconds: "Seconds",
  ArchiveBytes: "Bytes",
  BackupAbandoned: "Count",
  VerificationSucceeded: "Count",
  VerificationFailed: "Count",
  RestoreSeconds: "Seconds",
  BackupAgeAtVerificationSeconds: "Seconds",
  RecoveryPointLagSeconds: "Seconds",
  SegmentVerified: "Count",
  SegmentFailed: "Count",
  PitrChainVerified: "Count",
  PitrChainFailed: "Count",
  PitrVerifiedUntilSeconds: "Seconds",
  PitrDrillPassed: "Count",
  PitrDrillFailed: "Count",
  PitrRestoreSeconds: "Seconds",
  BinlogArchiveLagSeconds: "Seconds",
  BinlogGaps: "Count",
  PitrWindowSeconds: "Seconds",
  BinlogSegmentsArchived: "Count",
  BinlogArchivedBytes: "Bytes",
};

/** One data point, as both sinks (CloudWatch, JSON lines) receive it. */
export interface MetricDatum {
  name: MetricName;
  value: number;
  unit: MetricUnit;
  dimensions: Partial<Record<keyof typeof Dimension, string>>;
  timestamp: string;
}

/** Builds a datum with the unit the contract assigns to the name. */
export function metric(
  name: MetricName,
  value: number,
  dimensions: MetricDatum["dimensions"],
  now: Date = new Date(),
): MetricDatum {
  return { name, value, unit: METRIC_UNITS[name], dimensions, timestamp: now.toISOString() };
}

/** What each metric measures, for Prometheus' `# HELP` and the docs. */
export const METRIC_HELP: Record<MetricName, string> = {
  BackupSucceeded: "Backups that completed: archive and manifest in S3, verifiers signalled.",
  BackupFailed: "Backups that failed (the reason is the exit code's class).",
  LockMilliseconds: "How long the newest backup held the server's lock.",
  BackupSeconds: "How long the newest backup took, lock to signal.",
  ArchiveBytes: "Size of the newest backup's compressed archive.",
  BackupAbandoned: "Staged backups given up: their archive may sit in S3 unannounced and is never verified.",
  VerificationSucceeded: "Backups the verifier restored and proved usable.",
  VerificationFailed: "Backups that failed verification, or that no verifier could restore.",
  RestoreSeconds: "How long the newest verification's restore took: download, extract, recovery, checks.",
  BackupAgeAtVerificationSeconds: "Age of the newest verified backup when its verdict was written.",
  RecoveryPointLagSeconds: "How old the newest data in the newest verified backup was at snapshot time.",
  SegmentVerified:
    "Binlog segments the verifier proved on arrival: sha256, every event's CRC32, GTID continuity.",
  SegmentFailed:
    "Binlog segments that failed the verifier's checks on arrival (the verdict names the check).",
  PitrChainVerified:
    "Point-in-time chains proven: snapshot A replayed to snapshot B gives B's GTIDs and checksums.",
  PitrChainFailed: "Point-in-time chains that failed their proof (gap, damaged segment, tables that differ).",
  PitrVerifiedUntilSeconds: "Age of the newest point the point-in-time chain is proven up to.",
  PitrDrillPassed:
    "Point-in-time restore drills passed: a random point between two snapshots restored at the archive's GTID state, CHECK TABLE OK.",
  PitrDrillFailed:
    "Point-in-time restore drills that failed (refused, not started, wrong GTID state, CHECK TABLE).",
  PitrRestoreSeconds:
    "The newest passed drill's time to queryable (download, extract, recovery, replay): the measured PITR RTO.",
  BinlogArchiveLagSeconds:
    "Seconds a committed transaction has waited, at most, to be in S3 (the binlog archive's RPO now).",
  BinlogGaps: "Gaps found in the binlog archive: transactions purged before they were archived.",
  PitrWindowSeconds:
    "How far back point-in-time recovery reaches without a gap from the newest archived transaction.",
  BinlogSegmentsArchived: "Binlog segments uploaded.",
  BinlogArchivedBytes: "Binlog bytes uploaded.",
};

/**
 * Metrics of another unit than `Count` whose data points are amounts added since the last one (the archiver
 * sends the bytes it uploaded in the minute), so they are counters in Prometheus, not the newest value.
 */
const INCREMENTS: ReadonlySet<MetricName> = new Set<MetricName>(["BinlogArchivedBytes"]);

/** Prometheus' name prefix of this pipeline's metrics (the CloudWatch namespace's). */
export const PROMETHEUS_PREFIX = "mysql_backup_";

/** How one metric appears in Prometheus' text format (node_exporter's textfile collector). */
export interface PrometheusMetric {
  name: string;
  /** A `Count` metric is a counter (each datum adds); every other one a gauge (the newest value). */
  type: "counter" | "gauge";
  help: string;
  /** What a CloudWatch value is divided by: Prometheus counts time in seconds (ms / 1000). */
  divisor: number;
}

/** CloudWatch's unit → Prometheus' base unit suffix and the factor to it. */
const UNIT_SUFFIX: Record<MetricUnit, { strip: string; suffix: string; divisor: number }> = {
  Count: { strip: "", suffix: "_total", divisor: 1 },
  Milliseconds: { strip: "Milliseconds", suffix: "_seconds", divisor: 1000 },
  Seconds: { strip: "Seconds", suffix: "_seconds", divisor: 1 },
  Bytes: { strip: "Bytes", suffix: "_bytes", divisor: 1 },
};

/**
 * A metric's Prometheus name, derived from its CloudWatch name and unit by the conventions (snake case,
 * base units, `_total` for counters): `LockMilliseconds` → `mysql_backup_lock_seconds`, `BackupFailed` →
 * `mysql_backup_backup_failed_total`. Derived, not listed, so a new metric cannot miss its mapping.
 */
export function prometheusMetric(name: MetricName): PrometheusMetric {
  const unit = UNIT_SUFFIX[METRIC_UNITS[name]];
  const base = unit.strip && name.endsWith(unit.strip) ? name.slice(0, -unit.strip.length) : name;
  const snake = base.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
  const increment = INCREMENTS.has(name);
  return {
    name: `${PROMETHEUS_PREFIX}${snake}${unit.suffix}${increment ? "_total" : ""}`,
    type: METRIC_UNITS[name] === "Count" || increment ? "counter" : "gauge",
    help: `${METRIC_HELP[name]} (CloudWatch ${METRIC_NAMESPACE}/${name})`,
    divisor: unit.divisor,
  };
}

/** Labels of the dimensions (Prometheus' lower case). */
export const PROMETHEUS_LABEL: Record<keyof typeof Dimension, string> = {
  Cluster: "cluster",
  Host: "host",
  Reason: "reason",
};

/**
 * Outcome metrics whose time is kept as a gauge too, in seconds since the epoch: what a "nothing succeeded
 * for too long" rule reads (`time() - mysql_backup_backup_last_success_timestamp_seconds > 26 * 3600`). A
 * failure's gauge carries the failure's reason as a label when it has one.
 */
export const PROMETHEUS_TIMESTAMPS: Partial<Record<MetricName, string>> = {
  BackupSucceeded: `${PROMETHEUS_PREFIX}backup_last_success_timestamp_seconds`,
  BackupFailed: `${PROMETHEUS_PREFIX}backup_last_failure_timestamp_seconds`,
  VerificationSucceeded: `${PROMETHEUS_PREFIX}verification_last_success_timestamp_seconds`,
  VerificationFailed: `${PROMETHEUS_PREFIX}verification_last_failure_timestamp_seconds`,
};

/**
 * Counters that describe one outcome each: when one of a family is written for a set of labels, the others
 * start at 0 for it, so `increase()` sees the first failure (a series born at 1 shows no increase).
 */
export const PROMETHEUS_COUNTER_FAMILIES: MetricName[][] = [
  [ReplicaMetric.BackupSucceeded, ReplicaMetric.BackupFailed, ReplicaMetric.BackupAbandoned],
  [VerifierMetric.VerificationSucceeded, VerifierMetric.VerificationFailed],
  [VerifierMetric.SegmentVerified, VerifierMetric.SegmentFailed],
  [VerifierMetric.PitrChainVerified, VerifierMetric.PitrChainFailed],
  [VerifierMetric.PitrDrillPassed, VerifierMetric.PitrDrillFailed],
];
