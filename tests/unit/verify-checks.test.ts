/**
 * The verdict logic without a server: position comparison, inventory comparison, CHECK TABLE judgement,
 * report building (validated against the schema), metrics, the manifest-key check and the outcomes' exit codes.
 */
import { CHECKS, ContractError, type CapturedPosition, type CheckResult } from "../../contracts";
import {
  compareInventory,
  judgeCheckTable,
  judgeTables,
  quoteIdentifier,
} from "../../hostscripts/verify/checks";
import { comparePositions, normalizeGtidList } from "../../hostscripts/verify/position";
import { ExitCode } from "../../hostscripts/common/errors";
import { buildReport, reportMetrics, verdictTags, type ReportInput } from "../../hostscripts/verify/report";
import { parseServerBuild, whyCannotRun } from "../../hostscripts/common/server-binary";
import { checkManifestKey } from "../../hostscripts/verify/daemon";
import { exitCodeOf } from "../../hostscripts/verify/result";

const captured: CapturedPosition = {
  gtidBinlogPos: "0-1-1500,1-2-7",
  gtidSlavePos: "0-1-1500",
  gtidCurrentPos: "0-1-1500,1-2-7",
  gtidExecuted: null,
  binlog: { file: "mysql-bin.000002", pos: 4242 },
  source: null,
};

describe("the position check", () => {
  test("GTID lists compare as sets, whatever the order and spacing", () => {
    expect(normalizeGtidList("1-2-7, 0-1-1500")).toBe(normalizeGtidList("0-1-1500,1-2-7"));
    expect(normalizeGtidList(null)).toBe(normalizeGtidList(""));
  });

  test("MariaDB: equal binlog and slave positions pass", () => {
    const result = comparePositions("mariadb", captured, {
      gtidBinlogPos: "1-2-7,0-1-1500",
      gtidSlavePos: "0-1-1500",
      gtidExecuted: null,
      preparedXa: [],
    });
    expect(result).toMatchObject({ name: "position", passed: true });
  });

  test("MariaDB: a restored position behind the captured one fails and says both values", () => {
    const result = comparePositions("mariadb", captured, {
      gtidBinlogPos: "0-1-1500,1-2-7",
      gtidSlavePos: "0-1-1498",
      gtidExecuted: null,
      preparedXa: [],
    });
    expect(result.passed).toBe(false);
    expect(result.detail).toBe('@@gtid_slave_pos is "0-1-1498" after recovery, captured "0-1-1500"');
  });

  test("MySQL compares gtid_executed, newlines and all", () => {
    const mysql = { ...captured, gtidExecuted: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77,\nabc:1-2" };
    expect(
      comparePositions("mysql", mysql, {
        gtidBinlogPos: null,
        gtidSlavePos: null,
        gtidExecuted: "abc:1-2,3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77",
        preparedXa: [],
      }).passed,
    ).toBe(true);
    expect(
      comparePositions("mysql", mysql, {
        gtidBinlogPos: null,
        gtidSlavePos: null,
        gtidExecuted: "abc:1-2",
        preparedXa: [],
      }).detail,
    ).toMatch(/@@gtid_executed is "abc:1-2" after recovery, captured "3e11fa47/);
  });
});

describe("the tables check", () => {
  const manifestTables = [
    { schema: "sbtest", table: "sbtest1", engine: "InnoDB" },
    { schema: "sbtest", table: "sbtest2", engine: "InnoDB" },
    { schema: "extras", table: "legacy", engine: "MyISAM" },
  ];

  test("names missing, unexpectedly added and engine-changed tables; system schemas never count as added", () => {
    const comparison = compareInventory(manifestTables, [
      { schema: "sbtest", table: "sbtest1", engine: "InnoDB" },
      { schema: "extras", table: "legacy", engine: "Aria" },
      { schema: "sbtest", table: "surprise", engine: "InnoDB" },
      { schema: "mysql", table: "user", engine: "Aria" },
    ]);
    expect(comparison).toEqual({
      missing: ["sbtest.sbtest2"],
      unexpected: ["sbtest.surprise"],
      engineChanged: ["extras.legacy (Aria, manifest MyISAM)"],
    });
    expect(judgeTables(comparison, [])).toMatchObject({
      passed: false,
      detail: expect.stringMatching(
        /^missing after restore: sbtest.sbtest2; not in the manifest: sbtest.surprise; engine differs/,
      ),
    });
  });

  test("CHECK TABLE: OK passes, an error or a bad status fails, an engine that cannot check passes with its note", () => {
    expect(judgeCheckTable([{ Msg_type: "status", Msg_text: "OK" }])).toEqual({ passed: true, text: "OK" });
    expect(
      judgeCheckTable([
        { Msg_type: "warning", Msg_text: "1 client is using or hasn't closed the table properly" },
        { Msg_type: "status", Msg_text: "OK" },
      ]).passed,
    ).toBe(true);
    expect(
      judgeCheckTable([
        { Msg_type: "error", Msg_text: "Found 3 keys of 4" },
        { Msg_type: "status", Msg_text: "Corrupt" },
      ]),
    ).toEqual({ passed: false, text: "Found 3 keys of 4" });
    expect(judgeCheckTable([{ Msg_type: "status", Msg_text: "Operation failed" }]).passed).toBe(false);
    expect(
      judgeCheckTable([
        { Msg_type: "note", Msg_text: "The storage engine for the table doesn't support check" },
      ]).passed,
    ).toBe(true);
    expect(judgeCheckTable([]).passed).toBe(false);
  });

  test("a failing table is named with its message; a clean run sums the rows", () => {
    const clean = { missing: [], unexpected: [], engineChanged: [] };
    const tables = manifestTables.map((t) => ({
      ...t,
      rows: 10 as number | null,
      check: "OK",
      passed: true,
    }));
    expect(judgeTables(clean, tables)).toMatchObject({
      passed: true,
      detail: expect.stringContaining("30 rows"),
    });
    tables[1] = { ...tables[1], rows: null, check: "failed: Table doesn't exist in engine", passed: false };
    expect(judgeTables(clean, tables).detail).toBe(
      "CHECK TABLE failed for sbtest.sbtest2: failed: Table doesn't exist in engine",
    );
  });

  test("identifiers are quoted, backticks doubled", () => {
    expect(quoteIdentifier("we`ird")).toBe("`we``ird`");
  });
});

const ref = { prefix: "backups", cluster: "lab", host: "replica1", backupId: "20261124T020000Z-3fa9c1" };
const passed = (name: CheckResult["name"]): CheckResult => ({ name, passed: true, detail: "ok" });

function input(overrides: Partial<ReportInput> = {}): ReportInput {
  return {
    bucket: "mysql-backups-lab",
    manifestKey: `backups/lab/replica1/${ref.backupId}/manifest.json`,
    ref,
    manifest: null,
    objects: { manifest: null, archive: null },
    checks: CHECKS.map(passed),
    restored: { gtidBinlogPos: "0-1-1500", gtidSlavePos: "0-1-1500", gtidExecuted: null, preparedXa: [] },
    tables: [{ schema: "sbtest", table: "sbtest1", engine: "InnoDB", rows: 20000, check: "OK" }],
    timings: {
      downloadExtractSeconds: 1.23456,
      recoverySeconds: 0.5,
      checksSeconds: 2,
      restoreSeconds: 3.73456,
    },
    verifierHost: "verifier-1",
    serverVersion: "10.11.6-MariaDB",
    takenAt: new Date("2026-11-24T02:00:00Z"),
    now: new Date("2026-11-24T02:10:00Z"),
    ...overrides,
  };
}

describe("the report", () => {
  test("all checks passed: verified, validated, rounded, with the backup's age", () => {
    const report = buildReport(input());
    expect(report).toMatchObject({
      verdict: "verified",
      failedCheck: null,
      backupAgeSeconds: 600,
      timings: { downloadExtractSeconds: 1.235, restoreSeconds: 3.735 },
    });
  });

  test("the first failed check is named; the checks after it never ran", () => {
    const report = buildReport(
      input({
        checks: [passed("objects"), { name: "startup", passed: false, detail: "died" }],
        restored: null,
      }),
    );
    expect(report).toMatchObject({ verdict: "failed", failedCheck: "startup", position: { restored: null } });
  });

  test("a report where a check never ran cannot say verified", () => {
    const report = buildReport(input({ checks: [passed("objects"), passed("startup"), passed("position")] }));
    expect(report).toMatchObject({ verdict: "failed", failedCheck: "tables" });
  });

  test("a report that breaks its schema is refused before it is written", () => {
    expect(() => buildReport(input({ ref: { ...ref, backupId: "not-an-id" } }))).toThrow(ContractError);
    expect(() =>
      buildReport(input({ tables: [{ schema: "s", table: "t", engine: "InnoDB", rows: -1, check: "OK" }] })),
    ).toThrow(/tables.0.rows/);
  });

  test("unsupported: no check ran, no failed check, the reason is kept and the failure metric emitted", () => {
    const report = buildReport(
      input({ checks: [], restored: null, tables: [], unsupportedReason: "taken on mysql 8.4.3" }),
    );
    expect(report).toMatchObject({
      verdict: "unsupported",
      failedCheck: null,
      checks: [],
      unsupportedReason: "taken on mysql 8.4.3",
    });
    expect(reportMetrics(report, new Date())[0]).toMatchObject({ name: "VerificationFailed", value: 1 });
    expect(buildReport(input())).not.toHaveProperty("unsupportedReason");
  });

  test("object tags: verified=true only for a verified backup", () => {
    expect(verdictTags("verified")).toEqual([{ Key: "verified", Value: "true" }]);
    expect(verdictTags("failed")).toEqual([{ Key: "verified", Value: "false" }]);
    expect(verdictTags("unsupported")).toEqual([{ Key: "verified", Value: "false" }]);
  });

  test("object tags: the retention tag is restated as it is, a former verdict replaced, no other key kept", () => {
    const existing = [
      { Key: "verified", Value: "false" },
      { Key: "retention", Value: "monthly" },
      { Key: "owner", Value: "someone" },
    ];
    expect(verdictTags("verified", existing)).toEqual([
      { Key: "verified", Value: "true" },
      { Key: "retention", Value: "monthly" },
    ]);
    expect(verdictTags("failed", [{ Key: "retention", Value: "daily" }])).toEqual([
      { Key: "verified", Value: "false" },
      { Key: "retention", Value: "daily" },
    ]);
  });

  test("metrics: success or failure, restore seconds and backup age, per cluster", () => {
    const now = new Date("2026-11-24T02:10:00Z");
    expect(reportMetrics(buildReport(input()), now).map((d) => [d.name, d.value, d.dimensions])).toEqual([
      ["VerificationSucceeded", 1, { Cluster: "lab" }],
      ["RestoreSeconds", 3.735, { Cluster: "lab" }],
      ["BackupAgeAtVerificationSeconds", 600, { Cluster: "lab" }],
    ]);
    const failed = buildReport(input({ checks: [{ name: "objects", passed: false, detail: "sha256" }] }));
    expect(reportMetrics(failed, now)[0]).toMatchObject({
      name: "VerificationFailed",
      value: 1,
      unit: "Count",
    });
  });
});

describe("the message's manifest key", () => {
  const message = {
    type: "backup.created" as const,
    version: 1 as const,
    bucket: "mysql-backups-lab",
    manifestKey: `backups/lab/replica1/${ref.backupId}/manifest.json`,
    backupId: ref.backupId,
    cluster: "lab",
    host: "replica1",
    createdAt: "2026-11-24T02:05:00Z",
    archiveSha256: "a".repeat(64),
  };

  test("a key in the layout naming the message's backup is accepted", () => {
    expect(checkManifestKey(message)).toEqual(ref);
  });

  test("a key outside the layout, or for another host, is refused with what differs", () => {
    expect(() => checkManifestKey({ ...message, manifestKey: "elsewhere/manifest.json" })).toThrow(
      /not a manifest key/,
    );
    expect(() => checkManifestKey({ ...message, host: "replica2" })).toThrow(
      /does not match the message's host "replica2"/,
    );
  });
});

test("exit codes: a failed verdict differs from a message or host problem", () => {
  expect(exitCodeOf("verified")).toBe(ExitCode.Ok);
  expect(exitCodeOf("idle")).toBe(ExitCode.Ok);
  expect(exitCodeOf("failed")).toBe(ExitCode.VerificationFailed);
  expect(exitCodeOf("rejected")).toBe(ExitCode.VerifierInfrastructure);
  expect(exitCodeOf("infrastructure")).toBe(ExitCode.VerifierInfrastructure);
  expect(exitCodeOf("unsupported")).toBe(ExitCode.VerificationFailed);
  // systemd stopping the daemon is not a failure: the message was released for another verifier.
  expect(exitCodeOf("interrupted")).toBe(ExitCode.Ok);
});

describe("which backups this verifier can run", () => {
  test("--version output of MariaDB and MySQL builds", () => {
    expect(
      parseServerBuild("/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64"),
    ).toEqual({ flavor: "mariadb", version: "10.11.19" });
    expect(
      parseServerBuild("/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)"),
    ).toEqual({ flavor: "mysql", version: "8.0.36" });
    expect(parseServerBuild("command not found")).toBeNull();
  });

  const mariadb = (version: string) => ({ flavor: "mariadb" as const, version });
  const mysql = (version: string) => ({ flavor: "mysql" as const, version });

  test("the same flavor from the same or an older series runs; the other flavor or a newer series does not", () => {
    expect(whyCannotRun(mariadb("10.11.19"), mariadb("10.11.6-MariaDB-log"))).toBeNull();
    expect(whyCannotRun(mariadb("10.11.19"), mariadb("10.6.16"))).toBeNull();
    expect(whyCannotRun(mysql("8.4.3"), mysql("8.0.36"))).toBeNull();
    expect(whyCannotRun(mariadb("10.11.19"), mysql("8.0.36"))).toMatch(
      /taken on mysql 8\.0\.36; this verifier runs mariadb 10\.11\.19, which cannot open a mysql datadir/,
    );
    expect(whyCannotRun(mariadb("10.11.19"), mariadb("11.4.2"))).toMatch(/an older series/);
    expect(whyCannotRun(mysql("8.0.36"), mysql("8.4.0"))).toMatch(/an older series/);
  });
});
