import {
  BinlogMetric,
  Dimension,
  METRIC_NAMESPACE,
  ReplicaMetric,
  VerifierMetric,
  type MetricName,
} from "../contracts";

/**
 * The pipeline's CloudWatch dashboard: one row per cluster with the trends an operator watches — how long a
 * restore takes, how long the replica stays locked, how big the archives grow, and the verdicts — over the
 * last 30 days, one point per day; and under them, the binlog archive's lag (the RPO now) and how far back
 * point-in-time recovery reaches, by the minute. Every metric comes from contracts/metrics.ts with the dimensions the host
 * scripts emit it with (tests/infra/metrics-contract.test.ts proves each is emitted).
 */

/** One line of a metric widget: namespace, name, dimension and value, and how to draw it. */
type MetricLine = [string, MetricName, string, string, { stat: string; label: string }];

/** A metric widget's body, as the CloudWatch dashboard API takes it. */
interface MetricWidget {
  type: "metric";
  x: number;
  y: number;
  width: number;
  height: number;
  properties: {
    title: string;
    region: string;
    period: number;
    view: "timeSeries";
    stacked: boolean;
    metrics: MetricLine[];
  };
}

/** A text widget: the cluster's row header. */
interface TextWidget {
  type: "text";
  x: number;
  y: number;
  width: number;
  height: number;
  properties: { markdown: string };
}

/** One point per day: backups are daily; finer periods draw mostly gaps. */
const DAY = 86400;
/** The binlog archive is continuous: one point per minute, as the archiver sends them. */
const MINUTE = 60;
const LINE_HEIGHT = 6;
/** A header and two lines of widgets. */
const ROW_HEIGHT = 1 + 2 * LINE_HEIGHT;

/** The widgets of one cluster's row, starting at `y`. */
export function clusterWidgets(cluster: string, region: string, y: number): Array<MetricWidget | TextWidget> {
  const line = (name: MetricName, stat: string, label: string): MetricLine => [
    METRIC_NAMESPACE,
    name,
    Dimension.Cluster,
    cluster,
    { stat, label },
  ];
  const widget = (
    x: number,
    title: string,
    metrics: MetricLine[],
    stacked = false,
    [line2, period, width] = [false, DAY, 6],
  ): MetricWidget => ({
    type: "metric",
    x,
    y: y + 1 + (line2 ? LINE_HEIGHT : 0),
    width,
    height: LINE_HEIGHT,
    properties: { title, region, period, view: "timeSeries", stacked, metrics },
  });
  const binlog = [true, MINUTE, 12] as [boolean, number, number];
  return [
    { type: "text", x: 0, y, width: 24, height: 1, properties: { markdown: `## Cluster ${cluster}` } },
    widget(0, `${cluster}: restore time and measured PITR RTO (s)`, [
      line(VerifierMetric.RestoreSeconds, "Maximum", "slowest restore"),
      // Emitted by each passed restore drill (a snapshot interval apart): time to queryable at a random point.
      line(VerifierMetric.PitrRestoreSeconds, "Maximum", "PITR drill, time to queryable"),
    ]),
    widget(6, `${cluster}: lock window (ms)`, [
      line(ReplicaMetric.LockMilliseconds, "Maximum", "longest lock"),
    ]),
    widget(12, `${cluster}: archive size (bytes)`, [
      line(ReplicaMetric.ArchiveBytes, "Maximum", "largest archive"),
    ]),
    widget(
      18,
      `${cluster}: verdicts and failed backups`,
      [
        line(VerifierMetric.VerificationSucceeded, "Sum", "verified"),
        line(VerifierMetric.VerificationFailed, "Sum", "failed verification"),
        line(ReplicaMetric.BackupFailed, "Sum", "failed backups"),
      ],
      true,
    ),
    // Point-in-time recovery: the best archiver's lag is what the cluster would lose now.
    widget(
      0,
      `${cluster}: binlog archive lag (s, the RPO now)`,
      [line(BinlogMetric.BinlogArchiveLagSeconds, "Minimum", "best archiver's lag")],
      false,
      binlog,
    ),
    widget(
      12,
      `${cluster}: point-in-time window archived, and the age of the newest proven point (s)`,
      [
        line(BinlogMetric.PitrWindowSeconds, "Maximum", "archived window"),
        // Emitted with each proven chain (a snapshot interval apart): what the verifier has replayed.
        line(VerifierMetric.PitrVerifiedUntilSeconds, "Minimum", "newest proven point's age"),
      ],
      false,
      binlog,
    ),
  ];
}

/** The dashboard body: a row per cluster, the last 30 days. */
export function dashboardBody(clusters: string[], region: string): string {
  return JSON.stringify({
    start: "-P30D",
    periodOverride: "inherit",
    widgets: clusters.flatMap((cluster, i) => clusterWidgets(cluster, region, i * ROW_HEIGHT)),
  });
}
