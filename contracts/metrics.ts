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
