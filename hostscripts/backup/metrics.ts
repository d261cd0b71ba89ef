import { ReplicaMetric, metric, type BackupConfig, type MetricDatum } from "../../contracts";
import { messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import type { MetricsSink } from "../common/metrics";

/** What a finished backup reports: BackupSucceeded, its lock window, its duration and its archive size. */
export async function emitSucceeded(
  sink: MetricsSink,
  log: Logger,
  config: BackupConfig,
  result: { lockMs: number; totalSeconds: number; archiveBytes: number },
  now: Date,
): Promise<void> {
  await emit(
    sink,
    log,
    [
      [ReplicaMetric.BackupSucceeded, 1],
      [ReplicaMetric.LockMilliseconds, result.lockMs],
      [ReplicaMetric.BackupSeconds, result.totalSeconds],
      [ReplicaMetric.ArchiveBytes, result.archiveBytes],
    ],
    config,
    now,
  );
}

/** What a failed backup reports: BackupFailed, also per reason (the error's kind). */
export async function emitFailed(
  sink: MetricsSink,
  log: Logger,
  config: BackupConfig,
  reason: string,
  now: Date,
): Promise<void> {
  await emit(sink, log, [[ReplicaMetric.BackupFailed, 1]], config, now, reason);
}

/**
 * What a repair reports when it gave up backups an earlier run had staged (repair.ts): BackupAbandoned with
 * their count, which the alarms page on.
 */
export async function emitAbandoned(
  sink: MetricsSink,
  log: Logger,
  where: Pick<BackupConfig, "cluster" | "host">,
  count: number,
  now: Date,
): Promise<void> {
  await emit(sink, log, [[ReplicaMetric.BackupAbandoned, count]], where, now);
}

/**
 * Each datum twice: per host, and per cluster (what the cluster-wide alarms watch); a failure a third
 * time, per cluster and reason, for the dashboard.
 */
async function emit(
  sink: MetricsSink,
  log: Logger,
  values: Array<[MetricDatum["name"], number]>,
  config: Pick<BackupConfig, "cluster" | "host">,
  now: Date,
  reason?: string,
): Promise<void> {
  const data = values.flatMap(([name, value]) => [
    metric(name, value, { Cluster: config.cluster, Host: config.host }, now),
    metric(name, value, { Cluster: config.cluster }, now),
    ...(reason === undefined ? [] : [metric(name, value, { Cluster: config.cluster, Reason: reason }, now)]),
  ]);
  try {
    await sink.put(data);
  } catch (e) {
    // A lost metric must not turn a good backup into a failed one; the missing-backup alarm covers it.
    log.error("could not emit metrics", { error: messageOf(e), metrics: values.map(([name]) => name) });
  }
}
