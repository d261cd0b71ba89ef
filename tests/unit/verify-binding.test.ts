/**
 * A verdict's binding to the exact objects it proved (contracts/verification.ts): what the schema accepts,
 * and how a found object is told apart from a verified one, with or without S3 versions.
 */
import { parseVerificationReport, type VerifiedObject } from "../../contracts";
import { describeObject, differencesFrom } from "../../hostscripts/restore/objects";

const verified: VerifiedObject = {
  key: "backups/lab/replica1/20261124T020000Z-3fa9c1/archive.tar.zst",
  versionId: "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
  etag: '"9b2cf535f27731c974343645a3985328-3"',
  bytes: 41880254,
  sha256: "a".repeat(64),
};

describe("telling a found object from the verified one", () => {
  test("the same object differs in nothing", () => {
    expect(differencesFrom(verified, { ...verified })).toEqual([]);
  });

  test("another version, ETag, size or sha256 is named, each against the verified value", () => {
    const found = { ...verified, versionId: "other", etag: '"x-3"', bytes: 1, sha256: "b".repeat(64) };
    expect(differencesFrom(verified, found)).toEqual([
      `version other is not the verified ${verified.versionId}`,
      `ETag "x-3" is not the verified ${verified.etag}`,
      `1 bytes are not the verified ${verified.bytes}`,
      `sha256 ${"b".repeat(64)} is not the verified ${"a".repeat(64)}`,
    ]);
  });

  test("without versions (an unversioned bucket, the emulator) the ETag, size and sha256 bind", () => {
    const unversioned = { ...verified, versionId: null };
    expect(differencesFrom(unversioned, { ...unversioned })).toEqual([]);
    expect(differencesFrom(unversioned, { ...unversioned, etag: '"y"' })).toEqual([
      `ETag "y" is not the verified ${verified.etag}`,
    ]);
  });

  test("a sha256 not known on one side (HEAD, or a verdict given on the size) is not compared", () => {
    expect(differencesFrom(verified, { ...verified, sha256: null })).toEqual([]);
    expect(differencesFrom({ ...verified, sha256: null }, verified)).toEqual([]);
  });

  test("described for a person", () => {
    expect(describeObject({ ...verified, versionId: null, sha256: null })).toBe(
      `version (unversioned), ETag ${verified.etag}, 41880254 bytes`,
    );
  });
});

describe("the report's binding", () => {
  const report = {
    formatVersion: 1,
    bucket: "mysql-backups-lab",
    manifestKey: "backups/lab/replica1/20261124T020000Z-3fa9c1/manifest.json",
    backupId: "20261124T020000Z-3fa9c1",
    cluster: "lab",
    host: "replica1",
    verdict: "verified",
    failedCheck: null,
    checks: [],
    verifiedAt: "2026-11-24T02:10:00.000Z",
    verifier: { host: "verifier-1", serverVersion: null },
    position: { captured: { gtid: null, binlog: null }, restored: null },
    tables: [],
    timings: { downloadExtractSeconds: 0, recoverySeconds: 0, checksSeconds: 0, restoreSeconds: 0 },
    backupAgeSeconds: 600,
  };

  test("names both objects, each or null; a report without it (written before it existed) still reads", () => {
    expect(
      parseVerificationReport({ ...report, objects: { manifest: null, archive: verified } }).objects,
    ).toEqual({
      manifest: null,
      archive: verified,
    });
    expect(parseVerificationReport(report).objects).toBeUndefined();
  });

  test("refuses a binding with a sha256 that is not one, or without its version", () => {
    expect(() =>
      parseVerificationReport({
        ...report,
        objects: { manifest: null, archive: { ...verified, sha256: "abc" } },
      }),
    ).toThrow(/sha256 must match/);
    const { versionId: _versionId, ...unnamed } = verified;
    expect(() =>
      parseVerificationReport({ ...report, objects: { manifest: null, archive: unnamed } }),
    ).toThrow(/versionId is required/);
  });
});
