/**
 * Components on their own (defaults, argument errors), the project file, and the mock harness.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import {
  BackupBucket,
  backupWritablePaths,
  clusterAlarms,
  dashboardBody,
  epochSeconds,
  lifecycleRules,
  replicaStorageClass,
  resolveQueueSettings,
  resolveRetention,
  s3EndpointProblem,
  VerificationQueue,
  type AlarmSpec,
} from "../../components";
import { BinlogMetric, Dimension, METRIC_NAMESPACE, ReplicaMetric, VerifierMetric } from "../../contracts";
import { PROJECT_ROOT, runProgram } from "../../policies/stackSimulator";

describe("BackupBucket defaults and retention", () => {
  test("GOVERNANCE 35 days, expiry at 35, no transition a 35-day life could not pay for, no GFS", () => {
    expect(resolveRetention()).toEqual({
      mode: "GOVERNANCE",
      days: 35,
      noncurrentDays: 7,
      daily: { transitions: [], expireDays: 35 },
    });
  });

  test("STANDARD_IA after 30 days by default once archives live 60 days (30 in IA, its minimum)", () => {
    expect(resolveRetention({ expireDays: 60 }).daily).toEqual({
      transitions: [{ days: 30, storageClass: "STANDARD_IA" }],
      expireDays: 60,
    });
    expect(resolveRetention({ expireDays: 59 }).daily.transitions).toEqual([]);
  });

  test("a standalone BackupBucket registers its key, bucket and protections, with the default retention", async () => {
    const resources = await runProgram(() => {
      new BackupBucket("solo");
    });
    const lock = resources.find(
      (r) => r.type === "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
    )!;
    expect(lock.inputs.rule).toEqual({ defaultRetention: { mode: "GOVERNANCE", days: 35 } });
    expect(resources.filter((r) => r.custom)).toHaveLength(10);
    // Without a verifier, nobody may write a verdict.
    const policy = JSON.parse(
      resources.find((r) => r.type === "aws:s3/bucketPolicy:BucketPolicy")!.inputs.policy as string,
    ) as { Statement: Array<Record<string, unknown>> };
    const verdicts = policy.Statement.find((x) => x.Sid === "DenyVerdictsFromAnyoneButTheVerifier")!;
    expect(verdicts.Condition).toBeUndefined();
    const bucket = String(verdicts.Resource).split("/")[0];
    expect(verdicts.Resource).toEqual([
      `${bucket}/backups/*/verification.json`,
      `${bucket}/backups/*/*.segment-verification.json`,
      `${bucket}/backups/*/chain-verification.json`,
      `${bucket}/backups/*/pitr-drill.json`,
    ]);
  });

  test.each([
    [{ days: 0 }, /retention\.days must be an integer from 1/],
    [{ mode: "LEGAL" }, /retention\.mode must be one of "GOVERNANCE", "COMPLIANCE"/],
    [{ days: 30, expireDays: 10 }, /retention\.expireDays must be an integer from 30/],
    [
      { days: 35, expireDays: 400, infrequentAccessDays: 10 },
      /retention\.infrequentAccessDays must be 0 \(never\) or at least 30/,
    ],
    [
      { days: 35, expireDays: 400, infrequentAccessDays: 30, glacierDays: 40 },
      /retention\.infrequentAccessDays \(30\) leaves archives in STANDARD_IA for 10 days until retention\.glacierDays \(40\), but STANDARD_IA bills at least 30/,
    ],
    // The example: IA at day 30 with expiry at day 35 pays the 30-day minimum for 5 days.
    [
      { days: 35, expireDays: 35, infrequentAccessDays: 30 },
      /retention\.infrequentAccessDays \(30\) leaves archives in STANDARD_IA for 5 days until retention\.expireDays \(35\)/,
    ],
    [
      { days: 35, expireDays: 150, glacierDays: 90 },
      /retention\.glacierDays \(90\) leaves archives in GLACIER_IR for 60 days .* bills at least 90/,
    ],
    [
      { days: 35, expireDays: 400, infrequentAccessDays: 90, glacierDays: 60 },
      /retention\.glacierDays \(60\) must come after retention\.infrequentAccessDays \(90\)/,
    ],
    [
      { days: 35, expireDays: 35, monthly: { expireDays: 30 } },
      /retention\.monthly\.expireDays must be an integer from 35/,
    ],
    [
      { days: 35, expireDays: 35, monthly: { expireDays: 400, deepArchiveDays: 300 } },
      /retention\.monthly\.deepArchiveDays \(300\) leaves archives in DEEP_ARCHIVE for 100 days .* bills at least 180/,
    ],
  ])("rejects retention %j naming the field", (retention, message) => {
    expect(() => resolveRetention(retention as never)).toThrow(message);
  });

  test("grandfather-father-son: dailies and monthlies by their retention tag, a catch-all as long as the monthlies", () => {
    const r = resolveRetention({
      days: 14,
      expireDays: 14,
      monthly: { expireDays: 730, glacierDays: 90, deepArchiveDays: 365 },
    });
    expect(lifecycleRules("backups", r).slice(0, 3)).toEqual([
      { id: "archives", status: "Enabled", filter: { prefix: "backups/" }, expiration: { days: 730 } },
      {
        id: "archives-daily",
        status: "Enabled",
        filter: { and: { prefix: "backups/", tags: { retention: "daily" } } },
        transitions: [],
        expiration: { days: 14 },
      },
      {
        id: "archives-monthly",
        status: "Enabled",
        filter: { and: { prefix: "backups/", tags: { retention: "monthly" } } },
        transitions: [
          { days: 90, storageClass: "GLACIER_IR" },
          { days: 365, storageClass: "DEEP_ARCHIVE" },
        ],
        expiration: { days: 730 },
      },
    ]);
    // Dailies expire before STANDARD_IA's minimum: the off-site copy arrives in STANDARD, not IA.
    expect(replicaStorageClass(r)).toBe("STANDARD");
    expect(replicaStorageClass(resolveRetention({ days: 35 }))).toBe("STANDARD_IA");
  });
});

describe("VerificationQueue defaults", () => {
  test("6 h visibility, 3 receives, 20 s long polling, 14 days retention", () => {
    expect(resolveQueueSettings()).toEqual({
      visibilityTimeoutSeconds: 21600,
      maxReceiveCount: 3,
      receiveWaitTimeSeconds: 20,
      messageRetentionSeconds: 1209600,
    });
  });

  test("an invalid maxReceiveCount fails when the component is built", async () => {
    await expect(runProgram(() => new VerificationQueue("q", { maxReceiveCount: 0 }))).rejects.toThrow(
      /queue\.maxReceiveCount must be an integer from 1 to 1000, got 0/,
    );
  });
});

describe("alarms watch the metrics the host scripts emit", () => {
  test("the cluster alarms use contracts/ names, the Cluster dimension, and treat silence as failure where it is one", () => {
    const alarms = clusterAlarms({ name: "orders" });
    const simple = (a: AlarmSpec) =>
      a.metric as { namespace: string; metricName: string; dimensions: object; period: number };
    expect(
      alarms.map((a) => [
        a.id,
        a.kind,
        simple(a).namespace,
        simple(a).metricName,
        simple(a).dimensions,
        a.treatMissingData,
      ]),
    ).toEqual([
      [
        "no-verified-backup",
        "state",
        METRIC_NAMESPACE,
        VerifierMetric.VerificationSucceeded,
        { [Dimension.Cluster]: "orders" },
        "breaching",
      ],
      [
        "verification-failed",
        "event",
        METRIC_NAMESPACE,
        VerifierMetric.VerificationFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "backup-failed",
        "event",
        METRIC_NAMESPACE,
        ReplicaMetric.BackupFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "backup-abandoned",
        "event",
        METRIC_NAMESPACE,
        ReplicaMetric.BackupAbandoned,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "backup-missing",
        "state",
        METRIC_NAMESPACE,
        ReplicaMetric.BackupSucceeded,
        { [Dimension.Cluster]: "orders" },
        "breaching",
      ],
      [
        "binlog-lag",
        "state",
        METRIC_NAMESPACE,
        BinlogMetric.BinlogArchiveLagSeconds,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "binlog-gap",
        "event",
        METRIC_NAMESPACE,
        BinlogMetric.BinlogGaps,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "binlog-silent",
        "state",
        METRIC_NAMESPACE,
        BinlogMetric.BinlogArchiveLagSeconds,
        { [Dimension.Cluster]: "orders" },
        "breaching",
      ],
      [
        "binlog-segment-failed",
        "event",
        METRIC_NAMESPACE,
        VerifierMetric.SegmentFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "pitr-chain-failed",
        "event",
        METRIC_NAMESPACE,
        VerifierMetric.PitrChainFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "pitr-drill-failed",
        "event",
        METRIC_NAMESPACE,
        VerifierMetric.PitrDrillFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "pitr-chain-silent",
        "state",
        METRIC_NAMESPACE,
        VerifierMetric.PitrChainVerified,
        { [Dimension.Cluster]: "orders" },
        "breaching",
      ],
    ]);
    const noVerified = alarms[0];
    // 26 hourly periods, all below one success: nothing verified in the whole window.
    expect([
      simple(noVerified).period,
      noVerified.evaluationPeriods,
      noVerified.comparisonOperator,
      noVerified.threshold,
    ]).toEqual([3600, 26, "LessThanThreshold", 1]);
  });

  test("with replicas, each one's silence is its own alarm (Cluster and Host), instead of the cluster's", () => {
    const alarms = clusterAlarms({ name: "orders", hosts: [{ name: "db1" }, { name: "db2" }] });
    expect(alarms.map((a) => a.id)).toEqual([
      "no-verified-backup",
      "verification-failed",
      "backup-failed",
      "backup-abandoned",
      "db1-backup-missing",
      "db2-backup-missing",
      "binlog-lag",
      "binlog-gap",
      "binlog-silent",
      "binlog-segment-failed",
      "pitr-chain-failed",
      "pitr-drill-failed",
      "pitr-chain-silent",
    ]);
    expect(alarms[5].metric).toMatchObject({
      metricName: ReplicaMetric.BackupSucceeded,
      dimensions: { [Dimension.Cluster]: "orders", [Dimension.Host]: "db2" },
    });
  });

  test("the binlog archive: lag above the RPO (best archiver, 2 of 3 minutes), any gap, and 5 silent minutes page", () => {
    const byId = (alarms: AlarmSpec[]) => Object.fromEntries(alarms.map((a) => [a.id, a]));
    const alarms = byId(clusterAlarms({ name: "orders", pitr: { rpoSeconds: 30 } }));
    expect(alarms["binlog-lag"]).toMatchObject({
      metric: { statistic: "Minimum", period: 60 },
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      comparisonOperator: "GreaterThanThreshold",
      threshold: 30,
    });
    expect(alarms["binlog-gap"]).toMatchObject({
      metric: { statistic: "Maximum", period: 60 },
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
    });
    expect(alarms["binlog-silent"]).toMatchObject({
      metric: { statistic: "SampleCount", period: 60 },
      evaluationPeriods: 5,
      comparisonOperator: "LessThanThreshold",
      threshold: 1,
      treatMissingData: "breaching",
    });
    expect(alarms["binlog-segment-failed"]).toMatchObject({
      metric: { metricName: VerifierMetric.SegmentFailed, statistic: "Sum", period: 300 },
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanOrEqualToThreshold",
      threshold: 1,
      treatMissingData: "notBreaching",
    });
    // A chain needs two verified snapshots: its silence spans two windows.
    expect(alarms["pitr-chain-silent"]).toMatchObject({
      evaluationPeriods: 52,
      comparisonOperator: "LessThanThreshold",
    });
    expect(byId(clusterAlarms({ name: "orders" }))["binlog-lag"].threshold).toBe(10);
    expect(
      clusterAlarms({ name: "orders", pitr: { enabled: false } }).filter(
        (a) => a.id.startsWith("binlog") || a.id.startsWith("pitr"),
      ),
    ).toEqual([]);
  });

  test("a creation time that is not RFC 3339 is refused (the alarm would never arm)", () => {
    expect(epochSeconds("2026-11-20T09:30:00Z")).toBe(1795167000);
    expect(() => epochSeconds("yesterday")).toThrow(/not an RFC 3339 time/);
  });

  test("the dashboard has a row per cluster: restore time and PITR RTO, lock window, archive size, verdicts and failures, then the binlog archive's lag, window and proven point", () => {
    const body = JSON.parse(dashboardBody(["orders", "billing"], "eu-west-1")) as {
      start: string;
      widgets: Array<{
        type: string;
        y: number;
        properties: { markdown?: string; title?: string; period?: number; metrics?: unknown[][] };
      }>;
    };
    expect(body.start).toBe("-P30D");
    const rows = ["orders", "billing"].map((cluster) =>
      body.widgets.filter((w) => (w.properties.title ?? w.properties.markdown ?? "").includes(cluster)),
    );
    for (const [i, row] of rows.entries()) {
      const cluster = ["orders", "billing"][i];
      expect(row.map((w) => w.properties.title ?? w.properties.markdown)).toEqual([
        `## Cluster ${cluster}`,
        `${cluster}: restore time and measured PITR RTO (s)`,
        `${cluster}: lock window (ms)`,
        `${cluster}: archive size (bytes)`,
        `${cluster}: verdicts and failed backups`,
        `${cluster}: binlog archive lag (s, the RPO now)`,
        `${cluster}: point-in-time window archived, and the age of the newest proven point (s)`,
      ]);
      const metrics = row.flatMap((w) => w.properties.metrics ?? []);
      expect(metrics.map((m) => [m[1], m[2], m[3], (m[4] as { stat: string }).stat])).toEqual([
        [VerifierMetric.RestoreSeconds, Dimension.Cluster, cluster, "Maximum"],
        [VerifierMetric.PitrRestoreSeconds, Dimension.Cluster, cluster, "Maximum"],
        [ReplicaMetric.LockMilliseconds, Dimension.Cluster, cluster, "Maximum"],
        [ReplicaMetric.ArchiveBytes, Dimension.Cluster, cluster, "Maximum"],
        [VerifierMetric.VerificationSucceeded, Dimension.Cluster, cluster, "Sum"],
        [VerifierMetric.VerificationFailed, Dimension.Cluster, cluster, "Sum"],
        [ReplicaMetric.BackupFailed, Dimension.Cluster, cluster, "Sum"],
        [BinlogMetric.BinlogArchiveLagSeconds, Dimension.Cluster, cluster, "Minimum"],
        [BinlogMetric.PitrWindowSeconds, Dimension.Cluster, cluster, "Maximum"],
        [VerifierMetric.PitrVerifiedUntilSeconds, Dimension.Cluster, cluster, "Minimum"],
      ]);
      // The header, the snapshots' line (daily points), the binlog archive's line (a point a minute).
      expect(new Set(row.map((w) => w.y)).size).toBe(3);
      const periods = row.filter((w) => w.type === "metric").map((w) => w.properties.period);
      expect(periods).toEqual([86400, 86400, 86400, 86400, 60, 60]);
    }
    expect(Math.min(...rows[1].map((w) => w.y))).toBeGreaterThan(Math.max(...rows[0].map((w) => w.y)));
  });
});

describe("Pulumi.yaml", () => {
  const project = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, "Pulumi.yaml"), "utf8")) as {
    name: string;
    runtime: { name: string; options: { nodeargs: string } };
    main: string;
    config: Record<string, Record<string, unknown>>;
  };

  test("is a nodejs project whose program, loaded the way Pulumi loads it, is the stack function", () => {
    expect(project.name).toBe("mysql-backup-pipeline");
    expect(project.runtime).toEqual({
      name: "nodejs",
      options: { typescript: false, nodeargs: "--require tsx/cjs", packagemanager: "npm" },
    });
    // Pulumi's CommonJS path: node <nodeargs>, require(main), call it if it is a function.
    const loaded = spawnSync(
      process.execPath,
      [
        ...project.runtime.options.nodeargs.split(" "),
        "-e",
        `const p = require(${JSON.stringify(path.join(PROJECT_ROOT, project.main))}); console.log(p instanceof Function)`,
      ],
      { cwd: PROJECT_ROOT, encoding: "utf8" },
    );
    expect({ status: loaded.status, out: loaded.stdout.trim() }).toEqual({ status: 0, out: "true" });
  });

  test("declares config keys the way Pulumi's project schema allows (simple types, known attributes)", () => {
    for (const [key, declaration] of Object.entries(project.config)) {
      expect({
        key,
        unknown: Object.keys(declaration).filter(
          (a) => !["type", "items", "description", "secret", "default"].includes(a),
        ),
      }).toEqual({
        key,
        unknown: [],
      });
      expect(["string", "integer", "boolean", "array"]).toContain(declaration.type);
      expect(typeof declaration.description).toBe("string");
    }
  });

  test("every key the stack files set is declared or documented in docs/infrastructure.md", () => {
    const docs = fs.readFileSync(path.join(PROJECT_ROOT, "docs", "infrastructure.md"), "utf8");
    for (const file of ["Pulumi.dev.yaml", "Pulumi.prod.yaml"]) {
      const stack = parseYaml(fs.readFileSync(path.join(PROJECT_ROOT, file), "utf8")) as {
        config: Record<string, unknown>;
      };
      for (const key of Object.keys(stack.config).filter((k) => k.startsWith(`${project.name}:`))) {
        const bare = key.slice(project.name.length + 1);
        expect({ key, documented: bare in project.config || docs.includes(`\`${bare}\``) }).toEqual({
          key,
          documented: true,
        });
      }
    }
  });
});

describe("mock harness", () => {
  test("runs are isolated: the same program twice registers the same resources, not twice as many", async () => {
    const program = (): void => {
      new VerificationQueue("iso");
    };
    const first = await runProgram(program);
    const second = await runProgram(program);
    expect(second.map((r) => r.urn)).toEqual(first.map((r) => r.urn));
    expect(first).toHaveLength(6);
  });
});

describe("backupWritablePaths", () => {
  test("lets a backup write only its archives and where its driver puts the snapshot", () => {
    const btrfs = { driver: "btrfs", subvolume: "/srv/mysql", snapshotDir: "/srv/.snapshots" } as const;
    const lvm = { driver: "lvm", volume: "vg0/mysql", size: "10G", mountDir: "/mnt/mysql-backup" } as const;
    const zfs = { driver: "zfs", dataset: "tank/mysql" } as const;
    expect(backupWritablePaths(btrfs, "/var/backups/mysql")).toEqual([
      "/var/backups/mysql",
      "/srv/.snapshots",
    ]);
    expect(backupWritablePaths(lvm, "/var/backups/mysql")).toEqual([
      "/var/backups/mysql",
      "/mnt/mysql-backup",
    ]);
    expect(backupWritablePaths(zfs, "/var/backups/mysql")).toEqual(["/var/backups/mysql"]);
  });
});

describe("S3 gateway endpoint check", () => {
  const endpoint = {
    id: "vpce-0a1b",
    vpcEndpointType: "Gateway",
    serviceName: "com.amazonaws.eu-west-1.s3",
    routeTableIds: ["rtb-1", "rtb-2"],
  };
  test("accepts a gateway endpoint for S3 on every subnet's route table", () => {
    const tables = [
      { subnetId: "subnet-1", routeTableId: "rtb-1" },
      { subnetId: "subnet-2", routeTableId: "rtb-2" },
    ];
    expect(s3EndpointProblem(endpoint, "eu-west-1", tables)).toBeUndefined();
  });
  test("names a subnet whose route table it does not serve", () => {
    expect(
      s3EndpointProblem(endpoint, "eu-west-1", [{ subnetId: "subnet-3", routeTableId: "rtb-3" }]),
    ).toMatch(/vpce-0a1b is not on the route table of subnet-3 \(rtb-3\)/);
  });
  test("refuses an interface endpoint, or one for another service or region", () => {
    expect(s3EndpointProblem({ ...endpoint, vpcEndpointType: "Interface" }, "eu-west-1", [])).toMatch(
      /has type Interface and service com\.amazonaws\.eu-west-1\.s3; it must be a Gateway endpoint/,
    );
    expect(s3EndpointProblem(endpoint, "us-east-1", [])).toMatch(
      /must be a Gateway endpoint for com\.amazonaws\.us-east-1\.s3/,
    );
  });
});
