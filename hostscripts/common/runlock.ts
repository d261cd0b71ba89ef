import { link, open, readFile, rename, unlink } from "node:fs/promises";
import { PipelineError, messageOf } from "./errors";

/**
 * One run at a time per host (one backup; one binlog archiver): a lock file created with O_EXCL holding the owner's pid and the kernel's
 * start time of that process. A lock whose owner is gone (killed with -9, the host rebooted) is taken over;
 * the start time tells a recycled pid from the owner, so a stale lock is never mistaken for a live one.
 */

/** Who holds a lock, as the file records it. */
export interface LockOwner {
  pid: number;
  /** `/proc/<pid>/stat` field 22 (clock ticks since boot), or null where /proc is missing. */
  startTime: string | null;
}

/** A held lock; `release` removes the file (only if it is still ours). */
export interface RunLock {
  path: string;
  /** The owner whose stale lock was taken over, if any. */
  tookOverFrom: LockOwner | null;
  release(): Promise<void>;
}

/** Takes the lock at `path` for this process, or throws AlreadyRunning naming the live owner. */
export async function acquireRunLock(path: string): Promise<RunLock> {
  const me = await ownerOf(process.pid);
  const created = await create(path, me);
  if (created) return held(path, me, null);

  const holder = await readOwner(path);
  if (holder !== null && (await isAlive(holder))) throw alreadyRunning(path, holder);
  const stale = await takeOver(path, holder);
  if (!(await create(path, me))) {
    const winner = await readOwner(path);
    throw alreadyRunning(path, winner ?? { pid: 0, startTime: null });
  }
  return held(path, me, stale);
}

/** The pid and start time of a process. */
export async function ownerOf(pid: number): Promise<LockOwner> {
  return { pid, startTime: await startTimeOf(pid) };
}

function held(path: string, me: LockOwner, tookOverFrom: LockOwner | null): RunLock {
  return {
    path,
    tookOverFrom,
    async release() {
      const holder = await readOwner(path);
      if (holder?.pid === me.pid && holder.startTime === me.startTime)
        await unlink(path).catch(() => undefined);
    },
  };
}

/** O_EXCL create; false when the file exists. The content is written before anyone can read a half. */
async function create(path: string, me: LockOwner): Promise<boolean> {
  const temp = `${path}.${me.pid}`;
  const file = await open(temp, "w", 0o600);
  try {
    await file.writeFile(JSON.stringify(me) + "\n");
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    // link() fails with EEXIST atomically, and the lock appears complete or not at all.
    await link(temp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new PipelineError(
      "Internal",
      `cannot create the lock file ${path}: ${messageOf(e)}`,
      "check that the lock file's directory (the backup's localDir, the archiver's stateDir) exists and is writable by the service",
      { cause: e },
    );
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/**
 * Moves a stale lock aside. If the file moved is not the stale one we judged (another run took it over
 * and locked in between), it is put back and that run wins.
 */
async function takeOver(path: string, stale: LockOwner | null): Promise<LockOwner | null> {
  const aside = `${path}.stale.${process.pid}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return stale;
    throw e;
  }
  const moved = await readOwner(aside);
  if (moved !== null && (await isAlive(moved))) {
    await link(aside, path).catch(() => undefined);
    await unlink(aside);
    throw alreadyRunning(path, moved);
  }
  await unlink(aside);
  return stale;
}

async function readOwner(path: string): Promise<LockOwner | null> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<LockOwner>;
    return typeof parsed.pid === "number" ? { pid: parsed.pid, startTime: parsed.startTime ?? null } : null;
  } catch {
    // Unreadable or torn: no owner can be proven, so the lock counts as stale.
    return null;
  }
}

async function isAlive(owner: LockOwner): Promise<boolean> {
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const now = await startTimeOf(owner.pid);
  return owner.startTime === null || now === null || now === owner.startTime;
}

async function startTimeOf(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses; fields after the last ")" are plain.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function alreadyRunning(path: string, holder: LockOwner): PipelineError {
  return new PipelineError(
    "AlreadyRunning",
    `another mysql-backup run holds the lock ${path} (pid ${holder.pid})`,
    `wait for it to finish (systemctl status mysql-backup.service mysql-backup-binlog.service, ps -p ${holder.pid}); ` +
      "if that process is not a mysql-backup run, remove the lock file",
  );
}
