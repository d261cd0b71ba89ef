/**
 * One contract, no drift: every metric a dashboard widget draws or an alarm watches in the pipeline's
 * namespace is one the host scripts actually emit, with exactly the dimensions they emit it with
 * (CloudWatch matches a metric by name and its whole dimension set: an alarm on a set nobody emits stays
 * silent forever). What is emitted is collected by running the emitters themselves — the backup's success,
 * failure and abandonment, the verifier's verdicts with and without a recovery point and on binlog segments,
 * the binlog archiver's minute — into a recording sink.
 */
import { METRIC_NAMESPACE, type MetricDatum, type BackupConfig } from "../../contracts";
import { clusterAlarms, dashboardBody, type AlarmSpec } from "../../components";
import { emitAbandoned, emitFailed, emitSucceeded } from "../../hostscripts/backup/metrics";
import { ArchiveMetrics } from "../../hostscripts/binlog/metrics";
import { memoryLogger } from "../../hostscripts/common/log";
import type { MetricsSink } from "../../hostscripts/common/metrics";
import { reportMetrics } from "../../hostscripts/verify/report";
import { segmentMetrics } from "../../hostscripts/verify/segment";
import { chainMetrics } from "../../hostscripts/verify/chain-compare";
import { drillMetrics } from "../../hostscripts/verify/drill";
import { syntheticReport } from "../../lab/synthetic";

/** `name|Dim1,Dim2`: how CloudWatch tells metrics apart. */
const signature = (name: string, dimensions: string[]) => `${name}|${[...dimensions].sort().join(",")}`;

async function emitted(): Promise<Set<string>> {
  const data: MetricDatum[] = [];
  const sink: MetricsSink = { put: async (d) => void data.push(...d) };
  const config = { cluster: "orders", host: "db1" } as BackupConfig;
  await emitSucceeded(
    sink,
    memoryLogger(),
    config,
    { lockMs: 40, totalSeconds: 60, archiveBytes: 1 },
    new Date(),
  );
  await emitFailed(sink, memoryLogger(), config, "DiskSpace", new Date());
  await emitAbandoned(sink, memoryLogger(), config, 1, new Date());
  await new ArchiveMetrics(sink, { cluster: "orders", host: "db1" }, Date.now()).flush(
    Date.now(),
    3600,
    true,
  );
  const ref = { prefix: "backups", cluster: "orders", host: "db1", backupId: "20261124T020000Z-3fa9c1" };
  const verified = syntheticReport(ref, "b", "verified");
  data.push(
    ...reportMetrics(
      {
        ...verified,
        recoveryPoint: { table: "ops.heartbeat", newestDataAt: verified.verifiedAt, lagSeconds: 1 },
      },
      new Date(),
    ),
  );
  data.push(...reportMetrics(syntheticReport(ref, "b", "failed"), new Date()));
  for (const verdict of ["verified", "failed"] as const) {
    data.push(...segmentMetrics({ verdict, cluster: "orders" }, new Date()));
    const to = { backupId: ref.backupId, host: "db1", gtid: "0-1-5", takenAt: verified.verifiedAt };
    data.push(
      ...chainMetrics(
        {
          formatVersion: 1,
          bucket: "b",
          cluster: "orders",
          from: to,
          to,
          verdict,
          failure: null,
          replay: null,
          tablesCompared: 0,
          seconds: 0,
          verifiedAt: verified.verifiedAt,
          verifier: { host: "v" },
        },
        new Date(),
      ),
    );
  }
  for (const verdict of ["passed", "failed"] as const)
    data.push(
      ...drillMetrics(
        {
          formatVersion: 1,
          bucket: "b",
          cluster: "orders",
          from: { backupId: ref.backupId, host: "db1", gtid: "0-1-5", completedAt: verified.verifiedAt },
          to: { backupId: ref.backupId, host: "db1", takenAt: verified.verifiedAt },
          point: {
            seed: 1,
            window: { from: verified.verifiedAt, to: verified.verifiedAt },
            at: verified.verifiedAt,
          },
          expected: { gtid: "0-1-5", segmentsFromLedger: 0, segmentsRead: 0, lastGtid: null },
          verdict,
          failure: verdict === "failed" ? { kind: "gtid", detail: "x", tables: [] } : null,
          restore: {
            secondsToQueryable: 3,
            reachedGtid: "0-1-5",
            transactions: 0,
            segments: 0,
            replaySeconds: 0,
          },
          tablesChecked: 0,
          seconds: 4,
          verifiedAt: verified.verifiedAt,
          verifier: { host: "v" },
        },
        new Date(),
      ),
    );
  return new Set(data.map((d) => signature(d.name, Object.keys(d.dimensions))));
}

test("every widget of the dashboard draws a metric the host scripts emit, with its dimensions", async () => {
  const known = await emitted();
  const body = JSON.parse(dashboardBody(["orders", "billing"], "eu-west-1")) as {
    widgets: Array<{ type: string; properties: { metrics?: unknown[][] } }>;
  };
  const drawn = body.widgets.flatMap((w) => w.properties.metrics ?? []);
  expect(drawn.length).toBeGreaterThan(0);
  for (const line of drawn) {
    const [namespace, name, ...rest] = line;
    // After the name come dimension name/value pairs, then the rendering options.
    const dimensions: string[] = [];
    for (let k = 0; k + 1 < rest.length && typeof rest[k] === "string"; k += 2)
      dimensions.push(String(rest[k]));
    expect(namespace).toBe(METRIC_NAMESPACE);
    expect(known).toContain(signature(String(name), dimensions));
  }
});

/** The metrics an alarm watches: its one metric, or those its metric math reads. */
function watched(alarm: AlarmSpec): Array<{ namespace: string; metricName: string; dimensions: object }> {
  if (!("metricQueries" in alarm.metric)) return [alarm.metric];
  return (
    alarm.metric.metricQueries as Array<{
      metric?: { namespace: string; metricName: string; dimensions: object };
    }>
  )
    .map((q) => q.metric)
    .filter((m) => m !== undefined);
}

test("every alarm on the pipeline's namespace watches a metric the host scripts emit, with its dimensions", async () => {
  const known = await emitted();
  // Both shapes of the silence alarms: per cluster, and per replica with metric math since its creation.
  const alarms = [
    ...clusterAlarms({ name: "orders" }),
    ...clusterAlarms({
      name: "orders",
      since: "2026-11-20T09:30:00Z",
      hosts: [{ name: "db1", since: "2026-11-20T09:30:00Z" }],
    }),
  ];
  const metrics = alarms.flatMap(watched).filter((m) => m.namespace === METRIC_NAMESPACE);
  expect(metrics.length).toBeGreaterThan(alarms.length - 1);
  for (const metric of metrics) {
    expect(known).toContain(signature(metric.metricName, Object.keys(metric.dimensions)));
  }
});

test("the check fails for a metric nobody emits, or one emitted with other dimensions", async () => {
  const known = await emitted();
  expect(known).not.toContain(signature("BackupSucceded", ["Cluster"]));
  expect(known).not.toContain(signature("RestoreSeconds", ["Cluster", "Host"]));
  expect(known).toContain(signature("RestoreSeconds", ["Cluster"]));
  expect(known).toContain(signature("BackupFailed", ["Cluster", "Reason"]));
});
