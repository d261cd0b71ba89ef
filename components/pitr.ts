import {
  BINLOG_DEFAULTS,
  BINLOG_SILENCE_SECONDS,
  binlogArchiveConfigSchema,
  BinlogMetric,
  Dimension,
  METRIC_NAMESPACE,
  schemaFor,
  VerifierMetric,
} from "../contracts";
import { BINLOG_SERVICE } from "../contracts/units";
import type { AlarmSpec } from "./alarms";

/**
 * Point-in-time recovery of a cluster (issue 13): the binlog archiver on every replica, and what on-call
 * sees of it. Every replica of a cluster with PITR on archives its own binlog (with log_slave_updates it holds
 * the cluster's transactions), so losing one replica loses no archive; a restore chooses one continuous chain
 * among them (docs/pitr.md).
 */

/** A cluster's point-in-time recovery settings (stack config `clusters[].pitr`). */
export interface PitrSpec {
  /** Run the binlog archiver on the cluster's replicas. Defaults to true. */
  enabled?: boolean;
  /**
   * The recovery point objective in seconds: the longest a committed transaction may wait before it is in
   * S3; above it for two minutes of three, the cluster's lag alarm pages. Defaults to 10.
   */
  rpoSeconds?: number;
}

/** {@link PitrSpec} as JSON; the RPO's bounds are the archiver config's. */
export const pitrSpecSchema = schemaFor<PitrSpec>()({
  type: "object",
  additionalProperties: false,
  properties: {
    enabled: { type: "boolean" },
    rpoSeconds: binlogArchiveConfigSchema.properties.rpoSeconds,
  },
});

/** The PITR settings with their defaults. */
export function resolvePitr(spec: PitrSpec | undefined): { enabled: boolean; rpoSeconds: number } {
  return { enabled: spec?.enabled ?? true, rpoSeconds: spec?.rpoSeconds ?? BINLOG_DEFAULTS.rpoSeconds };
}

/**
 * The binlog archive's alarms of a cluster, on the Cluster datum every archiving replica sends (the Minimum
 * is the best archiver's: the cluster's real exposure): the lag above the RPO for two minutes of three, any
 * gap, silence (no archiver reported for five minutes: missing data is breaching), and any segment the
 * verifier failed on arrival.
 */
export function binlogAlarms(cluster: string, pitr: PitrSpec | undefined): AlarmSpec[] {
  const { enabled, rpoSeconds } = resolvePitr(pitr);
  if (!enabled) return [];
  const dimensions = { [Dimension.Cluster]: cluster };
  const lag = {
    namespace: METRIC_NAMESPACE,
    metricName: BinlogMetric.BinlogArchiveLagSeconds,
    dimensions,
    period: 60,
  };
  const journal = `journalctl -u ${BINLOG_SERVICE}`;
  return [
    {
      id: "binlog-lag",
      description: `The binlog archive of cluster ${cluster} is more than ${rpoSeconds} s (its RPO) behind its commits: ${journal} on the replicas; BinlogArchiveLagSeconds by Host shows which one`,
      kind: "state",
      metric: { ...lag, statistic: "Minimum" },
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      comparisonOperator: "GreaterThanThreshold",
      threshold: rpoSeconds,
      // Silence has its own alarm below; paging twice for one dead archiver helps nobody.
      treatMissingData: "notBreaching",
    },
    {
      id: "binlog-gap",
      description: `A gap in the binlog archive of cluster ${cluster}: transactions were purged before they were archived, and no point-in-time restore can cross them. ${journal} ("GAP") names them; take a snapshot now and find out why the binlogs were purged early`,
      kind: "event",
      metric: {
        namespace: METRIC_NAMESPACE,
        metricName: BinlogMetric.BinlogGaps,
        dimensions,
        statistic: "Maximum",
        period: 60,
      },
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
      treatMissingData: "notBreaching",
    },
    {
      id: "binlog-silent",
      description: `No binlog archiver of cluster ${cluster} reported for ${BINLOG_SILENCE_SECONDS / 60} minutes: nothing written since is off site. systemctl status ${BINLOG_SERVICE} on the replicas`,
      kind: "state",
      metric: { ...lag, statistic: "SampleCount" },
      evaluationPeriods: BINLOG_SILENCE_SECONDS / lag.period,
      comparisonOperator: "LessThanThreshold",
      threshold: 1,
      treatMissingData: "breaching",
    },
    {
      id: "binlog-segment-failed",
      description: `A binlog segment of cluster ${cluster} failed the verifier's checks on arrival (sha256, an event's CRC32, GTID continuity or times): its .segment-verification.json beside the segment names the check. No point-in-time restore can cross it; take a snapshot now`,
      kind: "event",
      metric: {
        namespace: METRIC_NAMESPACE,
        metricName: VerifierMetric.SegmentFailed,
        dimensions,
        statistic: "Sum",
        period: 300,
      },
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
      treatMissingData: "notBreaching",
    },
  ];
}
