/**
 * The chain a point-in-time restore replays, chosen from ledger entries alone: one host's epoch, a switch to
 * another archiving host where the first has a hole, a gap named by its GTIDs, another history never taken,
 * and where each kind of target stops.
 */
import type { BinlogSegmentEntry } from "../../contracts";
import { parseState } from "../../hostscripts/common/gtid-state";
import type { ArchivedEpoch } from "../../hostscripts/restore/archive";
import { planChain } from "../../hostscripts/common/pitr-chain";

const T0 = Date.parse("2026-11-30T10:00:00Z");
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

/** A ledger entry of `host`/`epoch` holding domain 0 transactions (from, to], committed `from`..`to` seconds after T0. */
function entry(
  host: string,
  epoch: string,
  sequence: number,
  from: number,
  to: number,
  server = 1,
): BinlogSegmentEntry {
  const key = `backups/lab/binlogs/${host}/${epoch}/${String(sequence).padStart(10, "0")}-20261130T100000Z`;
  return {
    formatVersion: 1,
    cluster: "lab",
    host,
    epoch,
    sequence,
    segmentKey: `${key}.binlog`,
    previousLedgerKey: null,
    server: { flavor: "mariadb", version: "10.11.19", serverId: 2, serverUuid: null },
    file: {
      name: "mysql-bin.000001",
      identity: "a".repeat(64),
      headerBytes: 256,
      startOffset: 256,
      endOffset: 1000,
      endsFile: false,
    },
    gtid: {
      before: from === 0 ? "" : `0-${server}-${from}`,
      after: `0-${server}-${to}`,
      first: `0-${server}-${from + 1}`,
      last: `0-${server}-${to}`,
      set: null,
    },
    events: { count: 10, firstAt: at(from), lastAt: at(to) },
    transactions: { count: to - from, firstCommitAt: at(from + 1), lastCommitAt: at(to) },
    bytes: 1000,
    sha256: "b".repeat(64),
    archivedAt: at(to + 2),
  };
}

function epochOf(host: string, epoch: string, entries: BinlogSegmentEntry[]): ArchivedEpoch {
  return { host, epoch, record: null, entries, incomplete: [] };
}

const E1 = "20261130T100000Z-aaaaaa";
const E2 = "20261130T100100Z-bbbbbb";
const start = (text: string) => parseState("mariadb", text);
const steps = (plan: ReturnType<typeof planChain>) =>
  plan.steps.map((s) => `${s.entry.host}#${s.entry.sequence}`);

describe("planChain", () => {
  const one = epochOf("r1", E1, [
    entry("r1", E1, 1, 0, 10),
    entry("r1", E1, 2, 10, 20),
    entry("r1", E1, 3, 20, 30),
  ]);

  it("starts in the segment that holds the snapshot's state and follows the epoch to the latest", () => {
    const plan = planChain("mariadb", [one], start("0-1-14"), { kind: "latest" });
    expect(steps(plan)).toEqual(["r1#2", "r1#3"]);
    expect(plan.steps[0].from).toBe("0-1-14");
    expect(plan).toMatchObject({ reach: "0-1-30", reachAt: at(30), gap: null, archiveEndsAt: null });
  });

  it("stops at the segment that holds the time, and at the one that reaches the GTID", () => {
    expect(
      steps(planChain("mariadb", [one], start("0-1-5"), { kind: "time", at: new Date(T0 + 15_500) })),
    ).toEqual(["r1#1", "r1#2"]);
    expect(
      steps(planChain("mariadb", [one], start("0-1-5"), { kind: "gtid", gtid: start("0-1-21") })),
    ).toEqual(["r1#1", "r1#2", "r1#3"]);
  });

  it("says when the point lies past the newest archived transaction", () => {
    const plan = planChain("mariadb", [one], start("0-1-5"), { kind: "time", at: new Date(T0 + 60_000) });
    expect(plan.archiveEndsAt).toBe(at(30));
    expect(plan.gap).toBeNull();
  });

  it("names the GTIDs of a gap and where the archive resumes", () => {
    const holed = epochOf("r1", E1, [entry("r1", E1, 1, 0, 10), entry("r1", E2, 2, 25, 30)]);
    const plan = planChain("mariadb", [holed], start("0-1-5"), { kind: "time", at: new Date(T0 + 28_000) });
    expect(steps(plan)).toEqual(["r1#1"]);
    expect(plan.gap).toEqual({
      reachedGtid: "0-1-10",
      reachedAt: at(10),
      missing: "0-*-11..0-1-25 (15 transactions of domain 0)",
      resumesWith: { host: "r1", epoch: E2, sequence: 2, firstCommitAt: at(26), before: "0-1-25" },
    });
  });

  it("sees a gap when the missing segment is the last before the time and the next begins after it", () => {
    // Segment 2 (11–20 s) is gone; segment 3 begins at 21 s, after the point (15.5 s): stopping at 0-1-10
    // would claim 15.5 s without its transactions.
    const holed = epochOf("r1", E1, [entry("r1", E1, 1, 0, 10), entry("r1", E1, 3, 20, 30)]);
    const plan = planChain("mariadb", [holed], start("0-1-5"), { kind: "time", at: new Date(T0 + 15_500) });
    expect(steps(plan)).toEqual(["r1#1"]);
    expect(plan.gap).toMatchObject({
      reachedGtid: "0-1-10",
      missing: "0-*-11..0-1-20 (10 transactions of domain 0)",
    });
    // Whole, the same point needs no segment after it, and the archive going on after the point is no gap.
    expect(
      planChain("mariadb", [one], start("0-1-5"), { kind: "time", at: new Date(T0 + 15_500) }).gap,
    ).toBeNull();
    expect(
      planChain("mariadb", [one], start("0-1-5"), { kind: "time", at: new Date(T0 + 10_500) }).gap,
    ).toBeNull();
  });

  it("crosses to another archiving host where the first one has a hole, and back to no gap", () => {
    const r1 = epochOf("r1", E1, [entry("r1", E1, 1, 0, 10), entry("r1", E2, 5, 25, 40)]);
    const r2 = epochOf("r2", E1, [entry("r2", E1, 1, 0, 12), entry("r2", E1, 2, 12, 27)]);
    const plan = planChain("mariadb", [r1, r2], start("0-1-5"), { kind: "latest" });
    expect(steps(plan)).toEqual(["r2#1", "r2#2", "r1#5"]);
    expect(plan.steps[2].from).toBe("0-1-27");
    expect(plan).toMatchObject({ reach: "0-1-40", gap: null });
  });

  it("never takes a segment of another history (its after does not cover the chain), and reports no gap for it", () => {
    const reset = epochOf("r1", E2, [entry("r1", E2, 1, 0, 8, 9)]);
    const plan = planChain("mariadb", [one, reset], start("0-1-25"), { kind: "latest" });
    expect(steps(plan)).toEqual(["r1#3"]);
    expect(plan.gap).toBeNull();
  });

  it("returns no step when the snapshot already is at the GTID", () => {
    const plan = planChain("mariadb", [one], start("0-1-20"), { kind: "gtid", gtid: start("0-1-20") });
    expect(plan.steps).toEqual([]);
    expect(plan.gap).toBeNull();
  });
});
