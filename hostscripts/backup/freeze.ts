import { mkdir, rm } from "node:fs/promises";
import {
  DEFAULT_LOCK_TIMEOUT_MS,
  type BackupConfig,
  type CapturedPosition,
  type ManifestTable,
} from "../../contracts";
import type { Checkpoint } from "../common/checkpoint";
import {
  dialectFor,
  readServerFacts,
  type Dialect,
  type LockPlan,
  type ServerFacts,
} from "../common/dialect";
import { PipelineError, messageOf } from "../common/errors";
import { readInventory, summarizeInventory, type Inventory } from "../common/inventory";
import type { Logger } from "../common/log";
import { checkDiskSpace } from "../common/diskspace";
import { round } from "./durations";
import { withLock, type LockOptions, type LockStep, type SqlSession, type StepTimer } from "./lock";
import {
  chooseLockMode,
  crashSafetyObstacles,
  describeObstacles,
  memoryTablesWithRows,
  readCrashSafetyFacts,
  type LockChoice,
} from "../common/lockmode";
import type { Snapshot, SnapshotDriver } from "../common/snapshot";

/**
 * Steps 1–4 (DESIGN §1), the lock window: choose the lock mode, lock, capture the position and the table
 * inventory, snapshot, unlock, within a hard timeout. Everything that can be done before the lock is done
 * before it; the snapshot is removed whenever the backup cannot go on with it, and after the archive in any
 * case. In a mode that lets commits through, the position is read just before and just after the snapshot,
 * and what made the mode safe is checked again afterwards.
 */

/** A client session that can be closed; the lock window uses two. */
export type ClosableSession = SqlSession & { close(): Promise<void> };

/** What the lock window uses of the backup's dependencies. */
export interface FreezeDeps {
  /** Opens a new session on the local server (called twice: lock and watchdog). */
  openSession(): Promise<ClosableSession>;
  /** The snapshot driver, built over the injected command runner. */
  driver: SnapshotDriver;
  log: Logger;
  /** Called at the `locked` pause point. */
  checkpoint: Checkpoint;
}

/** What was taken with the snapshot: the position, the inventory and the snapshot. */
export interface Frozen {
  /** Under a lock that holds commits, the snapshot's position; otherwise the one read just before it. */
  position: CapturedPosition;
  /** The position read just after the snapshot, when commits went on while it was taken; else null. */
  positionAfter: CapturedPosition | null;
  tables: ManifestTable[];
  /** Views the inventory left out (no data). */
  views: string[];
  snapshot: Snapshot;
  snapshotMs: number;
}

/** The lock window as the rest of the backup sees it. */
export interface LockWindow {
  facts: ServerFacts;
  dialect: Dialect;
  /** The mode, who chose it and why. */
  choice: LockChoice;
  /** How the mode was taken on this server. */
  plan: LockPlan;
  /** How long the server was locked; 0 in lock mode `none`. */
  lockMs: number;
  /** Part of `lockMs` spent waiting for the lock statements to return. */
  acquireMs: number;
  /**
   * The statement that takes the hold (`LockPlan.holdFrom`: BLOCK_COMMIT, FTWRL) → unlock returned: how long
   * the replica's commits waited, where the plan holds them. 0 in lock mode `none`.
   */
  holdMs: number;
  /** Every statement and step of the window, timed (`LockStep`). */
  steps: LockStep[];
  frozen: Frozen;
  /** Bytes of data below the source root, measured before the lock (the archive bar's total). */
  dataBytes: number;
}

/** How long the server may stay locked when the config does not say (`lockTimeoutMs`). */

/**
 * Steps 1–4: read the server, prove its paths and choose the lock mode (before any lock), then lock, capture
 * and snapshot, unlock. Both sessions are opened before locking, so the watchdog never needs a new connection
 * while the server is locked; both are closed as soon as the window ends. On failure `localDir` and the
 * snapshot go.
 */
export async function freeze(
  config: BackupConfig,
  deps: FreezeDeps,
  backupId: string,
  localDir: string,
): Promise<LockWindow> {
  const { driver, log } = deps;
  const timeoutMs = config.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const session = await deps.openSession();
  const watchdog = await deps.openSession().catch(async (e: unknown) => {
    await session.close();
    throw e;
  });
  try {
    const { facts, dialect, choice, waitForRedo, dataBytes } = await prepare(config, deps, session, localDir);
    const plan = dialect.lockPlan(choice.mode);
    log.info("locking", {
      mode: plan.mode,
      method: plan.method,
      chosenBy: choice.chosenBy,
      why: choice.reason,
      server: facts.versionString,
      timeoutMs,
    });
    const window = await runThenRemoveSnapshotOnFailure(driver, backupId, log, async () => {
      const under: Under = { session, plan, driver, backupId, checkpoint: deps.checkpoint, waitForRedo };
      const locked = await withLock(
        { session, watchdog, plan, timeoutMs, log, beforeHold: beforeHold(under) },
        (signal, timed) => frozenState(under, signal, timed),
      );
      if (!plan.holdsCommits) await recheckCrashSafety(session, dialect, choice);
      return locked;
    });
    log.info("unlocked", {
      mode: plan.mode,
      lockMs: round(window.lockMs),
      holdMs: round(window.holdMs),
      acquireMs: round(window.acquireMs),
      snapshotMs: round(window.value.snapshotMs),
      steps: window.steps.map(({ step, atMs, ms }) => `${step} @${atMs.toFixed(1)} ${ms.toFixed(1)} ms`),
      inventory: summarizeInventory({ tables: window.value.tables, views: window.value.views }),
    });
    return {
      facts,
      dialect,
      choice,
      plan,
      lockMs: window.lockMs,
      acquireMs: window.acquireMs,
      holdMs: window.holdMs,
      steps: window.steps,
      frozen: window.value,
      dataBytes,
    };
  } catch (e) {
    await rm(localDir, { recursive: true, force: true });
    throw e;
  } finally {
    await Promise.all([session.close(), watchdog.close()]);
  }
}

/**
 * Before the lock: the server's facts and dialect, proof that its files are on the snapshotted volume, the
 * lock mode, no stale snapshot of ours left, room for the archive, the backup's directory, and the filesystem
 * flushed so the snapshot has little to write.
 */
async function prepare(
  config: BackupConfig,
  { driver, log }: FreezeDeps,
  session: SqlSession,
  localDir: string,
): Promise<{
  facts: ServerFacts;
  dialect: Dialect;
  choice: LockChoice;
  waitForRedo: boolean;
  dataBytes: number;
}> {
  const facts = await readServerFacts(session.query);
  const dialect = dialectFor(facts.versionString);
  await driver.prove({
    datadir: facts.settings.datadir,
    logBinBasename: facts.settings.logBinBasename,
    innodbLogDir: facts.innodbLogDir,
    innodbUndoDir: facts.innodbUndoDir,
    innodbDataHomeDir: facts.innodbDataHomeDir,
    ariaLogDir: facts.ariaLogDir,
  });
  const { choice, waitForRedo } = await decideLockMode(config, dialect, session, log);
  const stale = await driver.removeStale();
  if (stale.length > 0) log.warn("removed snapshots left behind by an earlier run", { stale });
  const space = await checkDiskSpace(config.localDir, driver.sourceRoot, config.diskSpace);
  log.info("enough free space to archive", { ...space });
  await mkdir(localDir, { recursive: true, mode: 0o700 });
  await driver.flush?.();
  return { facts, dialect, choice, waitForRedo, dataBytes: space.dataBytes };
}

/**
 * The backup's lock mode from the config and what the server proves (LockModeRefused when it cannot), and
 * whether the snapshot must wait under the lock for InnoDB's redo log: with innodb_flush_log_at_trx_commit
 * other than 1, commits acknowledged before the lock may still sit in InnoDB's log buffer, outside any
 * snapshot, while the position read under the lock counts them (seen on the lab at =0: 242 transactions
 * short). FLUSH ENGINE LOGS does not help there: MariaDB skips it at =0.
 */
async function decideLockMode(
  config: BackupConfig,
  dialect: Dialect,
  session: SqlSession,
  log: Logger,
): Promise<{ choice: LockChoice; waitForRedo: boolean }> {
  const safety = await readCrashSafetyFacts(session.query, dialect.flavor);
  const memory = memoryTablesWithRows(safety);
  if (memory.length > 0) {
    log.warn("MEMORY tables keep their rows only in memory: no snapshot holds them, in any lock mode", {
      tables: memory,
    });
  }
  return {
    choice: chooseLockMode(config.lockMode ?? "auto", dialect.flavor, crashSafetyObstacles(safety)),
    waitForRedo: safety.innodbFlushLogAtTrxCommit !== 1,
  };
}

/**
 * After a snapshot taken while commits went on: what allowed it must still hold (a non-crash-safe table that
 * was empty may have been written during the window, or created). If not, the snapshot cannot be trusted.
 */
async function recheckCrashSafety(session: SqlSession, dialect: Dialect, choice: LockChoice): Promise<void> {
  // Such a mode was allowed only with no obstacle at all, so any obstacle now appeared during the window.
  const appeared = crashSafetyObstacles(await readCrashSafetyFacts(session.query, dialect.flavor));
  if (appeared.length === 0) return;
  throw new PipelineError(
    "LockModeRefused",
    `lock mode "${choice.mode}" no longer held when the snapshot was taken, so the snapshot was discarded: ` +
      describeObstacles(appeared),
    "find what wrote to or created that table (or changed that setting) during the backup; " +
      'with lockMode "auto" the next backup picks a mode that locks',
  );
}

/** What the work under the lock needs. */
interface Under {
  session: SqlSession;
  plan: LockPlan;
  driver: SnapshotDriver;
  backupId: string;
  checkpoint: Checkpoint;
  /** Wait for InnoDB's redo log to be on disk before the snapshot (see `decideLockMode`). */
  waitForRedo: boolean;
  /** The inventory, once read before the hold (`beforeHold`). */
  inventory?: Inventory;
}

/**
 * Before the hold, where the plan has stages before it (MariaDB's BACKUP STAGE BLOCK_DDL before
 * BLOCK_COMMIT), side by side:
 * - the table inventory, so the replica's commits do not wait for it. It is the snapshot's all the same: from
 *   BLOCK_DDL to BACKUP STAGE END the server holds CREATE, DROP, RENAME and TRUNCATE TABLE and the final phase
 *   of every ALTER TABLE, so no table, engine or partitioning changes between this read and the snapshot;
 * - the volume flushed once more (the driver's `flush`, as before the lock). The flush before the lock is
 *   tens of milliseconds old by now, and on a replica applying at its limit the relay and binary logs
 *   dirty the page cache quickly; whatever is dirty, and a filesystem commit already running, the snapshot
 *   must write or wait for while commits are held. Flushed here, with only DDL held, the snapshot finds
 *   milliseconds of writes (lab at the maximum rate: `BENCHMARKS.md`, lock modes).
 */
function beforeHold(under: Under): LockOptions["beforeHold"] {
  if (under.plan.holdFrom === 0) return undefined;
  const { driver, session } = under;
  return async (_signal, timed) => {
    const [inventory] = await Promise.all([
      timed("inventory", () => readInventory(session.query)),
      driver.flush && timed("volume flushed", async () => driver.flush?.()),
    ]);
    under.inventory = inventory;
  };
}

/**
 * Inside the window. Under a lock that holds commits, the position (and the inventory, unless read before
 * the hold) is read while the snapshot command runs, because they do not depend on each other and every
 * millisecond here blocks replication. Otherwise in order: the inventory and the position just before the
 * snapshot, the position just after it.
 */
async function frozenState(under: Under, signal: AbortSignal, timed: StepTimer): Promise<Frozen> {
  await under.checkpoint("locked");
  return under.plan.holdsCommits
    ? frozenUnderLock(under, signal, timed)
    : aroundSnapshot(under, signal, timed);
}

async function frozenUnderLock(
  { session, plan, driver, backupId, waitForRedo, inventory: readBefore }: Under,
  signal: AbortSignal,
  timed: StepTimer,
): Promise<Frozen> {
  const captured = (async () => ({
    position: await timed("position", () => plan.capturePosition(session.query)),
    inventory: readBefore ?? (await timed("inventory", () => readInventory(session.query))),
  }))();
  const snapshotted = (async () => {
    // Only here, where the position counts every commit before the lock; a lock-free mode proved =1.
    if (waitForRedo) await timed("redo log on disk", () => redoOnDisk(session, signal));
    return timed(`${driver.name} snapshot`, () => snapshot(driver, backupId, signal));
  })();
  const [c, s] = await Promise.allSettled([captured, snapshotted]);
  if (c.status === "rejected") throw c.reason;
  if (s.status === "rejected") throw s.reason;
  const { position, inventory } = c.value;
  return { position, positionAfter: null, ...inventory, ...s.value };
}

async function aroundSnapshot(
  { session, plan, driver, backupId }: Under,
  signal: AbortSignal,
  timed: StepTimer,
): Promise<Frozen> {
  const inventory = await timed("inventory", () => readInventory(session.query));
  const position = await timed("position before the snapshot", () => plan.capturePosition(session.query));
  const taken = await timed(`${driver.name} snapshot`, () => snapshot(driver, backupId, signal));
  const positionAfter = await timed("position after the snapshot", () =>
    plan.captureUpperBound(session.query),
  );
  return { position, positionAfter, ...inventory, ...taken };
}

/** How often the redo log's flushed LSN is read while waiting for it. */
const REDO_POLL_MS = 10;

/** InnoDB's current and flushed LSN, as MariaDB (`Innodb_lsn_*`) or MySQL 8.0.30+ (`Innodb_redo_log_*`) name them. */
async function redoLsns(session: SqlSession): Promise<{ current: number; flushed: number }> {
  const rows = await session.query(
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Innodb_lsn_current', 'Innodb_lsn_flushed', " +
      "'Innodb_redo_log_current_lsn', 'Innodb_redo_log_flushed_to_disk_lsn')",
  );
  const value = (...names: string[]) =>
    Number(rows.find((r) => names.includes(String(r.Variable_name)))?.Value ?? NaN);
  return {
    current: value("Innodb_lsn_current", "Innodb_redo_log_current_lsn"),
    flushed: value("Innodb_lsn_flushed", "Innodb_redo_log_flushed_to_disk_lsn"),
  };
}

/**
 * Waits, with commits held, until InnoDB has flushed its redo log up to where it stood when called (its
 * once-a-second background flush at the latest); the hard timeout bounds the wait like any step.
 */
async function redoOnDisk(session: SqlSession, signal: AbortSignal): Promise<void> {
  const { current } = await redoLsns(session);
  // A server without these counters (MySQL before 8.0.30) cannot be waited for: the position check tells.
  if (!Number.isFinite(current)) return;
  while (!signal.aborted && (await redoLsns(session)).flushed < current) {
    await new Promise((done) => setTimeout(done, REDO_POLL_MS));
  }
}

async function snapshot(
  driver: SnapshotDriver,
  backupId: string,
  signal: AbortSignal,
): Promise<{ snapshot: Snapshot; snapshotMs: number }> {
  const t0 = performance.now();
  const taken = await driver.create(backupId, signal);
  return { snapshot: taken, snapshotMs: performance.now() - t0 };
}

/** Runs `work`, then removes the backup's snapshot whatever happened; a removal failure never hides the first error. */
export async function runThenRemoveSnapshot<T>(
  driver: SnapshotDriver,
  backupId: string,
  log: Logger,
  work: () => Promise<T>,
): Promise<T> {
  const value = await runThenRemoveSnapshotOnFailure(driver, backupId, log, work);
  await driver.remove(backupId);
  return value;
}

/** Runs `work`; if it fails, removes whatever snapshot it may have left (also a partial one). */
async function runThenRemoveSnapshotOnFailure<T>(
  driver: SnapshotDriver,
  backupId: string,
  log: Logger,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (e) {
    await removeSnapshotQuietly(driver, backupId, log);
    throw e;
  }
}

async function removeSnapshotQuietly(driver: SnapshotDriver, backupId: string, log: Logger): Promise<void> {
  try {
    await driver.remove(backupId);
  } catch (removal) {
    log.error("could not remove the snapshot after a failure; the next run removes it", {
      error: messageOf(removal),
    });
  }
}
