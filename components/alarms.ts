import type * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
  Dimension,
  METRIC_NAMESPACE,
  NAME_PATTERN,
  ReplicaMetric,
  schemaFor,
  VerifierMetric,
} from "../contracts";
import { binlogAlarms, pitrSpecSchema, resolvePitr, type PitrSpec } from "./pitr";
import { requireInteger } from "./validation";

/** One cluster as the stack config describes its alarms. */
export interface AlertedCluster {
  /** The cluster's name in keys and metrics (the alarms' `Cluster` dimension). */
  name: string;
  /**
   * Hours within which a backup must succeed and be verified: no successful, and no verified, backup
   * within this many hours pages (missing data counts as failure). Defaults to 26 (daily backups + slack).
   */
  windowHours?: number;
  /** Point-in-time recovery: the binlog archive's alarms (lag above the RPO, gaps, silence). Defaults to on. */
  pitr?: PitrSpec;
}

/**
 * {@link AlertedCluster} as JSON, part of every entry of the stack config's `clusters` key; clusterAlarms
 * checks against its bounds, so each bound is stated here only.
 */
export const alertedClusterSchema = schemaFor<AlertedCluster>()({
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: {
    name: { type: "string", pattern: NAME_PATTERN },
    windowHours: { type: "integer", minimum: 1, maximum: 168 },
    pitr: pitrSpecSchema,
  },
});

/** A replica whose silence pages on its own. */
export interface WatchedHost {
  /** The host's name (the `Host` dimension of its metrics). */
  name: string;
  /** When it was set up (RFC 3339): its silence pages only once a whole window has passed since. Defaults to never set up: silence pages at once. */
  since?: pulumi.Input<string>;
}

/** A cluster with what the pipeline knows about it: when it was set up and its replicas. */
export interface WatchedCluster extends AlertedCluster {
  /** When the cluster was set up (RFC 3339); see {@link WatchedHost.since}. Defaults to never set up. */
  since?: pulumi.Input<string>;
  /**
   * Its replicas, each watched for silence with its own alarm; then the cluster has no backup-silence alarm
   * of its own (a dead replica pages once, by name). Defaults to none: the cluster's backups are watched
   * as a whole.
   */
  hosts?: WatchedHost[];
}

/** The metric side of one alarm (no actions): pure data so tests can assert it against contracts/. */
export interface AlarmSpec {
  /** Suffix of the child's name and the alarm's purpose. */
  id: string;
  description: string;
  /**
   * "state": a condition that holds until fixed; it notifies when it fires and when it clears. "event":
   * something happened (a failed backup); it notifies once, and its return to OK, which only means the
   * period ended, notifies nobody.
   */
  kind: "state" | "event";
  /** A single metric, or metric math (`metricQueries`). */
  metric:
    | {
        namespace: string;
        metricName: string;
        dimensions: Record<string, pulumi.Input<string>>;
        statistic: "Sum" | "Maximum" | "Minimum" | "SampleCount";
        period: number;
      }
    | { metricQueries: pulumi.Input<aws.types.input.cloudwatch.MetricAlarmMetricQuery>[] };
  evaluationPeriods: number;
  /** Periods that must breach, of `evaluationPeriods`. Defaults to all of them. */
  datapointsToAlarm?: number;
  comparisonOperator: "LessThanThreshold" | "GreaterThanOrEqualToThreshold" | "GreaterThanThreshold";
  threshold: number;
  treatMissingData: "breaching" | "notBreaching";
}

/** RFC 3339 → seconds since the epoch; refuses anything else (the alarm would silently never arm). */
export function epochSeconds(rfc3339: string): number {
  const ms = Date.parse(rfc3339);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(rfc3339) || Number.isNaN(ms))
    throw new Error(`"${rfc3339}" is not an RFC 3339 time (the creation date of a role)`);
  return Math.floor(ms / 1000);
}

/**
 * "Nothing succeeded for `hours` hours", silence included, for a metric the scripts emit only on success.
 * With `since`, the window cannot start before it: an hour before `since` counts as covered, so a new
 * cluster or replica pages only once a whole window without success has passed since it was set up (metric
 * math: EPOCH gives each period's start, TIME_SERIES a point in every period even before the metric exists).
 */
function silence(o: {
  id: string;
  description: string;
  metricName: string;
  dimensions: Record<string, string>;
  hours: number;
  since?: pulumi.Input<string>;
}): AlarmSpec {
  const base = {
    id: o.id,
    description: o.description,
    kind: "state" as const,
    evaluationPeriods: o.hours,
    comparisonOperator: "LessThanThreshold" as const,
    threshold: 1,
    treatMissingData: "breaching" as const,
  };
  const stat = {
    namespace: METRIC_NAMESPACE,
    metricName: o.metricName,
    dimensions: o.dimensions,
    period: 3600,
  };
  if (o.since === undefined) return { ...base, metric: { ...stat, statistic: "Sum" } };
  return {
    ...base,
    metric: {
      metricQueries: [
        { id: "succeeded", returnData: false, metric: { ...stat, stat: "Sum" } },
        {
          id: "grace",
          returnData: false,
          expression: pulumi
            .output(o.since)
            .apply((t) => `IF(EPOCH(TIME_SERIES(0)) < ${epochSeconds(t)}, 1, 0)`),
          label: "Hours before the window may start",
        },
        {
          id: "covered",
          returnData: true,
          expression: "MAX([grace, FILL(succeeded, 0)])",
          label: `${o.metricName} (or not yet due)`,
        },
      ],
    },
  };
}

/** An alarm on one failure event: it pages once per failure. */
function failure(
  id: string,
  description: string,
  metricName: string,
  dimensions: Record<string, string>,
): AlarmSpec {
  return {
    id,
    description,
    kind: "event",
    metric: { namespace: METRIC_NAMESPACE, metricName, dimensions, statistic: "Sum", period: 300 },
    evaluationPeriods: 1,
    comparisonOperator: "GreaterThanOrEqualToThreshold",
    threshold: 1,
    treatMissingData: "notBreaching",
  };
}

/** The alarms of one cluster and its replicas (DESIGN §5); silence is a failure for the "nothing succeeded" alarms. */
export function clusterAlarms(cluster: WatchedCluster): AlarmSpec[] {
  const hours = requireInteger(
    `clusters.${cluster.name}.windowHours`,
    cluster.windowHours ?? 26,
    alertedClusterSchema.properties.windowHours,
  );
  const dimensions = { [Dimension.Cluster]: cluster.name };
  const hosts = cluster.hosts ?? [];
  return [
    silence({
      id: "no-verified-backup",
      description: `No backup of cluster ${cluster.name} was verified in ${hours} h: check the verifier fleet, the queue and its DLQ`,
      metricName: VerifierMetric.VerificationSucceeded,
      dimensions,
      hours,
      since: cluster.since,
    }),
    failure(
      "verification-failed",
      `A backup of cluster ${cluster.name} failed verification: read its verification.json`,
      VerifierMetric.VerificationFailed,
      dimensions,
    ),
    failure(
      "backup-failed",
      `A backup of cluster ${cluster.name} failed: journalctl -u mysql-backup.service on the replica`,
      ReplicaMetric.BackupFailed,
      dimensions,
    ),
    failure(
      "backup-abandoned",
      `A replica of cluster ${cluster.name} gave up a backup a killed run had staged; it will never be verified: journalctl -u mysql-backup.service on the replica ("abandoned a backup")`,
      ReplicaMetric.BackupAbandoned,
      dimensions,
    ),
    ...(hosts.length === 0
      ? [
          silence({
            id: "backup-missing",
            description: `No backup of cluster ${cluster.name} succeeded in ${hours} h: check the replicas' mysql-backup.timer`,
            metricName: ReplicaMetric.BackupSucceeded,
            dimensions,
            hours,
            since: cluster.since,
          }),
        ]
      : hosts.map((host) =>
          silence({
            id: `${host.name}-backup-missing`,
            description: `No backup of replica ${host.name} (cluster ${cluster.name}) succeeded in ${hours} h: systemctl status mysql-backup.timer on ${host.name}`,
            metricName: ReplicaMetric.BackupSucceeded,
            dimensions: { ...dimensions, [Dimension.Host]: host.name },
            hours,
            since: host.since,
          }),
        )),
    ...binlogAlarms(cluster.name, cluster.pitr),
    ...chainAlarms(cluster, hours),
  ];
}

/**
 * The point-in-time chain proof of a cluster with PITR on: any failed chain or restore drill pages, and so does a cluster
 * with no chain proven for two windows (a chain needs two verified snapshots, and comes after the second's
 * verification: one window would page on a new cluster's first day).
 */
function chainAlarms(cluster: WatchedCluster, hours: number): AlarmSpec[] {
  if (!resolvePitr(cluster.pitr).enabled) return [];
  const dimensions = { [Dimension.Cluster]: cluster.name };
  return [
    failure(
      "pitr-chain-failed",
      `The point-in-time chain of cluster ${cluster.name} failed its proof: the chain-verification.json beside the newer snapshot names the gap, the segment or the tables that differ (docs/pitr-proof.md)`,
      VerifierMetric.PitrChainFailed,
      dimensions,
    ),
    failure(
      "pitr-drill-failed",
      `A point-in-time restore drill of cluster ${cluster.name} failed: the pitr-drill.json beside the newer snapshot names the point, the GTID state the archive holds there and what the restore did instead (docs/pitr-proof.md)`,
      VerifierMetric.PitrDrillFailed,
      dimensions,
    ),
    silence({
      id: "pitr-chain-silent",
      description: `No point-in-time chain of cluster ${cluster.name} was proven in ${2 * hours} h: check the verifier's log for "pitr-" lines, its binlog archive and its verified snapshots`,
      metricName: VerifierMetric.PitrChainVerified,
      dimensions,
      hours: 2 * hours,
      since: cluster.since,
    }),
  ];
}

/** The queue alarms: anything in the DLQ, or a message waiting too long. */
export function queueAlarms(
  queueName: pulumi.Input<string>,
  deadLetterQueueName: pulumi.Input<string>,
  maxAgeSeconds: number,
): AlarmSpec[] {
  const sqs = (metricName: string, queue: pulumi.Input<string>) => ({
    namespace: "AWS/SQS",
    metricName,
    dimensions: { QueueName: queue },
    statistic: "Maximum" as const,
    period: 300,
  });
  return [
    {
      id: "dlq-not-empty",
      description:
        "A backup.created message reached the dead-letter queue: a backup could not be verified after every retry",
      kind: "state",
      metric: sqs("ApproximateNumberOfMessagesVisible", deadLetterQueueName),
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanThreshold",
      threshold: 0,
      treatMissingData: "notBreaching",
    },
    {
      id: "oldest-message-too-old",
      description: `A backup has waited more than ${maxAgeSeconds} s for verification: is the verifier fleet running?`,
      kind: "state",
      metric: sqs("ApproximateAgeOfOldestMessage", queueName),
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanThreshold",
      threshold: maxAgeSeconds,
      treatMissingData: "notBreaching",
    },
  ];
}
