/** The manifest the backup builds (validated on write), the dialect's reading of server output, and retention. */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContractError, type ArchivedFile, type BackupConfig, type LockMode } from "../../contracts";
import { buildManifest } from "../../hostscripts/backup/manifest";
import { dialectFor, readServerFacts, type Query } from "../../hostscripts/common/dialect";
import { memoryLogger } from "../../hostscripts/common/log";
import { backupsToRemove, pruneLocalBackups } from "../../hostscripts/backup/retention";
import {
  archiveBoundFor,
  effectiveQueueSize,
  encryptionOf,
  partSizeFor,
} from "../../hostscripts/backup/upload";
import { oneChunkArchive } from "../support/archive";

const config: BackupConfig = {
  cluster: "prod-eu",
  host: "db-replica-1",
  mysql: { optionFile: "/etc/mysql-backup/client.cnf" },
  snapshot: { driver: "btrfs", subvolume: "/srv/mysql", snapshotDir: "/srv/.snapshots" },
  localDir: "/var/backups/mysql",
  s3: { bucket: "acme-mysql-backups" },
  sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/mysql-backup-verify" },
};

/** What MariaDB 10.11 answers, as recorded on the lab replica. */
const recorded: Record<string, Record<string, unknown>[]> = {
  facts: [
    {
      version: "10.11.6-MariaDB-0+deb12u1-log",
      serverId: "2",
      datadir: "/srv/mysql/data/",
      logBin: "1",
      logBinBasename: "/srv/mysql/data/mysql-bin",
      logBinIndex: "/srv/mysql/data/mysql-bin.index",
      pageSize: "16384",
      lowerCase: "0",
      logFileSize: "100663296",
      dataFilePath: "ibdata1:12M:autoextend",
      logDir: "./",
      undoDir: "./",
      dataHomeDir: "",
    },
  ],
  gtid: [{ binlogPos: "0-1-1042", slavePos: "0-1-1042", currentPos: "0-1-1042" }],
  master: [{ File: "mysql-bin.000002", Position: "48213", Binlog_Do_DB: "", Binlog_Ignore_DB: "" }],
  slave: [
    {
      Master_Host: "10.0.1.5",
      Master_Port: "3306",
      Relay_Master_Log_File: "mysql-bin.000007",
      Exec_Master_Log_Pos: "99123",
      Using_Gtid: "Slave_Pos",
    },
  ],
};

const replay: Query = async (sql) => {
  if (sql.includes("@@datadir")) return recorded.facts;
  if (sql.includes("@@aria_log_dir_path")) return [{ ariaLogDir: "/srv/mysql/data/" }];
  if (sql.includes("@@gtid_binlog_pos")) return recorded.gtid;
  if (sql === "SHOW MASTER STATUS") return recorded.master;
  if (sql === "SHOW SLAVE STATUS") return recorded.slave;
  throw new Error(`unexpected statement ${sql}`);
};

const where = { cluster: "prod-eu", host: "db-replica-1", backupId: "20261124T020000Z-3fa9c1" };
const archive = (files: ArchivedFile[]) =>
  oneChunkArchive(where, { bytes: 1234, rawBytes: files.reduce((n, f) => n + f.bytes, 0), files });

async function parts(mode: LockMode = "global") {
  const facts = await readServerFacts(replay);
  const dialect = dialectFor(facts.versionString);
  const plan = dialect.lockPlan(mode);
  const position = await plan.capturePosition(replay);
  return {
    backupId: "20261124T020000Z-3fa9c1",
    startedAt: new Date("2026-11-24T02:00:00Z"),
    completedAt: new Date("2026-11-24T02:01:00Z"),
    facts,
    dialect,
    lock: { plan, choice: { chosenBy: "auto" as const, reason: "MyISAM tables hold data" } },
    lockMs: 42.5,
    frozen: {
      position,
      positionAfter: plan.holdsCommits ? null : { ...position, gtidSlavePos: "0-1-1050" },
      tables: [
        { schema: "sbtest", table: "sbtest1", engine: "InnoDB", type: "BASE TABLE" as const },
        { schema: "app", table: "order_ids", engine: "InnoDB", type: "SEQUENCE" as const },
        {
          schema: "app",
          table: "prices",
          engine: "InnoDB",
          type: "SYSTEM VERSIONED" as const,
          partitioned: true,
        },
      ],
      snapshot: {
        name: "mysql-backup-20261124T020000Z-3fa9c1",
        path: "/srv/.snapshots/mysql-backup-20261124T020000Z-3fa9c1",
      },
    },
    sourceRoot: "/srv/mysql",
    ...archive([{ path: "data/ibdata1", bytes: 5678, sha256: "b".repeat(64) }]),
    retention: "monthly" as const,
  };
}

test("a manifest built from MariaDB's answers validates and carries the position captured", async () => {
  const manifest = buildManifest(config, await parts());
  expect(manifest.server).toEqual({ flavor: "mariadb", version: "10.11.6", serverId: 2 });
  expect(manifest.settings).toEqual({
    innodbPageSize: 16384,
    lowerCaseTableNames: 0,
    logBinBasename: "/srv/mysql/data/mysql-bin",
    logBinIndex: "/srv/mysql/data/mysql-bin.index",
    datadir: "/srv/mysql/data",
    innodbLogFileSize: 100663296,
    innodbDataFilePath: "ibdata1:12M:autoextend",
  });
  expect(manifest.position).toEqual({
    gtidBinlogPos: "0-1-1042",
    gtidSlavePos: "0-1-1042",
    gtidCurrentPos: "0-1-1042",
    gtidExecuted: null,
    binlog: { file: "mysql-bin.000002", pos: 48213 },
    source: { host: "10.0.1.5", port: 3306, file: "mysql-bin.000007", pos: 99123, usingGtid: "Slave_Pos" },
  });
  expect(manifest.lock).toEqual({
    method: "FLUSH TABLES WITH READ LOCK",
    ms: 42.5,
    mode: "global",
    chosenBy: "auto",
    reason: "MyISAM tables hold data",
  });
  expect(manifest.positionAfter).toBeUndefined();
  expect(manifest.retention).toBe("monthly");
  expect(manifest.tables.map((t) => [t.table, t.type, t.partitioned ?? false])).toEqual([
    ["sbtest1", "BASE TABLE", false],
    ["order_ids", "SEQUENCE", false],
    ["prices", "SYSTEM VERSIONED", true],
  ]);
  expect(manifest.snapshot).toEqual({
    driver: "btrfs",
    name: "mysql-backup-20261124T020000Z-3fa9c1",
    sourceRoot: "/srv/mysql",
  });
});

test("the replica's position is the one its gtid_slave_pos table holds, which recovery loads", async () => {
  // The variable is updated after the applier's commit: under the lock it can lag the table by a transaction.
  const answered: Query = async (sql) =>
    sql.includes("FROM mysql.gtid_slave_pos") ? [{ pos: "0-1-1043" }] : replay(sql);
  const plan = dialectFor("10.11.6-MariaDB-0+deb12u1").lockPlan("commit");
  expect(await plan.capturePosition(answered)).toMatchObject({
    gtidSlavePos: "0-1-1043",
    gtidBinlogPos: "0-1-1042",
  });
  // An empty table is no position, as the variable says it; an unreadable one leaves the variable's.
  const empty: Query = async (sql) =>
    sql.includes("FROM mysql.gtid_slave_pos") ? [{ pos: null }] : replay(sql);
  expect((await plan.capturePosition(empty)).gtidSlavePos).toBe("");
  expect((await plan.capturePosition(replay)).gtidSlavePos).toBe("0-1-1042");
});

test("a manifest with a path escaping the archive is refused before upload", async () => {
  const bad = await parts();
  Object.assign(bad, archive([{ path: "../etc/passwd", bytes: 1, sha256: "c".repeat(64) }]));
  expect(() => buildManifest(config, bad)).toThrow(ContractError);
});

test("InnoDB directories resolve against the datadir", async () => {
  const facts = await readServerFacts(async () => [
    { ...recorded.facts[0], logDir: "/srv/mysql/redo/", undoDir: "undo", dataHomeDir: "./" },
  ]);
  expect(facts.innodbLogDir).toBe("/srv/mysql/redo");
  expect(facts.innodbUndoDir).toBe("/srv/mysql/data/undo");
  expect(facts.innodbDataHomeDir).toBe("/srv/mysql/data");
});

test("a lock-free manifest records the mode and the position read after the snapshot", async () => {
  const manifest = buildManifest(config, { ...(await parts("none")), lockMs: 0 });
  expect(manifest.lock).toMatchObject({ method: "none", ms: 0, mode: "none" });
  expect(manifest.positionAfter?.gtidSlavePos).toBe("0-1-1050");
  expect(manifest.position.gtidSlavePos).toBe("0-1-1042");
});

test("each lock mode's statements follow @@version", () => {
  const statements = (version: string, mode: LockMode) => {
    const plan = dialectFor(version).lockPlan(mode);
    return [plan.method, plan.lockStatements, plan.unlockStatement, plan.holdsCommits];
  };
  const mariadb = "10.11.6-MariaDB-0+deb12u1-log";
  expect(statements(mariadb, "global")).toEqual([
    "FLUSH TABLES WITH READ LOCK",
    ["FLUSH TABLES WITH READ LOCK"],
    "UNLOCK TABLES",
    true,
  ]);
  expect(statements(mariadb, "commit")).toEqual([
    "BACKUP STAGE BLOCK_COMMIT",
    ["BACKUP STAGE START", "BACKUP STAGE FLUSH", "BACKUP STAGE BLOCK_DDL", "BACKUP STAGE BLOCK_COMMIT"],
    "BACKUP STAGE END",
    true,
  ]);
  expect(statements(mariadb, "none")).toEqual(["none", [], null, false]);
  // MySQL's backup lock lets commits through: the position is read around the snapshot.
  expect(statements("8.0.36", "commit")).toEqual([
    "LOCK INSTANCE FOR BACKUP",
    ["LOCK INSTANCE FOR BACKUP"],
    "UNLOCK INSTANCE",
    false,
  ]);
  expect(statements("8.4.3", "global")[3]).toBe(true);
});

test("retention keeps the newest N backup directories and touches nothing else", async () => {
  const names = [
    "20261122T020000Z-aaaaaa",
    "20261124T020000Z-cccccc",
    "lost+found",
    "20261123T020000Z-bbbbbb",
    "20261121T020000Z-ffffff",
    "notes",
  ];
  expect(backupsToRemove(names, 2)).toEqual(["20261121T020000Z-ffffff", "20261122T020000Z-aaaaaa"]);
  expect(backupsToRemove(names, 10)).toEqual([]);
  expect(backupsToRemove(names, 0)).toHaveLength(4);

  const dir = await mkdtemp(join(tmpdir(), "backup-retention-"));
  try {
    for (const name of names) await mkdir(join(dir, name));
    await writeFile(join(dir, "20261120T020000Z-eeeeee"), "a file, not a backup dir");
    const removed = await pruneLocalBackups(dir, 2, memoryLogger());
    expect(removed).toEqual(["20261121T020000Z-ffffff", "20261122T020000Z-aaaaaa"]);
    expect((await readdir(dir)).sort()).toEqual([
      "20261120T020000Z-eeeeee",
      "20261123T020000Z-bbbbbb",
      "20261124T020000Z-cccccc",
      "lost+found",
      "notes",
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("uploads stay within the memory budget and always ask for SSE-KMS", () => {
  const MiB = 1024 * 1024;
  expect(partSizeFor(100 * MiB, 8)).toBe(8 * MiB);
  expect(partSizeFor(1024 * 1024 * MiB, 8)).toBe(105 * MiB); // 1 TiB: 10,000 parts need 104.9 MiB each
  expect(effectiveQueueSize(4, 8 * MiB)).toBe(4);
  expect(effectiveQueueSize(4, 16 * MiB)).toBe(4);
  expect(effectiveQueueSize(4, 32 * MiB)).toBe(2);
  expect(effectiveQueueSize(4, 64 * MiB)).toBe(1);
  expect(effectiveQueueSize(4, 512 * MiB)).toBe(1);
  // The part size is chosen before the archive exists, from a bound on what the data can compress to.
  expect(archiveBoundFor(100 * MiB)).toBeGreaterThan(100 * MiB);
  expect(archiveBoundFor(0, 1000)).toBeGreaterThanOrEqual(1000 * 1024);
  expect(encryptionOf({ bucket: "b", partSizeMiB: 8, queueSize: 1 })).toEqual({
    ServerSideEncryption: "aws:kms",
  });
  expect(encryptionOf({ bucket: "b", kmsKeyId: "alias/backups", partSizeMiB: 8, queueSize: 1 })).toEqual({
    ServerSideEncryption: "aws:kms",
    SSEKMSKeyId: "alias/backups",
  });
});
