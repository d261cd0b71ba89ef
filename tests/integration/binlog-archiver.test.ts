/**
 * The binlog archiver under what production does to it, on the lab replica under sysbench load, its S3
 * writes through a guard that answers a conditional PUT on an existing key with 412, as S3 does:
 *
 * - kill -9 at each step of a cut and at random moments: after the restarts the chain is continuous, every
 *   segment's sha256 matches its ledger entry, every event's checksum holds (mariadb-binlog), no GTID is in
 *   two segments, and every write was create-only;
 * - binlogs purged while the archiver is stopped: the gap is found, logged, counted in BinlogGaps, recorded
 *   with the missing GTIDs, and a restore past it is refused naming them (--force restores up to it);
 * - RESET MASTER: a new epoch, no gap, no object overwritten although the file names repeat;
 * - failover: the replica is promoted and takes writes; the archive goes on without a gap and a restore
 *   across the switch succeeds.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { parseBackupConfig, type BackupConfig, type BinlogSegmentEntry } from "../../contracts";
import { ExitCode } from "../../hostscripts/common/errors";
import { listArchive, readArchive } from "../../hostscripts/restore/archive";
import type { PitrResult } from "../../hostscripts/restore/pitr";
import * as dataset from "../../lab/dataset";
import { labAwsClients, sql, stopLoad, waitForReplicaCatchUp } from "../../lab/lab";
import { waitUntil } from "../../lab/processes";
import { withLab } from "../support/lab";
import { binlogOracle, cli, failingTables, startRestored } from "../support/pitr";
import { startS3Guard, type S3Guard } from "../support/s3-guard";
import { takeBackup } from "./verify-support";

jest.setTimeout(600_000);

const lab = withLab({ load: true });
const repo = resolve(__dirname, "..", "..");
let guard: S3Guard;

beforeAll(async () => {
  guard = await startS3Guard(lab().s3.endpoint);
});
afterAll(async () => {
  await guard?.close();
});

/** The lab replica's config with the archiver's S3 going through the guard, its own state dir and prefix. */
async function archiverConfig(name: string, prefix: string, rpoSeconds: number): Promise<string> {
  const base = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  const config: BackupConfig = {
    ...base,
    aws: { ...base.aws, endpoint: guard.endpoint },
    s3: { ...base.s3, prefix },
    metrics: { sink: "file", path: join(lab().dir, `metrics-${name}.jsonl`) },
    binlog: { ...base.binlog, stateDir: join(lab().dir, `binlog-${name}`), rpoSeconds },
  };
  const path = join(lab().dir, `archiver-${name}.json`);
  await writeFile(path, JSON.stringify(parseBackupConfig(config)));
  return path;
}

/** `mysql-backup binlog` as a process (through the pausing CLI when `pauseAt` is set); resolves its exit. */
function archiver(config: string, extra: string[] = [], pauseAt?: { point: string; marker: string }) {
  const entry = pauseAt
    ? join(repo, "tests", "support", "pausing-cli.ts")
    : join(repo, "hostscripts", "cli.ts");
  const child = spawn(
    process.execPath,
    ["--require", "tsx/cjs", entry, "binlog", "--config", config, ...extra],
    {
      cwd: repo,
      env: pauseAt
        ? { ...process.env, MYSQL_BACKUP_PAUSE_AT: pauseAt.point, MYSQL_BACKUP_PAUSE_MARKER: pauseAt.marker }
        : process.env,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((done) =>
    child.on("exit", (code, signal) => done({ code, signal, stderr })),
  );
  return { child, exited };
}

/** The run's exit, or (after `ms`) the run killed and a failure that shows the end of what it logged. */
async function exitWithin(run: ReturnType<typeof archiver>, ms: number, what: string) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((done) => (timer = setTimeout(() => done(null), ms)));
  const ended = await Promise.race([run.exited, late]);
  clearTimeout(timer);
  if (ended !== null) return ended;
  run.child.kill("SIGKILL");
  const { stderr } = await run.exited;
  throw new Error(`${what} did not end within ${ms / 1000}s; its log ends with:\n${stderr.slice(-4000)}`);
}

/** The complete segments of an archive prefix, with their ledger entries, by epoch and sequence. */
async function archived(prefix: string) {
  const { s3 } = labAwsClients(lab());
  try {
    return await readArchive(s3, lab().s3.bucket, await listArchive(s3, lab().s3.bucket, prefix, "lab"));
  } finally {
    s3.destroy();
  }
}

/** A segment's bytes from S3. */
async function segmentBytes(entry: BinlogSegmentEntry): Promise<Buffer> {
  const { s3 } = labAwsClients(lab());
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: lab().s3.bucket, Key: entry.segmentKey }));
    return Buffer.from(await object.Body!.transformToByteArray());
  } finally {
    s3.destroy();
  }
}

/** The GTIDs `mariadb-binlog --verify-binlog-checksum` reads in a segment; fails on any checksum error. */
async function gtidsOf(entry: BinlogSegmentEntry, bytes: Buffer): Promise<string[]> {
  const path = join(lab().dir, "segment-under-test.binlog");
  await writeFile(path, bytes);
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((done, fail) => {
    const child = spawn("mariadb-binlog", ["--verify-binlog-checksum", path]);
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", fail);
    child.on("exit", () => done({ stdout: out, stderr: err }));
  });
  // mariadb-binlog exits 0 on a CRC failure and only says so on stderr.
  expect(`${entry.segmentKey}: ${stderr}`).not.toMatch(/ERROR/);
  return [...stdout.matchAll(/\tGTID (\d+-\d+-\d+)/g)].map((m) => m[1]);
}

test("kill -9 at every step of a cut and at random moments: one continuous chain, create-only writes, no GTID twice", async () => {
  const config = await archiverConfig("kill", "killtest", 2);
  for (const point of [
    "binlog-spooled",
    "binlog-committed",
    "binlog-segment-uploaded",
    "binlog-ledger-uploaded",
  ]) {
    const marker = join(lab().dir, `paused-${point}`);
    const run = archiver(config, [], { point, marker });
    const paused = await waitUntil(
      async () => (await readFile(marker, "utf8").catch(() => "")) !== "",
      90_000,
      100,
    );
    expect(paused).toBe(true);
    run.child.kill("SIGKILL");
    expect((await run.exited).signal).toBe("SIGKILL");
  }
  for (let i = 0; i < 6; i++) {
    const run = archiver(config);
    await new Promise((r) => setTimeout(r, 500 + Math.random() * 3500));
    run.child.kill("SIGKILL");
    await run.exited;
  }
  const last = await exitWithin(archiver(config, ["--once"]), 240_000, "the final binlog --once");
  expect(last.code).toBe(0);

  const puts = guard.puts.filter((p) => p.key.startsWith("killtest/"));
  expect(puts.every((p) => p.conditional && p.sse === "aws:kms" && p.checksumSha256 !== undefined)).toBe(
    true,
  );
  const created = new Map<string, number>();
  for (const p of puts.filter((p) => p.status === 200)) created.set(p.key, (created.get(p.key) ?? 0) + 1);
  expect([...created.values()].every((n) => n === 1)).toBe(true);
  // The kills after an upload made restarts upload again: S3 refused those, the archiver took it as done.
  expect(puts.some((p) => p.status === 412)).toBe(true);

  const epochs = await archived("killtest");
  expect(epochs).toHaveLength(1);
  const [{ entries, incomplete }] = epochs;
  expect(incomplete).toEqual([]);
  expect(entries.map((e) => e.sequence)).toEqual(entries.map((_, i) => i + 1));
  const seen = new Set<string>();
  const all: string[] = [];
  for (const [i, entry] of entries.entries()) {
    if (i > 0) {
      expect(entry.gtid.before).toBe(entries[i - 1].gtid.after);
      expect(entry.previousLedgerKey).toBe(entries[i - 1].segmentKey.replace(/\.binlog$/, ".ledger.json"));
      expect(entry.file.startOffset === entries[i - 1].file.endOffset || entries[i - 1].file.endsFile).toBe(
        true,
      );
    }
    const bytes = await segmentBytes(entry);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(entry.sha256);
    const gtids = await gtidsOf(entry, bytes);
    expect(gtids).toHaveLength(entry.transactions.count);
    for (const g of gtids) {
      expect(seen.has(g)).toBe(false);
      seen.add(g);
      all.push(g);
    }
  }
  const oracle = (await binlogOracle(lab().replica.datadir)).map((t) => t.gtid);
  expect(all).toEqual(oracle.slice(0, all.length));
  console.log(
    `kill -9 ×10: ${entries.length} segments, ${all.length} transactions, ${puts.filter((p) => p.status === 412).length} uploads refused as already done`,
  );
  // Four pauses of up to 90 s, six kills and the final run's 240 s.
}, 900_000);

/** The main archiver: the lab cluster's archive (`backups/`), which `restore` reads. */
let mainConfig: string;
const replicaGtid = async () => String((await sql(lab(), "replica", "SELECT @@gtid_binlog_pos AS p"))[0].p);

/** The replica's GTID once the load has stopped: a commit already sent when sysbench was stopped still lands. */
async function settledReplicaGtid(): Promise<string> {
  let last = await replicaGtid();
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await replicaGtid();
    if (now === last) return now;
    last = now;
  }
}

/** Waits until the main archive's newest segment reaches `gtid` (same domain, sequence at least its). */
async function archivedUpTo(gtid: string, timeoutMs = 120_000): Promise<void> {
  const [domain, , seq] = gtid.split("-").map(Number);
  const reached = await waitUntil(
    async () =>
      (await archived("backups")).some((e) =>
        e.entries.some((x) =>
          x.gtid.after.split(",").some((g) => g.startsWith(`${domain}-`) && Number(g.split("-")[2]) >= seq),
        ),
      ),
    timeoutMs,
    1000,
  );
  expect(reached).toBe(true);
}

async function stopped(run: ReturnType<typeof archiver>): Promise<{ code: number | null; stderr: string }> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGTERM");
  return run.exited;
}

/** Archivers a failed test left running: stopped before the lab goes down. */
const afterAllStops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const stop of afterAllStops) await stop();
});

let beforeGap: string;

test("binlogs purged while the archiver is stopped: the gap is found, alarmed, recorded, and a restore past it refused", async () => {
  mainConfig = await archiverConfig("main", "backups", 4);
  beforeGap = (await takeBackup(lab())).backupId;
  let run = archiver(mainConfig);
  afterAllStops.push(() => stopped(run));
  await archivedUpTo(await replicaGtid());
  expect((await stopped(run)).code).toBe(0);
  const stoppedAt = await replicaGtid();
  // While it is stopped the replica rotates its binlog twice under load and purges what the archiver never read.
  await sql(lab(), "replica", "FLUSH BINARY LOGS");
  await new Promise((r) => setTimeout(r, 2000));
  await sql(lab(), "replica", "FLUSH BINARY LOGS");
  const [current] = await sql(lab(), "replica", "SHOW MASTER STATUS");
  await sql(lab(), "replica", `PURGE BINARY LOGS TO '${String(current.File)}'`);
  run = archiver(mainConfig);
  afterAllStops.push(() => stopped(run));
  const gapEpoch = await waitUntil(
    async () => (await archived("backups")).some((e) => e.record?.reason === "gap"),
    60_000,
    500,
  );
  expect(gapEpoch).toBe(true);
  await archivedUpTo(await replicaGtid());
  const { stderr } = await stopped(run);
  const record = (await archived("backups")).find((e) => e.record?.reason === "gap")!.record!;
  expect(record.previous?.gtidAfter).toBeDefined();
  expect(record.missing).toMatch(/^0-\*-\d+\.\.0-1-\d+ \(\d+ transactions of domain 0\)$/);
  expect(stderr).toMatch(/"level":"error","message":"GAP in the binlog archive/);
  const metrics = (await readFile(join(lab().dir, "metrics-main.jsonl"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(metrics).toContainEqual(
    expect.objectContaining({ name: "BinlogGaps", value: 1, dimensions: { Cluster: "lab" } }),
  );
  console.log(`gap: archiver stopped at ${stoppedAt}; ${record.missing} lost`);

  // A point the archive holds, past the gap: the newest archived transaction. Named by GTID, not by time: a
  // replica running minutes behind (a loaded machine) applies transactions whose commit times precede the
  // backup's completion, which a time would put before the snapshot.
  const newest = (await archived("backups"))
    .flatMap((e) => e.entries)
    .sort((a, b) => Number(a.gtid.after.split("-")[2]) - Number(b.gtid.after.split("-")[2]))
    .at(-1)!;
  const until = newest.gtid.after;
  const target = join(lab().dir, "pitr-gap");
  const refused = await cli([
    "restore",
    "--config",
    lab().restoreConfigPath,
    "--target",
    target,
    "--backup",
    beforeGap,
    "--until-gtid",
    until,
  ]);
  expect(refused.code).toBe(ExitCode.PitrRefused);
  expect(refused.json.message).toEqual(expect.stringContaining(`missing: ${record.missing}`));
  expect(refused.json.message).toMatch(/the binlog archive has a gap/);
  expect(refused.json.hint).toMatch(/add --force to restore up to/);

  const forced = await cli([
    "restore",
    "--config",
    lab().restoreConfigPath,
    "--target",
    target,
    "--backup",
    beforeGap,
    "--until-gtid",
    until,
    "--force",
  ]);
  expect({ code: forced.code, error: forced.json.message }).toEqual({ code: 0, error: undefined });
  const result = forced.json as unknown as PitrResult;
  expect(result.pitr.lost).toBe(record.missing);
  expect(result.pitr.reachedGtid).toBe(record.previous!.gtidAfter);
  await rm(target, { recursive: true, force: true });
});

test("RESET MASTER on the replica: a new epoch without a gap, and no object overwritten although file names repeat", async () => {
  const run = archiver(mainConfig);
  afterAllStops.push(() => stopped(run));
  try {
    await stopLoad(lab());
    await waitForReplicaCatchUp(lab());
    await archivedUpTo(await replicaGtid());
    const putsBefore = guard.puts.length;
    await sql(lab(), "replica", "RESET MASTER");
    await dataset.startLoad(lab().dir, lab().primary.socket, lab().dataset, { rate: 200 });
    const reset = await waitUntil(
      async () =>
        (await archived("backups")).some((e) => e.record?.reason === "reset-master" && e.entries.length > 0),
      60_000,
      500,
    );
    expect(reset).toBe(true);
    const epochs = await archived("backups");
    const resetEpoch = epochs.find((e) => e.record?.reason === "reset-master")!;
    expect(resetEpoch.record!.missing).toBeNull();
    expect(resetEpoch.entries[0].gtid.before).toBe(resetEpoch.record!.previous!.gtidAfter);
    const reused = epochs.flatMap((e) => e.entries).filter((e) => e.file.name === "mysql-bin.000001");
    expect(new Set(reused.map((e) => e.epoch)).size).toBeGreaterThanOrEqual(2);
    expect(new Set(reused.map((e) => e.segmentKey)).size).toBe(reused.length);
    expect(guard.puts.slice(putsBefore).filter((p) => p.status !== 200)).toEqual([]);
  } finally {
    expect((await stopped(run)).code).toBe(0);
  }
});

test("failover: the replica is promoted and takes writes; the archive goes on without a gap and a restore across the switch succeeds", async () => {
  const snapshot = (await takeBackup(lab())).backupId;
  const run = archiver(mainConfig);
  const stop = () => stopped(run);
  afterAllStops.push(stop);
  const epochsBefore = (await archived("backups")).length;
  await stopLoad(lab());
  const primaryAt = String((await sql(lab(), "primary", "SELECT @@gtid_binlog_pos AS p"))[0].p);
  await sql(lab(), "replica", `SELECT MASTER_GTID_WAIT('${primaryAt}', 60)`);
  for (const statement of ["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"])
    await sql(lab(), "replica", statement);
  await sql(
    lab(),
    "replica",
    "CREATE TABLE lab_extras.after_failover (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL)",
  );
  await dataset.startLoad(lab().dir, lab().replica.socket, lab().dataset, { rate: 200 });
  for (let i = 0; i < 5; i++) {
    await sql(lab(), "replica", "INSERT INTO lab_extras.after_failover (at) VALUES (NOW(6))");
    await new Promise((r) => setTimeout(r, 1000));
  }
  await stopLoad(lab());
  const promoted = await settledReplicaGtid();
  expect(promoted).toMatch(/^0-2-\d+$/);
  await archivedUpTo(promoted);
  expect((await stopped(run)).code).toBe(0);
  expect((await archived("backups")).length).toBe(epochsBefore);

  const target = join(lab().dir, "pitr-failover");
  const restored = await cli([
    "restore",
    "--config",
    lab().restoreConfigPath,
    "--target",
    target,
    "--backup",
    snapshot,
    "--until",
    "latest",
  ]);
  expect(restored.code).toBe(0);
  const result = restored.json as unknown as PitrResult;
  expect(result.pitr).toMatchObject({ reachedGtid: promoted, lost: null });
  const server = await startRestored(lab(), result.datadir, "pitr-failover");
  try {
    expect(await server.query("SELECT COUNT(*) AS n FROM lab_extras.after_failover")).toEqual([{ n: 5 }]);
    const tables = Array.from({ length: lab().dataset.tables }, (_, i) => `sbtest.sbtest${i + 1}`).join(", ");
    const checksums = async (q: (s: string) => Promise<Record<string, unknown>[]>) =>
      (await q(`CHECKSUM TABLE ${tables}`)).map((r) => String(r.Checksum));
    expect(await checksums(server.query)).toEqual(await checksums((s) => sql(lab(), "replica", s)));
    expect(await failingTables(server)).toEqual([]);
  } finally {
    await server.stop();
    await rm(target, { recursive: true, force: true });
  }
});
