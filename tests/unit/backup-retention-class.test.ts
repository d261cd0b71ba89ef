/**
 * Grandfather-father-son on the replica (retention-class.ts): which backup is the month's `monthly`, on a
 * real state directory.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContractError, parseManifest, type BackupManifest, type RetentionClass } from "../../contracts";
import {
  RETENTION_STATE,
  decideRetention,
  readRetentionState,
  recordCompleted,
  retentionClassFor,
  retentionTagging,
  utcMonth,
} from "../../hostscripts/backup/retention-class";
import { memoryLogger } from "../../hostscripts/common/log";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "backup-retention-class-"));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const at = (iso: string) => new Date(iso);

/** A valid manifest of a backup started at `startedAt` (its id says the same time). */
function manifestOf(startedAt: string, retention?: RetentionClass): BackupManifest {
  const stamp = startedAt.replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z");
  return parseManifest({
    formatVersion: 1,
    backupId: `${stamp}-abcdef`,
    cluster: "orders",
    host: "db-1",
    startedAt,
    completedAt: startedAt,
    server: { flavor: "mariadb", version: "10.11.6", serverId: 2 },
    settings: {
      innodbPageSize: 16384,
      lowerCaseTableNames: 0,
      logBinBasename: null,
      logBinIndex: null,
      datadir: "/srv/mysql/data",
      innodbLogFileSize: null,
      innodbDataFilePath: null,
    },
    position: {
      gtidBinlogPos: null,
      gtidSlavePos: "0-1-5",
      gtidCurrentPos: null,
      gtidExecuted: null,
      binlog: null,
      source: null,
    },
    lock: { method: "FLUSH TABLES WITH READ LOCK", ms: 3 },
    snapshot: { driver: "btrfs", name: "s", sourceRoot: "/srv/mysql" },
    archive: {
      key: `backups/orders/db-1/${stamp}-abcdef/archive.tar.zst`,
      bytes: 10,
      sha256: "a".repeat(64),
      compression: "zstd",
      format: "tar",
      rawBytes: 20,
    },
    files: [{ path: "data/ibdata1", bytes: 20, sha256: "b".repeat(64) }],
    tables: [],
    ...(retention ? { retention } : {}),
  });
}

describe("the month of a backup", () => {
  test("is the UTC month, to the millisecond", () => {
    expect(utcMonth(at("2026-01-31T23:59:59.999Z"))).toBe("2026-01");
    expect(utcMonth(at("2026-02-01T00:00:00.000Z"))).toBe("2026-02");
    expect(utcMonth(at("2026-12-31T23:59:59.999Z"))).toBe("2026-12");
    expect(utcMonth(at("2027-01-01T00:00:00.000Z"))).toBe("2027-01");
  });

  test("the first of a month is monthly, the rest of it daily, the first of the next monthly again", () => {
    const state = { month: "2026-01", backupId: "20260101T020000Z-abcdef" };
    expect(retentionClassFor(null, at("2026-01-01T00:00:00Z")).retention).toBe("monthly");
    expect(retentionClassFor(state, at("2026-01-31T23:59:59.999Z"))).toEqual({
      retention: "daily",
      why: "2026-01 has its monthly backup, 20260101T020000Z-abcdef",
    });
    expect(retentionClassFor(state, at("2026-02-01T00:00:00Z")).retention).toBe("monthly");
    const december = { month: "2026-12", backupId: "20261201T020000Z-abcdef" };
    expect(retentionClassFor(december, at("2027-01-01T00:00:00Z")).retention).toBe("monthly");
  });
});

describe("the state in localDir", () => {
  test("a month is taken only by a monthly backup that completed; a failed one leaves it to the next", async () => {
    const log = memoryLogger();
    // A backup decides monthly, then fails: nothing is recorded, so the next one is monthly too.
    expect(await decideRetention(dir, [], at("2026-03-01T02:00:00Z"), log)).toBe("monthly");
    expect(await decideRetention(dir, [], at("2026-03-02T02:00:00Z"), log)).toBe("monthly");
    expect(await readdir(dir)).toEqual([]);

    await recordCompleted(
      dir,
      manifestOf("2026-03-02T02:00:00.000Z", "monthly"),
      at("2026-03-02T03:00:00Z"),
      log,
    );
    expect(JSON.parse(await readFile(join(dir, RETENTION_STATE), "utf8"))).toEqual({
      month: "2026-03",
      backupId: "20260302T020000Z-abcdef",
    });
    expect(await readdir(dir)).toEqual([RETENTION_STATE]); // written atomically: no .partial left
    expect(await decideRetention(dir, [], at("2026-03-31T23:59:59Z"), log)).toBe("daily");
    expect(await decideRetention(dir, [], at("2026-04-01T00:00:00Z"), log)).toBe("monthly");
    expect(log.lines.filter((l) => l.level !== "info")).toEqual([]);
    expect(log.lines.at(-1)).toMatchObject({
      message: "retention class monthly",
      why: "no backup of 2026-04 (UTC) has completed as monthly yet",
    });
  });

  test("a daily backup records nothing, and an older monthly never moves the state back", async () => {
    const log = memoryLogger();
    const now = at("2026-03-20T02:00:00Z");
    await recordCompleted(dir, manifestOf("2026-03-03T02:00:00.000Z", "daily"), now, log);
    expect(await readdir(dir)).toEqual([]);
    await recordCompleted(dir, manifestOf("2026-03-02T02:00:00.000Z", "monthly"), now, log);
    // A February monthly whose completion was delayed (S3 unreachable for weeks) completes now.
    await recordCompleted(dir, manifestOf("2026-02-01T02:00:00.000Z", "monthly"), now, log);
    expect(await readRetentionState(dir, now, log)).toEqual({
      month: "2026-03",
      backupId: "20260302T020000Z-abcdef",
    });
  });

  test.each([
    ["not JSON", "{", /not JSON/],
    ["without a month", '{"backupId":"20260302T020000Z-abcdef"}', /"month" must be YYYY-MM, got undefined/],
    ["with month 13", '{"month":"2026-13","backupId":"20260302T020000Z-abcdef"}', /"month" must be YYYY-MM/],
    ["without a backup id", '{"month":"2026-03"}', /"backupId" must be a backup id/],
    [
      "naming a later month",
      '{"month":"2026-04","backupId":"20260401T020000Z-abcdef"}',
      /names 2026-04, after/,
    ],
  ])(
    "a state %s makes the backup monthly, with a warning, and the next monthly rewrites it",
    async (_, text, why) => {
      await writeFile(join(dir, RETENTION_STATE), text);
      const log = memoryLogger();
      const now = at("2026-03-20T02:00:00Z");
      expect(await decideRetention(dir, [], now, log)).toBe("monthly");
      expect(log.lines).toContainEqual(
        expect.objectContaining({
          level: "warn",
          message: "cannot use the retention state; this backup is monthly (keeps more, never less)",
          path: join(dir, RETENTION_STATE),
          error: expect.stringMatching(why),
        }),
      );
      await recordCompleted(dir, manifestOf("2026-03-20T02:00:00.000Z", "monthly"), now, log);
      expect(await decideRetention(dir, [], at("2026-03-21T02:00:00Z"), log)).toBe("daily");
    },
  );

  test("a state that cannot be read or written never fails the backup", async () => {
    await mkdir(join(dir, RETENTION_STATE));
    const log = memoryLogger();
    const now = at("2026-03-20T02:00:00Z");
    expect(await decideRetention(dir, [], now, log)).toBe("monthly");
    await recordCompleted(dir, manifestOf("2026-03-20T02:00:00.000Z", "monthly"), now, log);
    expect(log.lines.map((l) => [l.level, l.message])).toContainEqual([
      "warn",
      "could not record the month's monthly backup; the next backup is monthly too",
    ]);
  });

  test("a monthly backup the crash repair just completed takes its month before the new one decides", async () => {
    const log = memoryLogger();
    const repaired = manifestOf("2026-03-01T02:00:00.000Z", "monthly");
    const unreadable = "20260301T010000Z-abcdef";
    await mkdir(join(dir, repaired.backupId));
    await writeFile(join(dir, repaired.backupId, "manifest.json"), JSON.stringify(repaired));
    const now = at("2026-03-02T02:00:00Z");
    expect(await decideRetention(dir, [unreadable, repaired.backupId], now, log)).toBe("daily");
    expect(log.lines).toContainEqual(
      expect.objectContaining({ level: "warn", message: "cannot read a repaired backup's manifest" }),
    );
  });
});

describe("the contract", () => {
  test("a manifest carries its class; one written before classes still parses, an unknown class is refused", () => {
    expect(manifestOf("2026-03-01T02:00:00.000Z", "monthly").retention).toBe("monthly");
    expect(manifestOf("2026-03-01T02:00:00.000Z").retention).toBeUndefined();
    expect(() => parseManifest({ ...manifestOf("2026-03-01T02:00:00.000Z"), retention: "yearly" })).toThrow(
      ContractError,
    );
  });

  test("the tag set is URL-encoded as S3 expects it; no class, no tag", () => {
    expect(retentionTagging("monthly")).toEqual({ Tagging: "retention=monthly" });
    expect(retentionTagging("daily")).toEqual({ Tagging: "retention=daily" });
    expect(retentionTagging(undefined)).toEqual({});
  });
});
