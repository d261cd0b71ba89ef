import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { metric } from "../../contracts";
import { awsClientOptions } from "../../hostscripts/common/aws";
import { PipelineError } from "../../hostscripts/common/errors";
import { parseIni } from "../../hostscripts/common/ini";
import { memoryLogger } from "../../hostscripts/common/log";
import { fileSink } from "../../hostscripts/common/metrics";
import { parseServerVersion, readOptionFile } from "../../hostscripts/common/mysql";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mbp-basics-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("option files", () => {
  it("parse the ini dialect of my.cnf, with quotes, comments and underscores", () => {
    expect(
      parseIni(
        '# c\n[client]\nuser = backup\npassword="p#ss w"\n; x\n[mysqld]\nlog_bin=/var/log/b\nskip-name-resolve\n',
      ),
    ).toEqual({
      client: { user: "backup", password: "p#ss w" },
      mysqld: { "log-bin": "/var/log/b", "skip-name-resolve": "" },
    });
  });

  it("read [client] and let [mysql-backup] override it", async () => {
    const path = join(dir, "client.cnf");
    await writeFile(
      path,
      "[client]\nuser=root\nsocket=/run/a.sock\n[mysql-backup]\nuser=backup\npassword=s3cret\n",
      {
        mode: 0o600,
      },
    );
    expect(await readOptionFile(path)).toEqual({ user: "backup", password: "s3cret", socket: "/run/a.sock" });
  });

  it("take user and password from the environment over the file, for secret stores", async () => {
    const path = join(dir, "env.cnf");
    await writeFile(path, "[client]\nuser=backup\npassword=from-file\nsocket=/run/m.sock\n", { mode: 0o600 });
    expect(await readOptionFile(path, { MYSQL_BACKUP_PASSWORD: "from-env" })).toEqual({
      user: "backup",
      password: "from-env",
      socket: "/run/m.sock",
    });
    expect(await readOptionFile(path, { MYSQL_BACKUP_USER: "other" })).toMatchObject({
      user: "other",
      password: "from-file",
    });
  });

  it("refuse a file that others can read, saying how to fix it", async () => {
    const path = join(dir, "open.cnf");
    await writeFile(path, "[client]\nuser=backup\npassword=s3cret\n");
    await chmod(path, 0o644);
    await expect(readOptionFile(path)).rejects.toThrow(/readable by group or others \(mode 644\)/);
    await expect(readOptionFile(path)).rejects.toMatchObject({ hint: `run: chmod 600 ${path}` });
  });
});

describe("server versions", () => {
  it.each([
    ["10.11.6-MariaDB-0+deb12u1-log", "mariadb", "10.11.6", 10],
    ["8.0.36", "mysql", "8.0.36", 8],
    ["8.4.3-commercial", "mysql", "8.4.3", 8],
  ])("reads %s", (version, flavor, numeric, major) => {
    expect(parseServerVersion(version)).toMatchObject({ flavor, version: numeric, major });
  });
});

describe("AWS client options", () => {
  it("read lab credentials from a 0600 file and never from the config itself", async () => {
    const path = join(dir, "aws-credentials");
    await writeFile(path, "[default]\naws_access_key_id=AKIDLAB\naws_secret_access_key=lab-secret\n", {
      mode: 0o600,
    });
    const options = await awsClientOptions({
      region: "us-east-1",
      endpoint: "http://127.0.0.1:1",
      credentialsFile: path,
    });
    expect(options.credentials).toEqual({ accessKeyId: "AKIDLAB", secretAccessKey: "lab-secret" });
  });

  it("refuse to guess a region", async () => {
    const saved = { r: process.env.AWS_REGION, d: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    try {
      await expect(awsClientOptions({})).rejects.toBeInstanceOf(PipelineError);
      await expect(awsClientOptions({})).rejects.toThrow(/no AWS region/);
    } finally {
      if (saved.r !== undefined) process.env.AWS_REGION = saved.r;
      if (saved.d !== undefined) process.env.AWS_DEFAULT_REGION = saved.d;
    }
  });
});

describe("file metrics sink", () => {
  it("appends one JSON line per data point, with the namespace", async () => {
    const path = join(dir, "metrics.jsonl");
    const sink = fileSink(path);
    await sink.put([metric("BackupSucceeded", 1, { Cluster: "c", Host: "h" }, new Date(0))]);
    await sink.put([metric("ArchiveBytes", 42, { Cluster: "c", Host: "h" }, new Date(0))]);
    const lines = (await readFile(path, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.namespace, l.name, l.value, l.unit])).toEqual([
      ["MysqlBackupPipeline", "BackupSucceeded", 1, "Count"],
      ["MysqlBackupPipeline", "ArchiveBytes", 42, "Bytes"],
    ]);
  });
});

describe("logger", () => {
  it("writes JSON lines that carry the fields of `with`", () => {
    const log = memoryLogger();
    log.with({ backupId: "b1" }).warn("slow upload", { mbps: 12 });
    expect(log.lines).toEqual([
      expect.objectContaining({ level: "warn", message: "slow upload", backupId: "b1", mbps: 12 }),
    ]);
  });
});
