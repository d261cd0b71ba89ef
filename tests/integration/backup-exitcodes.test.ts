/**
 * Every exit code docs/operations.md documents for `mysql-backup backup`, produced by the real CLI process
 * (`node bin/mysql-backup.js backup`) against the lab: each case breaks one real thing (a held table lock,
 * a directory that is not a subvolume, a failing zstd, a missing bucket or queue, a live lock owner, a disk
 * that cannot hold the archive, a lock mode the server cannot prove) and checks the code, the JSON error
 * line and the failure metric's reason.
 */
import { spawn } from "node:child_process";
import { chmod, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseBackupConfig, type BackupConfig } from "../../contracts";
import { ExitCode, type ExitCodeName } from "../../hostscripts/common/errors";
import { ownerOf } from "../../hostscripts/common/runlock";
import { OUTBOX } from "../../hostscripts/backup/staging";
import { RUN_LOCK_FILE } from "../../hostscripts/backup/run";
import { rootSession } from "../../lab/mariadb";
import { withLab } from "../support/lab";

const lab = withLab();
const CLI = resolve(__dirname, "..", "..", "bin", "mysql-backup.js");
let base: BackupConfig;
let cases = 0;

beforeAll(async () => {
  base = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
});

/** A config of its own for one case (own localDir, own metrics file), changed by `change`. */
async function caseConfig(change: (c: BackupConfig) => BackupConfig = (c) => c): Promise<string> {
  const n = ++cases;
  const localDir = join(lab().dir, `exit-${n}`);
  await mkdir(localDir, { recursive: true });
  const config = change({
    ...base,
    localDir,
    metrics: { sink: "file", path: join(localDir, "metrics.jsonl") },
  });
  const path = join(lab().dir, `exit-${n}.json`);
  await writeFile(path, JSON.stringify(config));
  return path;
}

async function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; result: { ok?: boolean; error?: string; message?: string } }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (t: string) => (stdout += t));
  child.stderr.resume();
  const code = await new Promise<number | null>((done) => child.on("exit", done));
  const last = stdout.trim().split("\n").at(-1) ?? "";
  return { code, result: last.startsWith("{") ? JSON.parse(last) : {} };
}

async function backup(configPath: string, env: NodeJS.ProcessEnv = {}) {
  return cli(["backup", "--config", configPath, "--json"], env);
}

/** The reasons of the BackupFailed data a case emitted. */
async function failureReasons(configPath: string): Promise<string[]> {
  const config = JSON.parse(await readFile(configPath, "utf8")) as BackupConfig;
  const path = config.metrics?.sink === "file" ? config.metrics.path : "";
  const lines = (await readFile(path, "utf8").catch(() => "")).split("\n").filter(Boolean);
  return lines
    .map((l) => JSON.parse(l) as { name: string; dimensions: { Reason?: string } })
    .filter((d) => d.name === "BackupFailed" && d.dimensions.Reason !== undefined)
    .map((d) => d.dimensions.Reason!);
}

async function expectFailure(configPath: string, kind: ExitCodeName, env: NodeJS.ProcessEnv = {}) {
  const { code, result } = await backup(configPath, env);
  expect({ code, error: result.error }).toEqual({ code: ExitCode[kind], error: kind });
  return result;
}

test("0 Ok: a backup completes", async () => {
  const { code, result } = await backup(await caseConfig());
  expect(code).toBe(ExitCode.Ok);
  expect(result.ok).toBe(true);
}, 60_000);

test("2 Usage and 3 Config: no --config, an unknown key", async () => {
  expect((await cli(["backup"])).code).toBe(ExitCode.Usage);
  const path = await caseConfig((c) => ({ ...c, lockTimeoutMS: 10 }) as BackupConfig);
  await expectFailure(path, "Config");
}, 60_000);

test("4 MysqlUnavailable: the option file's socket leads nowhere", async () => {
  const optionFile = join(lab().dir, "nowhere.cnf");
  await writeFile(optionFile, `[client]\nuser = backup\nsocket = ${join(lab().dir, "no.sock")}\n`);
  await chmod(optionFile, 0o600);
  const path = await caseConfig((c) => ({ ...c, mysql: { optionFile } }));
  const result = await expectFailure(path, "MysqlUnavailable");
  expect(result.message).toContain("no.sock");
  expect(await failureReasons(path)).toEqual(["MysqlUnavailable"]);
}, 60_000);

test("5 LockTimeout: a session holding a table write lock makes FTWRL wait past lockTimeoutMs", async () => {
  // Root may write on the read-only replica; its LOCK TABLES ... WRITE blocks FTWRL until UNLOCK TABLES.
  const holder = await rootSession(lab().replica.socket);
  try {
    const [rows] = await holder.query(
      "SELECT CONCAT('`', TABLE_SCHEMA, '`.`', TABLE_NAME, '`') AS name FROM information_schema.TABLES WHERE TABLE_NAME = 'sbtest1'",
    );
    await holder.query(`LOCK TABLES ${(rows as Array<{ name: string }>)[0].name} WRITE`);
    const path = await caseConfig((c) => ({ ...c, lockMode: "global", lockTimeoutMs: 500 }));
    const result = await expectFailure(path, "LockTimeout");
    expect(result.message).toContain("FLUSH TABLES WITH READ LOCK");
    expect(await failureReasons(path)).toEqual(["LockTimeout"]);
  } finally {
    await holder.query("UNLOCK TABLES").catch(() => undefined);
    holder.destroy();
  }
}, 60_000);

test("6 SnapshotFailed: snapshot.subvolume is a plain directory", async () => {
  const plain = join(lab().dir, "not-a-subvolume");
  await mkdir(plain, { recursive: true });
  const path = await caseConfig((c) => ({
    ...c,
    snapshot: { driver: "btrfs", subvolume: plain, snapshotDir: lab().snapshotDir },
  }));
  const result = await expectFailure(path, "SnapshotFailed");
  expect(result.message).toContain("not a btrfs subvolume");
}, 60_000);

test("7 ArchiveFailed: zstd fails writing (a zstd first on PATH that reports a full disk)", async () => {
  const bin = join(lab().dir, "failing-bin");
  await mkdir(bin, { recursive: true });
  await writeFile(
    join(bin, "zstd"),
    '#!/bin/sh\ncat >/dev/null\necho "zstd: error 70 : Write error : No space left on device" >&2\nexit 70\n',
  );
  await chmod(join(bin, "zstd"), 0o755);
  const path = await caseConfig();
  const result = await expectFailure(path, "ArchiveFailed", { PATH: `${bin}:${process.env.PATH ?? ""}` });
  expect(result.message).toContain("No space left on device");
}, 60_000);

test("8 UploadFailed: the bucket does not exist", async () => {
  const path = await caseConfig((c) => ({ ...c, s3: { ...c.s3, bucket: "no-such-bucket-here" } }));
  const result = await expectFailure(path, "UploadFailed");
  expect(result.message).toContain("no-such-bucket-here");
}, 60_000);

test("9 SignalFailed: the queue does not exist; the outbox keeps the message for the next run", async () => {
  const path = await caseConfig((c) => ({
    ...c,
    sqs: { queueUrl: c.sqs.queueUrl.replace(/[^/]+$/, "no-such-queue") },
  }));
  await expectFailure(path, "SignalFailed");
  const { localDir } = JSON.parse(await readFile(path, "utf8")) as BackupConfig;
  const [backupId] = (await readdir(localDir)).filter((n) => /^\d{8}T\d{6}Z-[0-9a-f]{6}$/.test(n));
  expect(await readdir(join(localDir, backupId))).toContain(OUTBOX);
}, 60_000);

test("12 AlreadyRunning: a live process owns the run lock", async () => {
  const path = await caseConfig();
  const config = JSON.parse(await readFile(path, "utf8")) as BackupConfig;
  // This test's own process is alive: the CLI must not take its lock.
  await writeFile(join(config.localDir, RUN_LOCK_FILE), JSON.stringify(await ownerOf(process.pid)));
  const result = await expectFailure(path, "AlreadyRunning");
  expect(result.message).toContain(`pid ${process.pid}`);
}, 60_000);

test("13 DiskSpace: localDir cannot hold the archive plus the reserve; nothing is locked or written", async () => {
  const path = await caseConfig((c) => ({ ...c, diskSpace: { ratio: 1, reserveMiB: 1024 * 1024 * 1024 } }));
  const result = await expectFailure(path, "DiskSpace");
  expect(result.message).toContain("free");
  expect(await failureReasons(path)).toEqual(["DiskSpace"]);
}, 60_000);

test("14 LockModeRefused: lockMode none on a replica whose MyISAM table holds rows", async () => {
  const path = await caseConfig((c) => ({ ...c, lockMode: "none" }));
  const result = await expectFailure(path, "LockModeRefused");
  expect(result.message).toContain("lab_extras.legacy_myisam (MyISAM, 500 rows)");
  expect(await failureReasons(path)).toEqual(["LockModeRefused"]);
}, 60_000);
