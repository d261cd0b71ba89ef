/**
 * The MySQL 8.0/8.4 dialect and lock-mode proof against recorded server outputs (tests/fixtures/mysql8/):
 * which mode a server proves, which statements each mode issues, and the position it reads. The fake server
 * answers only the statements its fixture holds and fails like MySQL on any other, so a statement 8.4
 * removed is caught.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LockMode } from "../../contracts";
import {
  chooseLockMode,
  crashSafetyObstacles,
  readCrashSafetyFacts,
} from "../../hostscripts/common/lockmode";
import { dialectFor, readServerFacts, type Query } from "../../hostscripts/common/dialect";
import { mysqlMissing } from "../../hostscripts/common/gtid";
import { PipelineError } from "../../hostscripts/common/errors";

interface Fixture {
  version: string;
  responses: Record<string, Record<string, unknown>[]>;
}

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(join(__dirname, "..", "fixtures", "mysql8", name), "utf8")) as Fixture;
}

/**
 * A server that answers from a fixture (by statement prefix) and records what it was asked; `nonInnodb`
 * replaces the fixture's list of non-InnoDB tables and `rows` answers their TABLE_ROWS lookups.
 */
function recordedServer(
  f: Fixture,
  nonInnodb?: Record<string, unknown>[],
  rows: Record<string, number> = {},
) {
  const statements: string[] = [];
  const query: Query = async (sql) => {
    const statement = sql.replace(/\s+/g, " ").trim();
    statements.push(statement);
    if (nonInnodb !== undefined && statement.includes("ENGINE <> 'InnoDB'")) return nonInnodb;
    const lookup = /TABLE_SCHEMA = '([^']+)' AND TABLE_NAME = '([^']+)'/.exec(statement);
    if (lookup !== null) return [{ n: rows[`${lookup[1]}.${lookup[2]}`] ?? 0 }];
    const key = Object.keys(f.responses).find((k) => statement.startsWith(k));
    if (key === undefined) {
      throw Object.assign(new Error(`You have an error in your SQL syntax near '${statement}'`), {
        errno: 1064,
      });
    }
    return f.responses[key];
  };
  return { statements, query };
}

const myisam = [{ s: "app", t: "sessions", e: "MyISAM", o: "" }];

/** The lock mode `auto` or `requested` picks on a recorded server. */
async function modeOn(server: ReturnType<typeof recordedServer>, requested: "auto" | LockMode = "auto") {
  const facts = await readCrashSafetyFacts(server.query, "mysql");
  return chooseLockMode(requested, "mysql", crashSafetyObstacles(facts));
}

test("8.0, all InnoDB and crash-safe: auto needs no lock at all", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"));
  expect(await modeOn(server)).toMatchObject({ mode: "none", chosenBy: "auto", obstacles: [] });
  // information_schema's row counts are cached for a day by default: the backup asks for fresh ones.
  expect(server.statements[0]).toBe("SET SESSION information_schema_stats_expiry = 0");
});

test("8.0 commit: LOCK INSTANCE FOR BACKUP, the position from one consistent read of log_status", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"));
  expect((await modeOn(server, "commit")).mode).toBe("commit");
  const plan = dialectFor("8.0.36").lockPlan("commit");
  expect(plan).toMatchObject({
    method: "LOCK INSTANCE FOR BACKUP",
    lockStatements: ["LOCK INSTANCE FOR BACKUP"],
    unlockStatement: "UNLOCK INSTANCE",
    holdsCommits: false,
  });
  server.statements.length = 0;
  expect(await plan.capturePosition(server.query)).toEqual({
    gtidBinlogPos: null,
    gtidSlavePos: null,
    gtidCurrentPos: null,
    gtidExecuted: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5093,5e5d0a55-ae4a-11e8-8ff8-0800272b0f6e:1-17",
    binlog: { file: "binlog.000012", pos: 8653 },
    source: {
      host: "db-primary.internal",
      port: 3306,
      file: "binlog.000431",
      pos: 91772331,
      usingGtid: "1",
    },
  });
  expect(server.statements).toEqual([
    "SELECT LOCAL FROM performance_schema.log_status",
    "SHOW REPLICA STATUS",
  ]);
});

test("8.0 with a MyISAM table that holds rows: auto takes FTWRL, none and commit are refused naming it", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"), myisam, { "app.sessions": 500 });
  const choice = await modeOn(server);
  expect(choice).toMatchObject({ mode: "global", chosenBy: "auto" });
  expect(choice.reason).toContain("app.sessions (MyISAM, 500 rows)");
  for (const requested of ["none", "commit"] as const) {
    const refused = await modeOn(server, requested).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PipelineError);
    expect((refused as PipelineError).kind).toBe("LockModeRefused");
    expect((refused as PipelineError).exitCode).toBe(14);
    expect((refused as PipelineError).message).toContain("app.sessions (MyISAM, 500 rows)");
  }
  const plan = dialectFor("8.0.36-log").lockPlan(choice.mode);
  server.statements.length = 0;
  const position = await plan.capturePosition(server.query);
  expect(position.binlog).toEqual({ file: "binlog.000012", pos: 8653 });
  expect(server.statements).toEqual([
    "SELECT @@global.gtid_executed AS executed",
    "SHOW MASTER STATUS",
    "SHOW REPLICA STATUS",
  ]);
});

test("an empty MyISAM table does not rule out a lock-free backup (it is checked again after the snapshot)", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"), myisam, { "app.sessions": 0 });
  expect((await modeOn(server)).mode).toBe("none");
});

test("8.0 settings that are not crash-safe are named, each", async () => {
  const f = fixture("mysql-8.0.36-replica.json");
  const server = recordedServer({
    ...f,
    responses: {
      ...f.responses,
      "SELECT @@innodb_flush_log_at_trx_commit": [
        { flushLog: 2, syncBinlog: 0, logBin: 1, gtidMode: "OFF_PERMISSIVE" },
      ],
      "SHOW GLOBAL VARIABLES LIKE 'relay_log_info_repository'": [
        { Variable_name: "relay_log_info_repository", Value: "FILE" },
      ],
    },
  });
  const refused = (await modeOn(server, "none").catch((e: unknown) => e)) as PipelineError;
  for (const setting of [
    "innodb_flush_log_at_trx_commit=2",
    "sync_binlog=0",
    "gtid_mode=OFF_PERMISSIVE",
    "relay_log_info_repository=FILE",
  ]) {
    expect(refused.message).toContain(setting);
  }
});

test("8.4: SHOW BINARY LOG STATUS, never the removed SHOW MASTER STATUS; a missing relay_log_info_repository is TABLE", async () => {
  const server = recordedServer(fixture("mysql-8.4.3-replica.json"));
  expect((await modeOn(server)).mode).toBe("none");
  const position = await dialectFor("8.4.3").lockPlan("global").capturePosition(server.query);
  expect(position).toMatchObject({
    gtidExecuted: "9b1a3c55-2f1e-11ef-8a4c-0242ac120002:1-240117",
    binlog: { file: "mysql-bin.000087", pos: 51736419 },
    source: { host: "10.0.1.17", port: 3306, file: "mysql-bin.000312", pos: 7734, usingGtid: "1" },
  });
  expect(server.statements).toContain("SHOW BINARY LOG STATUS");
  expect(server.statements).not.toContain("SHOW MASTER STATUS");
});

test("the position after a lock-free snapshot also holds the GTIDs still being committed (gtid_owned)", async () => {
  const f = fixture("mysql-8.0.36-replica.json");
  const server = recordedServer({
    ...f,
    responses: {
      ...f.responses,
      "SELECT @@global.gtid_owned": [{ owned: "3e11fa47-71ca-11e1-9e33-c80aa9429562:5094#31:5095#32" }],
    },
  });
  const plan = dialectFor("8.0.36").lockPlan("none");
  const lower = await plan.capturePosition(server.query);
  const upper = await plan.captureUpperBound(server.query);
  expect(lower.gtidExecuted).toBe(
    "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5093,5e5d0a55-ae4a-11e8-8ff8-0800272b0f6e:1-17",
  );
  expect(upper.gtidExecuted).toBe(`${lower.gtidExecuted},3e11fa47-71ca-11e1-9e33-c80aa9429562:5094:5095`);
  expect(
    mysqlMissing(
      upper.gtidExecuted,
      "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5095,5e5d0a55-ae4a-11e8-8ff8-0800272b0f6e:1-17",
    ),
  ).toEqual([]);
});

test("8.4: log_status's LOCAL as JSON text is read the same", async () => {
  const server = recordedServer(fixture("mysql-8.4.3-replica.json"));
  expect(await dialectFor("8.4.3").lockPlan("commit").capturePosition(server.query)).toMatchObject({
    gtidExecuted: "9b1a3c55-2f1e-11ef-8a4c-0242ac120002:1-240117",
    binlog: { file: "mysql-bin.000087", pos: 51736419 },
  });
});

test("a server that is not a replica has no source; binlog off has no coordinates", async () => {
  const f = fixture("mysql-8.0.36-replica.json");
  const server = recordedServer({
    ...f,
    responses: {
      ...f.responses,
      "SHOW REPLICA STATUS": [],
      "SELECT LOCAL FROM performance_schema.log_status": [
        { LOCAL: { gtid_executed: "", binary_log_file: "", binary_log_position: 0 } },
      ],
    },
  });
  const position = await dialectFor("8.0.36").lockPlan("commit").capturePosition(server.query);
  expect(position.source).toBeNull();
  expect(position.binlog).toBeNull();
});

test("the facts of a recorded 8.0 server: trailing slash and empty InnoDB directories resolve to the datadir", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"));
  const facts = await readServerFacts(server.query);
  expect(facts.settings.datadir).toBe("/var/lib/mysql");
  expect(facts.settings.logBinBasename).toBe("/var/lib/mysql/binlog");
  expect([facts.innodbLogDir, facts.innodbUndoDir, facts.innodbDataHomeDir]).toEqual([
    "/var/lib/mysql",
    "/var/lib/mysql",
    "/var/lib/mysql",
  ]);
});
