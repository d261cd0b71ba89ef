/**
 * The lock window's timing logic with scripted sessions, in each lock mode's plan: the server is not what is
 * under test here (the integration tests lock a real replica); the statements, the watchdog, the abort and the
 * error are.
 */
import { mariadbDialect } from "../../hostscripts/common/dialect";
import { PipelineError } from "../../hostscripts/common/errors";
import { withLock, type SqlSession, type StepTimer } from "../../hostscripts/backup/lock";
import { memoryLogger } from "../../hostscripts/common/log";

/** A session that records statements; `hang` makes a statement wait until the session is killed. */
function scriptedSession(id: number, hang: string[] = []) {
  const statements: string[] = [];
  let kill: (e: Error) => void = () => undefined;
  const killed = new Promise<never>((_, reject) => (kill = reject));
  killed.catch(() => undefined);
  const session: SqlSession & { statements: string[]; kill: () => void; destroyed: boolean } = {
    id,
    statements,
    destroyed: false,
    async query(sql) {
      statements.push(sql);
      if (hang.includes(sql)) await killed;
      return [];
    },
    destroy() {
      session.destroyed = true;
      kill(new Error("socket closed"));
    },
    kill: () => kill(new Error("Connection was killed")),
  };
  return session;
}

/** A watchdog whose KILL ends the named session. */
function watchdogFor(target: ReturnType<typeof scriptedSession>) {
  const watchdog = scriptedSession(99);
  const query = watchdog.query;
  watchdog.query = async (sql) => {
    const rows = await query(sql);
    if (sql === `KILL CONNECTION ${target.id}`) target.kill();
    return rows;
  };
  return watchdog;
}

const plan = mariadbDialect("10.11.6").lockPlan("global");

test("locks, runs the work, unlocks, and measures the window", async () => {
  const session = scriptedSession(7);
  const watchdog = watchdogFor(session);
  const window = await withLock(
    { session, watchdog, plan, timeoutMs: 1000, log: memoryLogger() },
    async () => {
      await new Promise((r) => setTimeout(r, 30));
      return "snapshot";
    },
  );
  expect(window.value).toBe("snapshot");
  expect(session.statements).toEqual(["FLUSH TABLES WITH READ LOCK", "UNLOCK TABLES"]);
  expect(watchdog.statements).toEqual([]);
  expect(window.lockMs).toBeGreaterThanOrEqual(25);
  expect(window.lockMs).toBeLessThan(1000);
  expect(window.acquireMs).toBeLessThan(window.lockMs - 25);
  // FTWRL holds commits from its first statement: the hold is the whole window.
  expect(window.holdMs).toBe(window.lockMs);
  expect(window.steps.map((s) => s.step)).toEqual(["FLUSH TABLES WITH READ LOCK", "UNLOCK TABLES"]);
});

test("times each statement and each step the work runs through timed, concurrent ones side by side", async () => {
  const session = scriptedSession(6);
  const watchdog = watchdogFor(session);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const window = await withLock(
    { session, watchdog, plan, timeoutMs: 1000, log: memoryLogger() },
    async (_signal, timed) =>
      Promise.all([timed("position", () => sleep(10)), timed("btrfs snapshot", () => sleep(40))]),
  );
  const [lock, position, snapshot, unlock] = window.steps;
  expect(window.steps.map((s) => s.step)).toEqual([
    "FLUSH TABLES WITH READ LOCK",
    "position",
    "btrfs snapshot",
    "UNLOCK TABLES",
  ]);
  expect(position.atMs).toBeGreaterThanOrEqual(lock.atMs + lock.ms);
  expect(snapshot.atMs - position.atMs).toBeLessThan(5);
  expect(snapshot.ms).toBeGreaterThanOrEqual(35);
  expect(unlock.atMs).toBeGreaterThanOrEqual(snapshot.atMs + snapshot.ms);
});

/** Work whose snapshot step never ends until the window aborts it; `onAbort` is told. */
function hangingSnapshot(onAbort: () => void) {
  return (signal: AbortSignal, timed: StepTimer) =>
    timed(
      "the btrfs snapshot",
      () =>
        new Promise<never>((_, reject) => {
          signal.addEventListener("abort", () => {
            onAbort();
            reject(new Error("snapshot killed"));
          });
        }),
    );
}

test("a hanging step: the watchdog kills the lock session at the timeout, the work is aborted", async () => {
  const session = scriptedSession(7);
  const watchdog = watchdogFor(session);
  let aborted = false;
  const started = performance.now();
  const error = await withLock(
    { session, watchdog, plan, timeoutMs: 300, log: memoryLogger() },
    hangingSnapshot(() => (aborted = true)),
  ).catch((e: unknown) => e);
  const elapsed = performance.now() - started;

  expect(error).toBeInstanceOf(PipelineError);
  expect((error as PipelineError).kind).toBe("LockTimeout");
  expect((error as PipelineError).message).toContain('while "the btrfs snapshot" was running');
  expect((error as PipelineError).message).toContain("connection 7");
  expect(aborted).toBe(true);
  expect(watchdog.statements).toEqual(["KILL CONNECTION 7"]);
  expect(session.statements).not.toContain("UNLOCK TABLES");
  expect(elapsed).toBeGreaterThanOrEqual(295);
  expect(elapsed).toBeLessThan(1000);
});

test("a lock statement that never returns is killed too, and the hint points at blocking queries", async () => {
  const session = scriptedSession(8, ["FLUSH TABLES WITH READ LOCK"]);
  const watchdog = watchdogFor(session);
  let workRan = false;
  const error = await withLock({ session, watchdog, plan, timeoutMs: 200, log: memoryLogger() }, async () => {
    workRan = true;
  }).catch((e: unknown) => e);
  expect((error as PipelineError).kind).toBe("LockTimeout");
  expect((error as PipelineError).message).toContain('while "FLUSH TABLES WITH READ LOCK" was running');
  expect((error as PipelineError).hint).toContain("SHOW PROCESSLIST");
  expect(workRan).toBe(false);
  expect(watchdog.statements).toEqual(["KILL CONNECTION 8"]);
});

test("when the watchdog cannot kill, the lock session's socket is dropped", async () => {
  const session = scriptedSession(9);
  const watchdog = scriptedSession(99);
  watchdog.query = async () => {
    throw new Error("Lost connection to server");
  };
  const error = await withLock(
    { session, watchdog, plan, timeoutMs: 100, log: memoryLogger() },
    (signal) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(new Error("aborted")))),
  ).catch((e: unknown) => e);
  expect((error as PipelineError).kind).toBe("LockTimeout");
  expect(session.destroyed).toBe(true);
});

test("a failing step releases the lock at once and surfaces its own error", async () => {
  const session = scriptedSession(10);
  const watchdog = watchdogFor(session);
  const started = performance.now();
  const error = await withLock(
    { session, watchdog, plan, timeoutMs: 5000, log: memoryLogger() },
    async () => {
      throw new PipelineError("SnapshotFailed", "btrfs said no", "fix btrfs");
    },
  ).catch((e: unknown) => e);
  expect((error as PipelineError).kind).toBe("SnapshotFailed");
  expect(watchdog.statements).toEqual(["KILL CONNECTION 10"]);
  expect(performance.now() - started).toBeLessThan(1000);
});

describe("the other lock modes", () => {
  const commit = mariadbDialect("10.11.6").lockPlan("commit");
  const none = mariadbDialect("10.11.6").lockPlan("none");

  test("commit: the stages one by one, the work before the hold between BLOCK_DDL and BLOCK_COMMIT", async () => {
    const session = scriptedSession(11);
    const watchdog = watchdogFor(session);
    const window = await withLock(
      {
        session,
        watchdog,
        plan: commit,
        timeoutMs: 1000,
        log: memoryLogger(),
        beforeHold: async (_signal, timed) => {
          await timed("inventory", () => session.query("SELECT inventory"));
          await new Promise((r) => setTimeout(r, 30));
        },
      },
      async () => "snapshot",
    );
    expect(window.value).toBe("snapshot");
    expect(session.statements).toEqual([
      "BACKUP STAGE START",
      "BACKUP STAGE FLUSH",
      "BACKUP STAGE BLOCK_DDL",
      "SELECT inventory",
      "BACKUP STAGE BLOCK_COMMIT",
      "BACKUP STAGE END",
    ]);
    // Commits are held from BLOCK_COMMIT on: the time before it is in the window, not in the hold.
    expect(window.lockMs - window.holdMs).toBeGreaterThanOrEqual(25);
    expect(window.acquireMs).toBeLessThan(window.lockMs - 25);
    expect(window.steps.map((s) => s.step)).toEqual([
      ...session.statements.slice(0, 3),
      "inventory",
      ...session.statements.slice(4),
    ]);
  });

  test("commit: a BLOCK_COMMIT that waits past the timeout is killed, and the hint names blocking work", async () => {
    const session = scriptedSession(12, ["BACKUP STAGE BLOCK_COMMIT"]);
    const watchdog = watchdogFor(session);
    let workRan = false;
    const error = await withLock(
      { session, watchdog, plan: commit, timeoutMs: 150, log: memoryLogger() },
      async () => {
        workRan = true;
      },
    ).catch((e: unknown) => e);
    expect((error as PipelineError).kind).toBe("LockTimeout");
    expect((error as PipelineError).message).toContain('while "BACKUP STAGE BLOCK_COMMIT" was running');
    expect((error as PipelineError).hint).toContain("SHOW PROCESSLIST");
    expect(workRan).toBe(false);
    expect(watchdog.statements).toEqual(["KILL CONNECTION 12"]);
  });

  test("none: no statement at all, and no lock time", async () => {
    const session = scriptedSession(13);
    const watchdog = watchdogFor(session);
    const window = await withLock(
      { session, watchdog, plan: none, timeoutMs: 1000, log: memoryLogger() },
      async () => {
        await new Promise((r) => setTimeout(r, 20));
        return "snapshot";
      },
    );
    expect(session.statements).toEqual([]);
    expect(window).toMatchObject({ value: "snapshot", lockMs: 0, acquireMs: 0 });
  });

  test("none: a hung snapshot is still stopped at the timeout, and the error says no lock was held", async () => {
    const session = scriptedSession(14);
    const watchdog = watchdogFor(session);
    let aborted = false;
    const error = await withLock(
      { session, watchdog, plan: none, timeoutMs: 100, log: memoryLogger() },
      hangingSnapshot(() => (aborted = true)),
    ).catch((e: unknown) => e);
    expect((error as PipelineError).kind).toBe("LockTimeout");
    expect((error as PipelineError).message).toContain("the snapshot window (no lock held)");
    expect((error as PipelineError).message).toContain('while "the btrfs snapshot" was running');
    expect(aborted).toBe(true);
  });
});
