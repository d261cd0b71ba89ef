/**
 * The archiver's judgement of the server's binlog settings (common/binlog-server.ts), which `check` reports
 * one finding at a time: what makes the archiver refuse a server, what it only warns about, each with its
 * fix, on MariaDB and on MySQL 8.4 (constructed answers: MySQL cannot run here).
 */
import type { Query } from "../../hostscripts/common/dialect";
import {
  binlogSettingProblems,
  readBinlogSettings,
  readServerFacts,
} from "../../hostscripts/common/binlog-server";

type Row = Record<string, unknown>;

/** A server answering the archiver's statements; `settings` overrides the second SELECT's row. */
function server(flavor: "mariadb" | "mysql", settings: Row = {}, replica = true): Query {
  return async (sql) => {
    if (sql.startsWith("SELECT @@version"))
      return [
        {
          version: flavor === "mariadb" ? "10.11.19-MariaDB-log" : "8.4.3",
          serverId: 2,
          logBin: settings.logBin ?? 1,
        },
      ];
    if (sql.startsWith("SELECT")) {
      const base: Row =
        flavor === "mariadb"
          ? { uuid: null, basename: "/var/lib/mysql/mysql-bin", strict: 1, replicaUpdates: 1, encrypted: 0 }
          : {
              uuid: "3e11fa47-71ca-11e1-9e33-c80aa9429562",
              basename: "/var/lib/mysql/binlog",
              gtidMode: "ON",
              replicaUpdates: 1,
              encrypted: 0,
            };
      return [{ ...base, format: "ROW", checksum: "CRC32", ...settings }];
    }
    if (/^SHOW (SLAVE|REPLICA) STATUS/.test(sql)) return replica ? [{ Seconds_Behind_Master: 0 }] : [];
    throw new Error(`unexpected statement ${sql}`);
  };
}

const problems = async (query: Query) =>
  binlogSettingProblems(await readBinlogSettings(query)).map((p) => [p.setting, p.severity]);

describe("binlogSettingProblems", () => {
  test("a replica set up as docs/pitr.md says has none, on both flavors", async () => {
    expect(await problems(server("mariadb"))).toEqual([]);
    expect(await problems(server("mysql"))).toEqual([]);
  });

  test("what makes the archiver refuse a server, each with its fix", async () => {
    const s = await readBinlogSettings(server("mariadb", { logBin: 0, replicaUpdates: 0, encrypted: 1 }));
    const found = binlogSettingProblems(s);
    expect(found.map((p) => [p.setting, p.severity])).toEqual([
      ["log_bin", "refuse"],
      ["log_slave_updates", "refuse"],
      ["encrypt_binlog", "refuse"],
    ]);
    expect(found[1]).toMatchObject({
      problem: "log_slave_updates is OFF on this replica: its binlog lacks what it replicates",
      fix: "set log_slave_updates=ON in my.cnf under [mysqld], and restart the server",
    });
    // log_slave_updates matters only on a replica.
    expect(await problems(server("mariadb", { replicaUpdates: 0 }, false))).toEqual([]);
  });

  test("MySQL 8.4: gtid_mode and log_replica_updates by their new names", async () => {
    expect(await problems(server("mysql", { gtidMode: "OFF_PERMISSIVE", replicaUpdates: 0 }))).toEqual([
      ["log_replica_updates", "refuse"],
      ["gtid_mode", "refuse"],
    ]);
  });

  test("what it archives anyway, but a restore suffers from: warnings", async () => {
    const s = await readBinlogSettings(server("mariadb", { format: "MIXED", checksum: "NONE", strict: 0 }));
    const found = binlogSettingProblems(s);
    expect(found.map((p) => [p.setting, p.severity])).toEqual([
      ["binlog_format", "warn"],
      ["binlog_checksum", "warn"],
      ["gtid_strict_mode", "warn"],
    ]);
    expect(found[0].fix).toBe("set binlog_format=ROW in my.cnf under [mysqld], and restart the server");
  });
});

describe("readServerFacts", () => {
  test("refuses, naming every setting at once, only for what the archiver cannot work with", async () => {
    await expect(
      readServerFacts(server("mariadb", { logBin: 0, encrypted: 1, format: "STATEMENT" })),
    ).rejects.toThrow(
      "this server's binary log cannot be archived for point-in-time recovery: log_bin is OFF: the server writes no binary log; the binlog is encrypted, which the archiver cannot read",
    );
    await expect(
      readServerFacts(server("mariadb", { format: "STATEMENT", strict: 0 })),
    ).resolves.toMatchObject({
      binlogDir: "/var/lib/mysql",
      statusStatement: "SHOW MASTER STATUS",
    });
    await expect(readServerFacts(server("mysql"))).resolves.toMatchObject({
      statusStatement: "SHOW BINARY LOG STATUS",
      replicaStatusStatement: "SHOW REPLICA STATUS",
    });
  });
});
