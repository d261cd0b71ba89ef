/** The binlog archive's contracts: key layout, ledger entry, epoch record and `binlog.archived` message. */
import {
  ContractError,
  epochRecordKey,
  ledgerKey,
  parseBackupConfig,
  parseBinlogArchived,
  parseBinlogKey,
  parseEpochRecord,
  parseSegmentEntry,
  segmentKey,
  type BinlogSegmentEntry,
} from "../../contracts";

const ref = { prefix: "backups", cluster: "orders", host: "db-2", epoch: "20261130T162631Z-3fa9c1" };
const seg = { ...ref, sequence: 42, firstAt: new Date("2026-11-30T16:30:53.750Z") };

describe("key layout", () => {
  it("keys a segment by host, epoch, sequence and the second its first transaction committed; never by file name", () => {
    expect(segmentKey(seg)).toBe(
      "backups/orders/binlogs/db-2/20261130T162631Z-3fa9c1/0000000042-20261130T163053Z.binlog",
    );
    expect(ledgerKey(seg)).toBe(
      "backups/orders/binlogs/db-2/20261130T162631Z-3fa9c1/0000000042-20261130T163053Z.ledger.json",
    );
    expect(epochRecordKey(ref)).toBe("backups/orders/binlogs/db-2/20261130T162631Z-3fa9c1/epoch.json");
  });

  it("reads keys back exactly, and skips keys outside the layout", () => {
    expect(parseBinlogKey("backups", "orders", segmentKey(seg))).toEqual({
      kind: "segment",
      ref: { ...seg, firstAt: new Date("2026-11-30T16:30:53Z") },
    });
    expect(parseBinlogKey("backups", "orders", epochRecordKey(ref))).toEqual({ kind: "epoch", ref });
    for (const key of [
      "backups/orders/db-2/20261130T162631Z-3fa9c1/manifest.json",
      "backups/orders/binlogs/db-2/not-an-epoch/0000000001-20261130T163053Z.binlog",
      "backups/orders/binlogs/db-2/20261130T162631Z-3fa9c1/0000000001-20261130T163053Z.segment-verification.json",
      "backups/orders/binlogs/db-2/20261130T162631Z-3fa9c1/1-20261130T163053Z.binlog",
      "backups/other/binlogs/db-2/20261130T162631Z-3fa9c1/0000000001-20261130T163053Z.binlog",
    ])
      expect(parseBinlogKey("backups", "orders", key)).toBeNull();
  });

  it("refuses a sequence outside 1..9999999999 and a bad host or epoch", () => {
    expect(() => segmentKey({ ...seg, sequence: 0 })).toThrow(/sequence 0/);
    expect(() => segmentKey({ ...seg, host: "Bad Host" })).toThrow(/host "Bad Host"/);
    expect(() => segmentKey({ ...seg, epoch: "yesterday" })).toThrow(/epoch "yesterday"/);
  });
});

function entry(): BinlogSegmentEntry {
  return {
    formatVersion: 1,
    cluster: "orders",
    host: "db-2",
    epoch: ref.epoch,
    sequence: 42,
    segmentKey: segmentKey(seg),
    previousLedgerKey: ledgerKey({ ...seg, sequence: 41 }),
    server: { flavor: "mariadb", version: "10.11.19", serverId: 2, serverUuid: null },
    file: {
      name: "mysql-bin.000007",
      identity: "c".repeat(64),
      headerBytes: 256,
      startOffset: 4096,
      endOffset: 9000,
      endsFile: false,
    },
    gtid: {
      before: "0-1-100",
      after: "0-1-120,1-1-3",
      first: "0-1-101,1-1-1",
      last: "0-1-120,1-1-3",
      set: null,
    },
    events: { count: 80, firstAt: "2026-11-30T16:30:53.000Z", lastAt: "2026-11-30T16:30:58.000Z" },
    transactions: {
      count: 23,
      firstCommitAt: "2026-11-30T16:30:53.000Z",
      lastCommitAt: "2026-11-30T16:30:58.000Z",
    },
    bytes: 5160,
    sha256: "d".repeat(64),
    archivedAt: "2026-11-30T16:31:00.100Z",
  };
}

describe("ledger entry", () => {
  it("accepts a complete entry, MariaDB lists and MySQL sets", () => {
    expect(parseSegmentEntry(entry())).toEqual(entry());
    const mysql = entry();
    mysql.server = {
      flavor: "mysql",
      version: "8.0.36",
      serverId: 2,
      serverUuid: "88ebc247-06ef-11ef-97ee-0242ac130004",
    };
    mysql.gtid = {
      before: "88ebc247-06ef-11ef-97ee-0242ac130004:1-100",
      after: "88ebc247-06ef-11ef-97ee-0242ac130004:1-120",
      first: "88ebc247-06ef-11ef-97ee-0242ac130004:101",
      last: "88ebc247-06ef-11ef-97ee-0242ac130004:120",
      set: "88ebc247-06ef-11ef-97ee-0242ac130004:101-120",
    };
    expect(parseSegmentEntry(mysql)).toEqual(mysql);
  });

  it("names every bad key", () => {
    const bad = { ...entry(), sha256: "xyz", gtid: { ...entry().gtid, after: "zero" }, extra: 1 };
    try {
      parseSegmentEntry(bad);
      throw new Error("accepted");
    } catch (error) {
      expect(error).toBeInstanceOf(ContractError);
      expect((error as ContractError).problems).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^sha256 must match pattern/),
          expect.stringMatching(/^gtid\.after must match pattern/),
          '(top level): unknown key "extra" (remove it or check its spelling)',
        ]),
      );
    }
  });
});

it("an epoch record says why the chain began, and a gap names what is lost", () => {
  const record = {
    formatVersion: 1,
    cluster: "orders",
    host: "db-2",
    epoch: ref.epoch,
    startedAt: "2026-11-30T16:26:31.000Z",
    reason: "gap",
    detail: "the binlogs after 0-1-77 were purged before they were archived",
    server: { flavor: "mariadb", version: "10.11.19", serverId: 2, serverUuid: null },
    previous: { epoch: "20261129T120000Z-000001", sequence: 812, gtidAfter: "0-1-77", lastCommitAt: null },
    gtidStart: "0-1-150",
    missing: "0-*-78..0-1-150 (73 transactions of domain 0)",
  };
  expect(parseEpochRecord(record)).toEqual(record);
  expect(() => parseEpochRecord({ ...record, reason: "because" })).toThrow(/reason must be one of/);
});

it("binlog.archived: JSON first, then the schema", () => {
  const message = {
    type: "binlog.archived",
    version: 1,
    bucket: "acme-mysql-backups",
    cluster: "orders",
    host: "db-2",
    epoch: ref.epoch,
    sequence: 42,
    ledgerKey: ledgerKey(seg),
    segmentKey: segmentKey(seg),
    sha256: "d".repeat(64),
    gtidAfter: "0-1-120",
    archivedAt: "2026-11-30T16:31:00.100Z",
  };
  expect(parseBinlogArchived(JSON.stringify(message))).toEqual(message);
  expect(() => parseBinlogArchived("{")).toThrow(/binlog.archived message is not JSON/);
  expect(() => parseBinlogArchived(JSON.stringify({ ...message, type: "backup.created" }))).toThrow(
    ContractError,
  );
});

it("the backup config's binlog section is validated with the rest of it", () => {
  const base = {
    cluster: "orders",
    host: "db-2",
    mysql: { optionFile: "/etc/mysql-backup/client.cnf" },
    snapshot: { driver: "btrfs", subvolume: "/var/lib/mysql", snapshotDir: "/var/lib/.snapshots" },
    localDir: "/var/backups/mysql",
    s3: { bucket: "acme-mysql-backups" },
    sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/verify" },
  };
  expect(parseBackupConfig({ ...base, binlog: { rpoSeconds: 5, startFrom: "current" } }).binlog).toEqual({
    rpoSeconds: 5,
    startFrom: "current",
  });
  expect(() => parseBackupConfig({ ...base, binlog: { rpoSeconds: 1, stateDir: "relative" } })).toThrow(
    /binlog\.rpoSeconds must be >= 2[\s\S]*binlog\.stateDir must be an absolute path/,
  );
});
