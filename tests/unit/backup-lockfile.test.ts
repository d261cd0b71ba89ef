/**
 * The run lock against real processes and files: a live owner refuses (AlreadyRunning, exit 12), a dead one
 * or a recycled pid is taken over, a torn file counts as stale, and release removes only our own lock.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PipelineError } from "../../hostscripts/common/errors";
import { acquireRunLock, ownerOf } from "../../hostscripts/common/runlock";

let dir: string;
let path: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "backup-lockfile-"));
  path = join(dir, ".mysql-backup.lock");
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function deadPid(): Promise<number> {
  const child = spawn("true");
  await once(child, "exit");
  return child.pid!;
}

test("takes the lock with this process's pid and start time, and a live owner refuses a second run", async () => {
  const lock = await acquireRunLock(path);
  expect(JSON.parse(await readFile(path, "utf8"))).toEqual(await ownerOf(process.pid));
  expect(lock.tookOverFrom).toBeNull();

  const second = await acquireRunLock(path).catch((e: unknown) => e);
  expect(second).toBeInstanceOf(PipelineError);
  expect((second as PipelineError).kind).toBe("AlreadyRunning");
  expect((second as PipelineError).exitCode).toBe(12);
  expect((second as PipelineError).message).toContain(`pid ${process.pid}`);

  await lock.release();
  expect(await readdir(dir)).toEqual([]);
});

test("a lock left by a dead process is taken over", async () => {
  const pid = await deadPid();
  await writeFile(path, JSON.stringify({ pid, startTime: "12345" }));
  const lock = await acquireRunLock(path);
  expect(lock.tookOverFrom).toEqual({ pid, startTime: "12345" });
  expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
  await lock.release();
});

test("a live pid with another start time is a recycled pid, not the owner: taken over", async () => {
  await writeFile(path, JSON.stringify({ pid: process.pid, startTime: "1" }));
  const lock = await acquireRunLock(path);
  expect(lock.tookOverFrom).toEqual({ pid: process.pid, startTime: "1" });
  await lock.release();
});

test("a torn lock file proves no owner and is taken over", async () => {
  await writeFile(path, '{"pid": 4');
  const lock = await acquireRunLock(path);
  expect(lock.tookOverFrom).toBeNull();
  expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
  await lock.release();
  expect(await readdir(dir)).toEqual([]);
});

test("release leaves a lock that another run took in the meantime", async () => {
  const lock = await acquireRunLock(path);
  const other = JSON.stringify({ pid: process.pid, startTime: "someone-else" });
  await writeFile(path, other);
  await lock.release();
  expect(await readFile(path, "utf8")).toBe(other);
});
