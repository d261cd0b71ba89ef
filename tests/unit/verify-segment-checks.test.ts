/**
 * The checks of a binlog segment on arrival, on segments cut from a real MariaDB binlog (the recorded
 * fixture) with ledger entries built as the archiver builds them: a good pair passes every check; each kind
 * of damage fails the check that owns it, naming what is wrong (a flipped byte: the sha256, or with a ledger
 * that agrees with the bytes, the event's CRC32; a predecessor that ends elsewhere: the missing GTIDs; a gap
 * epoch; a missing predecessor; a commit time far behind the one before it), and a MySQL 8 segment built from
 * the documented layout.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  parseBinlogArchived,
  parseSegmentEntry,
  type BinlogEpochRecord,
  type BinlogSegmentEntry,
} from "../../contracts";
import { scanBinlog } from "../../hostscripts/common/binlog-scan";
import { formatGtid, parseState } from "../../hostscripts/common/gtid-state";
import { Mysql8Binlog, SOURCE } from "../fixtures/binlog/mysql8";
import {
  checkSegment,
  type Predecessor,
  type SegmentEvidence,
} from "../../hostscripts/verify/segment-checks";

const file = readFileSync(join(__dirname, "..", "fixtures", "binlog", "mariadb-crc32.000001"));
const HEADER = 256;
const epochDir = "backups/lab/binlogs/replica1/20261130T165400Z-aaaaaa";
const stem = (n: number) => `${epochDir}/${String(n).padStart(10, "0")}-20261130T165413Z`;
const server = { flavor: "mariadb", version: "10.11.6", serverId: 7, serverUuid: null } as const;

/** The bytes of the file [start, end) as a segment, and its ledger entry as the archiver writes it. */
function cut(sequence: number, start: number, end: number, before: string) {
  const bytes = Buffer.concat([file.subarray(0, HEADER), file.subarray(start, end)]);
  const scanned = scanBinlog(bytes, "fixture", start - HEADER);
  const after = parseState("mariadb", before);
  for (const t of scanned.transactions) after.add(t.gtid);
  const times = scanned.events.map((e) => new Date(e.header.timestamp * 1000).toISOString());
  const commits = scanned.transactions.map((t) => new Date(t.commitMs).toISOString());
  const entry = parseSegmentEntry({
    formatVersion: 1,
    cluster: "lab",
    host: "replica1",
    epoch: "20261130T165400Z-aaaaaa",
    sequence,
    segmentKey: `${stem(sequence)}.binlog`,
    previousLedgerKey: sequence === 1 ? null : `${stem(sequence - 1)}.ledger.json`,
    server,
    file: {
      name: "mysql-bin.000001",
      identity: "a".repeat(64),
      headerBytes: HEADER,
      startOffset: start,
      endOffset: end,
      endsFile: end === file.length,
    },
    gtid: {
      before,
      after: after.toString(),
      first: scanned.transactions.length ? formatGtid(scanned.transactions[0].gtid) : null,
      last: scanned.transactions.length ? formatGtid(scanned.transactions.at(-1)!.gtid) : null,
      set: null,
    },
    events: { count: scanned.events.length, firstAt: times[0], lastAt: times.at(-1) },
    transactions: {
      count: commits.length,
      firstCommitAt: commits[0] ?? null,
      lastCommitAt: commits.at(-1) ?? null,
    },
    bytes: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    archivedAt: "2026-11-30T16:54:20.000Z",
  });
  return { bytes, entry };
}

const first = cut(1, HEADER, 1031, "");
const second = cut(2, 1031, file.length, first.entry.gtid.after);

const record: BinlogEpochRecord = {
  formatVersion: 1,
  cluster: "lab",
  host: "replica1",
  epoch: "20261130T165400Z-aaaaaa",
  startedAt: "2026-11-30T16:54:00.000Z",
  reason: "first-run",
  detail: "no local state",
  server,
  previous: null,
  gtidStart: "",
  missing: null,
};

function evidence(
  segment: { bytes: Buffer | null; entry: BinlogSegmentEntry | { problem: string } },
  predecessor: Predecessor,
): SegmentEvidence {
  const entry = "problem" in segment.entry ? second.entry : segment.entry;
  const message = parseBinlogArchived(
    JSON.stringify({
      type: "binlog.archived",
      version: 1,
      bucket: "lab-bucket",
      cluster: "lab",
      host: "replica1",
      epoch: entry.epoch,
      sequence: entry.sequence,
      ledgerKey: `${stem(entry.sequence)}.ledger.json`,
      segmentKey: entry.segmentKey,
      sha256: entry.sha256,
      gtidAfter: entry.gtid.after,
      archivedAt: entry.archivedAt,
    }),
  );
  return { message, entry: segment.entry, bytes: segment.bytes, predecessor, timeSkewSeconds: 60 };
}

const failed = (e: SegmentEvidence) => checkSegment(e).checks.find((c) => !c.passed);

test("two consecutive segments pass every check, the first against its epoch's record", () => {
  const one = checkSegment(evidence(first, { kind: "epoch", record }));
  expect(one.checks.map((c) => [c.name, c.passed])).toEqual([
    ["ledger", true],
    ["object", true],
    ["events", true],
    ["continuity", true],
    ["times", true],
  ]);
  expect(one.transactions).toBe(first.entry.transactions.count);
  const two = checkSegment(evidence(second, { kind: "segment", entry: first.entry }));
  expect(two.checks.every((c) => c.passed)).toBe(true);
  expect(two.checks.find((c) => c.name === "continuity")!.detail).toMatch(
    /continues #1 .*mysql-bin.000001 at 1031/,
  );
  expect(two.events).toBe(second.entry.events.count);
});

test("a flipped byte fails the object's sha256; with a ledger hashed after the flip, the event's CRC32", () => {
  const flipped = Buffer.from(second.bytes);
  flipped[HEADER + 100] ^= 0x01;
  expect(
    failed(evidence({ ...second, bytes: flipped }, { kind: "segment", entry: first.entry })),
  ).toMatchObject({
    name: "object",
    detail: expect.stringMatching(/sha256 [0-9a-f]{64}; the ledger says \d+ bytes with [0-9a-f]{64}/),
  });
  const agreeing = { ...second.entry, sha256: createHash("sha256").update(flipped).digest("hex") };
  expect(
    failed(evidence({ bytes: flipped, entry: agreeing }, { kind: "segment", entry: first.entry })),
  ).toMatchObject({ name: "events", detail: expect.stringMatching(/CRC32|checksum/i) });
});

test("a segment that does not start where its predecessor ended names the missing GTIDs", () => {
  const earlier = { ...first.entry, gtid: { ...first.entry.gtid, after: "0-7-2" } };
  expect(failed(evidence(second, { kind: "segment", entry: earlier }))).toMatchObject({
    name: "continuity",
    detail: expect.stringContaining("0-*-3..0-7-4"),
  });
  const shorter = { ...first.entry, file: { ...first.entry.file, endOffset: 900 } };
  expect(failed(evidence(second, { kind: "segment", entry: shorter }))).toMatchObject({
    name: "continuity",
    detail: expect.stringMatching(/bytes are missing between them/),
  });
});

test("an epoch that began after a gap, or a predecessor missing from the archive, fails continuity", () => {
  const gap = { ...record, reason: "gap" as const, missing: "0-7-1..0-7-9" };
  expect(failed(evidence(first, { kind: "epoch", record: gap }))).toMatchObject({
    name: "continuity",
    detail: expect.stringContaining("0-7-1..0-7-9 were purged"),
  });
  expect(failed(evidence(second, { kind: "missing", key: `${stem(1)}.ledger.json` }))).toMatchObject({
    name: "continuity",
    detail: expect.stringContaining(`${stem(1)}.ledger.json is missing`),
  });
});

test("a commit time more than the skew behind the one before it fails times", () => {
  const later = {
    ...first.entry,
    transactions: { ...first.entry.transactions, lastCommitAt: "2026-11-30T17:00:00.000Z" },
  };
  expect(failed(evidence(second, { kind: "segment", entry: later }))).toMatchObject({
    name: "times",
    detail: expect.stringMatching(/before one committed ahead of it .* at most 60s/),
  });
});

test("a ledger entry that is missing, or disagrees with the announcement, fails ledger", () => {
  expect(
    failed(
      evidence(
        { bytes: second.bytes, entry: { problem: "it is missing from S3" } },
        { kind: "segment", entry: first.entry },
      ),
    ),
  ).toMatchObject({ name: "ledger", detail: "it is missing from S3" });
  const other = { ...second.entry, sha256: "0".repeat(64) };
  const e = evidence(second, { kind: "segment", entry: first.entry });
  expect(failed({ ...e, entry: other })).toMatchObject({
    name: "ledger",
    detail: expect.stringMatching(/sha256 0{64} in the ledger, [0-9a-f]{64} announced/),
  });
  expect(failed({ ...e, bytes: null })).toMatchObject({
    name: "object",
    detail: expect.stringMatching(/missing/),
  });
});

describe("MySQL 8 (a binlog built from the documented layout, tests/fixtures/binlog/mysql8.ts)", () => {
  /** A whole MySQL binlog as one segment: three transactions, the second's commit `backSeconds` early. */
  function mysqlSegment(backSeconds: number) {
    const b = new Mysql8Binlog();
    const header = b.end;
    const t0 = 1_796_000_000;
    b.previousGtids({ [SOURCE]: [[1, 4]] }, t0);
    for (const [gno, at] of [
      [5, t0 + 1],
      [6, t0 + 2 - backSeconds],
      [7, t0 + 3],
    ]) {
      b.gtid(gno, at, at * 1_000_000);
      b.query("BEGIN", at);
      b.rows(at);
      b.xid(gno, at);
    }
    const bytes = b.bytes();
    const scanned = scanBinlog(bytes, "mysql8", 0);
    const iso = (s: number) => new Date(s * 1000).toISOString();
    const entry = parseSegmentEntry({
      ...first.entry,
      server: { flavor: "mysql", version: "8.0.35", serverId: 1, serverUuid: SOURCE },
      file: {
        ...first.entry.file,
        headerBytes: header,
        startOffset: header,
        endOffset: bytes.length,
        endsFile: false,
      },
      gtid: {
        before: `${SOURCE}:1-4`,
        after: `${SOURCE}:1-7`,
        first: `${SOURCE}:5`,
        last: `${SOURCE}:7`,
        set: `${SOURCE}:5-7`,
      },
      events: {
        count: scanned.events.length,
        firstAt: iso(scanned.events[0].header.timestamp),
        lastAt: iso(scanned.events.at(-1)!.header.timestamp),
      },
      transactions: { count: 3, firstCommitAt: iso(t0 + 1), lastCommitAt: iso(t0 + 3) },
      bytes: bytes.length,
      sha256: createHash("sha256").update(bytes).digest("hex"),
    });
    const mysqlRecord = { ...record, server: entry.server, gtidStart: `${SOURCE}:1-4` };
    return evidence({ bytes, entry }, { kind: "epoch", record: mysqlRecord });
  }

  test("a MySQL segment passes every check, its GTID set continuing the epoch's", () => {
    expect(checkSegment(mysqlSegment(0)).checks.every((c) => c.passed)).toBe(true);
  });

  test("a commit two minutes behind the one before it fails times", () => {
    expect(failed(mysqlSegment(120))).toMatchObject({
      name: "times",
      detail: expect.stringContaining(`${SOURCE}:6`),
    });
  });
});
