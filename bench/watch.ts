import { setTimeout as sleep } from "node:timers/promises";
import { replicaStatus, type Lab } from "../lab/lab";
import { processCpuSeconds } from "./measure";
import type { OurBackup } from "./results";
import { stallDuring, watchApplier, type ApplierTrace, type StallMeasurement } from "./stall";

/**
 * A command run while the replica's applier is watched (bench/stall.ts), and the stall placed against the
 * backup's own "locking" and "unlocked" log lines: what the main run and the lock-modes suite share.
 */

/** Quiet time before each backup, the baseline of the stall measurement. */
export const BASELINE_MS = 3_000;
/** The applier watch keeps running this long after a backup, so a stall that outlasts it is seen whole. */
export const AFTER_MS = 1_000;

/** Runs `action` while watching the replica's applier; returns its outcome and the stall it caused. */
export async function withStallWatch<T>(lab: Lab, action: () => Promise<T>) {
  const watch = await watchApplier(lab.replica.socket);
  let trace: ApplierTrace | undefined;
  try {
    await sleep(BASELINE_MS);
    const lagBefore = (await replicaStatus(lab)).secondsBehind;
    const cpuBefore = await processCpuSeconds(lab.replica.pid);
    const start = performance.now();
    const outcome = await action();
    const end = performance.now();
    const serverCpuSeconds = (await processCpuSeconds(lab.replica.pid)) - cpuBefore;
    const replicaLagSeconds = { before: lagBefore, after: (await replicaStatus(lab)).secondsBehind };
    await sleep(AFTER_MS);
    trace = await watch.stop();
    const stall = stallDuring(trace.changes, start, end, BASELINE_MS);
    return { outcome, serverCpuSeconds, replicaLagSeconds, stall, trace };
  } finally {
    if (trace === undefined) await watch.stop().catch(() => undefined);
  }
}

/** Epoch ms of the backup's "locking" and "unlocked" log lines (JSON lines on stderr), if both are there. */
export function lockLogTimes(stderr: string): { locking: number; unlocked: number } | undefined {
  const at = (message: string) => {
    for (const line of stderr.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const entry = JSON.parse(line) as { message?: string; time?: string };
        if (entry.message === message && entry.time) return Date.parse(entry.time);
      } catch {
        // not a log line of ours
      }
    }
    return undefined;
  };
  const locking = at("locking");
  const unlocked = at("unlocked");
  return locking === undefined || unlocked === undefined ? undefined : { locking, unlocked };
}

/**
 * The stall while the lock was held: the longest applier gap overlapping the window from the "locking" to
 * the "unlocked" log line (1 ms log resolution), minus the normal gap — the part of the stall the lock
 * itself causes, as opposed to the archive and upload competing for CPU and disk afterwards.
 */
export function lockStall(trace: ApplierTrace, stderr: string): StallMeasurement | undefined {
  const times = lockLogTimes(stderr);
  if (times === undefined) return undefined;
  const origin = performance.timeOrigin;
  return stallDuring(trace.changes, times.locking - origin, times.unlocked - origin, BASELINE_MS);
}

/** Where the longest applier gap lay relative to the backup's "locking" and "unlocked" log lines. */
export function placeGap(stall: StallMeasurement, stderr: string): OurBackup["gapVsLock"] {
  const times = lockLogTimes(stderr);
  if (times === undefined) return undefined;
  const { locking, unlocked } = times;
  return {
    gapStartAfterLockingMs: stall.longestGapFromEpochMs - locking,
    gapEndAfterUnlockedMs: stall.longestGapToEpochMs - unlocked,
  };
}
