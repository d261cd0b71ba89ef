/**
 * The Prometheus textfile sink: the names the contract maps the CloudWatch metrics to, what a backup's and a
 * verification's real data points become (read back with a Prometheus text-format parser from the registry),
 * state across runs, and the atomic replace.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import {
  METRIC_UNITS,
  PROMETHEUS_PREFIX,
  parseVerifyConfig,
  prometheusMetric,
  type BackupConfig,
  type MetricName,
} from "../../contracts";
import { emitFailed, emitSucceeded } from "../../hostscripts/backup/metrics";
import { ArchiveMetrics } from "../../hostscripts/binlog/metrics";
import { memoryLogger } from "../../hostscripts/common/log";
import { sinkFromConfig } from "../../hostscripts/common/metrics";
import { prometheusSink } from "../../hostscripts/common/prometheus";
import { reportMetrics } from "../../hostscripts/verify/report";
import { syntheticReport } from "../../lab/synthetic";

/** A metric family as the parser returns it. */
interface Family {
  name: string;
  help: string;
  type: string;
  metrics: Array<{ value: string; labels?: Record<string, string> }>;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mbp-prom-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const config = { cluster: "orders", host: "db1" } as BackupConfig;
const T1 = new Date("2026-11-24T02:03:04Z");
const T2 = new Date("2026-11-25T02:03:04Z");

async function families(path: string): Promise<Map<string, Family>> {
  const parsed = parsePrometheusTextFormat(await readFile(path, "utf8")) as Family[];
  return new Map(parsed.map((f) => [f.name, f]));
}

function sample(all: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  const found = all.get(name)?.metrics.find((m) => JSON.stringify(m.labels ?? {}) === JSON.stringify(labels));
  return found === undefined ? undefined : Number(found.value);
}

test("every metric maps to a Prometheus name by the conventions: snake case, base units, _total for counters", () => {
  const mapped = Object.fromEntries(
    (Object.keys(METRIC_UNITS) as MetricName[]).map((n) => [
      n,
      [prometheusMetric(n).name, prometheusMetric(n).type, prometheusMetric(n).divisor],
    ]),
  );
  expect(mapped).toEqual({
    BackupSucceeded: ["mysql_backup_backup_succeeded_total", "counter", 1],
    BackupFailed: ["mysql_backup_backup_failed_total", "counter", 1],
    LockMilliseconds: ["mysql_backup_lock_seconds", "gauge", 1000],
    BackupSeconds: ["mysql_backup_backup_seconds", "gauge", 1],
    ArchiveBytes: ["mysql_backup_archive_bytes", "gauge", 1],
    BackupAbandoned: ["mysql_backup_backup_abandoned_total", "counter", 1],
    VerificationSucceeded: ["mysql_backup_verification_succeeded_total", "counter", 1],
    VerificationFailed: ["mysql_backup_verification_failed_total", "counter", 1],
    RestoreSeconds: ["mysql_backup_restore_seconds", "gauge", 1],
    BackupAgeAtVerificationSeconds: ["mysql_backup_backup_age_at_verification_seconds", "gauge", 1],
    RecoveryPointLagSeconds: ["mysql_backup_recovery_point_lag_seconds", "gauge", 1],
    SegmentVerified: ["mysql_backup_segment_verified_total", "counter", 1],
    SegmentFailed: ["mysql_backup_segment_failed_total", "counter", 1],
    PitrChainVerified: ["mysql_backup_pitr_chain_verified_total", "counter", 1],
    PitrChainFailed: ["mysql_backup_pitr_chain_failed_total", "counter", 1],
    PitrVerifiedUntilSeconds: ["mysql_backup_pitr_verified_until_seconds", "gauge", 1],
    PitrDrillPassed: ["mysql_backup_pitr_drill_passed_total", "counter", 1],
    PitrDrillFailed: ["mysql_backup_pitr_drill_failed_total", "counter", 1],
    PitrRestoreSeconds: ["mysql_backup_pitr_restore_seconds", "gauge", 1],
    BinlogArchiveLagSeconds: ["mysql_backup_binlog_archive_lag_seconds", "gauge", 1],
    BinlogGaps: ["mysql_backup_binlog_gaps_total", "counter", 1],
    PitrWindowSeconds: ["mysql_backup_pitr_window_seconds", "gauge", 1],
    BinlogSegmentsArchived: ["mysql_backup_binlog_segments_archived_total", "counter", 1],
    // Bytes uploaded in the minute: an amount added, so a counter whatever its unit.
    BinlogArchivedBytes: ["mysql_backup_binlog_archived_bytes_total", "counter", 1],
  });
  for (const [name, [prom]] of Object.entries(mapped)) {
    expect(prom).toMatch(new RegExp(`^${PROMETHEUS_PREFIX}[a-z_]+$`));
    expect(prometheusMetric(name as MetricName).help).toContain(`(CloudWatch MysqlBackupPipeline/${name})`);
  }
});

test("a backup's success and failure, as the backup emits them, read back with their types, labels and times", async () => {
  const path = join(dir, "mysql_backup.prom");
  const sink = sinkFromConfig({ sink: "prometheus", path }, undefined as never);
  await emitSucceeded(
    sink,
    memoryLogger(),
    config,
    { lockMs: 43.5, totalSeconds: 61.2, archiveBytes: 1_234_567 },
    T1,
  );
  const afterSuccess = await families(path);
  // The failure counter exists from the first run on, at 0, so increase() sees the first failure.
  expect(sample(afterSuccess, "mysql_backup_backup_failed_total", { cluster: "orders", host: "db1" })).toBe(
    0,
  );

  await emitFailed(sink, memoryLogger(), config, "DiskSpace", T2);
  const all = await families(path);
  const labels = { cluster: "orders", host: "db1" };
  expect(all.get("mysql_backup_backup_succeeded_total")).toMatchObject({
    type: "COUNTER",
    metrics: [{ value: "1", labels }],
  });
  expect(all.get("mysql_backup_backup_failed_total")).toMatchObject({
    type: "COUNTER",
    metrics: [{ value: "1", labels }],
  });
  expect(all.get("mysql_backup_lock_seconds")).toMatchObject({
    type: "GAUGE",
    metrics: [{ value: "0.0435", labels }],
  });
  expect(sample(all, "mysql_backup_backup_seconds", labels)).toBe(61.2);
  expect(sample(all, "mysql_backup_archive_bytes", labels)).toBe(1_234_567);
  expect(sample(all, "mysql_backup_backup_last_success_timestamp_seconds", labels)).toBe(T1.getTime() / 1000);
  expect(
    sample(all, "mysql_backup_backup_last_failure_timestamp_seconds", { ...labels, reason: "DiskSpace" }),
  ).toBe(T2.getTime() / 1000);
  expect(all.get("mysql_backup_lock_seconds")?.help).toBe(
    "How long the newest backup held the server's lock. (CloudWatch MysqlBackupPipeline/LockMilliseconds)",
  );
});

test("counters go on from what the last run left in the file; gauges hold the newest value", async () => {
  const path = join(dir, "mysql_backup.prom");
  for (const [i, lockMs] of [12, 30, 25].entries()) {
    // A new sink per run: each backup is its own process.
    const sink = prometheusSink(path);
    await emitSucceeded(
      sink,
      memoryLogger(),
      config,
      { lockMs, totalSeconds: 10, archiveBytes: 100 },
      new Date(T1.getTime() + i * 1000),
    );
  }
  const all = await families(path);
  expect(sample(all, "mysql_backup_backup_succeeded_total", { cluster: "orders", host: "db1" })).toBe(3);
  expect(sample(all, "mysql_backup_lock_seconds", { cluster: "orders", host: "db1" })).toBe(0.025);
  expect(
    sample(all, "mysql_backup_backup_last_success_timestamp_seconds", { cluster: "orders", host: "db1" }),
  ).toBe(T1.getTime() / 1000 + 2);
});

test("the binlog archiver's minutes: bytes and segments add up, the lag and the window are the newest", async () => {
  const path = join(dir, "mysql_backup_binlog.prom");
  const sink = sinkFromConfig({ sink: "prometheus", path }, undefined as never);
  const start = T1.getTime();
  const archiver = new ArchiveMetrics(sink, { cluster: "orders", host: "db1" }, start);
  archiver.archived(1000);
  archiver.archived(500);
  archiver.observe(start + 30_000, null, 2);
  await archiver.flush(start + 60_000, 3600, true);
  archiver.archived(250);
  archiver.observe(start + 90_000, null, 0);
  await archiver.flush(start + 120_000, 3660, true);
  const all = await families(path);
  const host = { cluster: "orders", host: "db1" };
  expect(all.get("mysql_backup_binlog_archived_bytes_total")?.type).toBe("COUNTER");
  expect(sample(all, "mysql_backup_binlog_archived_bytes_total", host)).toBe(1750);
  expect(sample(all, "mysql_backup_binlog_segments_archived_total", host)).toBe(3);
  expect(sample(all, "mysql_backup_binlog_gaps_total", host)).toBe(0);
  expect(sample(all, "mysql_backup_pitr_window_seconds", host)).toBe(3660);
  // The largest lag of the second minute: 32 s at its start (the first poll found the replica 2 s behind
  // 30 s before the first flush), not the 30 s it ends with.
  expect(sample(all, "mysql_backup_binlog_archive_lag_seconds", host)).toBe(32);
});

test("a verification's data points, as the verifier emits them", async () => {
  const path = join(dir, "mysql_backup_verifier.prom");
  const sink = prometheusSink(path);
  const ref = { prefix: "backups", cluster: "orders", host: "db1", backupId: "20261124T020000Z-3fa9c1" };
  await sink.put(reportMetrics(syntheticReport(ref, "b", "verified", { restoreSeconds: 73 }), T1));
  await sink.put(reportMetrics(syntheticReport(ref, "b", "failed"), T2));
  const all = await families(path);
  expect(sample(all, "mysql_backup_verification_succeeded_total", { cluster: "orders" })).toBe(1);
  expect(sample(all, "mysql_backup_verification_failed_total", { cluster: "orders" })).toBe(1);
  expect(sample(all, "mysql_backup_restore_seconds", { cluster: "orders" })).toBe(61);
  expect(sample(all, "mysql_backup_verification_last_success_timestamp_seconds", { cluster: "orders" })).toBe(
    T1.getTime() / 1000,
  );
  expect(sample(all, "mysql_backup_verification_last_failure_timestamp_seconds", { cluster: "orders" })).toBe(
    T2.getTime() / 1000,
  );
});

test("the file is replaced atomically: a reader sees the whole old file or the whole new one, never a part", async () => {
  const path = join(dir, "mysql_backup.prom");
  let seenBeforeRename: string | undefined;
  const sink = prometheusSink(path, {
    beforeRename: async () => {
      seenBeforeRename ??= await readFile(path, "utf8");
      // The new file is complete beside the old one, under a name the collector does not read.
      const temporary = (await readdir(dir)).filter((n) => n !== "mysql_backup.prom");
      expect(temporary).toEqual([expect.stringMatching(/^\.mysql_backup\.prom\.\d+\.tmp$/)]);
    },
  });
  await writeFile(path, "# HELP old_metric x\n# TYPE old_metric gauge\nold_metric 1\n");
  await emitSucceeded(sink, memoryLogger(), config, { lockMs: 1, totalSeconds: 1, archiveBytes: 1 }, T1);
  expect(seenBeforeRename).toBe("# HELP old_metric x\n# TYPE old_metric gauge\nold_metric 1\n");
  expect(await readdir(dir)).toEqual(["mysql_backup.prom"]);

  // Readers racing 40 writes: every read is a whole file that parses and ends with the state line.
  let writing = true;
  const reads: string[] = [];
  const reader = (async () => {
    while (writing) reads.push(await readFile(path, "utf8"));
  })();
  const racing = prometheusSink(path);
  for (let i = 0; i < 40; i++) {
    await emitSucceeded(racing, memoryLogger(), config, { lockMs: i, totalSeconds: i, archiveBytes: i }, T1);
  }
  writing = false;
  await reader;
  expect(reads.length).toBeGreaterThan(0);
  for (const text of reads) {
    expect(text).toMatch(/\n# mysql-backup-state \[.*\]\n$/);
    expect((parsePrometheusTextFormat(text) as Family[]).map((f) => f.name)).toContain(
      "mysql_backup_lock_seconds",
    );
  }
  expect(
    sample(await families(path), "mysql_backup_backup_succeeded_total", { cluster: "orders", host: "db1" }),
  ).toBe(41);
});

test("a write that cannot be renamed into place leaves no temporary file and reports the error", async () => {
  const path = join(dir, "taken.prom");
  await mkdir(path);
  await writeFile(join(path, "x"), "");
  const sink = prometheusSink(path);
  await expect(
    sink.put(
      reportMetrics(
        syntheticReport(
          { prefix: "b", cluster: "c", host: "h", backupId: "20261124T020000Z-3fa9c1" },
          "b",
          "verified",
        ),
        T1,
      ),
    ),
  ).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/);
  expect((await readdir(dir)).sort()).toEqual(["taken.prom"]);
});

test("the config takes a prometheus sink whose path is a .prom file, which the collector reads", () => {
  const verify = { sqs: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/1/q" }, scratchDir: "/var/lib/v" };
  const path = "/var/lib/prometheus/node-exporter/mysql_backup_verifier.prom";
  expect(parseVerifyConfig({ ...verify, metrics: { sink: "prometheus", path } }).metrics).toEqual({
    sink: "prometheus",
    path,
  });
  expect(() =>
    parseVerifyConfig({ ...verify, metrics: { sink: "prometheus", path: "/var/lib/x.txt" } }),
  ).toThrow(/metrics\.path must match pattern/);
});
