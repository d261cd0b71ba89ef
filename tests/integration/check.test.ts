/**
 * `mysql-backup check` against the lab: it passes on the lab replica and the lab verifier, and fails, naming
 * the cause and the fix, for each thing a first run would trip on — a missing privilege (two kinds), the
 * datadir off the snapshotted volume, a wrong bucket, a wrong prefix and a KMS key the role cannot use (those
 * two answered by tests/support/aws-proxy.ts as AWS answers), no free space (a real 4 MiB tmpfs), a missing
 * server binary, and a verifier whose server cannot open the backups in the bucket.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { $ } from "zx";
import {
  parseBackupConfig,
  parseCheckReport,
  parseVerifyConfig,
  type BackupConfig,
  type CheckFinding,
  type CheckReport,
  type VerifyConfig,
} from "../../contracts";
import { ExitCode } from "../../hostscripts/common/errors";
import { sql, waitForReplicaCatchUp } from "../../lab/lab";
import { startAwsProxy, type AwsProxy } from "../support/aws-proxy";
import { withLab } from "../support/lab";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const lab = withLab();

jest.setTimeout(180_000);

let backupConfig: BackupConfig;
let verifyConfig: VerifyConfig;
let proxy: AwsProxy;

beforeAll(async () => {
  backupConfig = parseBackupConfig(JSON.parse(await readFile(lab().backupConfigPath, "utf8")));
  verifyConfig = parseVerifyConfig(JSON.parse(await readFile(lab().verifyConfigPath, "utf8")));
  proxy = await startAwsProxy(lab().s3.endpoint, { conditionalWrites: true });
});

afterAll(async () => {
  await proxy?.close();
});

let configs = 0;

/** `check --json` on a config written into the lab directory; the exit code and the validated report. */
async function check(config: object): Promise<{ code: number; report: CheckReport }> {
  const path = join(lab().dir, `check-${++configs}.json`);
  await writeFile(path, JSON.stringify(config));
  const args = [join(repo, "bin", "mysql-backup.js"), "check", "--config", path, "--json"];
  const { code, stdout } = await run(process.execPath, args, { timeout: 120_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout }),
    (e: { code: number; stdout: string }) => e,
  );
  return { code, report: parseCheckReport(JSON.parse(stdout)) };
}

const finding = (report: CheckReport, name: string): CheckFinding | undefined =>
  report.findings.find((f) => f.check === name);
const failed = (report: CheckReport) =>
  report.findings.filter((f) => f.status === "fail").map((f) => f.check);

test("the lab replica is ready; the emulator's unconditional overwrite is the one warning", async () => {
  const { code, report } = await check(backupConfig);
  expect(code).toBe(0);
  expect(report).toMatchObject({ role: "replica", subject: "replica lab/replica1", ok: true });
  // A first run creates the archiver's state directory.
  expect(report.findings.filter((f) => f.status !== "pass").map((f) => f.check)).toEqual([
    "s3.write",
    "binlog.state-dir",
    "binlog.s3.write",
  ]);
  expect(finding(report, "binlog.state-dir")).toMatchObject({
    detail: expect.stringMatching(
      /^binlog\.stateDir \S+ does not exist yet; \S+ is writable, so the run creates it$/,
    ),
    fix: `mkdir -p ${lab().binlogStateDir}`,
  });
  // The lab's backup.json has a binlog section: the archiver's prerequisites are proven its way.
  expect(finding(report, "binlog.settings")?.detail).toMatch(
    /^mariadb 10\.11\.\d+: log_bin ON, log_slave_updates ON, binlog_format ROW, binlog_checksum CRC32, not encrypted; binlogs in \//,
  );
  expect(finding(report, "binlog.privileges")?.detail).toBe(
    "SHOW MASTER STATUS, SHOW BINARY LOGS and SHOW SLAVE STATUS answer (every poll runs them)",
  );
  expect(finding(report, "binlog.files")?.detail).toMatch(/mysql-bin\.\d{6} is readable and a binlog/);
  expect(finding(report, "s3.write")?.detail).toMatch(/second create-only write of it was accepted/);
  // The lab's replica holds MyISAM and Aria data: lockMode auto takes BACKUP STAGE (commit), which needs RELOAD.
  expect(finding(report, "mysql.lock-mode")?.detail).toMatch(
    /^lockMode auto: commit \(BACKUP STAGE BLOCK_COMMIT\); /,
  );
  expect(finding(report, "mysql.privileges")?.detail).toBe(
    "'backup'@'localhost' has RELOAD (BACKUP STAGE START), BINLOG MONITOR (SHOW MASTER STATUS), " +
      "SLAVE MONITOR (SHOW SLAVE STATUS), SELECT (the table inventory: information_schema.TABLES)",
  );
  expect(finding(report, "snapshot.volume")?.detail).toContain(
    `on the btrfs volume ${lab().replica.subvolume}`,
  );
});

test("against S3's own answers (create-only writes enforced) the replica passes every check", async () => {
  await mkdir(lab().binlogStateDir, { recursive: true, mode: 0o700 });
  const { code, report } = await check({
    ...backupConfig,
    aws: { ...backupConfig.aws, endpoint: proxy.endpoint },
  });
  expect(code).toBe(0);
  expect(report.findings.every((f) => f.status === "pass")).toBe(true);
  expect(finding(report, "s3.write")?.detail).toMatch(
    /^created s3:\/\/mysql-backups-lab\/backups\/lab\/replica1\/_check\/\d{8}T\d{6}Z-[0-9a-f]{6}\.json \(SSE-KMS with the bucket's default key, SHA-256 checksum\); writing it again was refused \(create-only\)$/,
  );
  expect(finding(report, "binlog.state-dir")?.detail).toBe(
    `binlog.stateDir ${lab().binlogStateDir} is writable`,
  );
  expect(finding(report, "binlog.s3.write")?.detail).toMatch(
    /^created s3:\/\/mysql-backups-lab\/backups\/lab\/binlogs\/replica1\/_check\/\d{8}T\d{6}Z-[0-9a-f]{6}\.json .*writing it again was refused \(create-only\)$/,
  );
});

test("the lab verifier is ready", async () => {
  const { code, report } = await check(verifyConfig);
  expect(code).toBe(0);
  expect(report).toMatchObject({ role: "verifier", ok: true });
  expect(finding(report, "server.binary")?.detail).toMatch(/mariadbd is mariadb 10\.\d+\.\d+$/);
});

describe("a missing privilege is named, with the GRANT that fixes it", () => {
  async function userWith(name: string, grants: string): Promise<string> {
    const password = randomBytes(12).toString("hex");
    await sql(lab(), "primary", `CREATE USER '${name}'@'localhost' IDENTIFIED BY '${password}'`);
    await sql(lab(), "primary", `GRANT ${grants} ON *.* TO '${name}'@'localhost'`);
    await waitForReplicaCatchUp(lab());
    const optionFile = join(lab().dir, "secrets", `${name}.cnf`);
    await writeFile(
      optionFile,
      `[client]\nuser=${name}\npassword=${password}\nsocket=${lab().replica.socket}\n`,
    );
    await chmod(optionFile, 0o600);
    return optionFile;
  }

  test("BINLOG MONITOR (the position) and SLAVE MONITOR both missing: both named at once", async () => {
    const optionFile = await userWith("nomonitor", "RELOAD, SELECT");
    const { code, report } = await check({ ...backupConfig, mysql: { optionFile } });
    expect(code).toBe(ExitCode.CheckFailed);
    // Choosing the lock mode reads the replica's status too: the backup would stop there first.
    // The binlog archiver's first statements need SLAVE MONITOR too.
    expect(failed(report)).toEqual([
      "mysql.lock-mode",
      "mysql.position",
      "mysql.privileges",
      "binlog.privileges",
    ]);
    expect(finding(report, "binlog.privileges")?.detail).toMatch(
      /^the server refused the archiver's first statements: .*SLAVE MONITOR/,
    );
    expect(finding(report, "mysql.lock-mode")?.detail).toMatch(
      /^choosing the lock mode needs `SHOW SLAVE STATUS`, which the server refused \(.*SLAVE MONITOR/,
    );
    expect(finding(report, "mysql.privileges")?.detail).toMatch(
      /^'nomonitor'@'localhost' lacks BINLOG MONITOR \(SHOW MASTER STATUS\), SLAVE MONITOR \(SHOW SLAVE STATUS\) on mariadb 10\.11\.\d+$/,
    );
    expect(finding(report, "mysql.privileges")?.fix).toBe(
      "GRANT BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'nomonitor'@'localhost'",
    );
    expect(finding(report, "mysql.position")?.detail).toMatch(
      /refused `SHOW MASTER STATUS` \(.*BINLOG MONITOR.*\)/,
    );
  });

  test("RELOAD (the lock) missing", async () => {
    const optionFile = await userWith("noreload", "BINLOG MONITOR, SLAVE MONITOR, SELECT");
    const { code, report } = await check({ ...backupConfig, mysql: { optionFile } });
    expect(code).toBe(ExitCode.CheckFailed);
    expect(failed(report)).toEqual(["mysql.privileges"]);
    expect(finding(report, "mysql.privileges")?.fix).toBe("GRANT RELOAD ON *.* TO 'noreload'@'localhost'");
  });
});

test("a datadir off the snapshotted volume names the path and the subvolume", async () => {
  const elsewhere = join(lab().volume.mountPoint, "elsewhere");
  await $`btrfs subvolume create ${elsewhere}`.quiet();
  try {
    const { code, report } = await check({
      ...backupConfig,
      snapshot: { ...backupConfig.snapshot, subvolume: elsewhere },
    });
    expect(code).toBe(ExitCode.CheckFailed);
    expect(failed(report)).toEqual(["snapshot.volume"]);
    expect(finding(report, "snapshot.volume")).toMatchObject({
      detail: expect.stringMatching(
        new RegExp(
          `^the datadir \\(@@datadir\\) ${lab().replica.datadir}/? \\(.*\\) is outside the btrfs subvolume ${elsewhere}: a snapshot would not hold it$`,
        ),
      ),
      fix: expect.stringContaining("set snapshot.subvolume to the subvolume that holds it"),
    });
    expect(finding(report, "disk.local-dir")?.status).toBe("skip");
  } finally {
    await $`btrfs subvolume delete ${elsewhere}`.quiet();
  }
});

test("a bucket that does not exist is named", async () => {
  const { code, report } = await check({
    ...backupConfig,
    s3: { ...backupConfig.s3, bucket: "no-such-bucket-here" },
  });
  expect(code).toBe(ExitCode.CheckFailed);
  expect(failed(report)).toEqual(["s3.write", "binlog.s3.write"]);
  expect(finding(report, "s3.write")).toMatchObject({
    detail: expect.stringMatching(/^bucket no-such-bucket-here does not exist \(NoSuchBucket: /),
    fix: expect.stringContaining("pulumi stack output bucketName"),
  });
});

test("a prefix outside the role's grant is refused as IAM refuses it, and named", async () => {
  // As the replica's role (components/hostPolicies.ts): its own host's prefix and its cluster's binlogs.
  proxy.rules = {
    conditionalWrites: true,
    writableKeyPrefix: ["backups/lab/replica1/", "backups/lab/binlogs/"],
  };
  try {
    const aws = { ...backupConfig.aws, endpoint: proxy.endpoint };
    const wrong = await check({ ...backupConfig, aws, s3: { ...backupConfig.s3, prefix: "backup" } });
    expect(wrong.code).toBe(ExitCode.CheckFailed);
    expect(failed(wrong.report)).toEqual(["s3.write", "binlog.s3.write"]);
    expect(finding(wrong.report, "s3.write")).toMatchObject({
      detail: expect.stringMatching(
        /^this host may not write under s3:\/\/mysql-backups-lab\/backup\/lab\/replica1\/ \(AccessDenied: .*s3:PutObject/,
      ),
      fix: expect.stringContaining("check s3.prefix, cluster and host"),
    });
    const right = await check({ ...backupConfig, aws });
    expect(finding(right.report, "s3.write")?.status).toBe("pass");
    expect(finding(right.report, "binlog.s3.write")?.status).toBe("pass");
    // A role without the binlog grant (PITR turned on in backup.json, not in the stack): named.
    proxy.rules = { conditionalWrites: true, writableKeyPrefix: "backups/lab/replica1/" };
    const noBinlogs = await check({ ...backupConfig, aws });
    expect(failed(noBinlogs.report)).toEqual(["binlog.s3.write"]);
    expect(finding(noBinlogs.report, "binlog.s3.write")?.detail).toMatch(
      /^this host may not write under s3:\/\/mysql-backups-lab\/backups\/lab\/binlogs\/ \(AccessDenied: /,
    );
  } finally {
    proxy.rules = { conditionalWrites: true };
  }
});

test("a KMS key the role cannot use is named", async () => {
  const key = "arn:aws:kms:us-east-1:123456789012:key/0b5e6a0e-0000-4000-8000-000000000001";
  proxy.rules = { conditionalWrites: true, deniedKmsKeys: [key] };
  try {
    const aws = { ...backupConfig.aws, endpoint: proxy.endpoint };
    const { code, report } = await check({ ...backupConfig, aws, s3: { ...backupConfig.s3, kmsKeyId: key } });
    expect(code).toBe(ExitCode.CheckFailed);
    expect(failed(report)).toEqual(["s3.write", "binlog.s3.write"]);
    expect(finding(report, "s3.write")).toMatchObject({
      detail: expect.stringContaining(
        `S3 refused to encrypt with the KMS key ${key}: this host's role cannot use it`,
      ),
      fix: expect.stringContaining("kms:GenerateDataKey"),
    });
  } finally {
    proxy.rules = { conditionalWrites: true };
  }
});

describe("the binlog archiver's prerequisites (backup.json has a binlog section)", () => {
  test("settings it archives with but a restore suffers from are warnings, each with its fix", async () => {
    await sql(lab(), "replica", "SET GLOBAL binlog_format = 'MIXED', GLOBAL gtid_strict_mode = 0");
    try {
      const { code, report } = await check(backupConfig);
      expect(code).toBe(0);
      expect(finding(report, "binlog.binlog-format")).toMatchObject({
        status: "warn",
        detail: expect.stringMatching(/^binlog_format is MIXED: a replay re-runs statements/),
        fix: "set binlog_format=ROW in my.cnf under [mysqld], and restart the server",
      });
      expect(finding(report, "binlog.gtid-strict-mode")).toMatchObject({
        status: "warn",
        fix: expect.stringMatching(/^set gtid_strict_mode=ON /),
      });
    } finally {
      await sql(lab(), "replica", "SET GLOBAL binlog_format = 'ROW', GLOBAL gtid_strict_mode = 1");
    }
  });

  test("a state directory that cannot be created is named", async () => {
    const file = join(lab().dir, "not-a-dir");
    await writeFile(file, "");
    const { code, report } = await check({
      ...backupConfig,
      binlog: { ...backupConfig.binlog, stateDir: join(file, "binlog") },
    });
    expect(code).toBe(ExitCode.CheckFailed);
    expect(failed(report)).toEqual(["binlog.state-dir"]);
    expect(finding(report, "binlog.state-dir")?.detail).toBe(
      `${file} is not a directory, so binlog.stateDir ${file}/binlog cannot be created`,
    );
  });

  test("without a binlog section, none of it is checked", async () => {
    const { binlog: _binlog, ...withoutPitr } = backupConfig;
    const { code, report } = await check(withoutPitr);
    expect(code).toBe(0);
    expect(report.findings.filter((f) => f.check.startsWith("binlog."))).toEqual([]);
  });
});

test("no free space for the archive is named with the figures", async () => {
  const tiny = join(lab().dir, "tiny");
  await mkdir(tiny);
  await $`mount -t tmpfs -o size=4m tmpfs ${tiny}`.quiet();
  try {
    const { code, report } = await check({ ...backupConfig, localDir: tiny });
    expect(code).toBe(ExitCode.CheckFailed);
    expect(failed(report)).toEqual(["disk.local-dir"]);
    expect(finding(report, "disk.local-dir")).toMatchObject({
      detail: expect.stringMatching(
        new RegExp(
          `^${tiny} has 0\\.00 GiB free, but an archive of .* needs more; nothing was locked or written$`,
        ),
      ),
      fix: expect.stringContaining("free space in localDir"),
    });
  } finally {
    await $`umount ${tiny}`.quiet();
  }
});

test("a missing server binary on the verifier is named", async () => {
  const { code, report } = await check({
    ...verifyConfig,
    mysqld: { ...verifyConfig.mysqld, binary: "/opt/mysql/bin/mysqld" },
  });
  expect(code).toBe(ExitCode.CheckFailed);
  expect(failed(report)).toEqual(["server.binary"]);
  expect(finding(report, "server.binary")).toMatchObject({
    detail: "mysqld.binary /opt/mysql/bin/mysqld is not an executable server binary on this host",
    fix: expect.stringContaining("install the server package the backups need"),
  });
});

test("a verifier is checked against the newest backup of each host in the bucket its config names", async () => {
  const backup = await run(process.execPath, [
    join(repo, "bin", "mysql-backup.js"),
    "backup",
    "--config",
    lab().backupConfigPath,
    "--json",
  ]);
  expect(JSON.parse(backup.stdout)).toMatchObject({ ok: true });
  const restore = { bucket: lab().s3.bucket, prefix: "backups", cluster: "lab" };
  const ready = await check({ ...verifyConfig, restore });
  expect(ready.code).toBe(0);
  expect(finding(ready.report, "server.backups")?.detail).toMatch(
    /^mariadb 10\.11\.\d+ can open the newest backup of all 1 host\(s\) in s3:\/\/mysql-backups-lab\/backups\/ \(mariadb 10\.11\.\d+\)$/,
  );
  expect(finding(ready.report, "disk.scratch-dir")?.detail).toMatch(
    /1 restore\(s\) of the largest datadir \(lab\/replica1 /,
  );
  // A MySQL 8.0 server (which cannot be installed here: a stand-in that answers --version as mysqld does).
  const mysqld = join(lab().dir, "mysqld-8.0");
  await writeFile(
    mysqld,
    "#!/bin/sh\necho '/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'\n",
  );
  await chmod(mysqld, 0o755);
  const wrong = await check({ ...verifyConfig, restore, mysqld: { ...verifyConfig.mysqld, binary: mysqld } });
  expect(wrong.code).toBe(ExitCode.CheckFailed);
  expect(failed(wrong.report)).toEqual(["server.backups"]);
  expect(finding(wrong.report, "server.backups")?.detail).toMatch(
    /^lab\/replica1 \S+: the backup was taken on mariadb 10\.11\.\d+; this verifier runs mysql 8\.0\.36, which cannot open a mariadb datadir$/,
  );
});
