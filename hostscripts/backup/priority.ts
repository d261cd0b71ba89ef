import { readdir } from "node:fs/promises";
import { setPriority } from "node:os";
import type { Logger } from "../common/log";
import { runCommand, type RunCommand } from "../common/snapshot/driver";

/**
 * The backup's priority against the database. Up to and through the lock it runs at the priority it was
 * started with, so the global read lock is never held by a process waiting for a CPU or for an idle-class
 * turn at the disk, which under contention stretches a lock window of tens of ms to hundreds. Once the lock
 * is released, the rest (reading the snapshot, zstd, hashing, upload) yields to the database: every thread
 * of this process gets `nice` and the idle I/O class, and the children started afterwards (zstd) inherit
 * both. Lowering a priority needs no privilege.
 */

/** How the backup yields once the lock is released. */
export interface YieldSettings {
  /** Nice value of every thread, 0–19. */
  nice: number;
  /** I/O scheduling class: "idle" gets the disk only when nothing else wants it. */
  ioClass: "idle" | "best-effort";
}

export const DEFAULT_YIELD: YieldSettings = { nice: 10, ioClass: "idle" };

/** What `yieldToDatabase` did, for the log and the result. */
export interface YieldOutcome extends YieldSettings {
  threads: number;
  /** Set when the I/O class could not be changed (ionice missing or refused); the nice value still applies. */
  ioProblem?: string;
}

/** Lowers every thread of this process to `settings`. Never throws: a backup does not fail over its priority. */
export async function yieldToDatabase(
  log: Logger,
  settings: YieldSettings = DEFAULT_YIELD,
  run: RunCommand = runCommand,
): Promise<YieldOutcome> {
  const threads = await readdir("/proc/self/task").catch(() => [String(process.pid)]);
  for (const tid of threads) {
    try {
      // On Linux setpriority(PRIO_PROCESS, tid) sets one thread: each is set on its own.
      setPriority(Number(tid), settings.nice);
    } catch (e) {
      log.warn("could not lower a thread's CPU priority", { tid, error: (e as Error).message });
    }
  }
  const ioClass = settings.ioClass === "idle" ? "3" : "2";
  const result = await run(["ionice", "-c", ioClass, "-p", ...threads]);
  const ioProblem =
    result.exitCode === 0 ? undefined : `ionice exited ${result.exitCode}: ${result.stderr.trim()}`;
  const outcome: YieldOutcome = { ...settings, threads: threads.length, ...(ioProblem ? { ioProblem } : {}) };
  if (ioProblem) log.warn("could not lower the I/O class; the CPU priority is lowered", { ...outcome });
  else log.info("lock released: yielding to the database", { ...outcome });
  return outcome;
}
