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
  resolveQueueSettings,
  resolveRetention,
  VerificationQueue,
} from "../../components";
import { Dimension, METRIC_NAMESPACE, ReplicaMetric, VerifierMetric } from "../../contracts";
import { PROJECT_ROOT, runProgram } from "../../policies/stackSimulator";

describe("BackupBucket defaults", () => {
  test("GOVERNANCE 35 days, expiry at 35, IA after 30, no Glacier", () => {
    expect(resolveRetention()).toEqual({
      mode: "GOVERNANCE",
      days: 35,
      expireDays: 35,
      infrequentAccessDays: 30,
      glacierDays: 0,
      noncurrentDays: 7,
    });
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
  });

  test.each([
    [{ days: 0 }, /retention\.days must be an integer from 1/],
    [{ mode: "LEGAL" }, /retention\.mode must be one of "GOVERNANCE", "COMPLIANCE"/],
    [{ days: 30, expireDays: 10 }, /retention\.expireDays must be an integer from 30/],
    [{ days: 35, expireDays: 400, infrequentAccessDays: 10 }, /retention\.infrequentAccessDays.*at least 30/],
    [
      { days: 35, expireDays: 400, infrequentAccessDays: 30, glacierDays: 40 },
      /retention\.glacierDays.*at least 60/,
    ],
  ])("rejects retention %j naming the field", (retention, message) => {
    expect(() => resolveRetention(retention as never)).toThrow(message);
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
    expect(alarms.map((a) => [a.id, a.namespace, a.metricName, a.dimensions, a.treatMissingData])).toEqual([
      [
        "no-verified-backup",
        METRIC_NAMESPACE,
        VerifierMetric.VerificationSucceeded,
        { [Dimension.Cluster]: "orders" },
        "breaching",
      ],
      [
        "verification-failed",
        METRIC_NAMESPACE,
        VerifierMetric.VerificationFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "backup-failed",
        METRIC_NAMESPACE,
        ReplicaMetric.BackupFailed,
        { [Dimension.Cluster]: "orders" },
        "notBreaching",
      ],
      [
        "backup-missing",
        METRIC_NAMESPACE,
        ReplicaMetric.BackupSucceeded,
        { [Dimension.Cluster]: "orders" },
        "breaching",
      ],
    ]);
    const noVerified = alarms[0];
    // 26 hourly periods, all below one success: nothing verified in the whole window.
    expect([
      noVerified.period,
      noVerified.evaluationPeriods,
      noVerified.comparisonOperator,
      noVerified.threshold,
    ]).toEqual([3600, 26, "LessThanThreshold", 1]);
  });

  test("the dashboard has a row per cluster: restore time, lock window, archive size, verdicts and failures", () => {
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
        `${cluster}: restore time (s)`,
        `${cluster}: lock window (ms)`,
        `${cluster}: archive size (bytes)`,
        `${cluster}: verdicts and failed backups`,
      ]);
      const metrics = row.flatMap((w) => w.properties.metrics ?? []);
      expect(metrics.map((m) => [m[1], m[2], m[3], (m[4] as { stat: string }).stat])).toEqual([
        [VerifierMetric.RestoreSeconds, Dimension.Cluster, cluster, "Maximum"],
        [ReplicaMetric.LockMilliseconds, Dimension.Cluster, cluster, "Maximum"],
        [ReplicaMetric.ArchiveBytes, Dimension.Cluster, cluster, "Maximum"],
        [VerifierMetric.VerificationSucceeded, Dimension.Cluster, cluster, "Sum"],
        [VerifierMetric.VerificationFailed, Dimension.Cluster, cluster, "Sum"],
        [ReplicaMetric.BackupFailed, Dimension.Cluster, cluster, "Sum"],
      ]);
      expect(new Set(row.map((w) => w.y)).size).toBe(2);
      expect(row.filter((w) => w.type === "metric").every((w) => w.properties.period === 86400)).toBe(true);
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
