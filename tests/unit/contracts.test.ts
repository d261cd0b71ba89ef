import {
  ajv,
  archiveKey,
  backupConfigSchema,
  backupCreatedSchema,
  binlogArchivedSchema,
  chainVerdictSchema,
  checkReportSchema,
  drillVerdictSchema,
  epochRecordSchema,
  manifestV1Schema,
  manifestV2Schema,
  restoreConfigSchema,
  segmentEntrySchema,
  segmentVerdictSchema,
  statusConfigSchema,
  statusReportSchema,
  verificationSchema,
  verifyConfigSchema,
  backupIdTime,
  clusterPrefix,
  manifestKey,
  metric,
  newBackupId,
  parseBackupConfig,
  parseBackupCreated,
  parseManifestKey,
  parseVerifyConfig,
  verificationKey,
  ContractError,
  METRIC_UNITS,
  ReplicaMetric,
  VerifierMetric,
} from "../../contracts";

const validBackupConfig = {
  cluster: "orders",
  host: "db-replica-1",
  mysql: { optionFile: "/etc/mysql-backup/client.cnf" },
  snapshot: { driver: "btrfs", subvolume: "/var/lib/mysql", snapshotDir: "/var/lib/.snapshots" },
  localDir: "/var/backups/mysql",
  s3: { bucket: "acme-mysql-backups" },
  sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/verify" },
};

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ContractError) return e.problems;
    throw e;
  }
  throw new Error("expected a ContractError");
}

describe("S3 key layout", () => {
  const ref = { prefix: "backups", cluster: "orders", host: "db-1", backupId: "20261124T020000Z-3fa9c1" };

  it("places every object of a backup under <prefix>/<cluster>/<host>/<backupId>/", () => {
    expect(archiveKey(ref)).toBe("backups/orders/db-1/20261124T020000Z-3fa9c1/archive.tar.zst");
    expect(manifestKey(ref)).toBe("backups/orders/db-1/20261124T020000Z-3fa9c1/manifest.json");
    expect(verificationKey(ref)).toBe("backups/orders/db-1/20261124T020000Z-3fa9c1/verification.json");
  });

  it("reads a manifest key back into its parts, also with a nested or empty prefix", () => {
    expect(parseManifestKey(manifestKey(ref))).toEqual(ref);
    const nested = { ...ref, prefix: "prod/eu" };
    expect(parseManifestKey(manifestKey(nested))).toEqual(nested);
    const bare = { ...ref, prefix: "" };
    expect(parseManifestKey(manifestKey(bare))).toEqual(bare);
  });

  it("refuses keys outside the layout", () => {
    expect(() => parseManifestKey("backups/orders/db-1/20261124T020000Z-3fa9c1/archive.tar.zst")).toThrow(
      /not a manifest key/,
    );
    expect(() => parseManifestKey("backups/orders/db-1/not-an-id/manifest.json")).toThrow(/backup id/);
    expect(() => parseManifestKey("backups/../db-1/20261124T020000Z-3fa9c1/manifest.json")).toThrow(
      /cluster/,
    );
  });

  it("refuses cluster names that would change the prefix an IAM policy grants", () => {
    expect(() => clusterPrefix("backups", "orders/*")).toThrow(/cluster "orders\/\*"/);
    expect(clusterPrefix("/backups/", "orders")).toBe("backups/orders/");
  });

  it("makes backup ids that sort by time and carry it", () => {
    const a = newBackupId(new Date("2026-11-24T02:00:00.123Z"), Buffer.from([0xab, 0xcd, 0xef]));
    const b = newBackupId(new Date("2026-11-24T02:00:01Z"), Buffer.from([0x00, 0x00, 0x01]));
    expect(a).toBe("20261124T020000Z-abcdef");
    expect([b, a].sort()).toEqual([a, b]);
    expect(backupIdTime(a).toISOString()).toBe("2026-11-24T02:00:00.000Z");
  });
});

describe("backup.created message", () => {
  const message = {
    type: "backup.created",
    version: 1,
    bucket: "acme-mysql-backups",
    manifestKey: "backups/orders/db-1/20261124T020000Z-3fa9c1/manifest.json",
    backupId: "20261124T020000Z-3fa9c1",
    cluster: "orders",
    host: "db-1",
    createdAt: "2026-11-24T02:00:31Z",
    archiveSha256: "a".repeat(64),
  };

  it("accepts a v1 message", () => {
    expect(parseBackupCreated(JSON.stringify(message))).toEqual(message);
  });

  it("names each key that is wrong", () => {
    expect(
      problems(() =>
        parseBackupCreated(JSON.stringify({ ...message, version: 2, archiveSha256: "xyz", extra: 1 })),
      ),
    ).toEqual(
      expect.arrayContaining([
        "version must be 1",
        'archiveSha256 must match pattern "^[0-9a-f]{64}$"',
        '(top level): unknown key "extra" (remove it or check its spelling)',
      ]),
    );
  });

  it("says when the body is not JSON at all", () => {
    expect(() => parseBackupCreated("hello")).toThrow(/not JSON/);
  });
});

describe("config files", () => {
  it("accept a complete backup config", () => {
    expect(parseBackupConfig(validBackupConfig)).toEqual(validBackupConfig);
  });

  it("name the key and the expected value", () => {
    expect(problems(() => parseBackupConfig({ ...validBackupConfig, lockTimeoutMs: 10 }))).toEqual([
      "lockTimeoutMs must be >= 100",
    ]);
    expect(
      problems(() => parseBackupConfig({ ...validBackupConfig, mysql: { optionFile: "client.cnf" } })),
    ).toEqual(["mysql.optionFile must be an absolute path"]);
    expect(
      problems(() =>
        parseBackupConfig({ ...validBackupConfig, snapshot: { driver: "btrfs", subvolume: "/x" } }),
      ),
    ).toEqual(["snapshot.snapshotDir is required"]);
    expect(problems(() => parseBackupConfig({ ...validBackupConfig, snapshot: { driver: "xfs" } }))).toEqual([
      expect.stringMatching(/^snapshot\.driver .*(btrfs|lvm|zfs)/),
    ]);
  });

  it("validate each snapshot driver's own keys", () => {
    const lvm = { driver: "lvm", volume: "vg0/mysql", size: "20%ORIGIN", mountDir: "/mnt/snap" };
    expect(parseBackupConfig({ ...validBackupConfig, snapshot: lvm }).snapshot).toEqual(lvm);
    expect(
      problems(() => parseBackupConfig({ ...validBackupConfig, snapshot: { ...lvm, size: "lots" } })),
    ).toEqual(['snapshot.size must match pattern "^\\d+([KMGTkmgt]|%(ORIGIN|FREE|VG))$"']);
    expect(
      parseBackupConfig({ ...validBackupConfig, snapshot: { driver: "zfs", dataset: "tank/mysql" } }),
    ).toBeTruthy();
  });

  it("accept a verify config and refuse a metrics sink without its path", () => {
    const verify = { sqs: { queueUrl: "https://sqs.example/q" }, scratchDir: "/var/lib/mysql-verify" };
    expect(parseVerifyConfig(verify)).toEqual(verify);
    expect(problems(() => parseVerifyConfig({ ...verify, metrics: { sink: "file" } }))).toEqual([
      "metrics.path is required",
    ]);
  });
});

describe("metrics contract", () => {
  it("gives every metric a unit and builds data points with it", () => {
    for (const name of [...Object.values(ReplicaMetric), ...Object.values(VerifierMetric)]) {
      expect(METRIC_UNITS[name]).toBeDefined();
    }
    const d = metric(
      "LockMilliseconds",
      23,
      { Cluster: "orders", Host: "db-1" },
      new Date("2026-11-24T02:00:00Z"),
    );
    expect(d).toEqual({
      name: "LockMilliseconds",
      value: 23,
      unit: "Milliseconds",
      dimensions: { Cluster: "orders", Host: "db-1" },
      timestamp: "2026-11-24T02:00:00.000Z",
    });
  });
});

describe("document schemas", () => {
  // Parsers compile their schema on first use, so a schema strict mode rejects would otherwise only fail in
  // the one process that parses that document.
  it("every schema a parser uses compiles under the contracts' strict ajv", () => {
    for (const schema of [
      backupConfigSchema,
      verifyConfigSchema,
      restoreConfigSchema,
      statusConfigSchema,
      manifestV1Schema,
      manifestV2Schema,
      backupCreatedSchema,
      verificationSchema,
      checkReportSchema,
      statusReportSchema,
      segmentEntrySchema,
      epochRecordSchema,
      binlogArchivedSchema,
      segmentVerdictSchema,
      chainVerdictSchema,
      drillVerdictSchema,
    ])
      expect(() => ajv.compile(schema)).not.toThrow();
  });
});
