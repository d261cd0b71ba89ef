/**
 * `mysql-backup status` against S3 served by the emulator, over synthetic estates (lab/synthetic.ts): what
 * it reads (keys listed, two objects fetched per healthy host), its exit codes through the real CLI, the
 * filters, the clusters and hosts the config expects, and what it says when it cannot judge.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { parseStatusReport, verificationKey, type StatusConfig, type StatusReport } from "../../contracts";
import { StatusReader } from "../../hostscripts/status/scan";
import { collectStatus } from "../../hostscripts/status/status";
import { LAB_REGION, startStandaloneEmulator, type StandaloneEmulator } from "../../lab/emulator";
import { seedBackups, syntheticEstate, syntheticReport, type SyntheticBackup } from "../../lab/synthetic";

const run = promisify(execFile);
const bin = join(__dirname, "../../bin/mysql-backup.js");
// Whole seconds, as backup ids carry them, so ages come out exact.
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);

// Each case runs the CLI a few times on a shared, loaded machine.
jest.setTimeout(60_000);

let dir: string;
let emulator: StandaloneEmulator;
let estate: SyntheticBackup[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mbp-status-"));
  emulator = await startStandaloneEmulator(dir);
  estate = syntheticEstate({
    prefix: "backups",
    clusters: ["billing", "orders"],
    hosts: 2,
    backupsPerHost: 40,
    everyHours: 12,
    now: NOW,
  });
  await seedBackups(emulator.clients.s3, emulator.bucket, estate);
}, 120_000);

afterAll(async () => {
  await emulator?.stop();
  await rm(dir, { recursive: true, force: true });
});

function config(extra: Partial<StatusConfig> = {}): StatusConfig {
  return {
    s3: { bucket: emulator.bucket, prefix: "backups" },
    aws: {
      region: LAB_REGION,
      endpoint: emulator.endpoint,
      forcePathStyle: true,
      credentialsFile: emulator.credentialsFile,
    },
    ...extra,
  };
}

/** The real CLI with a config file; the exit code, stdout and stderr. */
async function status(
  cfg: StatusConfig,
  args: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const path = join(dir, `status-${Math.random().toString(16).slice(2)}.json`);
  await writeFile(path, JSON.stringify(cfg));
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, "status", "--config", path, ...args], {
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const reportOf = (stdout: string): StatusReport => parseStatusReport(JSON.parse(stdout));

test("a healthy estate is ok, and only the newest manifest and verdict of each host are fetched", async () => {
  const reader = new StatusReader(emulator.clients.s3, emulator.bucket, "backups");
  const report = await collectStatus(reader, config(), {}, NOW);
  expect(report.health).toBe("ok");
  expect(report.clusters.map((c) => [c.cluster, c.hosts.map((h) => [h.host, h.health, h.backups])])).toEqual([
    [
      "billing",
      [
        ["replica1", "ok", 40],
        ["replica2", "ok", 40],
      ],
    ],
    [
      "orders",
      [
        ["replica1", "ok", 40],
        ["replica2", "ok", 40],
      ],
    ],
  ]);
  // 160 backups, 476 objects (the newest of each host has no verdict yet): every key listed once, 2 objects
  // read per host (the newest manifest, the newest verdict), and one listing per cluster of its binlog archives.
  expect(report.reads).toEqual({ listRequests: 1 + 2 + 2 + 4, keysListed: 2 + 4 + 476, objectsFetched: 8 });
  expect(report.clusters.flatMap((c) => c.hosts.map((h) => h.binlog))).toEqual([null, null, null, null]);
  const host = report.clusters[1].hosts[0];
  expect(host.newestBackup).toMatchObject({ ageSeconds: 3600, lockMs: 42.5, verdict: null });
  expect(host.newestBackup?.archiveBytes).toBeGreaterThanOrEqual(512);
  expect(host.newestVerified).toMatchObject({ ageSeconds: 13 * 3600, restoreSeconds: 61 });
});

test("the CLI prints a table on a pipe and JSON with --json, and exits 0 when everything is ok", async () => {
  const text = await status(config());
  expect(text.code).toBe(0);
  expect(text.stdout.split("\n")[0]).toBe("OK: 4 host(s) in 2 cluster(s): 4 ok");
  expect(text.stdout).toMatch(/^orders\s+replica2\s+ok\s+\d{8}T\d{6}Z-[0-9a-f]{6}\s+60 min\s/m);
  const json = await status(config(), ["--json"]);
  expect(json.code).toBe(0);
  expect(reportOf(json.stdout)).toMatchObject({ health: "ok", exitCode: 0, bucket: emulator.bucket });
});

describe("after a failed verification of orders/replica2's newest backup", () => {
  beforeAll(async () => {
    const newest = estate.find(
      (b) => b.ref.cluster === "orders" && b.ref.host === "replica2" && b.verdict === null,
    )!;
    const report = syntheticReport(newest.ref, emulator.bucket, "failed", { failedCheck: "objects" });
    await emulator.clients.s3.send(
      new PutObjectCommand({
        Bucket: emulator.bucket,
        Key: verificationKey(newest.ref),
        Body: JSON.stringify(report),
      }),
    );
  });

  test("status is critical (exit 2) and names the backup and the failed check", async () => {
    const { code, stdout } = await status(config());
    expect(code).toBe(2);
    expect(stdout.split("\n")[0]).toMatch(
      /^CRITICAL: 4 host\(s\) in 2 cluster\(s\): 3 ok, 1 critical — orders\/replica2: backup \S+ failed verification \(check "objects"\)/,
    );
  });

  test("--cluster and --host narrow what is judged, and so the exit code", async () => {
    expect((await status(config(), ["--cluster", "billing"])).code).toBe(0);
    const replica2 = reportOf((await status(config(), ["--host", "replica2", "--json"])).stdout);
    expect(replica2.clusters.map((c) => [c.cluster, c.hosts.map((h) => h.host), c.health])).toEqual([
      ["billing", ["replica2"], "ok"],
      ["orders", ["replica2"], "critical"],
    ]);
    expect(replica2.exitCode).toBe(2);
    expect((await status(config(), ["--cluster", "orders", "--host", "replica1"])).code).toBe(0);
  });
});

test("what is not a host is not judged: the cluster's binlog archive, a directory without backups", async () => {
  for (const key of ["backups/orders/binlogs/0-2-src/000001.seg", "backups/orders/stray-dir/notes.txt"]) {
    await emulator.clients.s3.send(new PutObjectCommand({ Bucket: emulator.bucket, Key: key, Body: "x" }));
  }
  const reader = new StatusReader(emulator.clients.s3, emulator.bucket, "backups");
  const report = await collectStatus(reader, config(), { cluster: "orders" }, NOW);
  expect(report.clusters[0].hosts.map((h) => h.host)).toEqual(["replica1", "replica2"]);
  // Named in the config, the same directory is a host that has never backed up.
  const expected = await collectStatus(
    reader,
    config({ clusters: [{ name: "orders", hosts: ["stray-dir"] }] }),
    { cluster: "orders" },
    NOW,
  );
  expect(expected.clusters[0].hosts.find((h) => h.host === "stray-dir")).toMatchObject({
    health: "critical",
    backups: 0,
  });
});

test("clusters and hosts the config expects but S3 does not have are critical", async () => {
  const cfg = config({
    clusters: [
      { name: "orders", hosts: ["replica1", "replica3"] },
      { name: "payments", windowHours: 48 },
    ],
  });
  const report = reportOf((await status(cfg, ["--json"])).stdout);
  const orders = report.clusters.find((c) => c.cluster === "orders")!;
  expect(orders.hosts.map((h) => h.host)).toEqual(["replica1", "replica2", "replica3"]);
  expect(orders.hosts[2]).toMatchObject({ health: "critical", backups: 0, newestBackup: null });
  expect(orders.hosts[2].reasons[0].message).toMatch(
    /^no backup at all under s3:\/\/\S+\/backups\/orders\/replica3\//,
  );
  const payments = report.clusters.find((c) => c.cluster === "payments")!;
  expect(payments).toMatchObject({ health: "critical", windowHours: 48, hosts: [] });
  expect(payments.reasons[0].message).toMatch(
    /^no backups of cluster payments under s3:\/\/\S+\/backups\/payments\//,
  );
});

test("a cluster or host named on the command line without backups is critical", async () => {
  const cluster = await status(config(), ["--cluster", "inventory"]);
  expect(cluster.code).toBe(2);
  expect(cluster.stdout).toMatch(
    /^inventory: CRITICAL no backups of cluster inventory under s3:\/\/\S+\/backups\/inventory\//m,
  );
  const host = reportOf(
    (await status(config(), ["--cluster", "orders", "--host", "replica9", "--json"])).stdout,
  );
  expect(host.clusters[0].hosts).toEqual([
    expect.objectContaining({ host: "replica9", health: "critical", backups: 0 }),
  ]);
});

test("when it cannot judge it exits 3 (UNKNOWN) and says why", async () => {
  const unknownHost = await status(config(), ["--host", "replica9"]);
  expect(unknownHost.code).toBe(3);
  expect(unknownHost.stderr).toMatch(/no backups of host replica9 under s3:\/\/\S+\/backups\//);
  const emptyPrefix = await status({ ...config(), s3: { bucket: emulator.bucket, prefix: "elsewhere" } });
  expect(emptyPrefix.code).toBe(3);
  expect(emptyPrefix.stderr).toMatch(
    /no backups of any cluster under s3:\/\/\S+\/elsewhere\/\nwhat to do: check s3\.bucket and s3\.prefix/,
  );
  const wrongBucket = await status({ ...config(), s3: { bucket: "no-such-bucket-here" } });
  expect(wrongBucket.code).toBe(3);
  expect(wrongBucket.stderr).toMatch(/cannot list s3:\/\/no-such-bucket-here\/backups\/: /);
  const typo = await status(config(), ["--clustre", "orders"]);
  expect(typo.code).toBe(3);
  expect(typo.stderr).toContain("unknown flag --clustre (did you mean --cluster?)");
  const badName = await status(config(), ["--cluster", "Orders!", "--json"]);
  expect(badName.code).toBe(3);
  expect(JSON.parse(badName.stdout)).toMatchObject({ ok: false, error: "Usage" });
});

test("`npm run bench:status` runs end to end and writes its section, keeping the rest of BENCHMARKS.md", async () => {
  const out = join(dir, "bench-out");
  await mkdir(out);
  await writeFile(join(out, "BENCHMARKS.md"), "# Benchmarks\n\nthe pipeline's figures\n");
  const tsx = join(__dirname, "../../node_modules/.bin/tsx");
  const script = join(__dirname, "../../bench/status.ts");
  const args = ["--clusters", "1", "--hosts", "2", "--backups", "3", "--archives", "1", "--segments", "1200"];
  await run(tsx, [script, ...args, "--runs", "1", "--out", out], { timeout: 300_000 });
  const results = JSON.parse(await readFile(join(out, "results-status.json"), "utf8"));
  expect(results).toMatchObject({
    backups: 6,
    objects: 16,
    // Per host 2 objects; the archive's epoch record, its first and newest ledger entries, and the manifest of
    // the verified backup its window starts from (its verdict was read already).
    ours: { objectsFetched: 4 + 3 + 1 },
    // Every manifest, verdict, epoch record and ledger entry.
    naive: { objectsFetched: 10 + 1 + 1200 },
    archive: {
      archives: 1,
      segmentsPerArchive: 1200,
      objects: 1 + 2 * 1200,
      ours: { objectsFetched: 3 },
      naive: { objectsFetched: 1 + 1200 },
    },
  });
  // 2,401 keys: a first page, then probes until one comes back short (never a listing of every page).
  expect(results.archive.ours.listRequests).toBeLessThanOrEqual(1 + 1 + 4);
  expect(results.archive.naive.listRequests).toBe(3);
  const report = await readFile(join(out, "BENCHMARKS.md"), "utf8");
  expect(report).toMatch(
    /^# Benchmarks\n\nthe pipeline's figures\n\n<!-- bench:status:start -->\n## `mysql-backup status` over 6 backups/,
  );
  expect(report).toMatch(
    /Command: `npm run bench:status -- --clusters 1 --hosts 2 --backups 3 --archives 1 --segments 1200 --runs 1`\.\n<!-- bench:status:end -->\n$/,
  );
});
