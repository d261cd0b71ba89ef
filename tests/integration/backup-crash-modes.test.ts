/**
 * The crash tests of backup-crash.test.ts in every lock mode: the CLI is paused at each pause point
 * (`tests/support/pausing-cli.ts`), killed with SIGKILL there, and then the replica must not stay blocked
 * (a killed session releases FTWRL and BACKUP STAGE with it) and the next run in the same mode must repair
 * what was left and succeed. backup-crash.test.ts checks each point's repair in detail (in the lab's `auto`
 * mode, `commit` there); this file checks that no mode leaves anything a next run cannot repair. Real
 * MariaDB, btrfs, fauxqs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { access, readFile, readdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DeleteMessageCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { parseBackupConfig, type BackupConfig, type LockMode } from "../../contracts";
import { backupDeps } from "../../hostscripts/backup/command";
import { RUN_LOCK_FILE, runBackup, type BackupDeps } from "../../hostscripts/backup/run";
import { PAUSE_POINTS, type PausePoint } from "../../hostscripts/common/checkpoint";
import { memoryLogger } from "../../hostscripts/common/log";
import { EXTRAS_SCHEMA } from "../../lab/dataset";
import { sql } from "../../lab/lab";
import { withLab } from "../support/lab";

// Generous: on a saturated 2-core machine a backup can take a minute to reach its pause point.
jest.setTimeout(300_000);

const lab = withLab({ load: true });
const PAUSING_CLI = resolve(__dirname, "..", "support", "pausing-cli.ts");
/**
 * Every pause point in each mode, but `commit` only at the points inside and right after the lock window:
 * backup-crash.test.ts runs every point in the lab's `auto` mode, which is `commit` there.
 */
const CASES: Array<[LockMode, PausePoint]> = [
  ...PAUSE_POINTS.map((point): [LockMode, PausePoint] => ["none", point]),
  ...PAUSE_POINTS.map((point): [LockMode, PausePoint] => ["global", point]),
  ["commit", "locked"],
  ["commit", "snapshot"],
];

let base: BackupConfig;
let deps: BackupDeps;

beforeAll(async () => {
  const config = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  // Small parts one at a time, so "upload" is reached before the archive is complete; a short lock timeout,
  // so a lock left behind would fail the next run instead of waiting.
  base = { ...config, s3: { ...config.s3, partSizeMiB: 5, queueSize: 1 }, lockTimeoutMs: 3000 };
  deps = await backupDeps(base, memoryLogger());
  // A lock-free backup needs every table that holds data crash-safe.
  for (const table of ["legacy_myisam", "audit_aria"])
    await sql(lab(), "primary", `ALTER TABLE ${EXTRAS_SCHEMA}.${table} ENGINE=InnoDB`);
  // Under load the replica may lag: wait for the ALTERs themselves, not for it to catch up.
  const deadline = Date.now() + 300_000;
  for (;;) {
    const [row] = await sql(
      lab(),
      "replica",
      `SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${EXTRAS_SCHEMA}' AND TABLE_TYPE = 'BASE TABLE' AND ENGINE <> 'InnoDB'`,
    );
    if (Number(row.n) === 0) break;
    if (Date.now() > deadline) throw new Error("the replica did not apply the ALTER TABLEs within 300 s");
    await sleep(500);
  }
}, 320_000);

afterAll(() => {
  deps?.s3.destroy();
  deps?.sqs.destroy();
});

afterEach(async () => {
  for (;;) {
    const got = await deps.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: base.sqs.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    if (!got.Messages?.length) return;
    for (const m of got.Messages)
      await deps.sqs.send(
        new DeleteMessageCommand({ QueueUrl: base.sqs.queueUrl, ReceiptHandle: m.ReceiptHandle }),
      );
  }
});

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** The CLI in `mode`, paused at `point`: resolves once it stands there. */
async function cliPausedAt(mode: LockMode, point: PausePoint): Promise<ChildProcess> {
  const configPath = join(lab().dir, `crash-${mode}.json`);
  await writeFile(configPath, JSON.stringify({ ...base, lockMode: mode }));
  const marker = join(lab().dir, `paused-${mode}-${point}`);
  const child = spawn(
    process.execPath,
    ["--require", require.resolve("tsx/cjs"), PAUSING_CLI, "backup", "--config", configPath],
    {
      env: { ...process.env, MYSQL_BACKUP_PAUSE_AT: point, MYSQL_BACKUP_PAUSE_MARKER: marker },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (t: string) => (stderr = (stderr + t).slice(-4000)));
  const deadline = Date.now() + 150_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`the CLI exited ${child.exitCode} before "${point}": ${stderr}`);
    if (await exists(marker)) return child;
    await sleep(50);
  }
  child.kill("SIGKILL");
  throw new Error(`the CLI did not reach "${point}" in mode ${mode} within 150 s: ${stderr}`);
}

/** The replica's applied position in domain 0 (the lab writes only there). */
async function appliedNow(): Promise<number> {
  const [row] = await sql(lab(), "replica", "SELECT @@gtid_slave_pos AS pos");
  return Number(/(?:^|,)0-\d+-(\d+)/.exec(String(row.pos))?.[1] ?? 0);
}

/** Waits until the replica applied past `from`; fails naming where it stood. */
async function appliedMore(from: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await appliedNow()) > from) return;
    await sleep(200);
  }
  throw new Error(
    `the replica's applier did not move past ${from} within ${timeoutMs / 1000} s: is a lock left?`,
  );
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await exited;
}

test.each(CASES)(
  "lock mode %s, killed at %s: the replica goes on, the next run repairs and succeeds",
  async (mode, point) => {
    const child = await cliPausedAt(mode, point);
    await kill9(child);
    // The applier is not held: under the load its position keeps moving (a lock left behind would stop it).
    await appliedMore(await appliedNow(), 60_000);

    const result = await runBackup({ ...base, lockMode: mode }, deps);
    expect(result.lockMode).toBe(mode);
    expect((await readdir(lab().snapshotDir)).filter((n) => n.startsWith("mysql-backup-"))).toEqual([]);
    expect(await exists(join(base.localDir, RUN_LOCK_FILE))).toBe(false);
    const left = await readdir(join(base.localDir, result.backupId));
    expect(left.filter((f) => f.endsWith(".partial"))).toEqual([]);
    expect(left).toContain("manifest.json");
  },
);
