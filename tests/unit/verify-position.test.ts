/**
 * The verifier's side of the lock modes and of the full inventory, without a server: GTID positions compared
 * as positions (between the ones read before and after a lock-free snapshot), the position check of each
 * mode, XA transactions left prepared, the inventory of sequences, system-versioned and partitioned tables,
 * and a sequence's own check.
 */
import type { BackupManifest, CapturedPosition } from "../../contracts";
import { inventoryOf, summarizeInventory } from "../../hostscripts/common/inventory";
import {
  mariadbBetween,
  mariadbMaxPerDomain,
  mysqlBetween,
  mysqlMissing,
  parseMariadbGtidList,
  parseMysqlGtidSet,
} from "../../hostscripts/common/gtid";
import { compareInventory, judgeSequence, judgeTables } from "../../hostscripts/verify/checks";
import { judgePosition, type RestoredPosition } from "../../hostscripts/verify/position";

const UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const OTHER = "5e5d0a55-ae4a-11e8-8ff8-0800272b0f6e";

describe("GTID positions", () => {
  test("MariaDB: per domain, the recovered sequence must lie between before and after, whatever the server id", () => {
    expect(mariadbBetween("0-1-100,1-2-7", "0-1-150,1-2-7", "0-1-160,1-2-8")).toEqual([]);
    // A failover in between changes the server id, not the order of a domain's sequence numbers.
    expect(mariadbBetween("0-1-100", "0-3-120", "0-3-130")).toEqual([]);
    expect(mariadbBetween("0-1-100", "0-1-99", "0-1-130")).toEqual([
      "domain 0: sequence 99 is before 100, read before the snapshot",
    ]);
    expect(mariadbBetween("0-1-100", "0-1-100,2-5-1", "0-1-130")).toEqual([
      "domain 2: sequence 1 is past 0, read after the snapshot",
    ]);
    expect(mariadbBetween(null, "", "")).toEqual([]);
    expect(() => parseMariadbGtidList("0-1")).toThrow(/not a MariaDB GTID/);
    expect(parseMariadbGtidList("0-1-18446744073709551615").get(0)).toBe(18446744073709551615n);
  });

  test("MySQL: before ⊆ recovered ⊆ after, intervals merged, uuids case-insensitive, tags kept apart", () => {
    const before = `${UUID}:1-100,\n${OTHER}:1-17`;
    const recovered = `${OTHER}:1-17,${UUID.toUpperCase()}:1-120`;
    const after = `${UUID}:1-50:51-130,${OTHER}:1-17`;
    expect(mysqlBetween(before, recovered, after)).toEqual([]);
    expect(mysqlBetween(before, `${UUID}:1-90,${OTHER}:1-17`, after)).toEqual([
      `lacks ${UUID}:91-100, executed before the snapshot`,
    ]);
    expect(mysqlBetween(before, `${UUID}:1-140,${OTHER}:1-17`, after)).toEqual([
      `holds ${UUID}:131-140, not executed until after the snapshot`,
    ]);
    expect(parseMysqlGtidSet(`${UUID}:1-5:7:tag:1-3`)).toEqual(
      new Map([
        [
          UUID,
          [
            [1n, 5n],
            [7n, 7n],
          ],
        ],
        [`${UUID}:tag`, [[1n, 3n]]],
      ]),
    );
    expect(mysqlMissing(`${UUID}:tag:1-3`, `${UUID}:1-3`)).toEqual([`${UUID}:tag:1-3`]);
    expect(() => parseMysqlGtidSet("nonsense")).toThrow(/not a MySQL GTID set element/);
  });
});

const position = (slave: string, binlog = slave): CapturedPosition => ({
  gtidBinlogPos: binlog,
  gtidSlavePos: slave,
  gtidCurrentPos: binlog,
  gtidExecuted: null,
  binlog: { file: "mysql-bin.000003", pos: 4 },
  source: { host: "10.0.0.1", port: 3306, file: "mysql-bin.000009", pos: 77, usingGtid: "Slave_Pos" },
});

const restored = (slave: string, preparedXa: string[] = []): RestoredPosition => ({
  gtidBinlogPos: slave,
  gtidSlavePos: slave,
  gtidExecuted: null,
  preparedXa,
});

type PositionOf = Pick<BackupManifest, "server" | "position" | "positionAfter" | "lock">;
const server = { flavor: "mariadb" as const, version: "10.11.6", serverId: 2 };

describe("the position check of each lock mode", () => {
  const lockFree: PositionOf = {
    server,
    position: position("0-1-1000"),
    positionAfter: position("0-1-1040"),
    lock: { method: "none", ms: 0, mode: "none" },
  };

  test("lock-free: the recovered position passes anywhere between before and after, and is named", () => {
    const result = judgePosition(lockFree, restored("0-1-1017"));
    expect(result.passed).toBe(true);
    // gtid_slave_pos's upper bound is the binary log's state too, per domain (the server id does not order).
    expect(result.detail).toContain('@@gtid_slave_pos "0-1-1017" (before "0-1-1000", after "0-0-1040")');
    expect(result.detail).toContain("lock mode none; crash recovery left no transaction prepared");
  });

  test("lock-free: a transaction already in the binary log but not yet counted as applied is within bounds", () => {
    // Seen on the lab: the snapshot held 1041 (binlogged, committed by recovery) while gtid_slave_pos still said 1040.
    const racing: PositionOf = { ...lockFree, positionAfter: position("0-1-1040", "0-1-1041") };
    expect(judgePosition(racing, restored("0-1-1041")).passed).toBe(true);
    expect(mariadbMaxPerDomain("0-1-1040,1-2-5", "0-3-1041", null)).toBe("0-0-1041,1-0-5");
  });

  test("lock-free: a recovered position outside the bounds fails, naming the domain", () => {
    const behind = judgePosition(lockFree, restored("0-1-999"));
    expect(behind.passed).toBe(false);
    expect(behind.detail).toContain("domain 0: sequence 999 is before 1000");
    expect(judgePosition(lockFree, restored("0-1-1041")).detail).toContain("past 1040");
  });

  test("under a lock that holds commits the position must be the captured one exactly", () => {
    const commit: PositionOf = {
      server,
      position: position("0-1-1000"),
      lock: { method: "BACKUP STAGE BLOCK_COMMIT", ms: 20, mode: "commit" },
    };
    expect(judgePosition(commit, restored("0-1-1000")).passed).toBe(true);
    expect(judgePosition(commit, restored("0-1-1001")).passed).toBe(false);
  });

  test("a manifest from before lock modes reads as global (FTWRL)", () => {
    const old: PositionOf = {
      server,
      position: position("0-1-1000"),
      lock: { method: "FLUSH TABLES WITH READ LOCK", ms: 20 },
    };
    expect(judgePosition(old, restored("0-1-1000")).detail).toContain("lock mode global");
  });

  test("a client's XA transaction left prepared is named, not failed: its coordinator decides it", () => {
    const result = judgePosition(lockFree, restored("0-1-1017", ["1:6162:"]));
    expect(result.passed).toBe(true);
    expect(result.detail).toContain("left 1 client XA transaction(s) prepared");
    expect(result.detail).toContain("1:6162:");
  });
});

describe("the inventory of every object that holds data", () => {
  const rows = [
    { s: "app", t: "events", e: "InnoDB", k: "BASE TABLE", o: "partitioned" },
    { s: "app", t: "order_ids", e: "InnoDB", k: "SEQUENCE", o: "" },
    { s: "app", t: "prices", e: "InnoDB", k: "SYSTEM VERSIONED", o: "partitioned" },
    { s: "app", t: "legacy", e: "MyISAM", k: "BASE TABLE", o: "" },
    { s: "app", t: "recent", e: null, k: "VIEW", o: null },
  ];

  test("kinds, partitioning and engines are recorded; views are counted as left out", () => {
    const inventory = inventoryOf(rows);
    expect(inventory.tables).toEqual([
      { schema: "app", table: "events", engine: "InnoDB", type: "BASE TABLE", partitioned: true },
      { schema: "app", table: "order_ids", engine: "InnoDB", type: "SEQUENCE" },
      { schema: "app", table: "prices", engine: "InnoDB", type: "SYSTEM VERSIONED", partitioned: true },
      { schema: "app", table: "legacy", engine: "MyISAM", type: "BASE TABLE" },
    ]);
    expect(inventory.views).toEqual(["app.recent"]);
    expect(summarizeInventory(inventory)).toBe(
      "4 objects that hold data (2 tables, 1 system-versioned, 1 sequences; 2 partitioned); left out: 1 views (no data)",
    );
  });

  test("a sequence missing after restore fails; one an old manifest could not list does not", () => {
    const { tables } = inventoryOf(rows);
    const withoutSequence = tables.filter((t) => t.type !== "SEQUENCE");
    expect(compareInventory(tables, withoutSequence).missing).toEqual(["app.order_ids"]);
    const old = withoutSequence.map(({ schema, table, engine }) => ({ schema, table, engine }));
    expect(compareInventory(old, tables)).toEqual({ missing: [], unexpected: [], engineChanged: [] });
    expect(compareInventory(withoutSequence, tables).unexpected).toEqual(["app.order_ids"]);
  });

  test("a sequence is judged by its one row", () => {
    const row = {
      next_not_cached_value: "5100",
      minimum_value: "1",
      maximum_value: "9223372036854775806",
      increment: "5",
    };
    expect(judgeSequence([row])).toEqual({
      passed: true,
      text: "sequence OK: next value 5100 (1…9223372036854775806, increment 5)",
    });
    expect(judgeSequence([]).passed).toBe(false);
    expect(judgeSequence([row, row]).text).toBe("a sequence holds 2 rows, not 1");
    expect(judgeSequence([{ ...row, minimum_value: "10", maximum_value: "5" }]).passed).toBe(false);
    expect(judgeSequence([{ ...row, increment: "0" }]).text).toBe("increment is 0");
  });

  test("the tables check says how many of each kind it checked", () => {
    const clean = { missing: [], unexpected: [], engineChanged: [] };
    const checked = inventoryOf(rows).tables.map((t) => ({ ...t, rows: 1, check: "OK", passed: true }));
    expect(judgeTables(clean, checked).detail).toBe(
      "4 tables present with their engines, CHECK TABLE OK, 4 rows (1 sequences read and consistent, 1 system-versioned with their history, 2 partitioned)",
    );
  });
});
