/**
 * The archive format both sides agree on (contracts/archive.ts, common/tar.ts): tar headers that GNU tar reads
 * back, format 2's layout rules, both manifest formats, and the chunks of a real archive (written by
 * `writeArchive` with 1 MiB chunks, so files are cut across them) unpacked on their own, out of order and at
 * once, as a restore on many cores does.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  ContractError,
  archiveLayoutProblem,
  chunkListDigest,
  isSplit,
  parseManifest,
  type ArchiveV2,
} from "../../contracts";
import { writeArchive, type ArchiveResult } from "../../hostscripts/backup/archive";
import { memoryLogger } from "../../hostscripts/common/log";
import { TarFormatError, decodeHeader, encodeHeader } from "../../hostscripts/common/tar";
import { compareFiles, extractChunk, finishArchive } from "../../hostscripts/restore/extract";
import { ArchiveUnpacker, type ChunkStart } from "../../hostscripts/restore/untar";

const run = promisify(execFile);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const MiB = 1024 * 1024;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "archive-format-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("tar headers", () => {
  const base = {
    type: "file" as const,
    mode: 0o640,
    uid: 1000,
    gid: 1000,
    mtime: new Date("2026-11-24T02:00:00Z"),
  };

  test("a long, a non-ASCII and an 8 GiB entry get a pax header GNU tar reads back", async () => {
    const long = `${"d".repeat(120)}/${"f".repeat(130)}`;
    const headers = [
      encodeHeader({ ...base, name: long, size: 3 }),
      Buffer.from("abc"),
      Buffer.alloc(509),
      encodeHeader({ ...base, name: "tëst.frm", size: 0 }),
      encodeHeader({ ...base, name: "huge.ibd", size: 9 * 1024 ** 3, type: "directory" }),
      Buffer.alloc(1024),
    ];
    const tarFile = join(work, "headers.tar");
    await writeFile(tarFile, Buffer.concat(headers));
    const { stdout } = await run("tar", ["-tvf", tarFile]);
    expect(stdout).toContain(long);
    expect(stdout).toContain("tëst.frm");
    expect(decodeHeader(encodeHeader({ ...base, name: "a/b", size: 12 }))).toEqual({
      kind: "entry",
      header: { ...base, name: "a/b", size: 12, linkname: "", typeflag: "0" },
    });
    // Over 8 GiB the size goes to pax: the ustar block alone says 0, the pax header says the size.
    const big = encodeHeader({ ...base, name: "big.ibd", size: 9 * 1024 ** 3 });
    expect(decodeHeader(big.subarray(0, 512))).toMatchObject({ kind: "pax" });
    expect(big.subarray(512, 1024).toString("latin1")).toContain(`size=${9 * 1024 ** 3}`);
  });

  test("a corrupt header is refused, not read", () => {
    const block = encodeHeader({ ...base, name: "x", size: 1 });
    block[10] ^= 1;
    expect(() => decodeHeader(block)).toThrow(TarFormatError);
    expect(() => decodeHeader(Buffer.alloc(512, 0x41))).toThrow(/ustar magic/);
  });
});

/** A format 2 archive of one chunk of `tarBytes`, and its file. */
function twoChunks(): ArchiveV2 {
  const chunks = [
    { key: "k/archive-0001.tar.zst", bytes: 10, sha256: "a".repeat(64), tarOffset: 0, tarBytes: MiB },
    {
      key: "k/archive-0002.tar.zst",
      bytes: 20,
      sha256: "b".repeat(64),
      tarOffset: MiB,
      tarBytes: 4096,
      continues: { path: "data/t.ibd", offset: MiB - 1024 },
    },
  ];
  return {
    compression: "zstd",
    format: "tar",
    bytes: 30,
    rawBytes: MiB,
    sha256: chunkListDigest(chunks),
    chunkBytes: MiB,
    chunks,
  };
}

describe("format 2's layout", () => {
  const files = [
    {
      path: "data/t.ibd",
      bytes: MiB,
      pieces: [
        { offset: 0, bytes: MiB - 1024, sha256: "c".repeat(64) },
        { offset: MiB - 1024, bytes: 1024, sha256: "d".repeat(64) },
      ],
    },
  ];

  test("chunks that follow each other and pieces that chunks continue hold together", () => {
    expect(archiveLayoutProblem(twoChunks(), files)).toBeNull();
  });

  test("every rule a restore relies on is checked", () => {
    const gap = twoChunks();
    gap.chunks[1].tarOffset += 512;
    expect(archiveLayoutProblem(gap, files)).toMatch(/chunk 2 starts at tar byte/);
    const digest = twoChunks();
    digest.sha256 = "e".repeat(64);
    expect(archiveLayoutProblem(digest, files)).toMatch(/not the digest/);
    const nowhere = twoChunks();
    delete nowhere.chunks[1].continues;
    nowhere.sha256 = chunkListDigest(nowhere.chunks);
    expect(archiveLayoutProblem(nowhere, files)).toMatch(/no chunk continues it at byte/);
    const short = [{ ...files[0], pieces: [files[0].pieces[0]] }];
    expect(archiveLayoutProblem(twoChunks(), short)).toMatch(/its pieces cover 1047552 of its 1048576 bytes/);
    const whole = [{ path: "data/t.ibd", bytes: MiB, sha256: "c".repeat(64) }];
    expect(archiveLayoutProblem(twoChunks(), whole)).toMatch(
      /a chunk continues a file that has no piece there/,
    );
    const big = twoChunks();
    big.chunks[0].tarBytes = 2 * MiB;
    big.chunks[1].tarOffset = 2 * MiB;
    expect(archiveLayoutProblem(big, files)).toMatch(/more than chunkBytes/);
  });

  test("a manifest of either format parses; another format is refused with what to do", () => {
    const common = {
      backupId: "20261124T020000Z-3fa9c1",
      cluster: "c",
      host: "h",
      startedAt: "2026-11-24T02:00:00Z",
      completedAt: "2026-11-24T02:01:00Z",
      server: { flavor: "mariadb", version: "10.11.6", serverId: 2 },
      settings: {
        innodbPageSize: 16384,
        lowerCaseTableNames: 0,
        logBinBasename: null,
        logBinIndex: null,
        datadir: "/srv/data",
        innodbLogFileSize: null,
        innodbDataFilePath: null,
      },
      position: {
        gtidBinlogPos: null,
        gtidSlavePos: null,
        gtidCurrentPos: null,
        gtidExecuted: null,
        binlog: null,
        source: null,
      },
      lock: { method: "FLUSH TABLES WITH READ LOCK", ms: 3 },
      snapshot: { driver: "btrfs", name: "s", sourceRoot: "/srv" },
      tables: [],
    };
    const v1 = {
      ...common,
      formatVersion: 1,
      archive: {
        key: "k/archive.tar.zst",
        bytes: 1,
        sha256: "a".repeat(64),
        compression: "zstd",
        format: "tar",
        rawBytes: 1,
      },
      files: [{ path: "data/x", bytes: 1, sha256: "b".repeat(64) }],
    };
    expect(parseManifest(v1).formatVersion).toBe(1);
    expect(parseManifest({ ...common, formatVersion: 2, archive: twoChunks(), files }).formatVersion).toBe(2);
    // A format 1 manifest cannot carry pieces, nor a format 2 one a single archive key.
    expect(() => parseManifest({ ...v1, files })).toThrow(ContractError);
    expect(() => parseManifest({ ...v1, formatVersion: 2 })).toThrow(/format 2/);
    expect(() => parseManifest({ ...v1, formatVersion: 3 })).toThrow(
      /formatVersion must be one of 1, 2.*upgrade/,
    );
  });
});

describe("the chunks of a real archive, unpacked on their own", () => {
  let result: ArchiveResult;
  const tree: Record<string, Buffer> = {
    "data/ibdata1": randomBytes(3 * MiB + 100),
    "data/sbtest/sbtest1.ibd": randomBytes(MiB / 2),
    "data/sbtest/sbtest2.ibd": randomBytes(2 * MiB + 7),
    "data/mysql-bin.index": Buffer.from("./mysql-bin.000001\n"),
    "data/empty": Buffer.alloc(0),
  };

  beforeAll(async () => {
    const source = join(work, "source");
    for (const [path, data] of Object.entries(tree)) {
      await mkdir(join(source, path, ".."), { recursive: true });
      await writeFile(join(source, path), data);
    }
    await symlink("ibdata1", join(source, "data", "current"));
    const dir = await mkdtemp(join(work, "chunks-"));
    result = await writeArchive({ root: source, dir, chunkBytes: MiB, log: memoryLogger() });
  }, 60_000);

  const startOf = (index: number): ChunkStart => {
    const continues = result.chunks[index].continues;
    if (continues === undefined) return {};
    return { continues: { ...continues, fileBytes: tree[continues.path].length } };
  };
  const splitOf = () =>
    new Map(result.files.flatMap((f) => (isSplit(f) ? [[f.path, f.pieces.length] as const] : [])));

  async function unpack(order: number[], change?: (index: number, data: Buffer) => Buffer) {
    const root = await mkdtemp(join(work, "root-"));
    const unpacker = new ArchiveUnpacker(root, splitOf());
    try {
      const outcomes = await Promise.all(
        order.map(async (index) => {
          const path = result.chunks[index].path;
          const data = change ? change(index, await readFile(path)) : undefined;
          const source = data
            ? (async function* () {
                yield data;
              })()
            : createReadStream(path);
          return { index, outcome: await extractChunk(source, unpacker, startOf(index)) };
        }),
      );
      outcomes.sort((a, b) => a.index - b.index);
      const ends = outcomes.map(({ outcome }) => outcome.end);
      const starts = outcomes.map(({ index }) => startOf(index));
      const unpackError =
        outcomes.find(({ outcome }) => outcome.unpackError)?.outcome.unpackError ??
        (await finishArchive(unpacker, ends, starts));
      return { root, unpackError, files: unpacker.files, outcomes };
    } finally {
      await unpacker.close();
    }
  }

  test("all at once and backwards, every file and piece comes back with its sha256", async () => {
    expect(result.chunks.length).toBeGreaterThanOrEqual(5);
    expect(result.files.filter(isSplit).length).toBeGreaterThanOrEqual(2);
    const order = result.chunks.map((_, i) => i).reverse();
    const { root, unpackError, files, outcomes } = await unpack(order);
    expect(unpackError).toBeNull();
    expect(compareFiles(result.files, files)).toEqual({ missing: [], extra: [], different: [] });
    for (const [path, data] of Object.entries(tree))
      expect((await readFile(join(root, path))).equals(data)).toBe(true);
    expect((await readFile(join(root, "data/current"))).equals(tree["data/ibdata1"])).toBe(true);
    for (const { index, outcome } of outcomes) {
      expect(outcome.archive.sha256).toBe(sha(await readFile(result.chunks[index].path)));
      expect(outcome.end?.tarBytes).toBe(result.chunks[index].tarBytes);
    }
    expect((await readdir(join(root, "data"))).sort()).toEqual(
      ["current", "empty", "ibdata1", "mysql-bin.index", "sbtest"].sort(),
    );
  }, 60_000);

  test("a chunk left out, or one the archive does not continue with, is named", async () => {
    const all = result.chunks.map((_, i) => i);
    const cut = result.chunks.findIndex((c, i) => i > 0 && c.continues !== undefined);
    const withoutLast = await unpack(all.slice(0, -1));
    expect(withoutLast.unpackError).toMatch(/truncated/);
    const skipped = await unpack(all.filter((i) => i !== cut - 1));
    expect(skipped.unpackError).toMatch(/chunk \d+ ends .* but chunk \d+ |chunks before it are missing/);
    const noFirst = await unpack(all.slice(1));
    expect(noFirst.unpackError).toMatch(/chunks before it are missing/);
  }, 60_000);

  test("a corrupt chunk fails its own unpacking and is still hashed whole; the others unpack", async () => {
    const bad = 1;
    const { unpackError, outcomes, files } = await unpack(
      result.chunks.map((_, i) => i),
      (index, data) => {
        if (index !== bad) return data;
        const broken = Buffer.from(data);
        broken[Math.floor(broken.length / 2)] ^= 0xff;
        return broken;
      },
    );
    expect(unpackError).not.toBeNull();
    const outcome = outcomes[bad].outcome;
    expect(outcome.archive.bytes).toBe(result.chunks[bad].bytes);
    expect(outcome.archive.sha256).not.toBe(sha(await readFile(result.chunks[bad].path)));
    expect(
      compareFiles(result.files, files).different.length + compareFiles(result.files, files).missing.length,
    ).toBeGreaterThan(0);
  }, 60_000);
});
