/**
 * Which lock mode a MariaDB server proves, from its answers as a 10.11 replica gives them (recorded on the
 * lab replica): the settings and tables that rule out a lock-free snapshot are each named, a configured mode
 * the server cannot prove is refused (never weakened), and `auto` takes the least blocking proven mode.
 * MySQL's answers are in backup-dialect-mysql8.test.ts.
 */
import { lockModeOf, parseBackupConfig, type LockMode } from "../../contracts";
import {
  chooseLockMode,
  crashSafetyObstacles,
  needsCrashSafety,
  readCrashSafetyFacts,
  type CrashSafetyFacts,
} from "../../hostscripts/common/lockmode";
import type { Query } from "../../hostscripts/common/dialect";
import { PipelineError } from "../../hostscripts/common/errors";

/** The lab replica's non-InnoDB objects, as information_schema lists them (name, engine, create options). */
const LAB_NON_INNODB = [
  ["mysql", "column_stats", "Aria", "transactional=0"],
  ["mysql", "db", "Aria", "transactional=1"],
  ["mysql", "general_log", "CSV", ""],
  ["mysql", "global_priv", "Aria", "transactional=1"],
  ["mysql", "help_topic", "Aria", "transactional=0"],
  ["mysql", "proc", "Aria", "transactional=1"],
  ["mysql", "slow_log", "CSV", ""],
];

/** A MariaDB 10.11 replica answering like the lab's, with `extra` objects and `rows` per object. */
function mariadb(
  settings: {
    flushLog?: number;
    syncBinlog?: number;
    logBin?: number;
    logSlaveUpdates?: number;
    usingGtid?: string | null;
  } = {},
  extra: string[][] = [],
  rows: Record<string, number> = {},
) {
  const asked: string[] = [];
  const query: Query = async (sql) => {
    const statement = sql.replace(/\s+/g, " ").trim();
    asked.push(statement);
    if (statement.startsWith("SELECT @@innodb_flush_log_at_trx_commit")) {
      return [
        {
          flushLog: settings.flushLog ?? 1,
          syncBinlog: settings.syncBinlog ?? 1,
          logBin: settings.logBin ?? 1,
          logSlaveUpdates: settings.logSlaveUpdates ?? 1,
        },
      ];
    }
    if (statement === "SHOW SLAVE STATUS") {
      return settings.usingGtid === null ? [] : [{ Using_Gtid: settings.usingGtid ?? "Slave_Pos" }];
    }
    if (statement.includes("ENGINE <> 'InnoDB'")) {
      return [...LAB_NON_INNODB, ...extra].map(([s, t, e, o]) => ({ s, t, e, o }));
    }
    const lookup = /TABLE_SCHEMA = '([^']+)' AND TABLE_NAME = '([^']+)'/.exec(statement);
    if (lookup !== null) return [{ n: rows[`${lookup[1]}.${lookup[2]}`] ?? 0 }];
    throw new Error(`unexpected statement: ${statement}`);
  };
  return { query, asked };
}

async function facts(server: ReturnType<typeof mariadb>): Promise<CrashSafetyFacts> {
  return readCrashSafetyFacts(server.query, "mariadb");
}

async function choose(server: ReturnType<typeof mariadb>, requested: "auto" | LockMode = "auto") {
  return chooseLockMode(requested, "mariadb", crashSafetyObstacles(await facts(server)));
}

async function refusal(server: ReturnType<typeof mariadb>, requested: LockMode): Promise<PipelineError> {
  const error = await choose(server, requested).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PipelineError);
  return error as PipelineError;
}

test("an InnoDB-only replica with the crash-safe settings: auto takes no lock, and says why", async () => {
  const choice = await choose(mariadb());
  expect(choice).toEqual({
    mode: "none",
    chosenBy: "auto",
    reason: "every table that holds data is crash-safe and the server is configured crash-safe",
    obstacles: [],
  });
});

test("MariaDB's own Aria tables, statistics and log tables never rule it out; their rows are not even read", async () => {
  const server = mariadb();
  await choose(server);
  expect(server.asked.filter((s) => s.includes("TABLE_ROWS"))).toEqual([]);
});

test("a MyISAM table with rows: none is refused naming it, auto takes BACKUP STAGE BLOCK_COMMIT", async () => {
  const server = mariadb({}, [["app", "sessions", "MyISAM", ""]], { "app.sessions": 500 });
  const error = await refusal(server, "none");
  expect(error.kind).toBe("LockModeRefused");
  expect(error.exitCode).toBe(14);
  expect(error.message).toContain(
    'lockMode "none" is not safe on this server: app.sessions (MyISAM, 500 rows)',
  );
  expect(error.message).toContain("not crash-safe");
  expect(error.hint).toContain("nothing was locked");
  const auto = await choose(server);
  expect(auto).toMatchObject({ mode: "commit", chosenBy: "auto" });
  expect(auto.reason).toContain("app.sessions (MyISAM, 500 rows)");
  // BLOCK_COMMIT holds MyISAM writes too (from BACKUP STAGE FLUSH on): a configured commit stands.
  expect((await choose(server, "commit")).mode).toBe("commit");
  expect((await choose(server, "global")).mode).toBe("global");
});

test("an Aria TRANSACTIONAL=1 table with rows rules it out too: its recovery is not tied to the position", async () => {
  const server = mariadb({}, [["app", "audit", "Aria", "transactional=1"]], { "app.audit": 3 });
  const error = await refusal(server, "none");
  expect(error.message).toContain("app.audit (Aria, TRANSACTIONAL=1, 3 rows)");
  expect(error.message).toContain("not together with the replication position");
});

test("empty non-InnoDB tables and engines without local data do not rule it out", async () => {
  const server = mariadb(
    {},
    [
      ["app", "staging", "MyISAM", ""],
      ["app", "cache", "MEMORY", ""],
      ["app", "sink", "BLACKHOLE", ""],
    ],
    { "app.cache": 12 },
  );
  expect((await choose(server)).mode).toBe("none");
});

test("each setting that is not crash-safe is named on its own", async () => {
  const flush = await refusal(mariadb({ flushLog: 2 }), "none");
  expect(flush.message).toContain("innodb_flush_log_at_trx_commit=2");
  expect(flush.message).not.toContain("sync_binlog");
  const sync = await refusal(mariadb({ syncBinlog: 0 }), "none");
  expect(sync.message).toContain("sync_binlog=0");
  expect(sync.message).not.toContain("innodb_flush_log_at_trx_commit");
  // A primary without a binary log has nothing to sync and no replica position to bound.
  expect((await choose(mariadb({ syncBinlog: 0, logBin: 0, usingGtid: null }))).mode).toBe("none");
  // A replica must log what it applies: that is what bounds the position read after the snapshot.
  const silent = await refusal(mariadb({ logSlaveUpdates: 0 }), "none");
  expect(silent.message).toContain("log_slave_updates=OFF");
  expect((await refusal(mariadb({ logBin: 0 }), "none")).message).toContain("log_bin=OFF");
  const fileBased = await refusal(mariadb({ usingGtid: "No" }), "none");
  expect(fileBased.message).toContain("Using_Gtid=No");
  // A server that is not a replica has no replica position to keep.
  expect((await choose(mariadb({ usingGtid: null }))).mode).toBe("none");
});

test("a replica position kept outside InnoDB is named", async () => {
  const server = mariadb({}, [["mysql", "gtid_slave_pos", "Aria", "transactional=0"]]);
  const error = await refusal(server, "none");
  expect(error.message).toContain("mysql.gtid_slave_pos (Aria)");
});

test("on MariaDB only none needs the proof; on MySQL commit needs it too", () => {
  expect(needsCrashSafety("none", "mariadb")).toBe(true);
  expect(needsCrashSafety("commit", "mariadb")).toBe(false);
  expect(needsCrashSafety("commit", "mysql")).toBe(true);
  expect(needsCrashSafety("global", "mysql")).toBe(false);
});

test("lockMode in backup.json: the four values pass, anything else is refused naming the key", () => {
  const base = {
    cluster: "orders",
    host: "db-replica-1",
    mysql: { optionFile: "/etc/mysql-backup/client.cnf" },
    snapshot: { driver: "btrfs", subvolume: "/var/lib/mysql", snapshotDir: "/var/lib/.snapshots" },
    localDir: "/var/backups/mysql",
    s3: { bucket: "acme-mysql-backups" },
    sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/verify" },
  };
  for (const lockMode of ["auto", "none", "commit", "global"]) {
    expect(parseBackupConfig({ ...base, lockMode }).lockMode).toBe(lockMode);
  }
  expect(parseBackupConfig(base).lockMode).toBeUndefined();
  expect(() => parseBackupConfig({ ...base, lockMode: "fast" })).toThrow(/lockMode/);
});

test("a manifest written before lock modes reads as the mode its lock method was", () => {
  expect(lockModeOf({ lock: { method: "FLUSH TABLES WITH READ LOCK", ms: 20 } })).toBe("global");
  expect(lockModeOf({ lock: { method: "LOCK INSTANCE FOR BACKUP", ms: 20 } })).toBe("commit");
  expect(lockModeOf({ lock: { method: "none", ms: 0, mode: "none" } })).toBe("none");
});
