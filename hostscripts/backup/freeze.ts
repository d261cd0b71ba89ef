import { mkdir, rm } from "node:fs/promises";
import type { BackupConfig, CapturedPosition, ManifestTable } from "../../contracts";
import type { Checkpoint } from "../common/checkpoint";
import {
  detectDialect,
  readServerFacts,
  readTableInventory,
  type Dialect,
  type ServerFacts,
} from "../common/dialect";
import { messageOf } from "../common/errors";
import type { Logger } from "../common/log";
import { checkDiskSpace } from "../common/diskspace";
import { round } from "./durations";
import { withLock, type SqlSession } from "./lock";
import type { Snapshot, SnapshotDriver } from "../common/snapshot";

/**
 * Steps 1–4 (DESIGN §1), the lock window: lock, capture the position and the table inventory, snapshot,
 * unlock, within a hard timeout. Everything that can be done before the lock is done before it; the
 * snapshot is removed whenever the backup cannot go on with it, and after the archive in any case.
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

/** What was taken under the lock: the position, the inventory and the snapshot, all taken together. */
export interface Frozen {
  position: CapturedPosition;
  tables: ManifestTable[];
  snapshot: Snapshot;
  snapshotMs: number;
}

/** The lock window as the rest of the backup sees it. */
export interface LockWindow {
  facts: ServerFacts;
  dialect: Dialect;
  lockMs: number;
  /** Part of `lockMs` spent waiting for the lock statement to return. */
  acquireMs: number;
  frozen: Frozen;
  /** Bytes of data below the source root, measured before the lock (the archive bar's total). */
  dataBytes: number;
}

/** How long the server may stay locked when the config does not say (`lockTimeoutMs`). */
const DEFAULT_LOCK_TIMEOUT_MS = 5000;

/**
 * Steps 1–4: read the server and prove its paths (before any lock), then lock, capture and snapshot, unlock.
 * Both sessions are opened before locking, so the watchdog never needs a new connection while the server is
 * locked; both are closed as soon as the lock is released. On failure `localDir` and the snapshot go.
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
    const { facts, dialect, dataBytes } = await prepare(config, deps, session, localDir);
    log.info("locking", {
      method: dialect.lockMethod,
      ...(dialect.lockReason ? { why: dialect.lockReason } : {}),
      server: facts.versionString,
      timeoutMs,
    });
    const window = await runThenRemoveSnapshotOnFailure(driver, backupId, log, () =>
      withLock({ session, watchdog, dialect, timeoutMs, log }, (signal, step) =>
        frozenState({ session, dialect, driver, backupId, checkpoint: deps.checkpoint }, signal, step),
      ),
    );
    log.info("unlocked", {
      lockMs: round(window.lockMs),
      acquireMs: round(window.acquireMs),
      snapshotMs: round(window.value.snapshotMs),
    });
    return {
      facts,
      dialect,
      lockMs: window.lockMs,
      acquireMs: window.acquireMs,
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
 * Before the lock: the server's facts and dialect, proof that its files are on the snapshotted volume, no
 * stale snapshot of ours left, room for the archive, the backup's directory, and the filesystem flushed so
 * the snapshot under the lock has little to write.
 */
async function prepare(
  config: BackupConfig,
  { driver, log }: FreezeDeps,
  session: SqlSession,
  localDir: string,
): Promise<{ facts: ServerFacts; dialect: Dialect; dataBytes: number }> {
  const facts = await readServerFacts(session.query);
  const dialect = await detectDialect(facts.versionString, session.query);
  await driver.prove({
    datadir: facts.settings.datadir,
    logBinBasename: facts.settings.logBinBasename,
    innodbLogDir: facts.innodbLogDir,
    innodbUndoDir: facts.innodbUndoDir,
    innodbDataHomeDir: facts.innodbDataHomeDir,
  });
  const stale = await driver.removeStale();
  if (stale.length > 0) log.warn("removed snapshots left behind by an earlier run", { stale });
  const space = await checkDiskSpace(config.localDir, driver.sourceRoot, config.diskSpace);
  log.info("enough free space to archive", { ...space });
  await mkdir(localDir, { recursive: true, mode: 0o700 });
  await driver.flush?.();
  return { facts, dialect, dataBytes: space.dataBytes };
}

/**
 * Under the lock: the position and the inventory (on the lock session) while the snapshot command runs,
 * because they do not depend on each other and every millisecond here blocks replication.
 */
async function frozenState(
  under: {
    session: SqlSession;
    dialect: Dialect;
    driver: SnapshotDriver;
    backupId: string;
    checkpoint: Checkpoint;
  },
  signal: AbortSignal,
  step: (s: string) => void,
): Promise<Frozen> {
  const { session, dialect, driver, backupId } = under;
  await under.checkpoint("locked");
  const pending = new Set<string>();
  const track = async <T>(what: string, task: () => Promise<T>): Promise<T> => {
    pending.add(what);
    step([...pending].join(" and "));
    try {
      return await task();
    } finally {
      pending.delete(what);
      step([...pending].join(" and "));
    }
  };
  const captured = track("capturing the position and the table inventory", async () => ({
    position: await dialect.capturePosition(session.query),
    tables: await readTableInventory(session.query),
  }));
  const snapshotted = track(`the ${driver.name} snapshot`, async () => {
    const t0 = performance.now();
    const snapshot = await driver.create(backupId, signal);
    return { snapshot, snapshotMs: performance.now() - t0 };
  });
  const [c, s] = await Promise.allSettled([captured, snapshotted]);
  if (c.status === "rejected") throw c.reason;
  if (s.status === "rejected") throw s.reason;
  return { ...c.value, ...s.value };
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
