/**
 * The lab against the real things: MariaDB primary → replica on a btrfs loop volume, sysbench, and the
 * fauxqs emulator over HTTP. Each describe block makes its own lab in a fresh /tmp directory.
 */
import { execFile, spawn } from "node:child_process";
import { access, mkdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { HeadBucketCommand } from "@aws-sdk/client-s3";
import {
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { parseBackupConfig, parseVerifyConfig } from "../../contracts/config";
import {
  DEFAULT_LAB_DIR,
  labAwsClients,
  labDown,
  labUp,
  leftovers,
  primaryGtid,
  readLab,
  replicaStatus,
  sql,
  startLoad,
  stopLoad,
  waitForReplicaCatchUp,
  type Lab,
} from "../../lab/lab";
import { waitUntil } from "../../lab/processes";
import { freshLabDir, LAB_HOOK_TIMEOUT_MS, withLab } from "../support/lab";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const tsx = join(repo, "node_modules", ".bin", "tsx");
const cli = join(repo, "lab", "cli.ts");
const PATH = `${process.env.PATH ?? ""}:/usr/sbin:/sbin`;

/** Runs `lab/cli.ts` like `npm run lab -- ...` does. */
function labCli(args: string[]) {
  return run(tsx, [cli, ...args], { cwd: repo, env: { ...process.env, PATH }, timeout: LAB_HOOK_TIMEOUT_MS });
}

/** The sequence number of domain 0 in a GTID list such as `0-1-1234`. */
function seqNo(gtidList: string): number {
  const gtid = gtidList.split(",").find((g) => g.startsWith("0-"));
  return gtid === undefined ? 0 : Number(gtid.split("-")[2]);
}

/**
 * Runs SQL as the backup user with the real client, which reads the lab's option file; on the replica
 * (the option file's socket) unless `socket` names another server.
 */
function asBackupUser(lab: Lab, query: string, socket?: string) {
  const args = [`--defaults-extra-file=${lab.backupOptionFile}`, ...(socket ? [`--socket=${socket}`] : [])];
  return run("mariadb", [...args, "--batch", "-e", query]);
}

async function expectClean(dir: string): Promise<void> {
  expect(await leftovers(dir)).toEqual({ mounts: [], loops: [], processes: [], snapshots: [], scratch: [] });
  await expect(access(dir)).rejects.toThrow();
  const [mounts, loops] = await Promise.all([
    run("findmnt", ["-rn", "-o", "TARGET"]),
    run("losetup", ["-a"], { env: { PATH } }),
  ]);
  expect(mounts.stdout).not.toContain(dir);
  expect(loops.stdout).not.toContain(dir);
  const pgrep = await run("pgrep", ["-f", dir]).then(
    () => 0,
    (error: { code?: number }) => error.code,
  );
  expect(pgrep).toBe(1); // pgrep's "no process matched"
}

describe("a lab brought up by the library", () => {
  let dir: string;
  let lab: Lab;

  beforeAll(async () => {
    dir = await freshLabDir();
    const started = Date.now();
    lab = await labUp({ dir, tables: 2, tableSize: 5000 });
    console.log(`labUp (2 tables x 5000 rows) took ${Date.now() - started} ms`);
  }, LAB_HOOK_TIMEOUT_MS);

  afterAll(async () => {
    await labDown(dir);
  }, LAB_HOOK_TIMEOUT_MS);

  test("the replica follows the primary by GTID and has everything it has", async () => {
    await waitForReplicaCatchUp(lab, 30_000);
    const status = await replicaStatus(lab);
    expect(status).toMatchObject({ ioRunning: true, sqlRunning: true, lastError: "" });
    const [slave] = await sql(lab, "replica", "SHOW SLAVE STATUS");
    expect(slave?.Using_Gtid).toBe("Slave_Pos");
    const primaryPos = await primaryGtid(lab);
    expect(seqNo(primaryPos)).toBeGreaterThan(10);
    expect(status.gtidSlavePos).toBe(primaryPos);
    const [counts] = await sql(lab, "replica", "SELECT COUNT(*) AS n FROM sbtest.sbtest2");
    expect(Number(counts?.n)).toBe(5000);
    const engines = await sql(
      lab,
      "replica",
      "SELECT table_name AS t, engine AS e FROM information_schema.tables WHERE table_schema='lab_extras' ORDER BY 1",
    );
    expect(engines.map((r) => `${String(r.t)}:${String(r.e)}`)).toEqual([
      "articles:InnoDB",
      "audit_aria:Aria",
      "events:InnoDB",
      "legacy_myisam:MyISAM",
      "recent_events:null",
    ]);
  });

  test("the replica has no GTIDs of its own, is read-only and logs with absolute binlog paths", async () => {
    const [replica] = await sql(
      lab,
      "replica",
      "SELECT @@gtid_binlog_pos AS pos, @@read_only AS ro, @@server_id AS id",
    );
    // Every GTID in the replica's binlog came from server 1, the primary.
    expect(
      String(replica?.pos)
        .split(",")
        .map((gtid) => gtid.split("-")[1]),
    ).toEqual(["1"]);
    expect(Number(replica?.ro)).toBe(1);
    expect(Number(replica?.id)).toBe(2);
    const index = await readFile(join(lab.replica.datadir, "mysql-bin.index"), "utf8");
    for (const line of index.trim().split("\n"))
      expect(line.startsWith(`${lab.replica.datadir}/mysql-bin.`)).toBe(true);
    const [fs] = await Promise.all([
      run("findmnt", ["-n", "-o", "FSTYPE", "--target", lab.replica.subvolume]),
    ]);
    expect(fs.stdout.trim()).toBe("btrfs");
    const subvolume = await run("btrfs", ["subvolume", "show", lab.replica.subvolume], { env: { PATH } });
    expect(subvolume.stdout).toContain("Name:");
  });

  test("the backup user can lock, read positions and unlock on the replica, and cannot write", async () => {
    const session = await asBackupUser(
      lab,
      "FLUSH TABLES WITH READ LOCK; SHOW MASTER STATUS; SHOW SLAVE STATUS; " +
        "SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos; UNLOCK TABLES; SELECT CURRENT_USER()",
    );
    expect(session.stdout).toContain("mysql-bin.");
    expect(session.stdout).toContain("Slave_Pos");
    expect(session.stdout).toContain("backup@localhost");
    const grants = await asBackupUser(lab, "SHOW GRANTS");
    expect(grants.stdout).toContain(
      "GRANT SELECT, RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SHOW VIEW, EVENT, TRIGGER, SLAVE MONITOR ON *.*",
    );
    // The replica is read-only for everyone without READ_ONLY ADMIN, so check least privilege on the primary.
    await expect(asBackupUser(lab, "CREATE DATABASE not_allowed", lab.primary.socket)).rejects.toThrow(
      /Access denied/,
    );
  });

  test("the configs validate against the contracts and the secrets are private", async () => {
    const backup = parseBackupConfig(JSON.parse(await readFile(lab.backupConfigPath, "utf8")));
    const verify = parseVerifyConfig(JSON.parse(await readFile(lab.verifyConfigPath, "utf8")));
    expect(backup.snapshot).toEqual({
      driver: "btrfs",
      subvolume: lab.replica.subvolume,
      snapshotDir: lab.snapshotDir,
    });
    expect(backup.sqs.queueUrl).toBe(lab.sqs.queueUrl);
    expect(verify.scratchDir).toBe(lab.scratchDir);
    expect(verify.aws).toEqual(backup.aws);
    for (const file of [lab.backupOptionFile, lab.awsCredentialsFile]) {
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    }
    expect((await stat(join(dir, "secrets"))).mode & 0o777).toBe(0o700);
    const optionFile = await readFile(lab.backupOptionFile, "utf8");
    expect(optionFile).toMatch(/^\[client\]\nuser=backup\npassword=[0-9a-f]{36}\nsocket=/);
    for (const config of [lab.backupConfigPath, lab.verifyConfigPath, join(dir, "state.json")]) {
      expect(await readFile(config, "utf8")).not.toMatch(/password|aws_secret/i);
    }
    expect(await readLab(dir)).toEqual(lab);
  });

  test("the bucket exists and the queue redrives to its DLQ after 3 receives", async () => {
    const { s3, sqs } = labAwsClients(lab);
    try {
      await s3.send(new HeadBucketCommand({ Bucket: lab.s3.bucket }));
      const attributes = await queueAttributes(sqs, lab.sqs.queueUrl);
      const dlqArn = (await queueAttributes(sqs, lab.sqs.dlqUrl)).QueueArn;
      expect(attributes.VisibilityTimeout).toBe("120");
      expect(JSON.parse(attributes.RedrivePolicy ?? "{}")).toEqual({
        deadLetterTargetArn: dlqArn,
        maxReceiveCount: 3,
      });
      await sqs.send(new SendMessageCommand({ QueueUrl: lab.sqs.queueUrl, MessageBody: "poison" }));
      for (let receive = 0; receive < 3; receive++) {
        const got = await sqs.send(
          new ReceiveMessageCommand({ QueueUrl: lab.sqs.queueUrl, VisibilityTimeout: 0 }),
        );
        expect(got.Messages?.map((m) => m.Body)).toEqual(["poison"]);
      }
      const fourth = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: lab.sqs.queueUrl, WaitTimeSeconds: 1 }),
      );
      expect(fourth.Messages ?? []).toEqual([]);
      const dead = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: lab.sqs.dlqUrl, WaitTimeSeconds: 1 }),
      );
      expect(dead.Messages?.map((m) => m.Body)).toEqual(["poison"]);
    } finally {
      s3.destroy();
      sqs.destroy();
    }
  });

  test("up on a running lab returns it as it is", async () => {
    const again = await labUp({ dir });
    expect(again).toEqual(lab);
  });

  test(
    "the load drives writes on the primary that the replica applies",
    async () => {
      const before = seqNo(await primaryGtid(lab));
      await startLoad(lab, { rate: 100 });
      try {
        const advanced = await waitUntil(
          async () => seqNo(await primaryGtid(lab)) >= before + 100,
          30_000,
          250,
        );
        expect(advanced).toBe(true);
        const reached = await primaryGtid(lab);
        await waitUntil(
          async () => seqNo((await replicaStatus(lab)).gtidSlavePos) >= seqNo(reached),
          30_000,
          250,
        );
        expect(seqNo((await replicaStatus(lab)).gtidSlavePos)).toBeGreaterThanOrEqual(seqNo(reached));
      } finally {
        await stopLoad(lab);
      }
      const processes = (await leftovers(dir)).processes;
      expect(processes.filter((p) => p.includes("sysbench"))).toEqual([]);
      await waitForReplicaCatchUp(lab, 30_000);
      expect((await replicaStatus(lab)).gtidSlavePos).toBe(await primaryGtid(lab));
    },
    LAB_HOOK_TIMEOUT_MS,
  );

  test(
    "down removes everything",
    async () => {
      // What a crashed backup or verifier leaves: a snapshot, a scratch datadir, a mount inside scratch.
      await run(
        "btrfs",
        ["subvolume", "snapshot", "-r", lab.replica.subvolume, join(lab.snapshotDir, "crashed")],
        {
          env: { PATH },
        },
      );
      await mkdir(join(lab.scratchDir, "restore-1", "mnt"), { recursive: true });
      await run("mount", ["-t", "tmpfs", "scratch", join(lab.scratchDir, "restore-1", "mnt")], {
        env: { PATH },
      });
      const left = await leftovers(dir);
      expect(left.snapshots).toEqual([join(lab.snapshotDir, "crashed")]);
      expect(left.scratch).toEqual([join(lab.scratchDir, "restore-1")]);
      expect(left.mounts).toEqual([join(lab.scratchDir, "restore-1", "mnt"), join(dir, "mnt")]);

      const started = Date.now();
      await labDown(dir);
      console.log(`labDown took ${Date.now() - started} ms`);
      await expectClean(dir);
    },
    LAB_HOOK_TIMEOUT_MS,
  );
});

async function queueAttributes(sqs: SQSClient, queueUrl: string): Promise<Record<string, string>> {
  const got = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["All"] }));
  return got.Attributes ?? {};
}

describe("the lab CLI and crashes", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const dir of dirs) await labDown(dir);
  }, LAB_HOOK_TIMEOUT_MS);

  test(
    "up --load writes; down cleans up after the servers were SIGKILLed and state.json removed",
    async () => {
      const dir = await freshLabDir();
      dirs.push(dir);
      const up = await labCli(["up", "--load", "--dir", dir, "--tables", "1", "--table-size", "2000"]);
      expect(up.stdout).toContain(`lab up in`);
      const lab = await readLab(dir);
      const before = seqNo(await primaryGtid(lab));
      expect(await waitUntil(async () => seqNo(await primaryGtid(lab)) > before + 50, 30_000, 250)).toBe(
        true,
      );
      const status = await labCli(["status", "--dir", dir]);
      expect(status.stdout).toMatch(/replica io=true sql=true gtid_slave_pos=0-1-\d+/);

      expect((await leftovers(dir)).processes.some((p) => p.includes("sysbench oltp_write_only"))).toBe(true);

      for (const pid of [lab.primary.pid, lab.replica.pid, lab.emulator.pid]) process.kill(pid, "SIGKILL");
      await rm(join(dir, "state.json"));
      const left = await leftovers(dir);
      expect(left.mounts).toEqual([join(dir, "mnt")]);
      expect(left.loops).toHaveLength(1);

      const down = await labCli(["down", "--dir", dir]);
      expect(down.stdout).toContain("removed");
      await expectClean(dir);
    },
    LAB_HOOK_TIMEOUT_MS,
  );

  test(
    "down cleans up after up was killed halfway",
    async () => {
      const dir = await freshLabDir();
      dirs.push(dir);
      // A dataset big enough that `up` is still loading it when it is killed.
      const up = spawn(tsx, [cli, "up", "--dir", dir, "--tables", "4", "--table-size", "200000"], {
        cwd: repo,
        env: { ...process.env, PATH },
        detached: true,
        stdio: "ignore",
      });
      const exited = new Promise((done) => up.on("exit", done));
      const serversUp = await waitUntil(
        async () => (await leftovers(dir)).processes.filter((p) => p.includes("mariadbd")).length === 2,
        60_000,
        100,
      );
      expect(serversUp).toBe(true);
      process.kill(-(up.pid ?? 0), "SIGKILL");
      await exited;
      await expect(access(join(dir, "state.json"))).rejects.toThrow();
      const left = await leftovers(dir);
      expect(left.mounts).toEqual([join(dir, "mnt")]);
      expect(left.loops).toHaveLength(1);

      await labDown(dir);
      await expectClean(dir);
    },
    LAB_HOOK_TIMEOUT_MS,
  );

  test("a failed up removes what it made and says what failed", async () => {
    const dir = await freshLabDir();
    dirs.push(dir);
    // 16 MiB is below btrfs's minimum size: mkfs.btrfs refuses, after the emulator has started.
    await expect(labUp({ dir, imageSizeGiB: 1 / 64 })).rejects.toThrow(
      /mkfs\.btrfs of .*btrfs\.img .*failed/,
    );
    await expectClean(dir);
  }, 60_000);
});

describe("withLab() for other test files", () => {
  const lab = withLab({ tables: 1, tableSize: 1000 });

  test("gives a running lab in a fresh /tmp directory", async () => {
    expect(lab().dir.startsWith(tmpdir())).toBe(true);
    expect(lab().dir).not.toBe(DEFAULT_LAB_DIR);
    const [row] = await sql(lab(), "replica", "SELECT COUNT(*) AS n FROM sbtest.sbtest1");
    expect(Number(row?.n)).toBe(1000);
  });
});
