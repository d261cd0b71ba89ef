import { setTimeout as sleep } from "node:timers/promises";
import { rootSession } from "../lab/mariadb";

/**
 * Replication stall: how long the replica's applier made no progress because of a backup.
 *
 * Method: while the primary takes a steady write load, a dedicated session polls the replica's
 * `@@gtid_slave_pos` every ~20 ms and records the moments it changed. A backup that blocks the applier
 * (FTWRL, BACKUP STAGE BLOCK_COMMIT, a stopped SQL thread) shows up as a long gap between two changes.
 * The stall of one backup is the longest gap that overlaps the backup's run, minus the median gap of
 * the quiet seconds just before it (the normal time between two observed transactions, which at
 * 200 tx/s is about one poll interval). The noise floor — the longest gap in that quiet window — is
 * reported beside it, so a stall below it reads as "not measurable".
 */

/** Moments (ms, `performance.now()` clock) at which the applied GTID position was seen to change. */
export interface ApplierTrace {
  changes: number[];
  /** Polls done, and the longest time one poll took (a slow poll widens every gap it sits in). */
  polls: number;
  slowestPollMs: number;
}

/** The stall attributed to one backup, in ms. */
export interface StallMeasurement {
  /** Longest gap between two observed changes overlapping the backup. */
  longestGapMs: number;
  /** Median gap in the quiet window before the backup: the normal inter-transaction gap. */
  baselineMedianGapMs: number;
  /** Longest gap in the quiet window before the backup: the noise floor of this method. */
  baselineMaxGapMs: number;
  /** `longestGapMs - baselineMedianGapMs`, at least 0. */
  stallMs: number;
  /** Changes observed during the backup (0 means the applier never moved while it ran). */
  changesDuringBackup: number;
  /** Where the longest gap lay, as wall-clock epoch ms (to place it against the backup's own log). */
  longestGapFromEpochMs: number;
  longestGapToEpochMs: number;
}

/** Polls the applier position until `stop`; `stop` returns the trace. */
export async function watchApplier(
  replicaSocket: string,
  intervalMs = 20,
): Promise<{ stop(): Promise<ApplierTrace> }> {
  const session = await rootSession(replicaSocket);
  const trace: ApplierTrace = { changes: [], polls: 0, slowestPollMs: 0 };
  let running = true;
  let last = "";
  // A failed poll (the server went away) ends the watch; `stop` reports it, so it is never unhandled.
  let failure: Error | undefined;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const [rows] = await session.query("SELECT @@gtid_slave_pos AS pos");
      const now = performance.now();
      const position = String((rows as { pos: string }[])[0]?.pos ?? "");
      if (position !== last) {
        // The change happened at some point since the previous poll; the poll's end is when we know.
        if (last !== "") trace.changes.push(now);
        last = position;
      }
      trace.polls++;
      trace.slowestPollMs = Math.max(trace.slowestPollMs, now - started);
      await sleep(Math.max(0, intervalMs - (performance.now() - started)));
    }
  })().catch((error: Error) => {
    failure = error;
  });
  return {
    async stop() {
      running = false;
      await loop;
      await session.end().catch(() => undefined);
      if (failure !== undefined) {
        throw new Error(`bench: watching the replica's applier failed: ${failure.message}`, {
          cause: failure,
        });
      }
      return trace;
    },
  };
}

/**
 * The stall of a backup that ran from `startMs` to `endMs`, against the `baselineMs` before it.
 * Pure, so the method can be tested on synthetic traces.
 */
export function stallDuring(
  changes: number[],
  startMs: number,
  endMs: number,
  baselineMs: number,
): StallMeasurement {
  const gaps = changes.slice(1).map((at, i) => ({ from: changes[i], to: at, ms: at - changes[i] }));
  const baseline = gaps.filter((g) => g.from >= startMs - baselineMs && g.to <= startMs).map((g) => g.ms);
  // A gap counts when it overlaps the backup, including one that began before and ended after it.
  const during = gaps.filter((g) => g.to >= startMs && g.from <= endMs);
  // No change after the backup's last moment means the applier was stuck until the end of the trace.
  const lastChange = changes.length > 0 ? changes[changes.length - 1] : startMs;
  if (lastChange < endMs) {
    const from = Math.max(lastChange, startMs);
    during.push({ from, to: endMs, ms: endMs - from });
  }
  const longest = during.reduce((a, b) => (b.ms > a.ms ? b : a), { from: startMs, to: startMs, ms: 0 });
  const baselineMedianGapMs = median(baseline);
  return {
    longestGapMs: longest.ms,
    baselineMedianGapMs,
    baselineMaxGapMs: Math.max(0, ...baseline),
    stallMs: Math.max(0, longest.ms - baselineMedianGapMs),
    changesDuringBackup: changes.filter((at) => at >= startMs && at <= endMs).length,
    longestGapFromEpochMs: performance.timeOrigin + longest.from,
    longestGapToEpochMs: performance.timeOrigin + longest.to,
  };
}

/** Median of a list: the middle value, or the mean of the two middle values (0 for an empty list). */
export function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The q-quantile (0..1) by the nearest-rank method: the smallest value with at least q of them at or below. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1];
}
