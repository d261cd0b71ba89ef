/**
 * The MySQL 8.0/8.4 dialect against recorded server outputs (tests/fixtures/mysql8/): which lock it takes,
 * which statements it issues under the lock, and the position it reads. The fake server answers only the
 * statements its fixture holds and fails like MySQL on any other, so a statement 8.4 removed is caught.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { detectDialect, readServerFacts, type Query } from "../../hostscripts/common/dialect";

interface Fixture {
  version: string;
  responses: Record<string, Record<string, unknown>[]>;
}

function fixture(name: string): Fixture {
  return JSON.parse(readFileSync(join(__dirname, "..", "fixtures", "mysql8", name), "utf8")) as Fixture;
}

/** A server that answers from a fixture (by statement prefix) and records what it was asked. */
function recordedServer(f: Fixture, nonInnodb: Record<string, unknown>[] = []) {
  const statements: string[] = [];
  const query: Query = async (sql) => {
    const statement = sql.replace(/\s+/g, " ").trim();
    statements.push(statement);
    if (statement.includes("ENGINE <> 'InnoDB'")) return nonInnodb;
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

const myisam = [{ s: "app", t: "sessions", e: "MyISAM" }];

test("8.0, all InnoDB: LOCK INSTANCE FOR BACKUP, one consistent read of log_status, then the replica's source", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"));
  const dialect = await detectDialect("8.0.36", server.query);
  expect(dialect).toMatchObject({
    flavor: "mysql",
    version: "8.0.36",
    lockMethod: "LOCK INSTANCE FOR BACKUP",
    lockStatements: ["LOCK INSTANCE FOR BACKUP"],
    unlockStatement: "UNLOCK INSTANCE",
  });
  server.statements.length = 0;
  expect(await dialect.capturePosition(server.query)).toEqual({
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

test("8.0 with a MyISAM table: FTWRL, and the position from SHOW MASTER STATUS", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"), myisam);
  const dialect = await detectDialect("8.0.36-log", server.query);
  expect(dialect).toMatchObject({
    lockMethod: "FLUSH TABLES WITH READ LOCK",
    lockStatements: ["FLUSH TABLES WITH READ LOCK"],
    unlockStatement: "UNLOCK TABLES",
    lockReason: "non-InnoDB tables need FTWRL: app.sessions (MyISAM)",
  });
  server.statements.length = 0;
  const position = await dialect.capturePosition(server.query);
  expect(position.binlog).toEqual({ file: "binlog.000012", pos: 8653 });
  expect(position.gtidExecuted).toBe(
    "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5093,5e5d0a55-ae4a-11e8-8ff8-0800272b0f6e:1-17",
  );
  expect(server.statements).toEqual([
    "SELECT @@global.gtid_executed AS executed",
    "SHOW MASTER STATUS",
    "SHOW REPLICA STATUS",
  ]);
});

test("8.4: SHOW BINARY LOG STATUS, never the removed SHOW MASTER STATUS", async () => {
  const server = recordedServer(fixture("mysql-8.4.3-replica.json"), myisam);
  const dialect = await detectDialect("8.4.3", server.query);
  expect(dialect.lockMethod).toBe("FLUSH TABLES WITH READ LOCK");
  const position = await dialect.capturePosition(server.query);
  expect(position).toMatchObject({
    gtidExecuted: "9b1a3c55-2f1e-11ef-8a4c-0242ac120002:1-240117",
    binlog: { file: "mysql-bin.000087", pos: 51736419 },
    source: { host: "10.0.1.17", port: 3306, file: "mysql-bin.000312", pos: 7734, usingGtid: "1" },
  });
  expect(server.statements).toContain("SHOW BINARY LOG STATUS");
  expect(server.statements).not.toContain("SHOW MASTER STATUS");
});

test("8.4, all InnoDB: log_status's LOCAL as JSON text is read the same", async () => {
  const server = recordedServer(fixture("mysql-8.4.3-replica.json"));
  const dialect = await detectDialect("8.4.3", server.query);
  expect(dialect.lockMethod).toBe("LOCK INSTANCE FOR BACKUP");
  expect(await dialect.capturePosition(server.query)).toMatchObject({
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
  const position = await (await detectDialect("8.0.36", server.query)).capturePosition(server.query);
  expect(position.source).toBeNull();
  expect(position.binlog).toBeNull();
});

test("MariaDB never asks for table engines: FTWRL is its only lock", async () => {
  const server = recordedServer(fixture("mysql-8.0.36-replica.json"), myisam);
  const dialect = await detectDialect("10.11.6-MariaDB-0+deb12u1-log", server.query);
  expect(dialect.flavor).toBe("mariadb");
  expect(server.statements).toEqual([]);
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
