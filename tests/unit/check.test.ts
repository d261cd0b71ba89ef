/**
 * The decisions of `mysql-backup check` that do not need a lab: the privileges derived from each dialect,
 * SHOW GRANTS as MariaDB and MySQL print it, the MySQL 8.0/8.4 checks against recorded server outputs
 * (MySQL cannot run here), what an S3 refusal says about the config, and which config is which.
 */
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContractError, parseCheckReport } from "../../contracts";
import { explainWriteFailure } from "../../hostscripts/check/aws";
import { parseCheckConfig } from "../../hostscripts/check/command";
import { Checklist, summarizeCheck } from "../../hostscripts/check/findings";
import { checkMysql, type CheckSession } from "../../hostscripts/check/mysql";
import {
  globalPrivileges,
  holds,
  privilegeForStatement,
  requiredPrivileges,
} from "../../hostscripts/check/privileges";
import { dialectFor, type Query } from "../../hostscripts/common/dialect";
import { PipelineError } from "../../hostscripts/common/errors";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mbp-check-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the privileges a backup needs, from the statements it runs", () => {
  const mariadb = dialectFor("10.11.6-MariaDB-0+deb12u1");
  const mysql80 = dialectFor("8.0.36");
  const mysql84 = dialectFor("8.4.3");
  const rows = (needs: ReturnType<typeof requiredPrivileges>) =>
    needs.map((n) => [n.privilege, n.provenBy, n.conditional === undefined ? null : n.conditional]);
  const mariadbPosition = ["SELECT @@gtid_binlog_pos", "SHOW MASTER STATUS", "SHOW SLAVE STATUS"];

  test("MariaDB global (FTWRL) and commit (BACKUP STAGE) need RELOAD from the grants; the position's by running", () => {
    for (const mode of ["global", "commit"] as const) {
      expect(rows(requiredPrivileges("mariadb", mariadb.lockPlan(mode), mariadbPosition))).toEqual([
        ["RELOAD", "grant", null],
        ["BINLOG MONITOR", "statement", null],
        ["SLAVE MONITOR", "statement", null],
        ["SELECT", "grant", null],
      ]);
    }
  });

  test("MariaDB none needs no lock privilege; with lockMode auto, RELOAD for the day auto falls back to commit", () => {
    expect(
      rows(requiredPrivileges("mariadb", mariadb.lockPlan("none"), mariadbPosition)).map((r) => r[0]),
    ).toEqual(["BINLOG MONITOR", "SLAVE MONITOR", "SELECT"]);
    const auto = requiredPrivileges(
      "mariadb",
      mariadb.lockPlan("none"),
      mariadbPosition,
      mariadb.lockPlan("commit"),
    );
    expect(auto.find((n) => n.privilege === "RELOAD")).toEqual({
      privilege: "RELOAD",
      for: "BACKUP STAGE START",
      provenBy: "grant",
      conditional:
        'with lockMode "auto" the backup takes mode "commit" (BACKUP STAGE START) once a table that is not crash-safe holds data',
    });
  });

  test("MySQL 8.0 commit: BACKUP_ADMIN (LOCK INSTANCE and log_status, proven by running), REPLICATION CLIENT", () => {
    const position = ["SELECT LOCAL FROM performance_schema.log_status", "SHOW REPLICA STATUS"];
    expect(rows(requiredPrivileges("mysql", mysql80.lockPlan("commit"), position))).toEqual([
      ["BACKUP_ADMIN", "statement", null],
      ["REPLICATION CLIENT", "statement", null],
      ["SELECT", "grant", null],
    ]);
  });

  test("MySQL 8.4 global: FTWRL needs RELOAD outright; SHOW BINARY LOG STATUS needs REPLICATION CLIENT", () => {
    expect(mysql84.lockPlan("global").method).toBe("FLUSH TABLES WITH READ LOCK");
    const position = [
      "SELECT @@global.gtid_executed AS executed",
      "SHOW BINARY LOG STATUS",
      "SHOW REPLICA STATUS",
    ];
    expect(
      rows(requiredPrivileges("mysql", mysql84.lockPlan("global"), position)).map((r) => r.slice(0, 2)),
    ).toEqual([
      ["RELOAD", "grant"],
      ["REPLICATION CLIENT", "statement"],
      ["SELECT", "grant"],
    ]);
    expect(privilegeForStatement("mysql", "SELECT @@global.gtid_executed")).toBeNull();
    expect(privilegeForStatement("mariadb", "BACKUP STAGE BLOCK_COMMIT")).toBe("RELOAD");
  });

  test("SHOW GRANTS as both servers print it: global privileges only, synonyms, ALL PRIVILEGES, roles", () => {
    const mariadb = globalPrivileges([
      "GRANT RELOAD, PROCESS, BINLOG MONITOR, REPLICA MONITOR ON *.* TO `backup`@`localhost` IDENTIFIED BY PASSWORD '*0123456789ABCDEF'",
      "GRANT SELECT ON `shop`.* TO `backup`@`localhost`",
      "GRANT `backup_role` TO `backup`@`localhost`",
      "GRANT SELECT, SHOW VIEW ON *.* TO `backup_role`",
    ]);
    expect([...mariadb].sort()).toEqual([
      "BINLOG MONITOR",
      "PROCESS",
      "RELOAD",
      "REPLICA MONITOR",
      "SELECT",
      "SHOW VIEW",
    ]);
    expect(holds(mariadb, "SLAVE MONITOR")).toBe(true);
    const mysql = globalPrivileges([
      "GRANT SELECT, RELOAD, REPLICATION CLIENT ON *.* TO `backup`@`%`",
      "GRANT BACKUP_ADMIN ON *.* TO `backup`@`%`",
    ]);
    expect(holds(mysql, "BACKUP_ADMIN")).toBe(true);
    const all = globalPrivileges(["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]);
    expect(holds(all, "RELOAD")).toBe(true);
    expect(holds(all, "BACKUP_ADMIN")).toBe(false);
    expect(holds(globalPrivileges(["GRANT SUPER ON *.* TO `x`@`%`"]), "BINLOG MONITOR")).toBe(false);
  });
});

interface Fixture {
  version: string;
  responses: Record<string, Record<string, unknown>[]>;
}

/** A MySQL 8 replica answering from its recorded outputs, refusing the statements in `denied` as MySQL does. */
function recordedMysql(name: string, grants: string[], denied: Record<string, string> = {}) {
  const read = (file: string) =>
    JSON.parse(readFileSync(join(__dirname, "..", "fixtures", "mysql8", file), "utf8")) as Fixture;
  const fixture = read(name);
  // The 8.4 recording holds only what the lock window reads; its settings are those of the 8.0 one.
  const [facts] = read("mysql-8.0.36-replica.json").responses["SELECT @@version"];
  const responses: Record<string, Record<string, unknown>[]> = {
    "SELECT @@version": [{ ...facts, version: fixture.version }],
    ...fixture.responses,
    "SELECT CURRENT_USER()": [{ user: "backup@%" }],
    "SHOW GRANTS": grants.map((g) => ({ "Grants for backup@%": g })),
    "SELECT TABLE_SCHEMA AS s": [{ s: "shop", t: "orders", e: "InnoDB" }],
    "KILL CONNECTION": [],
  };
  const query: Query = async (sql) => {
    const statement = sql.replace(/\s+/g, " ").trim();
    const refused = Object.keys(denied).find((k) => statement.startsWith(k));
    if (refused !== undefined) {
      throw Object.assign(
        new Error(
          `Access denied; you need (at least one of) the ${denied[refused]} privilege(s) for this operation`,
        ),
        { code: "ER_SPECIFIC_ACCESS_DENIED_ERROR", errno: 1227 },
      );
    }
    if (statement.includes("ENGINE <> 'InnoDB'")) return [];
    const key = Object.keys(responses).find((k) => statement.startsWith(k));
    if (key === undefined)
      throw Object.assign(new Error(`syntax error near '${statement}'`), { errno: 1064 });
    return responses[key];
  };
  let id = 10;
  const openSession = async (): Promise<CheckSession> => ({ id: id++, query, close: async () => undefined });
  return { openSession };
}

async function optionFile(mode: number): Promise<string> {
  const path = join(dir, `client-${mode.toString(8)}.cnf`);
  await writeFile(path, "[client]\nuser=backup\npassword=x\n");
  await chmod(path, mode);
  return path;
}

const FULL_MYSQL_GRANTS = [
  "GRANT SELECT, RELOAD, REPLICATION CLIENT ON *.* TO `backup`@`%`",
  "GRANT BACKUP_ADMIN ON *.* TO `backup`@`%`",
];

describe("MySQL 8 replicas, from recorded outputs", () => {
  test.each(["mysql-8.0.36-replica.json", "mysql-8.4.3-replica.json"])(
    "%s with every privilege passes",
    async (name) => {
      const list = new Checklist();
      const server = await checkMysql(list, {
        optionFile: await optionFile(0o600),
        ...recordedMysql(name, FULL_MYSQL_GRANTS),
      });
      expect(server?.dialect.flavor).toBe("mysql");
      expect(list.findings.map((f) => [f.check, f.status])).toEqual([
        ["mysql.option-file", "pass"],
        ["mysql.connect", "pass"],
        ["mysql.lock-mode", "pass"],
        ["mysql.position", "pass"],
        ["mysql.privileges", "pass"],
        ["mysql.inventory", "pass"],
        ["mysql.watchdog", "pass"],
      ]);
      // Crash-safe and all InnoDB: auto takes no lock; the day it must, FTWRL (RELOAD, held here).
      expect(list.findings[2].detail).toMatch(
        /^lockMode auto: none \(none\); every table that holds data is crash-safe/,
      );
      expect(list.findings[4].detail).toMatch(
        /^'backup'@'%' has REPLICATION CLIENT \(SHOW (MASTER|BINARY LOG) STATUS\), RELOAD \(FLUSH TABLES WITH READ LOCK\), SELECT \(the table inventory: information_schema\.TABLES\)$/,
      );
    },
  );

  test("lockMode commit without BACKUP_ADMIN and REPLICATION CLIENT: both are named at once, with the GRANT", async () => {
    const list = new Checklist();
    const server = recordedMysql(
      "mysql-8.0.36-replica.json",
      ["GRANT SELECT, RELOAD ON *.* TO `backup`@`%`"],
      {
        "SELECT LOCAL FROM performance_schema.log_status": "BACKUP_ADMIN",
        "SHOW REPLICA STATUS": "SUPER, REPLICATION CLIENT",
      },
    );
    await checkMysql(list, { optionFile: await optionFile(0o600), lockMode: "commit", ...server });
    const privileges = list.findings.find((f) => f.check === "mysql.privileges")!;
    expect(privileges).toEqual({
      check: "mysql.privileges",
      status: "fail",
      detail:
        "'backup'@'%' lacks BACKUP_ADMIN (LOCK INSTANCE FOR BACKUP), REPLICATION CLIENT (SHOW REPLICA STATUS) on mysql 8.0.36",
      fix: "GRANT BACKUP_ADMIN, REPLICATION CLIENT ON *.* TO 'backup'@'%'",
    });
    expect(list.findings.find((f) => f.check === "mysql.position")?.status).toBe("fail");
  });

  test("without RELOAD a crash-safe server under lockMode auto warns: FTWRL comes the day a MyISAM table does", async () => {
    const list = new Checklist();
    const grants = [
      "GRANT SELECT, REPLICATION CLIENT ON *.* TO `backup`@`%`",
      "GRANT BACKUP_ADMIN ON *.* TO `backup`@`%`",
    ];
    await checkMysql(list, {
      optionFile: await optionFile(0o600),
      ...recordedMysql("mysql-8.4.3-replica.json", grants),
    });
    expect(list.findings.filter((f) => f.status !== "pass")).toEqual([
      {
        check: "mysql.privileges",
        status: "warn",
        detail: expect.stringContaining(
          'but not RELOAD (FLUSH TABLES WITH READ LOCK): with lockMode "auto" the backup takes mode "global"',
        ),
        fix: "GRANT RELOAD ON *.* TO 'backup'@'%'",
      },
    ]);
    expect(list.ok).toBe(true);
  });

  test("an option file others can read is refused as the backup refuses it, and nothing is connected", async () => {
    const list = new Checklist();
    const server = recordedMysql("mysql-8.0.36-replica.json", FULL_MYSQL_GRANTS);
    expect(await checkMysql(list, { optionFile: await optionFile(0o644), ...server })).toBeUndefined();
    expect(list.findings[0]).toEqual({
      check: "mysql.option-file",
      status: "fail",
      detail: expect.stringMatching(/client-644\.cnf is readable by group or others \(mode 644\)$/),
      fix: expect.stringMatching(/^run: chmod 600 .*client-644\.cnf$/),
    });
    expect(list.findings.slice(1).map((f) => [f.check, f.status])).toEqual([
      ["mysql.connect", "skip"],
      ["mysql.lock-mode", "skip"],
      ["mysql.position", "skip"],
      ["mysql.privileges", "skip"],
      ["mysql.inventory", "skip"],
      ["mysql.watchdog", "skip"],
    ]);
  });

  test("a server that cannot be reached fails the connection and skips what needs a session", async () => {
    const list = new Checklist();
    const openSession = async (): Promise<CheckSession> => {
      throw new PipelineError(
        "MysqlUnavailable",
        "cannot connect to the local server at /run/mysqld/mysqld.sock as backup: connect ENOENT",
        "check that the server is running",
      );
    };
    expect(await checkMysql(list, { optionFile: await optionFile(0o600), openSession })).toBeUndefined();
    expect(list.findings.map((f) => [f.check, f.status])).toEqual([
      ["mysql.option-file", "pass"],
      ["mysql.connect", "fail"],
      ["mysql.lock-mode", "skip"],
      ["mysql.position", "skip"],
      ["mysql.privileges", "skip"],
      ["mysql.inventory", "skip"],
      ["mysql.watchdog", "skip"],
    ]);
    expect(list.ok).toBe(false);
  });
});

describe("what an S3 refusal says about the config", () => {
  const where = {
    bucket: "acme-backups",
    prefix: "backups/orders/db1/",
    kmsKeyId: "arn:aws:kms:eu-west-1:1:key/k",
  };
  const error = (name: string, message: string, status = 403) =>
    Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });

  test.each([
    [
      error("NoSuchBucket", "The specified bucket does not exist", 404),
      /^bucket acme-backups does not exist/,
      /bucketName/,
    ],
    [
      error("AccessDenied", "User: x is not authorized to perform: kms:GenerateDataKey on resource: k"),
      /KMS key arn:aws:kms:eu-west-1:1:key\/k: this host's role cannot use it/,
      /kms:GenerateDataKey/,
    ],
    [
      error("KMS.DisabledException", "arn:aws:kms:eu-west-1:1:key/k is disabled.", 400),
      /KMS key .* cannot use it/,
      /s3\.kmsKeyId/,
    ],
    [
      error("AccessDenied", "User: x is not authorized to perform: s3:PutObject"),
      /^this host may not write under s3:\/\/acme-backups\/backups\/orders\/db1\//,
      /s3\.prefix, cluster and host/,
    ],
    [
      error("TimeoutError", "connect ETIMEDOUT", 0),
      /^cannot write to s3:\/\/acme-backups/,
      /network path to S3/,
    ],
  ])("%s", (e, detail, fix) => {
    const explained = explainWriteFailure(e, where);
    expect(explained.detail).toMatch(detail);
    expect(explained.fix).toMatch(fix);
  });
});

test("a backup config is a replica's, a verify config a verifier's; anything else says what to pass", () => {
  const backup = {
    cluster: "orders",
    host: "db1",
    mysql: { optionFile: "/etc/mysql-backup/client.cnf" },
    snapshot: { driver: "zfs", dataset: "tank/mysql" },
    localDir: "/var/backups/mysql",
    s3: { bucket: "acme-backups" },
    sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/1/q" },
  };
  expect(parseCheckConfig(backup).role).toBe("replica");
  expect(parseCheckConfig({ sqs: backup.sqs, scratchDir: "/var/lib/v" }).role).toBe("verifier");
  expect(() => parseCheckConfig({ ...backup, localDir: "relative" })).toThrow(
    /localDir must be an absolute path/,
  );
  expect(() => parseCheckConfig({ sqs: backup.sqs })).toThrow(ContractError);
  expect(() => parseCheckConfig({ sqs: backup.sqs })).toThrow(
    /neither a backup config .* nor a verify config/,
  );
});

test("the summary starts with the verdict and puts each fix under its finding", () => {
  const list = new Checklist();
  list.pass("config", "backup of orders/db1");
  list.fail(
    "mysql.privileges",
    "'backup'@'localhost' lacks RELOAD (FLUSH TABLES WITH READ LOCK)",
    "GRANT RELOAD ON *.* TO 'backup'@'localhost'",
  );
  list.skip("disk.local-dir", "needs the snapshotted volume");
  const report = parseCheckReport({
    formatVersion: 1,
    role: "replica",
    subject: "replica orders/db1",
    ok: list.ok,
    findings: list.findings,
  });
  expect(summarizeCheck(report).split("\n")).toEqual([
    "replica orders/db1: NOT READY (1 of 3 checks failed)",
    "",
    "      CHECK             RESULT",
    "ok    config            backup of orders/db1",
    "FAIL  mysql.privileges  'backup'@'localhost' lacks RELOAD (FLUSH TABLES WITH READ LOCK)",
    "                        fix: GRANT RELOAD ON *.* TO 'backup'@'localhost'",
    "skip  disk.local-dir    not checked: needs the snapshotted volume",
  ]);
});
