/**
 * `mysql-backup status` over the lab's real backups and verdicts (the first backup also reporting to a
 * Prometheus textfile): ok after a verified backup, a warning when
 * the newest verified backup of a host is older than the window, critical (exit 2) after a failed
 * verification; `--json` validates against the contract. The second host is the same replica backed up
 * under another name with the backup's clock set back, so its verified backup is a day old for real.
 */
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { PurgeQueueCommand } from "@aws-sdk/client-sqs";
import { parseBackupConfig, parseStatusReport, type StatusReport } from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import { runBackup, type BackupResult } from "../../hostscripts/backup/run";
import { memoryLogger } from "../../hostscripts/common/log";
import { withLab } from "../support/lab";
import { runLabVerifier, withClients } from "./verify-support";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const lab = withLab();
const HOUR = 3_600_000;

jest.setTimeout(300_000);

/** The real CLI; exit code and output. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [join(repo, "bin", "mysql-backup.js"), ...args], {
      timeout: 240_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

async function status(args: string[] = []): Promise<{ code: number; report: StatusReport }> {
  const { code, stdout } = await cli(["status", "--config", lab().statusConfigPath, "--json", ...args]);
  return { code, report: parseStatusReport(JSON.parse(stdout)) };
}

/** A backup of the lab replica named `host`, taken as if the clock said `at`. */
async function backupAs(host: string, at: Date): Promise<BackupResult> {
  const config = { ...parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8"))), host };
  const deps = await backupDeps(config, memoryLogger());
  try {
    return await runBackup(config, { ...deps, clock: () => new Date(at) });
  } finally {
    deps.s3.destroy();
    deps.sqs.destroy();
  }
}

async function verifyOnce(): Promise<string> {
  return (await runLabVerifier(lab(), { once: true })).result.outcome;
}

test("a verified backup: the host is ok, with the backup's real size, lock and measured restore", async () => {
  // This backup reports to a Prometheus textfile, as on an estate without CloudWatch.
  const prom = join(lab().dir, "mysql_backup.prom");
  const config = JSON.parse(await readFile(lab().backupConfigPath, "utf8"));
  const promConfig = join(lab().dir, "backup-prometheus.json");
  await writeFile(promConfig, JSON.stringify({ ...config, metrics: { sink: "prometheus", path: prom } }));
  const backup = await cli(["backup", "--config", promConfig, "--json"]);
  expect(backup.code).toBe(0);
  const taken = JSON.parse(backup.stdout) as BackupResult;
  const families = new Map(parsePrometheusTextFormat(await readFile(prom, "utf8")).map((f) => [f.name, f]));
  const labels = { cluster: "lab", host: "replica1" };
  expect(families.get("mysql_backup_backup_succeeded_total")?.metrics).toEqual([{ value: "1", labels }]);
  expect(families.get("mysql_backup_backup_failed_total")?.metrics).toEqual([{ value: "0", labels }]);
  expect(Number(families.get("mysql_backup_lock_seconds")?.metrics[0].value)).toBeCloseTo(
    taken.lockMs / 1000,
    3,
  );
  expect(families.get("mysql_backup_archive_bytes")?.metrics).toEqual([
    { value: String(taken.archiveBytes), labels },
  ]);

  expect(await verifyOnce()).toBe("verified");

  const { code, report } = await status();
  expect(code).toBe(0);
  expect(report.health).toBe("ok");
  const [host] = report.clusters[0].hosts;
  expect(host).toMatchObject({
    host: "replica1",
    health: "ok",
    backups: 1,
    newestBackup: { backupId: taken.backupId, archiveBytes: taken.archiveBytes, verdict: "verified" },
    newestVerified: { backupId: taken.backupId },
    sinceVerified: [],
  });
  expect(host.newestBackup?.lockMs).toBeCloseTo(taken.lockMs, 0);
  expect(host.newestVerified?.restoreSeconds).toBeGreaterThan(0);

  const text = await cli(["status", "--config", lab().statusConfigPath]);
  expect(text.stdout.split("\n")[0]).toBe("OK: 1 host(s) in 1 cluster(s): 1 ok");
});

test("a host whose newest verified backup is older than the window is a warning (exit 1)", async () => {
  await backupAs("replica2", new Date(Date.now() - 30 * HOUR));
  expect(await verifyOnce()).toBe("verified");
  await backupAs("replica2", new Date(Date.now() - HOUR));
  // That one stays unverified (within verifyWithinHours): its message must not reach the next verifier run.
  await withClients(lab(), ({ sqs }) => sqs.send(new PurgeQueueCommand({ QueueUrl: lab().sqs.queueUrl })));

  const { code, report } = await status(["--host", "replica2"]);
  expect(code).toBe(1);
  const [host] = report.clusters[0].hosts;
  expect(host).toMatchObject({ host: "replica2", health: "warning", backups: 2 });
  expect(host.reasons).toEqual([
    {
      state: "warning",
      message: expect.stringMatching(/^the newest verified backup \S+ is 30\.\d h old \(window 26 h\)/),
    },
  ]);
  expect(host.sinceVerified).toEqual([expect.objectContaining({ state: "unverified" })]);
});

test("a failed verification makes its host critical, and status exits 2", async () => {
  const backup = await cli(["backup", "--config", lab().backupConfigPath, "--json"]);
  const taken = JSON.parse(backup.stdout) as BackupResult;
  // One byte of the archive (its first chunk) flipped in S3: the verifier's objects check must refuse it.
  const chunkKey = taken.archiveKeys[0];
  await withClients(lab(), async ({ s3 }) => {
    const got = await s3.send(new GetObjectCommand({ Bucket: taken.bucket, Key: chunkKey }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    // In 5 MiB parts: the emulator refuses a single PUT of more than about 10 MB.
    await new Upload({
      client: s3,
      params: { Bucket: taken.bucket, Key: chunkKey, Body: bytes },
      partSize: 5 * 1024 * 1024,
    }).done();
  });
  expect(await verifyOnce()).toBe("failed");

  const { code, report } = await status();
  expect(code).toBe(2);
  expect(report.clusters[0].hosts.map((h) => [h.host, h.health])).toEqual([
    ["replica1", "critical"],
    ["replica2", "warning"],
  ]);
  const text = await cli(["status", "--config", lab().statusConfigPath]);
  expect(text.code).toBe(2);
  expect(text.stdout.split("\n")[0]).toMatch(
    new RegExp(
      `^CRITICAL: 2 host\\(s\\) in 1 cluster\\(s\\): 1 warning, 1 critical — lab/replica1: backup ${taken.backupId} failed verification \\(check "objects"\\)`,
    ),
  );
});
