import { setTimeout as sleep } from "node:timers/promises";
import type { Connection } from "mysql2/promise";
import type { LockPlan, Query } from "../common/dialect";
import { PipelineError, messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { query } from "../common/mysql";

/**
 * The lock window: lock, do the work that needs the server frozen (capture the position, snapshot), unlock —
 * bounded by a hard timeout. A second "watchdog" session, opened before locking, releases the lock by
 * killing the lock session's connection when time runs out, so replication is never blocked for longer
 * than the timeout, whatever hangs (a lock statement, a query, or the snapshot command). A plan without lock
 * statements (lock mode `none`) runs its work under the same timeout: nothing is held, but a hung snapshot
 * command is still stopped.
 */

/** A client session as the lock window uses it. */
export interface SqlSession {
  /** The server's connection id (`CONNECTION_ID()`), which the watchdog kills. */
  readonly id: number;
  query: Query;
  /** Drops the socket: the server then ends the session and releases its locks. The last resort. */
  destroy(): void;
}

/** A mysql2 connection as a session. */
export function sessionOf(conn: Connection): SqlSession {
  return {
    id: conn.threadId,
    query: (sql) => query(conn, sql),
    destroy: () => conn.destroy(),
  };
}

/** How long the work under the lock may take after it was told to stop, before we stop waiting for it. */
const SETTLE_AFTER_ABORT_MS = 5_000;

/** Inputs of `withLock`. */
export interface LockOptions {
  /** The session that takes the lock and runs the work's queries. */
  session: SqlSession;
  /** A second, idle session used only to kill `session` on timeout. */
  watchdog: SqlSession;
  /** The lock statements and the unlock of the backup's lock mode. */
  plan: Pick<LockPlan, "lockStatements" | "unlockStatement" | "holdFrom">;
  /**
   * Runs just before the statement that takes the hold, when statements come before it (`LockPlan.holdFrom`):
   * work that needs DDL held but not commits. Under the same timeout, its steps timed like the work's.
   */
  beforeHold?: (signal: AbortSignal, timed: StepTimer) => Promise<void>;
  /** Hard limit from the first lock statement to the unlock, in ms. */
  timeoutMs: number;
  /** Monotonic milliseconds. Defaults to `performance.now`. */
  now?: () => number;
  log: Logger;
}

/** What ran under the lock, and for how long the server was locked. */
export interface LockWindow<T> {
  value: T;
  /** First lock statement issued → unlock returned; 0 when the plan takes no lock. */
  lockMs: number;
  /** Time spent in the lock statements themselves, waiting for the lock (`beforeHold` not counted). */
  acquireMs: number;
  /**
   * The statement that holds commits issued → unlock returned: how long commits (and so the replica's
   * applier) were held. Equals `lockMs` when the first statement holds them; 0 when the plan takes no lock.
   */
  holdMs: number;
  /** Every statement and timed step of the window, in the order they started. */
  steps: LockStep[];
}

/** One timed step of the lock window. */
export interface LockStep {
  /** The statement, or what the work did (`position`, `inventory`, `snapshot`, …). */
  step: string;
  /** When it started, in ms after the first lock statement was issued (after the window opened without one). */
  atMs: number;
  ms: number;
}

/**
 * Runs one step of the work as a timed step: named as running while it runs (also next to others running at
 * the same time, for a timeout's message) and recorded in `LockWindow.steps`.
 */
export type StepTimer = <V>(step: string, task: () => Promise<V>) => Promise<V>;

const TIMED_OUT = Symbol("lock timeout");

/**
 * Takes the plan's lock (running `options.beforeHold` just before the statement that takes the hold), runs
 * `work` (which must stop when `signal` aborts) and unlocks; every statement and every step run through
 * `timed` is timed. If the lock,
 * the work and the unlock are not done within `timeoutMs`, the watchdog kills the lock session (releasing
 * the lock), `signal` aborts, and a LockTimeout error names the step that hung. If the work fails, the
 * lock is released the same way and the work's error is rethrown.
 */
export async function withLock<T>(
  options: LockOptions,
  work: (signal: AbortSignal, timed: StepTimer) => Promise<T>,
): Promise<LockWindow<T>> {
  const { session, plan, timeoutMs, log } = options;
  const now = options.now ?? (() => performance.now());
  const locks = plan.lockStatements.length > 0;
  const abort = new AbortController();
  // What a timeout names as hung: the steps running (`timed`).
  let step = plan.lockStatements[0] ?? "the work before the snapshot";
  const started = now();
  const steps: LockStep[] = [];
  const running = new Set<string>();
  const timed: StepTimer = async (what, task) => {
    const at = now();
    running.add(what);
    step = [...running].join(" and ");
    try {
      return await task();
    } finally {
      steps.push({ step: what, atMs: at - started, ms: now() - at });
      running.delete(what);
      if (running.size > 0) step = [...running].join(" and ");
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof TIMED_OUT>(
    (done) => (timer = setTimeout(() => done(TIMED_OUT), timeoutMs)),
  );

  let acquireMs = 0;
  let heldAt = started;
  const statement = (sql: string) => timed(sql, () => session.query(sql));
  const locked = (async () => {
    for (const [i, sql] of plan.lockStatements.entries()) {
      if (i === plan.holdFrom && i > 0) {
        if (options.beforeHold) await options.beforeHold(abort.signal, timed);
        heldAt = now();
      }
      const t0 = now();
      await statement(sql);
      acquireMs += now() - t0;
    }
    const value = await work(abort.signal, timed);
    if (plan.unlockStatement !== null) await statement(plan.unlockStatement);
    return value;
  })();
  // Observed here so a failure that loses the race below is never an unhandled rejection.
  const settled = locked.then(
    () => undefined,
    () => undefined,
  );

  try {
    const outcome = await Promise.race([locked, expired]);
    if (outcome !== TIMED_OUT) {
      const ended = now();
      return {
        value: outcome,
        lockMs: locks ? ended - started : 0,
        acquireMs,
        holdMs: locks ? ended - heldAt : 0,
        steps: steps.sort((a, b) => a.atMs - b.atMs),
      };
    }
  } catch (e) {
    abort.abort();
    await release(options, "the work under the lock failed");
    await Promise.race([settled, sleep(SETTLE_AFTER_ABORT_MS, undefined, { ref: false })]);
    throw e;
  } finally {
    clearTimeout(timer);
  }

  const hung = step;
  abort.abort();
  await release(options, `the lock window exceeded ${timeoutMs} ms`);
  const releasedMs = Math.round(now() - started);
  await Promise.race([settled, sleep(SETTLE_AFTER_ABORT_MS, undefined, { ref: false })]);
  log.error("lock timeout: lock released by the watchdog", { hung, timeoutMs, releasedMs });
  const what = locks
    ? `the server stayed locked longer than lockTimeoutMs=${timeoutMs}`
    : `the snapshot window (no lock held) took longer than lockTimeoutMs=${timeoutMs}`;
  throw new PipelineError(
    "LockTimeout",
    `${what} while "${hung}" was running; ` +
      `the watchdog killed the backup's session (connection ${session.id}) after ${releasedMs} ms and the backup was aborted`,
    plan.lockStatements.includes(hung)
      ? "a long-running query, transaction or DDL blocks the lock: find it in SHOW PROCESSLIST, or run the backup at a quieter time"
      : `find out why "${hung}" hangs (disk, volume manager); replication was not blocked longer than the timeout`,
  );
}

/** Ends the lock session from the watchdog (KILL CONNECTION); if that fails, drops its socket. */
async function release(options: LockOptions, why: string): Promise<void> {
  const { session, watchdog, log } = options;
  try {
    await watchdog.query(`KILL CONNECTION ${Number(session.id)}`);
    log.warn("lock session killed by the watchdog", { why, connectionId: session.id });
  } catch (e) {
    // "Unknown thread id" means the session is already gone, and the lock with it.
    log.warn("the watchdog could not kill the lock session; dropping its socket", {
      why,
      connectionId: session.id,
      error: messageOf(e),
    });
    session.destroy();
  }
}
