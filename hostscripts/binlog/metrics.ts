import { BinlogMetric, metric, type MetricDatum } from "../../contracts";
import type { MetricsSink } from "../common/metrics";

/**
 * The archiver's exposure and its metrics. The lag is the age of the oldest committed transaction that is
 * not yet in S3 (or, on a replica, the replication delay when everything it has is archived): what a lost
 * cluster would lose right now. Under steady load it equals "now minus the newest archived commit"; unlike
 * that, it does not grow on an idle server, where nothing is at risk.
 */

/** Tracks the archived-through time between polls and sums what the metrics report per minute. */
export class ArchiveMetrics {
  /** Everything committed before this instant (ms) is in S3. */
  private archivedThroughMs: number;
  private windowMaxLag = 0;
  private gaps = 0;
  private segments = 0;
  private bytes = 0;
  private lastFlushMs: number;

  constructor(
    private readonly sink: MetricsSink,
    private readonly dimensions: { cluster: string; host: string },
    startMs: number,
    /** How often data points are sent. Defaults to 60 s (CloudWatch's standard resolution). */
    private readonly periodMs = 60_000,
  ) {
    this.archivedThroughMs = startMs;
    this.lastFlushMs = startMs;
  }

  /**
   * After a poll: `oldestUnarchivedCommitMs` is the commit time of the oldest transaction read but not yet in
   * S3 (null when there is none and the binlog's end was reached), `replicaLagSeconds` the server's delay
   * behind its source.
   */
  observe(pollMs: number, oldestUnarchivedCommitMs: number | null, replicaLagSeconds: number | null): void {
    this.archivedThroughMs =
      oldestUnarchivedCommitMs !== null
        ? Math.min(oldestUnarchivedCommitMs, pollMs)
        : pollMs - (replicaLagSeconds ?? 0) * 1000;
    this.windowMaxLag = Math.max(this.windowMaxLag, this.lagSeconds(pollMs));
  }

  /** The exposure now, in seconds. It keeps growing while polls fail (the server or S3 is unreachable). */
  lagSeconds(nowMs: number): number {
    return Math.max(0, (nowMs - this.archivedThroughMs) / 1000);
  }

  gapFound(): void {
    this.gaps++;
  }

  archived(bytes: number): void {
    this.segments++;
    this.bytes += bytes;
  }

  /**
   * Sends the minute's data points when the period is over (or `force`): the largest lag seen, gaps found,
   * segments and bytes uploaded, and the archived window. Both with Cluster and Host, and with Cluster alone.
   */
  async flush(nowMs: number, windowSeconds: number, force = false): Promise<MetricDatum[]> {
    if (!force && nowMs - this.lastFlushMs < this.periodMs) return [];
    const lag = Math.max(this.windowMaxLag, this.lagSeconds(nowMs));
    const now = new Date(nowMs);
    const { cluster, host } = this.dimensions;
    const data: MetricDatum[] = [];
    for (const dimensions of [{ Cluster: cluster, Host: host }, { Cluster: cluster }]) {
      data.push(
        metric(BinlogMetric.BinlogArchiveLagSeconds, Math.round(lag * 10) / 10, dimensions, now),
        metric(BinlogMetric.BinlogGaps, this.gaps, dimensions, now),
        metric(BinlogMetric.PitrWindowSeconds, Math.round(windowSeconds), dimensions, now),
        metric(BinlogMetric.BinlogSegmentsArchived, this.segments, dimensions, now),
        metric(BinlogMetric.BinlogArchivedBytes, this.bytes, dimensions, now),
      );
    }
    await this.sink.put(data);
    this.lastFlushMs = nowMs;
    this.windowMaxLag = this.lagSeconds(nowMs);
    this.gaps = 0;
    this.segments = 0;
    this.bytes = 0;
    return data;
  }
}
