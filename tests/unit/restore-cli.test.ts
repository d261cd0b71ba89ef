/**
 * The decisions of `mysql-backup restore`: its arguments, which backup it picks, the statements that rejoin
 * the cluster, the server settings, and what of the source's replication state it removes (on a real
 * directory).
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContractError, parseRestoreConfig, parseVerifyConfig, type BackupManifest } from "../../contracts";
import { PipelineError } from "../../hostscripts/common/errors";
import { parseCommandLine } from "../../hostscripts/common/args";
import type { Subcommand } from "../../hostscripts/common/command";
import { parseRestoreArgs, restoreCommand } from "../../hostscripts/restore/command";
import { chooseBackup, summarizeList, type ListedBackup } from "../../hostscripts/restore/list";
import { replicationStatements, restoredServerOptions } from "../../hostscripts/restore/restore";
import { removeReplicationState } from "../../hostscripts/restore/scratch-server";

/** `restore`'s arguments as the CLI parses them, then as the command reads them. */
const restoreArgs = (argv: string[]) =>
  parseRestoreArgs(parseCommandLine(restoreCommand as unknown as Subcommand<unknown>, argv).flags);

describe("arguments", () => {
  test("list, or a target with an optional backup and --force", () => {
    expect(restoreArgs(["list"])).toEqual({ action: "list" });
    expect(restoreArgs(["--target", "/srv/mysql"])).toEqual({
      action: "restore",
      target: "/srv/mysql",
      backupId: null,
      force: false,
      until: null,
    });
    expect(restoreArgs(["--backup=20261124T020000Z-3fa9c1", "--target=/srv/mysql", "--force"])).toEqual({
      action: "restore",
      target: "/srv/mysql",
      backupId: "20261124T020000Z-3fa9c1",
      force: true,
      until: null,
    });
  });

  test("--until TIME|latest and --until-gtid name the point of a point-in-time restore", () => {
    const at = (args: string[]) =>
      (restoreArgs(["--target", "/srv/mysql", ...args]) as { until: unknown }).until;
    expect(at(["--until", "2026-11-30T16:30:05.250Z"])).toEqual({
      kind: "time",
      at: new Date("2026-11-30T16:30:05.250Z"),
    });
    expect(at(["--until=2026-11-30 16:30:05"])).toEqual({
      kind: "time",
      at: new Date("2026-11-30T16:30:05Z"),
    });
    expect(at(["--until", "2026-11-30T18:30:05+02:00"])).toEqual({
      kind: "time",
      at: new Date("2026-11-30T16:30:05Z"),
    });
    expect(at(["--until", "latest"])).toEqual({ kind: "latest" });
    const gtid = at(["--until-gtid", "0-1-1234,1-2-7"]) as { kind: string; gtid: { toString(): string } };
    expect([gtid.kind, gtid.gtid.toString()]).toEqual(["gtid", "0-1-1234,1-2-7"]);
    const mysql = at(["--until-gtid", "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-23"]) as {
      gtid: { toString(): string };
    };
    expect(mysql.gtid.toString()).toBe("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-23");
  });

  test("a point that is not one is a usage error naming what to give", () => {
    expect(() => restoreArgs(["--target", "/x", "--until", "yesterday"])).toThrow(
      /--until "yesterday" is not a time/,
    );
    expect(() => restoreArgs(["--target", "/x", "--until-gtid", "0-1"])).toThrow(
      /--until-gtid 0-1: "0-1" is not a GTID/,
    );
    expect(() => restoreArgs(["--target", "/x", "--until", "latest", "--until-gtid", "0-1-2"])).toThrow(
      /give --until or --until-gtid, not both/,
    );
  });

  test("no target, a relative target or a stray word is a usage error that shows the usage", () => {
    expect(() => restoreArgs([])).toThrow(/needs --target DIR/);
    expect(() => restoreArgs(["--target", "data"])).toThrow(/absolute path/);
    expect(() => restoreArgs(["--target", "/x", "now"])).toThrow(/unexpected argument "now"/);
    expect(() => restoreArgs(["list", "--target", "/x"])).toThrow(/restore list takes no --target/);
    expect(() => restoreArgs(["list", "now"])).toThrow(/unexpected argument "now"/);
    const error = (() => {
      try {
        restoreArgs(["lst"]);
      } catch (thrown) {
        return thrown;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(PipelineError);
    expect((error as PipelineError).message).toMatch(/unexpected argument "lst"/);
    expect((error as PipelineError).hint).toMatch(/restore --config FILE list/);
  });
});

describe("the config", () => {
  const verify = {
    sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/1/q" },
    scratchDir: "/var/lib/scratch",
  };
  const restore = { bucket: "acme-mysql-backups", cluster: "orders" };

  test("restore needs the restore section; verify accepts and ignores it", () => {
    expect(parseRestoreConfig({ ...verify, restore }).restore).toEqual(restore);
    expect(() => parseRestoreConfig(verify)).toThrow(ContractError);
    expect(() => parseRestoreConfig(verify)).toThrow(/restore/);
    expect(parseVerifyConfig({ ...verify, restore }).restore).toEqual(restore);
    expect(() => parseRestoreConfig({ ...verify, restore: { ...restore, cluster: "Orders!" } })).toThrow(
      /cluster/,
    );
  });
});

const backup = (backupId: string, verdict: ListedBackup["verdict"], complete = true): ListedBackup => ({
  backupId,
  host: "replica1",
  manifestKey: `backups/orders/replica1/${backupId}/manifest.json`,
  complete,
  verdict,
  verifiedAt: verdict === null ? null : "2026-11-24T03:00:00.000Z",
  drift: null,
  objects: null,
});

test("the list shows every backup's verdict and its drift under it", () => {
  const listed = summarizeList("orders", [
    { ...backup("20261124T020000Z-000002", "verified"), drift: "shop.orders vanished (had 500 rows in x)" },
    backup("20261124T010000Z-000001", null, false),
  ]);
  expect(listed.split("\n")).toEqual([
    "BACKUP                   HOST             VERDICT        VERIFIED AT",
    "20261124T020000Z-000002  replica1         verified       2026-11-24T03:00:00.000Z",
    "                         drift: shop.orders vanished (had 500 rows in x)",
    "20261124T010000Z-000001  replica1         INCOMPLETE",
  ]);
  expect(summarizeList("orders", [])).toBe("cluster orders has no backups");
});

describe("which backup is restored", () => {
  // Newest first, as listBackups returns them.
  const backups = [
    backup("20261124T040000Z-000004", null),
    backup("20261124T030000Z-000003", "failed"),
    backup("20261124T020000Z-000002", "verified", false),
    backup("20261124T010000Z-000001", "verified"),
    backup("20261124T000000Z-000000", "verified"),
  ];

  test("by default the newest complete verified one, skipping unverified, failed and incomplete ones", () => {
    expect(chooseBackup(backups, null, "orders").backupId).toBe("20261124T010000Z-000001");
  });

  test("a named one, also when it is not verified yet", () => {
    expect(chooseBackup(backups, "20261124T040000Z-000004", "orders").verdict).toBeNull();
  });

  test("never a failed, incomplete or unknown one, and not when nothing is verified", () => {
    expect(() => chooseBackup(backups, "20261124T030000Z-000003", "orders")).toThrow(/failed verification/);
    expect(() => chooseBackup(backups, "20261124T020000Z-000002", "orders")).toThrow(/incomplete/);
    expect(() => chooseBackup(backups, "20261124T050000Z-000005", "orders")).toThrow(/no backup/);
    expect(() => chooseBackup(backups.slice(0, 2), null, "orders")).toThrow(
      /cluster orders has no verified backup \(2 backups found\)/,
    );
  });
});

function manifest(flavor: "mariadb" | "mysql", source: BackupManifest["position"]["source"]): BackupManifest {
  return {
    server: { flavor, version: flavor === "mysql" ? "8.0.36" : "10.11.6", serverId: 2 },
    settings: {
      innodbPageSize: 16384,
      lowerCaseTableNames: 0,
      logBinBasename: "/srv/mnt/replica/data/mysql-bin",
      logBinIndex: "/srv/mnt/replica/data/mysql-bin.index",
      datadir: "/srv/mnt/replica/data/",
      innodbLogFileSize: null,
      innodbDataFilePath: null,
    },
    position: {
      gtidBinlogPos: flavor === "mariadb" ? "0-1-1500" : null,
      gtidSlavePos: flavor === "mariadb" && source !== null ? "0-1-1498" : null,
      gtidCurrentPos: null,
      gtidExecuted: flavor === "mysql" ? "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-1500" : null,
      binlog: { file: "mysql-bin.000003", pos: 4711 },
      source,
    },
    snapshot: { driver: "btrfs", name: "s", sourceRoot: "/srv/mnt/replica" },
  } as BackupManifest;
}

const source = {
  host: "db-primary.internal",
  port: 3306,
  file: "mysql-bin.000009",
  pos: 120,
  usingGtid: "Slave_Pos",
};

describe("rejoining the cluster", () => {
  test("MariaDB: the replica's slave position, then MASTER_USE_GTID=slave_pos against its source", () => {
    expect(replicationStatements(manifest("mariadb", source))).toEqual([
      "STOP SLAVE",
      "RESET SLAVE ALL",
      "SET GLOBAL gtid_slave_pos = '0-1-1498'",
      "CHANGE MASTER TO MASTER_HOST='db-primary.internal', MASTER_PORT=3306, MASTER_USER='<replication user>', MASTER_PASSWORD='<replication password>', MASTER_USE_GTID=slave_pos",
      "START SLAVE",
    ]);
  });

  test("MariaDB backup of a primary: its binlog position, and the source host left to fill in", () => {
    const statements = replicationStatements(manifest("mariadb", null));
    expect(statements[2]).toBe("SET GLOBAL gtid_slave_pos = '0-1-1500'");
    expect(statements[3]).toMatch(/^CHANGE MASTER TO MASTER_HOST='<source host>', MASTER_PORT=3306,/);
  });

  test("MySQL: the restored gtid_executed is the position, so auto-positioning", () => {
    expect(replicationStatements(manifest("mysql", source))).toEqual([
      "STOP REPLICA",
      "RESET REPLICA ALL",
      "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db-primary.internal', SOURCE_PORT=3306, SOURCE_USER='<replication user>', SOURCE_PASSWORD='<replication password>', SOURCE_AUTO_POSITION=1",
      "START REPLICA",
    ]);
  });

  test("a quote in the source host cannot break out of the statement", () => {
    const statements = replicationStatements(
      manifest("mariadb", { ...source, host: "x', MASTER_SSL=0 -- " }),
    );
    expect(statements[3]).toContain("MASTER_HOST='x'', MASTER_SSL=0 -- '");
  });

  test("server settings: the source's layout below the target, a new server id, no replication at start", () => {
    const options = restoredServerOptions(manifest("mariadb", source), "/var/lib/mysql-restore");
    expect(options).toEqual([
      "datadir=/var/lib/mysql-restore/data",
      "innodb_page_size=16384",
      "lower_case_table_names=0",
      "server_id=4000000000",
      "log_bin=/var/lib/mysql-restore/data/mysql-bin",
      "log_bin_index=/var/lib/mysql-restore/data/mysql-bin.index",
      "skip_slave_start=ON",
    ]);
    expect(restoredServerOptions(manifest("mysql", source), "/r")).toEqual(
      expect.arrayContaining(["gtid_mode=ON", "enforce_gtid_consistency=ON", "skip_replica_start=ON"]),
    );
  });
});

test("the source replica's connection and relay logs are removed; its data and binlogs stay", async () => {
  const datadir = await mkdtemp(join(tmpdir(), "restore-datadir-"));
  try {
    const files = [
      "master.info",
      "relay-log.info",
      "multi-master.info",
      "relay-bin.index",
      "relay-bin.000001",
      "relay-bin.000002",
      "mysql-bin.000001",
      "mysql-bin.index",
      "ibdata1",
      "aria_log.00000001",
    ];
    for (const file of files) await writeFile(join(datadir, file), "x");
    await writeFile(join(datadir, "relay-bin.index"), `${datadir}/relay-bin.000001\n./relay-bin.000002\n`);
    const removed = await removeReplicationState(datadir);
    expect(removed.sort()).toEqual(
      [
        "master.info",
        "multi-master.info",
        "relay-bin.000001",
        "relay-bin.000002",
        "relay-bin.index",
        "relay-log.info",
      ].sort(),
    );
    expect((await readdir(datadir)).sort()).toEqual(
      ["aria_log.00000001", "ibdata1", "mysql-bin.000001", "mysql-bin.index"].sort(),
    );
  } finally {
    await rm(datadir, { recursive: true, force: true });
  }
});
