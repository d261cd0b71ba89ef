/**
 * `status`'s judgement of a host's binlog archive, on constructed scans: each health state with its reason
 * (lag against the RPO, silence, gaps, a missing archive, no restorable window), the window computed as
 * `restore list` computes it, and the archive's line merged into the host's.
 */
import {
  parseStatusReport,
  type BinlogEpochRecord,
  type BinlogSegmentEntry,
  type HostStatus,
} from "../../contracts";
import { parseState } from "../../hostscripts/common/gtid-state";
import type { WindowSnapshot } from "../../hostscripts/common/pitr-chain";
import type { ArchiveScan, EpochScan } from "../../hostscripts/status/archive";
import { judgeArchive, type ArchiveContext } from "../../hostscripts/status/archive-health";
import { withArchive } from "../../hostscripts/status/pitr";

const NOW = new Date("2026-11-30T12:00:00Z");
/** `s` seconds before NOW. */
const ago = (s: number) => new Date(NOW.getTime() - s * 1000).toISOString();
const E1 = "20261130T080000Z-aaaaaa";
const E2 = "20261130T110000Z-bbbbbb";

/** A ledger entry holding domain-0 transactions (from, to], the last committed `lastAgo` s before NOW. */
function entry(
  epoch: string,
  sequence: number,
  from: number,
  to: number,
  lastAgo: number,
  upAgo = lastAgo - 1,
) {
  const value: BinlogSegmentEntry = {
    formatVersion: 1,
    cluster: "orders",
    host: "db1",
    epoch,
    sequence,
    segmentKey: `backups/orders/binlogs/db1/${epoch}/${String(sequence).padStart(10, "0")}-20261130T080000Z.binlog`,
    previousLedgerKey: null,
    server: { flavor: "mariadb", version: "10.11.19", serverId: 2, serverUuid: null },
    file: {
      name: "mysql-bin.000001",
      identity: "a".repeat(64),
      headerBytes: 256,
      startOffset: 256,
      endOffset: 999,
      endsFile: false,
    },
    gtid: {
      before: from === 0 ? "" : `0-1-${from}`,
      after: `0-1-${to}`,
      first: `0-1-${from + 1}`,
      last: `0-1-${to}`,
      set: null,
    },
    events: { count: 10, firstAt: ago(lastAgo + 5), lastAt: ago(lastAgo) },
    transactions: { count: to - from, firstCommitAt: ago(lastAgo + 5), lastCommitAt: ago(lastAgo) },
    bytes: 1000,
    sha256: "b".repeat(64),
    archivedAt: ago(Math.max(0, upAgo)),
  };
  return { value };
}

function record(epoch: string, startedAgo: number, missing: string | null = null) {
  const value: BinlogEpochRecord = {
    formatVersion: 1,
    cluster: "orders",
    host: "db1",
    epoch,
    startedAt: ago(startedAgo),
    reason: missing === null ? "first-run" : "gap",
    detail: "constructed",
    server: { flavor: "mariadb", version: "10.11.19", serverId: 2, serverUuid: null },
    previous: null,
    gtidStart: "",
    missing,
  };
  return { value };
}

function epoch(
  name: string,
  first: ReturnType<typeof entry> | null,
  newest: ReturnType<typeof entry> | null,
  rec = record(name, 4 * 3600),
): EpochScan {
  return {
    epoch: name,
    record: rec,
    first,
    newest,
    newestCommitAt: newest?.value.transactions.lastCommitAt ?? null,
  };
}

const scan = (...epochs: EpochScan[]): ArchiveScan => ({
  host: "db1",
  url: "s3://b/backups/orders/binlogs/db1/",
  epochs,
  epochsNotRead: 0,
});

/** A verified snapshot completed `completedAgo` s before NOW holding transactions up to 0-1-`seq`. */
const snapshot = (backupId: string, completedAgo: number, seq: number): WindowSnapshot => ({
  backupId,
  completedAt: ago(completedAgo),
  flavor: "mariadb",
  start: parseState("mariadb", `0-1-${seq}`),
});

const ctx = (over: Partial<ArchiveContext> = {}): ArchiveContext => ({
  rpoSeconds: 10,
  expected: true,
  snapshots: [snapshot("20261130T090000Z-cccccc", 3 * 3600, 100)],
  newestVerified: { backupId: "20261130T090000Z-cccccc", takenAt: new Date(ago(3 * 3600 + 60)) },
  url: "s3://b/backups/orders/binlogs/db1/",
  ...over,
});

/** One epoch from 0-1-0 to 0-1-5000 whose newest commit is `lagAgo` s old and was uploaded `upAgo` s ago. */
const healthy = (lagAgo = 3, upAgo = lagAgo - 1) =>
  scan(epoch(E1, entry(E1, 1, 0, 10, 4 * 3600), entry(E1, 900, 4990, 5000, lagAgo, upAgo)));

const states = (j: ReturnType<typeof judgeArchive>) => j.reasons.map((r) => r.state);

describe("judgeArchive", () => {
  test("no archive and none expected: no line at all", () => {
    expect(judgeArchive(null, ctx({ expected: false }), NOW)).toEqual({ status: null, reasons: [] });
  });

  test("no archive although PITR is on: critical, naming the unit and check", () => {
    const j = judgeArchive(null, ctx(), NOW);
    expect(states(j)).toEqual(["critical"]);
    expect(j.reasons[0].message).toMatch(
      /none under s3:\/\/b\/backups\/orders\/binlogs\/db1\/.*mysql-backup-binlog\.service.*check/,
    );
    expect(j.status).toMatchObject({
      expected: true,
      lagSeconds: null,
      archivedWindow: null,
      provenWindow: null,
      lastDrill: null,
    });
  });

  test("lag within the RPO and a verified snapshot the archive continues: ok, with the window from it", () => {
    const j = judgeArchive(healthy(3), ctx(), NOW);
    expect(states(j)).toEqual(["ok"]);
    expect(j.reasons[0].message).toBe(
      `binlog archive: lag 3 s (RPO 10 s), restorable from ${ago(3 * 3600)} (3.0 h)`,
    );
    expect(j.status).toMatchObject({
      lagSeconds: 3,
      silentSeconds: 2,
      newestSegment: { epoch: E1, sequence: 900, gtidAfter: "0-1-5000" },
      archivedWindow: {
        from: ago(3 * 3600),
        to: ago(3),
        seconds: 3 * 3600 - 3,
        fromBackupId: "20261130T090000Z-cccccc",
        toGtid: "0-1-5000",
      },
      // Issue 14 fills it; until then the verifier has proven no chain.
      provenWindow: null,
      lastDrill: null,
    });
  });

  test("lag above the RPO: warning; above ten times the RPO: critical", () => {
    const late = judgeArchive(healthy(30, 1), ctx(), NOW);
    expect(states(late)).toEqual(["warning"]);
    expect(late.reasons[0].message).toMatch(/newest archived commit is 30 s old, above the RPO of 10 s:/);
    const behind = judgeArchive(healthy(150, 1), ctx(), NOW);
    expect(states(behind)).toEqual(["critical"]);
    expect(behind.reasons[0].message).toMatch(/3 min old, above the RPO of 10 s ten times over/);
    // The RPO is the cluster's: at 60 s, 30 s is fine.
    expect(states(judgeArchive(healthy(30, 1), ctx({ rpoSeconds: 60 }), NOW))).toEqual(["ok"]);
  });

  test("nothing uploaded for longer than the silence alarm's period: critical, as silent", () => {
    const j = judgeArchive(healthy(400, 301), ctx({ rpoSeconds: 60 }), NOW);
    expect(states(j)).toEqual(["critical"]);
    expect(j.reasons[0].message).toMatch(/silent — nothing uploaded for 5 min .*the archiver is down/);
    // An RPO beyond the silence period: segments are cut within it, so silence counts from the RPO.
    expect(states(judgeArchive(healthy(400, 350), ctx({ rpoSeconds: 600 }), NOW))).toEqual(["ok"]);
  });

  test("a gap no verified backup was taken after is critical; one before the newest verified backup is resolved", () => {
    const gapRecord = record(E2, 3600, "0-1-5001..0-1-5100");
    const withGap = scan(
      epoch(E1, entry(E1, 1, 0, 10, 4 * 3600), entry(E1, 900, 4990, 5000, 3700)),
      epoch(E2, entry(E2, 1, 5100, 5110, 3500), entry(E2, 40, 5200, 5300, 3), gapRecord),
    );
    const open = judgeArchive(withGap, ctx(), NOW);
    expect(states(open)).toEqual(["critical", "warning"]);
    expect(open.reasons[0].message).toMatch(
      /GAP found .* \(epoch 20261130T110000Z-bbbbbb\): 0-1-5001\.\.0-1-5100 were purged/,
    );
    // The snapshot before the gap cannot reach the newest commit: no window.
    expect(open.reasons[1].message).toMatch(/no restorable window/);
    expect(open.status!.gaps).toEqual([
      { epoch: E2, foundAt: ago(3600), missing: "0-1-5001..0-1-5100", resolvedBy: null },
    ]);

    const after = "20261130T113000Z-dddddd";
    const resolved = judgeArchive(
      withGap,
      ctx({
        snapshots: [snapshot("20261130T090000Z-cccccc", 3 * 3600, 100), snapshot(after, 1800, 5250)],
        newestVerified: { backupId: after, takenAt: new Date(ago(1830)) },
      }),
      NOW,
    );
    expect(states(resolved)).toEqual(["ok"]);
    expect(resolved.status!.gaps[0].resolvedBy).toBe(after);
    expect(resolved.status!.archivedWindow).toMatchObject({
      fromBackupId: after,
      from: ago(1800),
      to: ago(3),
    });
  });

  test("a window runs across epochs that continue each other by GTID", () => {
    const continued = scan(
      epoch(E1, entry(E1, 1, 0, 10, 4 * 3600), entry(E1, 900, 4990, 5000, 3700)),
      epoch(E2, entry(E2, 1, 5000, 5010, 3500), entry(E2, 40, 5200, 5300, 3), record(E2, 3600)),
    );
    const j = judgeArchive(continued, ctx(), NOW);
    expect(states(j)).toEqual(["ok"]);
    expect(j.status).toMatchObject({
      epochs: 2,
      archivedWindow: { fromBackupId: "20261130T090000Z-cccccc", toGtid: "0-1-5300" },
    });
  });

  test("segments but no verified snapshot the archive continues: warning", () => {
    const j = judgeArchive(healthy(3), ctx({ snapshots: [] }), NOW);
    expect(states(j)).toEqual(["warning"]);
    expect(j.reasons[0].message).toMatch(
      /no restorable window — no verified backup is continued by the archive \(0 verified/,
    );
  });

  test("a chain begun moments ago with no segment yet is fine; one begun long ago is critical", () => {
    expect(states(judgeArchive(scan(epoch(E2, null, null, record(E2, 30))), ctx(), NOW))).toEqual(["ok"]);
    const stuck = judgeArchive(scan(epoch(E2, null, null, record(E2, 3600))), ctx(), NOW);
    expect(states(stuck)).toEqual(["critical"]);
    expect(stuck.reasons[0].message).toMatch(/no segment archived since its chain began .* \(60 min ago\)/);
  });

  test("a ledger entry that does not match its contract is critical, naming the key", () => {
    const broken = scan({
      ...healthy(3).epochs[0],
      newest: { key: "backups/orders/binlogs/db1/x.ledger.json", error: "sha256 must match pattern" },
    });
    const j = judgeArchive(broken, ctx(), NOW);
    expect(j.reasons[0]).toEqual({
      state: "critical",
      message: expect.stringMatching(/x\.ledger\.json is not valid \(sha256 must match pattern\)/),
    });
  });
});

describe("withArchive", () => {
  const host: HostStatus = {
    host: "db1",
    health: "ok",
    reasons: [{ state: "ok", message: "newest backup 3.0 h old" }],
    backups: 3,
    newestBackup: null,
    newestVerified: null,
    sinceVerified: [],
    binlog: null,
  };

  test("the archive's state joins the host's, and its line validates against the status schema", () => {
    const late = withArchive(host, judgeArchive(healthy(30, 1), ctx(), NOW));
    expect(late.health).toBe("warning");
    expect(late.reasons.map((r) => r.state)).toEqual(["warning"]);
    const fine = withArchive(host, judgeArchive(healthy(3), ctx(), NOW));
    expect(fine.health).toBe("ok");
    expect(fine.reasons).toEqual([
      { state: "ok", message: expect.stringMatching(/^newest backup 3\.0 h old; binlog archive: lag 3 s/) },
    ]);
    const report = {
      formatVersion: 1,
      generatedAt: NOW.toISOString(),
      bucket: "bucket-1",
      prefix: "backups",
      health: "warning",
      exitCode: 1,
      clusters: [{ cluster: "orders", health: "warning", windowHours: 26, reasons: [], hosts: [late, fine] }],
      reads: { listRequests: 1, keysListed: 1, objectsFetched: 1 },
    };
    expect(parseStatusReport(report).clusters[0].hosts[1].binlog?.provenWindow).toBeNull();
  });

  test("a host without an archive keeps its line", () => {
    expect(withArchive(host, judgeArchive(null, ctx({ expected: false }), NOW))).toBe(host);
  });
});
