/**
 * The archive against the real tools: a temp tree goes through `writeArchive`, then real `zstd -d | tar -x`
 * must give back identical bytes, and `sha256sum` must agree with every hash the archive recorded.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  access,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { GrowingFile, SYNC_EVERY_BYTES, writeArchive } from "../../hostscripts/backup/archive";
import { PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";

const run = promisify(execFile);
let work: string;
let source: string;

/** Files of several sizes, nested directories, an empty file and an empty directory. */
const tree: Record<string, Buffer> = {
  ibdata1: randomBytes(3 * 1024 * 1024 + 17),
  "empty.flag": Buffer.alloc(0),
  "mysql-bin.index": Buffer.from("/srv/mysql/data/mysql-bin.000001\n"),
  "sbtest/sbtest1.ibd": randomBytes(1024 * 1024),
  "sbtest/db.opt": Buffer.from("default-character-set=utf8mb4\n"),
  "deep/a/b/c/one-byte": Buffer.from("x"),
  "deep/a/b/zeros": Buffer.alloc(2 * 1024 * 1024 + 1),
};

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "backup-archive-"));
  source = join(work, "snapshot");
  for (const [path, bytes] of Object.entries(tree)) {
    await mkdir(join(source, path, ".."), { recursive: true });
    await writeFile(join(source, path), bytes);
  }
  await mkdir(join(source, "empty-dir"));
  await symlink("ibdata1", join(source, "link-to-ibdata1"));
  await run("mkfifo", [join(source, "a.fifo")]);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function sha256sum(path: string): Promise<string> {
  const { stdout } = await run("sha256sum", [path]);
  return stdout.split(" ")[0];
}

test("round-trips through real zstd and tar with every hash matching sha256sum", async () => {
  const log = memoryLogger();
  const dest = join(work, "archive.tar.zst");
  const result = await writeArchive({ root: source, dest, level: 1, threads: 0, log });

  expect(result.path).toBe(dest);
  await expect(access(`${dest}.partial`)).rejects.toThrow();
  expect(result.bytes).toBe((await stat(dest)).size);
  expect(result.sha256).toBe(await sha256sum(dest));
  expect(result.files.map((f) => f.path).sort()).toEqual(Object.keys(tree).sort());
  expect(result.rawBytes).toBe(Object.values(tree).reduce((sum, b) => sum + b.length, 0));
  expect(result.skipped).toEqual(["a.fifo"]);
  expect(log.lines.some((l) => l.level === "warn" && l.path === "a.fifo")).toBe(true);

  const out = join(work, "extracted");
  await mkdir(out);
  await run("bash", ["-c", 'zstd -d -c "$0" | tar -x -C "$1"', dest, out]);
  for (const file of result.files) {
    const restored = await readFile(join(out, file.path));
    expect(restored.equals(tree[file.path])).toBe(true);
    expect(file.bytes).toBe(tree[file.path].length);
    expect(file.sha256).toBe(await sha256sum(join(out, file.path)));
  }
  expect(await readdir(join(out, "empty-dir"))).toEqual([]);
  expect((await stat(join(out, "empty.flag"))).size).toBe(0);
  expect(await readFile(join(out, "link-to-ibdata1"))).toEqual(tree.ibdata1);
  const { stdout: listing } = await run("bash", ["-c", 'zstd -d -c "$0" | tar -tv', dest]);
  expect(listing).toMatch(/^d.* empty-dir$/m);
  expect(listing).not.toContain("a.fifo");
}, 30_000);

test("a failure removes the partial archive and says what failed", async () => {
  const dest = join(work, "broken.tar.zst");
  const error = await writeArchive({ root: join(work, "no-such-snapshot"), dest, log: memoryLogger() }).catch(
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PipelineError);
  expect((error as PipelineError).kind).toBe("ArchiveFailed");
  expect((error as PipelineError).message).toContain("no-such-snapshot");
  await expect(access(`${dest}.partial`)).rejects.toThrow();
  await expect(access(dest)).rejects.toThrow();
}, 30_000);

/** The files below `dir` this process has open. */
async function openFilesUnder(dir: string): Promise<string[]> {
  const fds = await readdir("/proc/self/fd");
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
  return targets.filter((t) => t.startsWith(dir + "/"));
}

/** Reads a growing archive the way the upload does: fixed-size parts, each as soon as it is on the file. */
async function follow(
  file: GrowingFile,
  partBytes: number,
): Promise<{ bytes: Buffer; partsBeforeEnd: number }> {
  const parts: Buffer[] = [];
  let partsBeforeEnd = 0;
  try {
    for (let offset = 0; ; offset += partBytes) {
      const { available, complete } = await file.reach(offset + partBytes);
      if (complete && offset >= available) break;
      if (!complete) partsBeforeEnd++;
      const length = Math.min(partBytes, available - offset);
      parts.push(Buffer.from(await file.read(Buffer.alloc(partBytes), length, offset)));
    }
  } finally {
    await file.close();
  }
  return { bytes: Buffer.concat(parts), partsBeforeEnd };
}

describe("an archive followed while it is written", () => {
  let big: string;

  beforeAll(async () => {
    // Incompressible and larger than two flush windows, so the follower sees it grow and the writer flushes.
    big = join(work, "big-snapshot");
    await mkdir(join(big, "db"), { recursive: true });
    for (let i = 0; i < 3; i++)
      await writeFile(join(big, "db", `t${i}.ibd`), randomBytes(SYNC_EVERY_BYTES / 2 + i));
  });

  test("the follower reads exactly the bytes of the finished archive, most of them before it ends", async () => {
    const file = new GrowingFile();
    const dest = join(work, "followed.tar.zst");
    const [result, followed] = await Promise.all([
      writeArchive({ root: big, dest, log: memoryLogger(), follow: file }),
      follow(file, 5 * 1024 * 1024),
    ]);
    expect(result.bytes).toBeGreaterThan(SYNC_EVERY_BYTES);
    expect(followed.bytes.length).toBe(result.bytes);
    expect(createHash("sha256").update(followed.bytes).digest("hex")).toBe(result.sha256);
    expect(result.sha256).toBe(await sha256sum(dest));
    expect(followed.partsBeforeEnd).toBeGreaterThan(0);
  }, 60_000);

  test("an archive already on disk can be followed too", async () => {
    const dest = join(work, "complete.tar.zst");
    await writeArchive({ root: big, dest, log: memoryLogger() });
    const followed = await follow(await GrowingFile.ofComplete(dest), 5 * 1024 * 1024);
    expect(createHash("sha256").update(followed.bytes).digest("hex")).toBe(await sha256sum(dest));
  }, 30_000);

  test("stopping it removes the partial archive and fails the follower instead of leaving it waiting", async () => {
    const file = new GrowingFile();
    const dest = join(work, "stopped.tar.zst");
    const stop = new AbortController();
    const archived = writeArchive({
      root: big,
      dest,
      log: memoryLogger(),
      follow: file,
      signal: stop.signal,
      onBytes: () => stop.abort(new Error("the upload failed")),
    }).catch((e: unknown) => e);
    const waiting = file.reach(Number.MAX_SAFE_INTEGER).catch((e: unknown) => e);
    const error = await archived;
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).kind).toBe("ArchiveFailed");
    expect((error as PipelineError).message).toContain("the upload failed");
    expect(String(await waiting)).toContain("the archive failed");
    await file.close();
    // No file of the snapshot stays open: a snapshot with an open file cannot be unmounted.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await openFilesUnder(big)).toEqual([]);
    await expect(access(`${dest}.partial`)).rejects.toThrow();
    await expect(access(dest)).rejects.toThrow();
  }, 30_000);
});
