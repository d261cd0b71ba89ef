/**
 * The archive against the real tools: a temp tree goes through `writeArchive`, then real `zstd -d | tar -x`
 * of its chunks (concatenated, as a person restores by hand) must give back identical bytes, and `sha256sum`
 * must agree with every hash the archive recorded, whole or per piece where a chunk boundary cut a file.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  access,
  appendFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { archiveLayoutProblem, isSplit, type ArchiveV2 } from "../../contracts";
import { SYNC_EVERY_BYTES, writeArchive, type ArchiveResult } from "../../hostscripts/backup/archive";
import { ChunkFeed, GrowingFile } from "../../hostscripts/backup/growing";
import { archiveOf as manifestArchive } from "../../hostscripts/backup/manifest";
import { PipelineError } from "../../hostscripts/common/errors";
import { memoryLogger } from "../../hostscripts/common/log";

const run = promisify(execFile);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const MiB = 1024 * 1024;
let work: string;
let source: string;

/** Files of several sizes, nested directories, an empty file and an empty directory. */
const tree: Record<string, Buffer> = {
  ibdata1: randomBytes(3 * MiB + 17),
  "empty.flag": Buffer.alloc(0),
  "mysql-bin.index": Buffer.from("/srv/mysql/data/mysql-bin.000001\n"),
  "sbtest/sbtest1.ibd": randomBytes(MiB),
  "sbtest/db.opt": Buffer.from("default-character-set=utf8mb4\n"),
  "deep/a/b/c/one-byte": Buffer.from("x"),
  "deep/a/b/zeros": Buffer.alloc(2 * MiB + 1),
  [`long/${"n".repeat(120)}/${"m".repeat(110)}.ibd`]: randomBytes(700),
  "unicodé/tëst.frm": Buffer.from("é"),
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

/**
 * The manifest's archive for a written archive, built as the backup builds it, each chunk "uploaded" as its
 * file (its sha256 by sha256sum).
 */
async function archiveOf(result: ArchiveResult): Promise<ArchiveV2> {
  const uploaded = await Promise.all(
    result.chunks.map(async (c) => ({
      index: c.index,
      key: c.path,
      bytes: c.bytes,
      sha256: await sha256sum(c.path),
    })),
  );
  return manifestArchive(result, uploaded);
}

describe.each([
  ["one chunk", 64 * MiB],
  ["chunks of 1 MiB, files cut across them", MiB],
])("an archive in %s", (_name, chunkBytes) => {
  let dir: string;
  let result: ArchiveResult;
  const log = memoryLogger();

  beforeAll(async () => {
    dir = await mkdtemp(join(work, "chunks-"));
    result = await writeArchive({ root: source, dir, chunkBytes, level: 1, threads: 0, log });
  }, 60_000);

  test("round-trips through real zstd and tar, the chunks concatenated, with every hash matching", async () => {
    const names = (await readdir(dir)).sort();
    expect(names).toEqual(result.chunks.map((_, i) => `archive-${String(i + 1).padStart(4, "0")}.tar.zst`));
    expect(result.chunks.length).toBe(chunkBytes === MiB ? Math.ceil(result.tarBytes / MiB) : 1);
    for (const chunk of result.chunks) {
      expect(chunk.bytes).toBe((await stat(chunk.path)).size);
      expect(chunk.tarBytes).toBeLessThanOrEqual(chunkBytes);
    }
    expect(result.files.map((f) => f.path).sort()).toEqual(Object.keys(tree).sort());
    expect(result.rawBytes).toBe(Object.values(tree).reduce((sum, b) => sum + b.length, 0));
    expect(result.skipped).toEqual(["a.fifo"]);
    expect(log.lines.some((l) => l.level === "warn" && l.path === "a.fifo")).toBe(true);
    expect(archiveLayoutProblem(await archiveOf(result), result.files)).toBeNull();

    const out = await mkdtemp(join(work, "extracted-"));
    const paths = result.chunks.map((c) => c.path);
    await run("bash", ["-c", 'cat "${@:2}" | zstd -d -c | tar -x -C "$1"', "_", out, ...paths]);
    for (const file of result.files) {
      const restored = await readFile(join(out, file.path));
      expect(restored.equals(tree[file.path])).toBe(true);
      expect(file.bytes).toBe(tree[file.path].length);
      if (isSplit(file)) {
        let next = 0;
        for (const piece of file.pieces) {
          expect(piece.offset).toBe(next);
          expect(piece.sha256).toBe(sha(restored.subarray(piece.offset, piece.offset + piece.bytes)));
          next += piece.bytes;
        }
        expect(next).toBe(file.bytes);
      } else {
        expect(file.sha256).toBe(await sha256sum(join(out, file.path)));
      }
    }
    expect(await readdir(join(out, "empty-dir"))).toEqual([]);
    expect((await stat(join(out, "empty.flag"))).size).toBe(0);
    expect(await readFile(join(out, "link-to-ibdata1"))).toEqual(tree.ibdata1);
    const { stdout: listing } = await run("bash", ["-c", 'cat "$@" | zstd -d -c | tar -tv', "_", ...paths]);
    expect(listing).toMatch(/^d.* empty-dir\/?$/m);
    expect(listing).not.toContain("a.fifo");
  }, 60_000);

  if (chunkBytes === MiB) {
    test("a file cut by a boundary is listed in pieces, and the next chunk says where it continues", () => {
      const split = result.files.filter(isSplit);
      expect(split.map((f) => f.path)).toContain("ibdata1");
      for (const chunk of result.chunks.slice(1).filter((c) => c.continues)) {
        const file = split.find((f) => f.path === chunk.continues!.path)!;
        expect(file.pieces.map((p) => p.offset)).toContain(chunk.continues!.offset);
      }
      expect(result.chunks[0].continues).toBeUndefined();
    });
  }
});

test("a file whose header would end a chunk starts the next one: no chunk continues a file at its byte 0", async () => {
  // "a" (header + data) leaves room for exactly one more header in the first 1 MiB chunk.
  const root = await mkdtemp(join(work, "boundary-src-"));
  const a = randomBytes(MiB - 1024);
  const b = randomBytes(5000);
  await writeFile(join(root, "a"), a);
  await writeFile(join(root, "b"), b);
  const dir = await mkdtemp(join(work, "boundary-"));
  const result = await writeArchive({ root, dir, chunkBytes: MiB, log: memoryLogger() });
  expect(result.chunks.map((c) => [c.tarOffset, c.continues])).toEqual([
    [0, undefined],
    [512 + a.length, undefined],
  ]);
  expect(result.files).toEqual([
    { path: "a", bytes: a.length, sha256: sha(a) },
    { path: "b", bytes: b.length, sha256: sha(b) },
  ]);
  expect(archiveLayoutProblem(await archiveOf(result), result.files)).toBeNull();
}, 30_000);

test("a failure removes every chunk file and says what failed", async () => {
  const dir = await mkdtemp(join(work, "broken-"));
  const error = await writeArchive({ root: join(work, "no-such-snapshot"), dir, log: memoryLogger() }).catch(
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(PipelineError);
  expect((error as PipelineError).kind).toBe("ArchiveFailed");
  expect((error as PipelineError).message).toContain("no-such-snapshot");
  expect(await readdir(dir)).toEqual([]);
}, 30_000);

describe("a snapshot that changes while it is archived", () => {
  // The `archive` pause point comes once 2 MiB are written: inside the first file here, with reads of it
  // already issued ahead. What happens to that file then must fail the archive, not end up in it.
  const cases: Array<[string, (path: string) => Promise<void>, RegExp]> = [
    [
      "shrinks",
      (path) => truncate(path, 3 * MiB),
      /changed size while it was archived \(8388608 → \d+ bytes\)/,
    ],
    [
      "grows",
      (path) => appendFile(path, "more"),
      /changed size while it was archived \(8388608 → more than 8388608 bytes\)/,
    ],
  ];
  test.each(cases)(
    "a file that %s fails the archive, naming it; no chunk is left and nothing stays open",
    async (_, change, message) => {
      const root = await mkdtemp(join(work, "changing-"));
      const big = join(root, "a-big.ibd");
      await writeFile(big, randomBytes(8 * MiB));
      await writeFile(join(root, "b-after.ibd"), randomBytes(MiB));
      const dir = await mkdtemp(join(work, "changing-out-"));
      const error = await writeArchive({
        root,
        dir,
        chunkBytes: 2 * MiB,
        log: memoryLogger(),
        checkpoint: async () => change(big),
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PipelineError);
      expect((error as PipelineError).kind).toBe("ArchiveFailed");
      expect((error as PipelineError).message).toContain(big);
      expect((error as PipelineError).message).toMatch(message);
      expect(await readdir(dir)).toEqual([]);
      expect(await openFilesUnder(root)).toEqual([]);
    },
    30_000,
  );
});

/** The files below `dir` this process has open. */
async function openFilesUnder(dir: string): Promise<string[]> {
  const fds = await readdir("/proc/self/fd");
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
  return targets.filter((t) => t.startsWith(dir + "/"));
}

/** Reads a growing file the way the upload does: fixed-size parts, each as soon as it is on the file. */
async function follow(
  file: GrowingFile,
  partBytes: number,
): Promise<{ bytes: Buffer; partsBeforeEnd: number }> {
  const parts: Buffer[] = [];
  let partsBeforeEnd = 0;
  for (let offset = 0; ; offset += partBytes) {
    const { available, complete } = await file.reach(offset + partBytes);
    if (complete && offset >= available) break;
    if (!complete) partsBeforeEnd++;
    const length = Math.min(partBytes, available - offset);
    parts.push(Buffer.from(await file.read(Buffer.alloc(partBytes), length, offset)));
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

  test("the follower reads exactly the bytes of every chunk, in order, most of them before each ends", async () => {
    const feed = new ChunkFeed();
    const dir = await mkdtemp(join(work, "followed-"));
    const followed: Array<{ bytes: Buffer; partsBeforeEnd: number }> = [];
    const reading = (async () => {
      try {
        for await (const chunk of feed) followed.push(await follow(chunk.source, 5 * MiB));
      } finally {
        await feed.close();
      }
    })();
    const result = await writeArchive({ root: big, dir, chunkBytes: 32 * MiB, log: memoryLogger(), feed });
    await reading;
    expect(result.bytes).toBeGreaterThan(SYNC_EVERY_BYTES);
    expect(followed.length).toBe(result.chunks.length);
    expect(followed.length).toBeGreaterThan(1);
    for (const [index, chunk] of result.chunks.entries()) {
      expect(followed[index].bytes.length).toBe(chunk.bytes);
      expect(sha(followed[index].bytes)).toBe(await sha256sum(chunk.path));
    }
    expect(followed.reduce((n, f) => n + f.partsBeforeEnd, 0)).toBeGreaterThan(0);
  }, 60_000);

  test("a chunk already on disk can be followed too", async () => {
    const dir = await mkdtemp(join(work, "complete-"));
    const result = await writeArchive({ root: big, dir, log: memoryLogger() });
    const file = await GrowingFile.ofComplete(result.chunks[0].path);
    const followed = await follow(file, 5 * MiB);
    await file.close();
    expect(sha(followed.bytes)).toBe(await sha256sum(result.chunks[0].path));
  }, 30_000);

  test("stopping it removes every chunk file and fails the follower instead of leaving it waiting", async () => {
    const feed = new ChunkFeed();
    const dir = await mkdtemp(join(work, "stopped-"));
    const stop = new AbortController();
    let read = 0;
    const archived = writeArchive({
      root: big,
      dir,
      chunkBytes: 8 * MiB,
      log: memoryLogger(),
      feed,
      signal: stop.signal,
      onBytes: (bytes) => {
        read += bytes;
        if (read > 12 * MiB) stop.abort(new Error("the upload failed"));
      },
    }).catch((e: unknown) => e);
    const waiting = (async () => {
      for await (const chunk of feed) await chunk.source.reach(Number.MAX_SAFE_INTEGER);
    })().catch((e: unknown) => e);
    const error = await archived;
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).kind).toBe("ArchiveFailed");
    expect((error as PipelineError).message).toContain("the upload failed");
    expect(String(await waiting)).toContain("the archive failed");
    await feed.close();
    // No file of the snapshot stays open: a snapshot with an open file cannot be unmounted.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await openFilesUnder(big)).toEqual([]);
    expect(await readdir(dir)).toEqual([]);
    await expect(access(join(dir, "archive-0001.tar.zst"))).rejects.toThrow();
  }, 30_000);
});
