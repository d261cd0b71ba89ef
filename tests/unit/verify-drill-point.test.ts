/**
 * The PITR drill's point and the GTID state a restore to it must reach (hostscripts/verify/drill-point.ts),
 * on ledger entries and transactions built as the archive records them: MariaDB GTIDs 0-1-N, commit times in
 * whole seconds (a transaction's GTID event carries its last statement's start), the `restore --until T` rule
 * (binlog order up to the first transaction committed after T; one stamped T is in).
 */
import { drillVerdictKey, parseDrillVerdict, type BinlogSegmentEntry } from "../../contracts";
import type { BinlogTransaction } from "../../hostscripts/common/binlog-transactions";
import { parseState } from "../../hostscripts/common/gtid-state";
import { judge } from "../../hostscripts/verify/drill";
import { drillPoint, drillSeconds, expectedStateAt } from "../../hostscripts/verify/drill-point";

const BASE = Date.parse("2026-11-30T10:00:00Z");
const at = (second: number) => new Date(BASE + second * 1000).toISOString();
const SKEW = 60_000;

/** One segment: its transactions as [sequence number, commit second], in binlog order. */
function segment(
  sequence: number,
  before: number,
  transactions: Array<[number, number]>,
  epoch = "20261130T100000Z-aaaaaa",
): { entry: BinlogSegmentEntry; transactions: BinlogTransaction[] } {
  const seqs = transactions.map(([n]) => n);
  const entry = {
    formatVersion: 1,
    cluster: "lab",
    host: "r1",
    epoch,
    sequence,
    segmentKey: `backups/lab/binlogs/r1/${epoch}/${String(sequence).padStart(10, "0")}.binlog`,
    server: { flavor: "mariadb", version: "10.11.19", serverId: 1, serverUuid: null },
    gtid: {
      before: before === 0 ? "" : `0-1-${before}`,
      after: `0-1-${Math.max(before, ...seqs)}`,
      first: seqs.length ? `0-1-${seqs[0]}` : null,
      last: seqs.length ? `0-1-${seqs.at(-1)}` : null,
      set: null,
    },
    transactions: {
      count: seqs.length,
      firstCommitAt: transactions.length ? at(transactions[0][1]) : null,
      lastCommitAt: transactions.length ? at(transactions.at(-1)![1]) : null,
    },
  } as unknown as BinlogSegmentEntry;
  return {
    entry,
    transactions: transactions.map(([n, second], i) => ({
      gtid: { flavor: "mariadb", domain: 0, server: 1, seq: n },
      start: 256 + i * 100,
      end: 356 + i * 100,
      commitMs: BASE + second * 1000,
      events: 4,
    })),
  };
}

/** The expected state at second `t` from `start`, with the segments whose events were read. */
async function expected(segments: ReturnType<typeof segment>[], start: string, t: number) {
  const read: number[] = [];
  const found = await expectedStateAt(
    "mariadb",
    parseState("mariadb", start),
    segments.map((s) => s.entry),
    BASE + t * 1000,
    SKEW,
    async (entry) => {
      read.push(entry.sequence);
      return segments.find((s) => s.entry === entry)!.transactions;
    },
  );
  return { ...found, gtid: found.state.toString(), read };
}

describe("the drill's point", () => {
  const window = { from: "2026-11-30T10:00:00.400Z", to: "2026-11-30T10:00:05.000Z" };

  it("is a whole second strictly inside the window, the same for the same seed", () => {
    expect(drillSeconds(window.from, window.to)).toEqual({
      first: BASE / 1000 + 1,
      last: BASE / 1000 + 4,
    });
    const drawn = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const t = drillPoint(seed, window)!;
      expect(t.getTime() % 1000).toBe(0);
      expect(t.getTime()).toBeGreaterThan(Date.parse(window.from));
      expect(t.getTime()).toBeLessThan(Date.parse(window.to));
      expect(drillPoint(seed, window)).toEqual(t);
      drawn.add(t.toISOString());
    }
    // Every second of the window is drawn by some seed: the boundary seconds included.
    expect([...drawn].sort()).toEqual([at(1), at(2), at(3), at(4)]);
    expect(drillPoint(0, window)).toEqual(new Date(at(1)));
    expect(drillPoint(3, window)).toEqual(new Date(at(4)));
    expect(drillPoint(2 ** 31 - 2, window)).toEqual(drillPoint((2 ** 31 - 2) % 4, window));
  });

  it("is none when no whole second lies strictly between the snapshots", () => {
    expect(drillPoint(7, { from: at(1), to: at(2) })).toBeNull();
    expect(drillPoint(7, { from: "2026-11-30T10:00:01.200Z", to: "2026-11-30T10:00:02.000Z" })).toBeNull();
    expect(drillPoint(7, { from: "2026-11-30T10:00:01.200Z", to: "2026-11-30T10:00:02.900Z" })).toEqual(
      new Date(at(2)),
    );
    expect(drillPoint(7, { from: at(3), to: at(1) })).toBeNull();
    expect(drillPoint(0, { from: at(1), to: at(3) })).toEqual(new Date(at(2)));
  });
});

describe("the GTID state a restore to T must reach", () => {
  // Snapshot A holds 0-1-10; segment 1 began before it (0-1-8 onwards); commits every 10 s or so.
  const archive = () => [
    segment(1, 7, [
      [8, 0],
      [9, 5],
      [10, 8],
      [11, 12],
      [12, 20],
    ]),
    segment(2, 12, [
      [13, 30],
      [14, 40],
      [15, 50],
    ]),
    segment(3, 15, [
      [16, 130],
      [17, 140],
      [18, 150],
    ]),
  ];

  it("includes a transaction stamped T and excludes one stamped T + 1 (the boundary seconds)", async () => {
    expect((await expected(archive(), "0-1-10", 40)).gtid).toBe("0-1-14");
    expect((await expected(archive(), "0-1-10", 39)).gtid).toBe("0-1-13");
    expect((await expected(archive(), "0-1-10", 40)).lastGtid).toBe("0-1-14");
  });

  it("on a second with no transaction, holds the last one before it", async () => {
    const found = await expected(archive(), "0-1-10", 100);
    expect(found.gtid).toBe("0-1-15");
    expect(found.lastGtid).toBe("0-1-15");
    expect(found.short).toBeNull();
  });

  it("right after the snapshot, before any new commit, is the snapshot's own state", async () => {
    const found = await expected(archive(), "0-1-10", 11);
    expect(found.gtid).toBe("0-1-10");
    expect(found.lastGtid).toBeNull();
  });

  it("excludes a multi-statement transaction T falls inside (it is stamped with its last statement)", async () => {
    // 0-1-17's first statement ran at 133, its last at 140: a restore to 135 must not hold any of it.
    expect((await expected(archive(), "0-1-10", 135)).gtid).toBe("0-1-16");
    expect((await expected(archive(), "0-1-10", 140)).gtid).toBe("0-1-17");
  });

  it("takes a segment whole from its ledger only when its last commit plus the skew is at or before T", async () => {
    // Segment 1 ends at 20 s: read at T = 79 (20 + 60 > 79), taken from the ledger at T = 80; segment 3's
    // first transaction (130 s) is read to find the stop.
    const at79 = await expected(archive(), "0-1-10", 79);
    expect(at79.read).toEqual([1, 2, 3]);
    expect(at79.gtid).toBe("0-1-15");
    expect((await expected(archive(), "0-1-10", 80)).read).toEqual([2, 3]);
    const at135 = await expected(archive(), "0-1-10", 135);
    expect(at135.read).toEqual([3]);
    expect([at135.segmentsFromLedger, at135.segmentsRead]).toEqual([2, 1]);
    expect(at135.gtid).toBe("0-1-16");
  });

  it("stops at the first transaction after T in binlog order, even when a later one is stamped earlier", async () => {
    // A long statement stamped at its start (45) commits after one stamped 47: binlog order decides.
    const skewed = [
      segment(1, 10, [
        [11, 40],
        [12, 47],
        [13, 45],
        [14, 50],
      ]),
    ];
    expect((await expected(skewed, "0-1-10", 46)).gtid).toBe("0-1-11");
    expect((await expected(skewed, "0-1-10", 47)).gtid).toBe("0-1-13");
  });

  it("says the archive falls short when a segment before T is missing (a gap)", async () => {
    const [one, , three] = archive();
    const found = await expected([one, three], "0-1-10", 145);
    expect(found.gtid).toBe("0-1-12");
    expect(found.short).toMatch(
      /no archived segment continues 0-1-12 towards the point, yet 1 segment\(s\) lie beyond it/,
    );
    expect(found.short).toContain("from 0-1-15");
  });

  it("falls short too when the missing segment is the last before T and the next begins after it", async () => {
    // Segment 2 (30–50 s) is gone and segment 3 begins at 130 s: at T = 45 nothing after T was met.
    const [one, , three] = archive();
    const found = await expected([one, three], "0-1-10", 45);
    expect(found.gtid).toBe("0-1-12");
    expect(found.short).toContain("from 0-1-15");
    // With segment 2 there, T = 45 stops inside it, and the archive's end after T is no gap.
    const whole = await expected(archive(), "0-1-10", 45);
    expect([whole.gtid, whole.short]).toEqual(["0-1-14", null]);
    const [a1, a2] = archive();
    expect((await expected([a1, a2], "0-1-10", 200)).short).toBeNull();
  });

  it("follows the same epoch's next sequence, and moves to another epoch only where it must", async () => {
    const first = segment(1, 10, [
      [11, 10],
      [12, 20],
    ]);
    const second = segment(2, 12, [[13, 30]]);
    // Another archiver's epoch that also continues from 0-1-12, starting later.
    const other = segment(
      1,
      12,
      [
        [13, 30],
        [14, 35],
      ],
      "20261130T110000Z-bbbbbb",
    );
    const next = segment(2, 14, [[15, 90]], "20261130T110000Z-bbbbbb");
    const found = await expected([other, first, next, second], "0-1-10", 95);
    expect(found.gtid).toBe("0-1-15");
  });
});

describe("the drill verdict's contract", () => {
  const verdict = {
    formatVersion: 1,
    bucket: "b",
    cluster: "lab",
    from: { backupId: "20261130T100000Z-aaaaaa", host: "r1", gtid: "0-1-10", completedAt: at(0) },
    to: { backupId: "20261130T110000Z-bbbbbb", host: "r1", takenAt: at(3600) },
    point: { seed: 41, window: { from: at(0), to: at(3600) }, at: at(42) },
    expected: { gtid: "0-1-20", segmentsFromLedger: 1, segmentsRead: 1, lastGtid: "0-1-20" },
    verdict: "failed",
    failure: {
      kind: "gtid",
      detail: "the restore to the point answered at 0-1-19; the archive holds 0-1-20",
      tables: [],
    },
    restore: {
      secondsToQueryable: 6.2,
      reachedGtid: "0-1-19",
      transactions: 9,
      segments: 2,
      replaySeconds: 0.4,
    },
    tablesChecked: 9,
    seconds: 7.1,
    verifiedAt: at(3700),
    verifier: { host: "v1" },
  };

  it("accepts a verdict and refuses one with a key it does not know, or without the point", () => {
    expect(parseDrillVerdict(verdict)).toEqual(verdict);
    expect(() => parseDrillVerdict({ ...verdict, from: { ...verdict.from, takenAt: at(0) } })).toThrow(
      /from: unknown key "takenAt"/,
    );
    const { point: _point, ...withoutPoint } = verdict;
    expect(() => parseDrillVerdict(withoutPoint)).toThrow(/point/);
    expect(
      drillVerdictKey({ prefix: "backups", cluster: "lab", host: "r1", backupId: verdict.to.backupId }),
    ).toBe(`backups/lab/r1/${verdict.to.backupId}/pitr-drill.json`);
  });

  it("judges the server against the archive: a state the archive does not hold there names both", () => {
    const expected = {
      state: parseState("mariadb", "0-1-20"),
      lastGtid: "0-1-20",
      segmentsFromLedger: 0,
      segmentsRead: 1,
      short: null,
    };
    expect(judge("mariadb", expected, { reached: "0-1-20", tables: [] })).toBeNull();
    expect(judge("mariadb", expected, { reached: "0-1-19", tables: [] })).toEqual({
      kind: "gtid",
      detail:
        "the restore to the point answered at 0-1-19; the archive holds 0-1-20 there (last transaction 0-1-20)",
      tables: [],
    });
    expect(
      judge(
        "mariadb",
        { ...expected, short: "no segment continues 0-1-12" },
        { reached: "0-1-20", tables: [] },
      ),
    ).toMatchObject({
      kind: "gtid",
      detail: expect.stringContaining("does not reach the point: no segment continues 0-1-12"),
    });
    expect(judge("mariadb", expected, { reached: "0-1-20", tables: ["`s`.`t`: Corrupt"] })).toMatchObject({
      kind: "tables",
      tables: ["`s`.`t`"],
    });
  });
});
