/**
 * The Prometheus sink's files served by the real consumer: node_exporter's textfile collector (Debian's
 * prometheus-node-exporter) parses them with Prometheus' own parser and says so in
 * `node_textfile_scrape_error`. A file it refuses is shown refused, so the check can fail.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import type { BackupConfig } from "../../contracts";
import { emitFailed, emitSucceeded } from "../../hostscripts/backup/metrics";
import { memoryLogger } from "../../hostscripts/common/log";
import { prometheusSink } from "../../hostscripts/common/prometheus";
import { reportMetrics } from "../../hostscripts/verify/report";
import { freePort } from "../../lab/emulator";
import { waitUntil } from "../../lab/processes";
import { syntheticReport } from "../../lab/synthetic";

let dir: string;
let textfiles: string;
let exporter: ChildProcess;
let port: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mbp-node-exporter-"));
  textfiles = join(dir, "textfile_collector");
  await mkdir(textfiles);
  port = await freePort();
  exporter = spawn(
    "prometheus-node-exporter",
    [
      "--collector.disable-defaults",
      "--collector.textfile",
      `--collector.textfile.directory=${textfiles}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: "ignore" },
  );
  const up = await waitUntil(
    () =>
      scrape().then(
        () => true,
        () => false,
      ),
    20_000,
  );
  if (!up) throw new Error(`prometheus-node-exporter did not answer on 127.0.0.1:${port}`);
}, 30_000);

afterAll(async () => {
  exporter?.kill("SIGTERM");
  await rm(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Map<string, ReturnType<typeof parsePrometheusTextFormat>[number]>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!response.ok) throw new Error(`node_exporter answered ${response.status}`);
  return new Map(parsePrometheusTextFormat(await response.text()).map((f) => [f.name, f]));
}

test("node_exporter serves a backup's and a verifier's files without a parse error", async () => {
  const config = { cluster: "orders", host: "db1" } as BackupConfig;
  const backup = prometheusSink(join(textfiles, "mysql_backup.prom"));
  await emitSucceeded(
    backup,
    memoryLogger(),
    config,
    { lockMs: 41, totalSeconds: 75.5, archiveBytes: 987654 },
    new Date(),
  );
  await emitFailed(backup, memoryLogger(), config, "LockTimeout", new Date());
  const verifier = prometheusSink(join(textfiles, "mysql_backup_verifier.prom"));
  const ref = { prefix: "backups", cluster: "orders", host: "db1", backupId: "20261124T020000Z-3fa9c1" };
  await verifier.put(reportMetrics(syntheticReport(ref, "b", "verified"), new Date()));

  const served = await scrape();
  expect(served.get("node_textfile_scrape_error")?.metrics[0].value).toBe("0");
  expect(served.get("mysql_backup_backup_succeeded_total")).toMatchObject({
    type: "COUNTER",
    metrics: [{ value: "1", labels: { cluster: "orders", host: "db1" } }],
  });
  expect(served.get("mysql_backup_lock_seconds")?.metrics[0].value).toBe("0.041");
  expect(served.get("mysql_backup_backup_last_failure_timestamp_seconds")?.metrics[0].labels).toEqual({
    cluster: "orders",
    host: "db1",
    reason: "LockTimeout",
  });
  expect(served.get("mysql_backup_verification_succeeded_total")?.metrics[0]).toMatchObject({
    value: "1",
    labels: { cluster: "orders" },
  });
  expect(served.get("mysql_backup_verification_last_success_timestamp_seconds")?.type).toBe("GAUGE");
});

test("a file Prometheus' parser refuses shows as a scrape error (the check above can fail)", async () => {
  const broken = join(textfiles, "broken.prom");
  await writeFile(broken, '# TYPE x_total counter\nx_total{a="b} 1\n');
  try {
    const served = await scrape();
    expect(served.get("node_textfile_scrape_error")?.metrics[0].value).toBe("1");
  } finally {
    await rm(broken);
  }
});
