/**
 * The pure parts of a restore: path mapping, the binlog index rewrite, the scratch server's command line,
 * entry-path safety, and extraction of real tar+zstd streams (built with the real tools) into a temp root.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { BackupManifest } from "../../contracts";
import {
  UnsafeEntryError,
  compareFiles,
  describeComparison,
  extractArchive,
  safeEntryPath,
  safeLinkTarget,
} from "../../hostscripts/restore/extract";
import {
  StartupFailure,
  mapSourcePath,
  planScratchServer,
  rewriteBinlogIndex,
  scratchServerArgs,
} from "../../hostscripts/restore/scratch-server";
import { PipelineError } from "../../hostscripts/common/errors";
import { findServerBinary } from "../../hostscripts/common/server-binary";

const run = promisify(execFile);
const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

describe("mapping source paths to the scratch root", () => {
  test("a path below the source root lands at the same place below the scratch root", () => {
    expect(mapSourcePath("/srv/mnt/replica", "/scratch/b-1/root", "/srv/mnt/replica/data/mysql-bin")).toBe(
      "/scratch/b-1/root/data/mysql-bin",
    );
    expect(mapSourcePath("/srv/mnt/replica/", "/scratch/root", "/srv/mnt/replica")).toBe("/scratch/root");
    expect(mapSourcePath("/", "/scratch/root", "/var/lib/mysql/ibdata1")).toBe(
      "/scratch/root/var/lib/mysql/ibdata1",
    );
  });

  test("a path outside the snapshot cannot be restored: a startup failure that names both", () => {
    expect(() => mapSourcePath("/srv/mnt/replica", "/scratch/root", "/srv/mnt/replica-old/data")).toThrow(
      StartupFailure,
    );
    expect(() => mapSourcePath("/srv/mnt/replica", "/scratch/root", "/srv/mnt/replica/../x")).toThrow(
      /outside the snapshot root \/srv\/mnt\/replica/,
    );
    expect(() => mapSourcePath("/srv", "/scratch/root", "relative/path")).toThrow(StartupFailure);
  });
});

describe("rewriting the binlog index", () => {
  const map = (path: string) => mapSourcePath("/srv/mnt/replica", "/scratch/b-1/root", path);

  test("every absolute entry points to the scratch location; relative ones stay", () => {
    const index = [
      "/srv/mnt/replica/data/mysql-bin.000001",
      "/srv/mnt/replica/data/mysql-bin.000002",
      "./mysql-bin.000003",
      "",
    ].join("\n");
    expect(rewriteBinlogIndex(index, map)).toBe(
      [
        "/scratch/b-1/root/data/mysql-bin.000001",
        "/scratch/b-1/root/data/mysql-bin.000002",
        "./mysql-bin.000003",
        "",
      ].join("\n"),
    );
  });

  test("an entry outside the snapshot fails the restore instead of reading the source host's path", () => {
    expect(() => rewriteBinlogIndex("/var/log/mysql/mysql-bin.000001\n", map)).toThrow(StartupFailure);
  });
});

/** A manifest as the backup side writes it for the lab replica (only the fields a restore reads matter). */
function manifest(overrides: Partial<BackupManifest["settings"]> = {}, serverId = 2): BackupManifest {
  return {
    server: { flavor: "mariadb", version: "10.11.6", serverId },
    settings: {
      innodbPageSize: 16384,
      lowerCaseTableNames: 0,
      logBinBasename: "/srv/mnt/replica/data/mysql-bin",
      logBinIndex: "/srv/mnt/replica/data/mysql-bin.index",
      datadir: "/srv/mnt/replica/data/",
      innodbLogFileSize: 67108864,
      innodbDataFilePath: "ibdata1:12M:autoextend",
      ...overrides,
    },
    snapshot: { driver: "btrfs", name: "s", sourceRoot: "/srv/mnt/replica" },
  } as BackupManifest;
}

describe("the scratch server's command line", () => {
  test("the source's settings, mapped paths, a distinct server id, no network, no replication, no grants", () => {
    const plan = planScratchServer(
      manifest({ innodbPageSize: 8192, lowerCaseTableNames: 1 }),
      "/scratch/b-1",
      {
        binary: "/usr/sbin/mariadbd",
        user: "mysql",
      },
    );
    const args = scratchServerArgs(plan);
    expect(args[0]).toBe("--no-defaults");
    expect(args).toEqual(
      expect.arrayContaining([
        "--datadir=/scratch/b-1/root/data",
        "--log-bin=/scratch/b-1/root/data/mysql-bin",
        "--log-bin-index=/scratch/b-1/root/data/mysql-bin.index",
        "--innodb-page-size=8192",
        "--lower-case-table-names=1",
        "--skip-networking",
        "--skip-grant-tables",
        "--skip-slave-start",
        "--user=mysql",
        "--socket=/scratch/b-1/mysqld.sock",
        "--pid-file=/scratch/b-1/mysqld.pid",
        "--log-error=/scratch/b-1/mysqld.err",
      ]),
    );
    const serverId = Number(args.find((a) => a.startsWith("--server-id="))!.split("=")[1]);
    expect(serverId).not.toBe(2);
    expect(args.some((a) => a.startsWith("--port") || a.startsWith("--bind-address"))).toBe(false);
  });

  test("the scratch buffer pool is 512 MiB unless the config sizes it", () => {
    const pool = (bufferPoolMiB?: number) =>
      scratchServerArgs(
        planScratchServer(manifest({}, 2), "/s", { binary: "m", user: "mysql", bufferPoolMiB }),
      ).filter((a) => a.startsWith("--innodb-buffer-pool-size="));
    expect(pool()).toEqual(["--innodb-buffer-pool-size=512M"]);
    expect(pool(4096)).toEqual(["--innodb-buffer-pool-size=4096M"]);
  });

  test("the server id stays distinct even when the source already uses the scratch default", () => {
    const first = scratchServerArgs(planScratchServer(manifest({}, 2), "/s", { binary: "m", user: "mysql" }));
    const id = first.find((a) => a.startsWith("--server-id="))!.split("=")[1];
    const clash = scratchServerArgs(
      planScratchServer(manifest({}, Number(id)), "/s", { binary: "m", user: "mysql" }),
    );
    expect(clash).not.toContain(`--server-id=${id}`);
  });

  test("without a binary log, no --log-bin is passed", () => {
    const args = scratchServerArgs(
      planScratchServer(manifest({ logBinBasename: null, logBinIndex: null }), "/s", {
        binary: "m",
        user: "mysql",
      }),
    );
    expect(args.some((a) => a.startsWith("--log-bin"))).toBe(false);
  });

  test("a missing server binary is the verifier's problem, retried, and says what to install", async () => {
    const found = findServerBinary("/nonexistent/mariadbd");
    await expect(found).rejects.toThrow(PipelineError);
    await expect(found).rejects.toMatchObject({ kind: "VerifierInfrastructure" });
    await expect(findServerBinary(undefined, "/usr/bin")).resolves.toMatch(/\/(mariadbd|mysqld)$/);
  });
});

describe("archive entry paths", () => {
  test("plain relative paths are kept, normalised", () => {
    expect(safeEntryPath("data/ibdata1")).toBe("data/ibdata1");
    expect(safeEntryPath("./data/sbtest/sbtest1.ibd")).toBe("data/sbtest/sbtest1.ibd");
    expect(safeEntryPath("data/sbtest/")).toBe("data/sbtest");
    expect(safeEntryPath("./")).toBeNull();
  });

  test.each(["/etc/passwd", "../escape", "data/../../escape", "data/..", "a\0b"])("%j is refused", (name) => {
    expect(() => safeEntryPath(name)).toThrow(UnsafeEntryError);
  });

  test("links may point inside the archive only", () => {
    expect(safeLinkTarget("data/current", "mysql-bin.000001")).toBe("mysql-bin.000001");
    expect(safeLinkTarget("data/sub/link", "../ibdata1")).toBe("../ibdata1");
    expect(() => safeLinkTarget("data/link", "/etc/shadow")).toThrow(/absolute path/);
    expect(() => safeLinkTarget("data/link", "../../etc")).toThrow(/outside the archive/);
  });
});

describe("comparing extracted files with the manifest", () => {
  test("names missing, extra and different files", () => {
    const whole = (data: string) => ({ bytes: 1, fragments: [{ offset: 0, bytes: 1, sha256: sha(data) }] });
    const extracted = new Map([
      ["data/a", whole("a")],
      ["data/b", whole("x")],
      ["data/extra", whole("e")],
    ]);
    const comparison = compareFiles(
      [
        { path: "data/a", bytes: 1, sha256: sha("a") },
        { path: "data/b", bytes: 1, sha256: sha("b") },
        { path: "./data/gone", bytes: 4, sha256: sha("gone") },
      ],
      extracted,
    );
    expect(comparison.missing).toEqual(["data/gone"]);
    expect(comparison.extra).toEqual(["data/extra"]);
    expect(comparison.different).toEqual([`data/b (sha256 ${sha("x")}, manifest ${sha("b")})`]);
    expect(describeComparison(comparison)).toMatch(
      /missing from the archive: data\/gone; not in the manifest: data\/extra; content differs \(sha256 mismatch\): data\/b/,
    );
    expect(describeComparison({ missing: [], extra: [], different: [] })).toBeNull();
  });

  test("a file listed in pieces must have been written as exactly those pieces", () => {
    const pieces = [
      { offset: 0, bytes: 3, sha256: sha("abc") },
      { offset: 3, bytes: 2, sha256: sha("de") },
    ];
    const expected = [{ path: "data/t.ibd", bytes: 5, pieces }];
    const written = (fragments: typeof pieces) =>
      new Map([["data/t.ibd", { bytes: fragments.reduce((n, f) => n + f.bytes, 0), fragments }]]);
    // Pieces arrive in any order (chunks are unpacked in parallel).
    expect(compareFiles(expected, written([pieces[1], pieces[0]])).different).toEqual([]);
    expect(
      compareFiles(expected, written([pieces[0], { ...pieces[1], sha256: sha("xx") }])).different,
    ).toEqual([`data/t.ibd (sha256 of the piece at byte 3 ${sha("xx")}, manifest ${sha("de")})`]);
    // Hashed whole where the manifest has pieces: not the same evidence, so not accepted.
    expect(
      compareFiles(expected, written([{ offset: 0, bytes: 5, sha256: sha("abcde") }])).different,
    ).toEqual(["data/t.ibd (written in 1 runs, manifest lists 2)"]);
  });
});

describe("extracting real tar+zstd streams", () => {
  let work: string;
  let source: string;
  const files: Record<string, Buffer> = {
    "data/ibdata1": randomBytes(2 * 1024 * 1024 + 3),
    "data/mysql-bin.index": Buffer.from("/srv/data/mysql-bin.000001\n"),
    "data/sbtest/sbtest1.ibd": randomBytes(300 * 1024),
    "data/empty": Buffer.alloc(0),
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "mbp-extract-"));
    source = join(work, "source");
    for (const [path, data] of Object.entries(files)) {
      await mkdir(join(source, path, ".."), { recursive: true });
      await writeFile(join(source, path), data);
    }
    await symlink("ibdata1", join(source, "data", "current"));
    await run("sh", ["-c", `tar -C ${source} -cf - . | zstd -q -1 -c > ${work}/good.tar.zst`]);
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  async function extractInto(name: string, archive: string) {
    const root = join(work, name);
    await mkdir(root);
    return { root, extraction: await extractArchive(createReadStream(archive), root) };
  }

  test("every file comes back with its sha256; the archive hash is of the compressed bytes", async () => {
    const archive = join(work, "good.tar.zst");
    const { root, extraction } = await extractInto("good", archive);
    expect(extraction.unpackError).toBeNull();
    expect(extraction.archive.sha256).toBe(sha(await readFile(archive)));
    const expected = Object.entries(files).map(([path, data]) => ({
      path,
      bytes: data.length,
      sha256: sha(data),
    }));
    expect(compareFiles(expected, extraction.files)).toEqual({ missing: [], extra: [], different: [] });
    // Buffer.equals: jest's deep equality walks megabytes byte by byte.
    expect(
      (await readFile(join(root, "data/sbtest/sbtest1.ibd"))).equals(files["data/sbtest/sbtest1.ibd"]),
    ).toBe(true);
    expect((await readFile(join(root, "data/current"))).equals(files["data/ibdata1"])).toBe(true);
    expect((await readdir(join(root, "data"))).sort()).toEqual(
      ["current", "empty", "ibdata1", "mysql-bin.index", "sbtest"].sort(),
    );
  });

  test("a flipped byte still hashes the whole download and reports why unpacking stopped", async () => {
    const good = await readFile(join(work, "good.tar.zst"));
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    await writeFile(join(work, "bad.tar.zst"), bad);
    const { extraction } = await extractInto("bad", join(work, "bad.tar.zst"));
    expect(extraction.archive).toEqual({ bytes: bad.length, sha256: sha(bad) });
    expect(extraction.unpackError).not.toBeNull();
  });

  test("an entry that climbs out of the root is refused and nothing is written outside", async () => {
    const evil = join(work, "evil-src");
    await mkdir(join(evil, "inner"), { recursive: true });
    await writeFile(join(evil, "escaped"), "x");
    await run("sh", ["-c", `tar -C ${evil}/inner -P -cf - ../escaped | zstd -q -c > ${work}/evil.tar.zst`]);
    const { extraction } = await extractInto("evil", join(work, "evil.tar.zst"));
    expect(extraction.unpackError).toMatch(/"..\/escaped" refused/);
    await expect(readdir(join(work, "evil"))).resolves.toEqual([]);
  });

  test("a scratch disk that fills up mid-file is the verifier's problem, named, with no write left running", async () => {
    // 2 MiB of tmpfs for a 6 MiB file: writes of it are in flight when one fails with ENOSPC.
    const big = join(work, "big-src");
    await mkdir(big);
    await writeFile(join(big, "ibdata1"), randomBytes(6 * 1024 * 1024));
    await run("sh", ["-c", `tar -C ${big} -cf - . | zstd -q -1 -c > ${work}/big.tar.zst`]);
    const tiny = join(work, "tiny");
    await mkdir(tiny);
    await run("mount", ["-t", "tmpfs", "-o", "size=2m", "tiny", tiny]);
    try {
      const error = await extractArchive(createReadStream(join(work, "big.tar.zst")), tiny).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PipelineError);
      expect((error as PipelineError).kind).toBe("VerifierInfrastructure");
      expect((error as PipelineError).message).toMatch(/cannot write ibdata1 into the scratch directory/);
      expect((error as PipelineError).hint).toMatch(/scratch disk is full/);
      // Nothing of the extraction keeps the file open (the tmpfs unmounts below only then).
      const fds = await readdir("/proc/self/fd");
      const open = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
      expect(open.filter((target) => target.startsWith(tiny + "/"))).toEqual([]);
    } finally {
      await run("umount", [tiny]);
    }
  });

  test("a link out of the root is refused", async () => {
    const linked = join(work, "link-src");
    await mkdir(linked);
    await symlink("/etc", join(linked, "etc"));
    await run("sh", ["-c", `tar -C ${linked} -cf - . | zstd -q -c > ${work}/link.tar.zst`]);
    const { extraction } = await extractInto("link", join(work, "link.tar.zst"));
    expect(extraction.unpackError).toMatch(/links to the absolute path \/etc/);
  });
});
