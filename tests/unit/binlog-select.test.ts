/**
 * Which transactions a replay applies, on segments cut from a real MariaDB binlog (the recorded fixture):
 * those the restored state holds are skipped only when they come first and end exactly where the state ends;
 * the rest are applied up to the target; the relay logs written for them are binlogs with exactly those
 * transactions; a target the chain passes without meeting is refused.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BinlogSegmentEntry } from "../../contracts";
import { scanBinlog } from "../../hostscripts/common/binlog-scan";
import { PipelineError } from "../../hostscripts/common/errors";
import { formatGtid, parseState } from "../../hostscripts/common/gtid-state";
import { replayStatements, writeRelayLogs } from "../../hostscripts/restore/replay";
import { selectTransactions } from "../../hostscripts/restore/select";
import { verifySegment, type VerifiedSegment } from "../../hostscripts/restore/segments";

const file = readFileSync(join(__dirname, "..", "fixtures", "binlog", "mariadb-crc32.000001"));
const dir = mkdtempSync(join(tmpdir(), "binlog-select-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A segment of the fixture: its header and the file's bytes [start, end), with a ledger entry that fits. */
function segment(sequence: number, start: number, end: number, before: string): VerifiedSegment {
  const bytes = Buffer.concat([file.subarray(0, 256), file.subarray(start, end)]);
  const path = join(dir, `${sequence}.binlog`);
  writeFileSync(path, bytes);
  const scanned = scanBinlog(bytes, "fixture", start - 256);
  const entry = {
    sequence,
    segmentKey: `backups/lab/binlogs/r1/20261130T100000Z-aaaaaa/${sequence}.binlog`,
    gtid: { before, after: "", first: null, last: null, set: null },
    file: { headerBytes: 256, startOffset: start, endOffset: end },
    transactions: { count: scanned.transactions.length },
  } as unknown as BinlogSegmentEntry;
  return { entry, path, headerBytes: 256, transactions: scanned.transactions };
}

const s1 = () => segment(1, 256, 1031, "");
const s2 = () => segment(2, 1031, 2552, "0-7-4");
const gtids = (sel: ReturnType<typeof selectTransactions>) =>
  sel.pieces.flatMap((p) =>
    p.segment.transactions
      .filter((t) => p.ranges.some(([a, b]) => t.start >= a && t.end <= b))
      .map((t) => formatGtid(t.gtid)),
  );

it("skips what the restored state holds and applies the rest, to the end", () => {
  const sel = selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", "0-7-2"), { kind: "end" });
  expect(gtids(sel)).toEqual(["0-7-3", "0-7-4", "0-7-5", "0-7-6", "0-7-7", "0-7-8", "1-7-1", "0-7-9"]);
  expect(sel.reached.toString()).toBe("0-7-9,1-7-1");
  // Offsets within each segment file: the second segment's bytes start after its 256-byte header.
  expect(sel.pieces.map((p) => p.ranges)).toEqual([[[638, 1031]], [[256, 1726]]]);
});

it("stops exactly at a GTID target, also one in a second domain", () => {
  const sel = selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", "0-7-2"), {
    kind: "gtid",
    gtid: parseState("mariadb", "0-7-8,1-7-1"),
  });
  expect(gtids(sel).at(-1)).toBe("1-7-1");
  expect(sel.lastGtid).toBe("1-7-1");
});

it("refuses a GTID the chain passes without meeting", () => {
  const refused = () =>
    selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", "0-7-2"), {
      kind: "gtid",
      gtid: parseState("mariadb", "0-7-99"),
    });
  expect(refused).toThrow(PipelineError);
  expect(refused).toThrow(/does not reach GTID 0-7-99: it ends at 0-7-9,1-7-1/);
  const wrongServer = () =>
    selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", "0-7-2"), {
      kind: "gtid",
      gtid: parseState("mariadb", "0-8-5"),
    });
  expect(wrongServer).toThrow(/does not reach GTID 0-8-5/);
});

it("stops before the first transaction committed after the time", () => {
  const firstCommit = s1().transactions[0].commitMs;
  const sel = selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", ""), {
    kind: "time",
    atMs: firstCommit - 1,
  });
  expect(sel.transactions).toBe(0);
  const all = selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", ""), {
    kind: "time",
    atMs: firstCommit + 999,
  });
  expect(all.transactions).toBe(10);
});

it("refuses a segment that does not end the held transactions where the state ends (another history)", () => {
  // The state says 0-9-3 (server 9), the segment holds 0-7-3: same numbers, another history.
  expect(() =>
    selectTransactions("mariadb", [s1()], parseState("mariadb", "0-9-3"), { kind: "end" }),
  ).toThrow(
    /does not continue the restored snapshot's history: the state ends domain 0 with 0-9-3, the segment has 0-7-3 there/,
  );
});

it("writes relay logs that are binlogs holding exactly the selected transactions, and the statements that apply them", async () => {
  // A restored state inside the second segment: the first is held whole and contributes nothing.
  const sel = selectTransactions("mariadb", [s1(), s2()], parseState("mariadb", "0-7-5"), { kind: "end" });
  const relay = await writeRelayLogs(dir, sel.pieces);
  expect(relay.files).toEqual(["relay-bin.000001"]);
  const written = scanBinlog(readFileSync(join(dir, relay.files[0])), "relay", null);
  expect(written.transactions.map((t) => formatGtid(t.gtid))).toEqual([
    "0-7-6",
    "0-7-7",
    "0-7-8",
    "1-7-1",
    "0-7-9",
  ]);
  expect(readFileSync(join(dir, "relay-bin.index"), "utf8")).toBe(`${join(dir, "relay-bin.000001")}\n`);
  expect(replayStatements("mariadb", relay).start[0]).toMatch(
    /RELAY_LOG_FILE='relay-bin\.000001', RELAY_LOG_POS=4, MASTER_LOG_FILE='pitr-archive\.000001'.*MASTER_USE_GTID=no/,
  );
  expect(replayStatements("mysql", relay)).toEqual({
    start: [
      "CHANGE REPLICATION SOURCE TO SOURCE_HOST='pitr.invalid', SOURCE_PORT=3306, SOURCE_USER='pitr', RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=4, SOURCE_AUTO_POSITION=0",
      "START REPLICA SQL_THREAD",
    ],
    stop: ["STOP REPLICA", "RESET REPLICA ALL"],
  });
});

it("verifies a downloaded segment against its ledger entry: size and sha256, then every event", () => {
  const seg = s2();
  const bytes = readFileSync(seg.path);
  const entry = {
    ...seg.entry,
    host: "r1",
    epoch: "20261130T100000Z-aaaaaa",
    bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    gtid: { before: "0-7-4", after: "0-7-9,1-7-1", first: "0-7-5", last: "0-7-9", set: null },
  } as BinlogSegmentEntry;
  expect(verifySegment(bytes, entry, "bucket").transactions).toHaveLength(6);
  const flipped = Buffer.from(bytes);
  flipped[600] ^= 1;
  expect(() => verifySegment(flipped, entry, "bucket")).toThrow(/does not match its ledger entry/);
  expect(() =>
    verifySegment(
      flipped,
      { ...entry, sha256: createHash("sha256").update(flipped).digest("hex") },
      "bucket",
    ),
  ).toThrow(/cannot be read as the ledger describes it: .*fails its CRC32 check/);
});
