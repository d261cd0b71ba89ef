/**
 * What the stack ships to hosts, checked with the real validators: the bundle is built from
 * hostscripts/ during the run, the user-data passes `cloud-init schema`, the units pass
 * `systemd-analyze verify`, every OnCalendar passes `systemd-analyze calendar`, and the rendered
 * backup.json / verify.json pass the contracts' parsers.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { parseBackupConfig, parseVerifyConfig } from "../../contracts";
import {
  NODESOURCE_KEY,
  renderUserData,
  renderVerifyConfig,
  VENDOR_KEY_FINGERPRINTS,
  type ServerRelease,
  type VerifierImage,
} from "../../components";
import {
  backupServiceUnit,
  backupTimerUnit,
  binlogServiceUnit,
  INSTALLED_BINARY,
  SCRATCH_SERVER_STOP_GRACE_SECONDS,
  VERIFIER_STOP_TIMEOUT_SECONDS,
  verifierServiceUnit,
} from "../../contracts/units";
import { bundleHostScripts } from "../../scripts/bundle";
import { simulateStack, type RegisteredResource, type StackRun } from "../../policies/stackSimulator";

const SBIN_PATH = `${process.env.PATH ?? ""}:/usr/sbin:/sbin`;
let dev: StackRun;
let prod: StackRun;
let work: string;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "infra-hostfiles-"));
  dev = await simulateStack("Pulumi.dev.yaml");
  prod = await simulateStack("Pulumi.prod.yaml");
}, 180_000);

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, PATH: SBIN_PATH } });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const copies = (s: StackRun): RegisteredResource[] =>
  s.resources.filter((r) => r.type === "command:remote:CopyToRemote");
const shipped = (r: RegisteredResource): { text?: string; path?: string } =>
  r.inputs.source as { text?: string; path?: string };
const copyNamed = (s: StackRun, suffix: string): RegisteredResource[] =>
  copies(s).filter((r) => r.name.endsWith(suffix));
const userDataOf = (s: StackRun): string => {
  const lt = s.resources.find((r) => r.type === "aws:ec2/launchTemplate:LaunchTemplate")!;
  return Buffer.from(lt.inputs.userData as string, "base64").toString("utf8");
};

describe("the bundle", () => {
  test("is built from hostscripts/ during the run: an executable node script whose hash the stack ships", async () => {
    const bundle = await bundleHostScripts({ outfile: path.join(work, "mysql-backup.cjs") });
    const content = fs.readFileSync(bundle.path);
    expect(content.subarray(0, 20).toString()).toBe("#!/usr/bin/env node\n");
    expect(fs.statSync(bundle.path).mode & 0o111).toBe(0o111);
    expect(bundle.sha256).toBe(createHash("sha256").update(content).digest("hex"));
    // Same sources, same bytes: the stack shipped exactly what hostscripts/ builds now.
    expect(dev.outputs.bundleSha256).toBe(bundle.sha256);
    for (const r of copyNamed(dev, "-copy-mysql-backup-cjs")) {
      expect(
        createHash("sha256")
          .update(fs.readFileSync(shipped(r).path!))
          .digest("hex"),
      ).toBe(bundle.sha256);
    }
    // Self-contained: run through its shebang from a directory with no node_modules above it, it
    // answers with the usage of the two commands the units start.
    const isolated = fs.mkdtempSync(path.join(os.tmpdir(), "bundle-run-"));
    try {
      const copy = path.join(isolated, "mysql-backup");
      fs.copyFileSync(bundle.path, copy);
      fs.chmodSync(copy, 0o755);
      const usage = spawnSync(copy, [], { cwd: isolated, encoding: "utf8" });
      const text = `${usage.stdout}${usage.stderr}`;
      expect(text).toContain("usage: mysql-backup <command> --config FILE");
      expect(text).toMatch(/^\s+backup\s/m);
      expect(text).toMatch(/^\s+verify\s/m);
      // The bundle hashes its own file: the sha256 it reports is the one the stack keys installs on.
      const version = spawnSync(copy, ["--version", "--json"], { cwd: isolated, encoding: "utf8" });
      expect(version.status).toBe(0);
      expect(JSON.parse(version.stdout)).toEqual({
        version: JSON.parse(fs.readFileSync(path.join(__dirname, "../../package.json"), "utf8")).version,
        bundle: { path: copy, sha256: bundle.sha256 },
      });
    } finally {
      fs.rmSync(isolated, { recursive: true, force: true });
    }
  }, 60_000);

  test("a missing entry is a clear error", async () => {
    await expect(
      bundleHostScripts({ entry: path.join(work, "nope.ts"), outfile: path.join(work, "x.cjs") }),
    ).rejects.toThrow(/cannot bundle the host scripts: .*nope\.ts does not exist/);
  });
});

describe("rendered config files pass the contracts", () => {
  test("each replica's backup.json passes parseBackupConfig and names its cluster, host, bucket, key and queue", () => {
    const configs = [...copyNamed(dev, "-copy-backup-json"), ...copyNamed(prod, "-copy-backup-json")];
    expect(configs).toHaveLength(3);
    for (const r of configs) {
      const config = parseBackupConfig(JSON.parse(shipped(r).text!));
      const run = r.name.startsWith("mysql-backups-dev") ? dev : prod;
      expect(config.s3).toMatchObject({
        bucket: run.outputs.bucketName,
        kmsKeyId: run.outputs.kmsKeyArn,
        prefix: "backups",
      });
      expect(config.sqs.queueUrl).toBe(run.outputs.queueUrl);
      expect(r.name).toContain(`-${config.cluster}-${config.host}-`);
    }
  });

  test("a replica's lockMode reaches its backup.json; without one the host chooses (auto)", () => {
    const configs = [...copyNamed(dev, "-copy-backup-json"), ...copyNamed(prod, "-copy-backup-json")].map(
      (r) => parseBackupConfig(JSON.parse(shipped(r).text!)),
    );
    expect(Object.fromEntries(configs.map((c) => [c.host, c.lockMode ?? "(unset)"]))).toEqual(
      expect.objectContaining({ "orders-db3": "commit" }),
    );
    expect(configs.filter((c) => c.host !== "orders-db3").every((c) => c.lockMode === undefined)).toBe(true);
  });

  test("the verifier's verify.json (inside the user-data) passes parseVerifyConfig", () => {
    const cloudConfig = parseYaml(userDataOf(dev).replace(/^#cloud-config\n/, "")) as {
      write_files: Array<{ path: string; content: string }>;
    };
    const file = cloudConfig.write_files.find((f) => f.path === "/etc/mysql-backup/verify.json")!;
    const config = parseVerifyConfig(JSON.parse(file.content));
    expect(config.sqs).toEqual({
      queueUrl: dev.outputs.queueUrl,
      waitTimeSeconds: 20,
      visibilityTimeoutSeconds: 7200,
    });
    expect(config.s3).toEqual({ kmsKeyId: dev.outputs.kmsKeyArn, tagObjects: true });
    // The queue's redrive count is 3: a segment waits for its predecessor twice, the third receive judges it.
    expect(config.segments).toEqual({ maxDeferrals: 2 });
  });
});

describe("cloud-init user-data", () => {
  const schema = (text: string): { status: number | null; out: string } => {
    const file = path.join(work, `user-data-${createHash("sha1").update(text).digest("hex")}.yaml`);
    fs.writeFileSync(file, text);
    return run("cloud-init", ["schema", "--config-file", file]);
  };

  test("the dev and prod stacks' user-data pass `cloud-init schema`", () => {
    for (const s of [dev, prod]) {
      const r = schema(userDataOf(s));
      expect(r).toEqual({
        status: 0,
        out: expect.stringContaining("Valid cloud-config") as unknown as string,
      });
    }
  });

  const render = (server: ServerRelease, image: VerifierImage): string =>
    renderUserData({
      server,
      image,
      bundle: {
        bucket: "mysql-backups-test",
        key: "artifacts/mysql-backup/mysql-backup.cjs",
        versionId: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY",
        sha256: "0".repeat(64),
      },
      region: "eu-west-1",
      logGroupName: "/mysql-backup/test-verifier",
      verifyConfig: renderVerifyConfig({
        queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
        visibilityTimeoutSeconds: 3600,
        region: "eu-west-1",
        keyArn: "arn:aws:kms:eu-west-1:123456789012:key/test",
      }),
    });

  test.each<[string, ServerRelease]>([
    ["MariaDB 10.11 (Debian's own)", { flavor: "mariadb", version: "10.11" }],
    ["MariaDB 11.4 (MariaDB's repository)", { flavor: "mariadb", version: "11.4" }],
    ["MySQL 8.0", { flavor: "mysql", version: "8.0" }],
    ["MySQL 8.4 LTS", { flavor: "mysql", version: "8.4" }],
  ])("user-data for %s passes `cloud-init schema` and installs the matching server", (_name, server) => {
    const text = render(server, { baked: false, nodeMajorVersion: 22 });
    expect(schema(text).status).toBe(0);
    const doc = parseYaml(text) as {
      packages: string[];
      apt: { sources: Record<string, { source: string; keyid?: string; keyserver?: string; key?: string }> };
    };
    expect(doc.packages).toContain(server.flavor === "mariadb" ? "mariadb-server" : "mysql-server");
    const sources = Object.values(doc.apt.sources)
      .map((s) => s.source)
      .join("\n");
    if (server.flavor === "mysql")
      expect(sources).toContain(server.version === "8.4" ? "mysql-8.4-lts" : "mysql-8.0");
    if (server.flavor === "mariadb" && server.version !== "10.11")
      expect(sources).toContain(`mariadb-server/${server.version}/`);
    // Every repository over HTTPS; a vendor key fetched over HTTPS and pinned by its full fingerprint.
    expect(sources).not.toMatch(/http:\/\//);
    for (const source of Object.values(doc.apt.sources).filter((x) => x.keyid)) {
      expect(source.keyid).toMatch(/^[0-9A-F]{40}$/);
      expect(Object.values(VENDOR_KEY_FINGERPRINTS)).toContain(source.keyid);
      expect(source.keyserver).toBe("hkps://keyserver.ubuntu.com:443");
    }
  });

  test("a baked image installs nothing at boot: no APT, no package, the same config and bundle check", () => {
    const text = render({ flavor: "mariadb", version: "10.11" }, { baked: true });
    expect(schema(text).status).toBe(0);
    const doc = parseYaml(text) as Record<string, unknown>;
    expect(Object.keys(doc).sort()).toEqual(["runcmd", "write_files"]);
    expect(text).not.toContain("amazon-cloudwatch-agent.deb");
    expect(text).toContain("amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:");
  });

  test("the prod stack boots a baked image; dev installs Node 22 from NodeSource with the key inline (no keyserver)", () => {
    expect(parseYaml(userDataOf(prod).replace(/^#cloud-config\n/, ""))).not.toHaveProperty("apt");
    const doc = parseYaml(userDataOf(dev).replace(/^#cloud-config\n/, "")) as {
      apt: { sources: Record<string, { source: string; key?: string; keyserver?: string }> };
    };
    const nodesource = doc.apt.sources["nodesource.list"];
    expect(nodesource.source).toBe(
      "deb [signed-by=$KEY_FILE] https://deb.nodesource.com/node_22.x nodistro main",
    );
    expect(nodesource.key).toBe(NODESOURCE_KEY.armored);
    expect(nodesource.keyserver).toBeUndefined();
    expect(userDataOf(dev)).not.toContain("keyserver");
  });

  test("the inline NodeSource key is the key its pinned fingerprint names (checked with gpg)", () => {
    const home = fs.mkdtempSync(path.join(work, "gnupg-"));
    const file = path.join(work, "nodesource.asc");
    fs.writeFileSync(file, NODESOURCE_KEY.armored);
    const shown = spawnSync("gpg", ["--homedir", home, "--with-colons", "--show-keys", file], {
      encoding: "utf8",
    });
    expect(shown.status).toBe(0);
    const fingerprints = shown.stdout
      .split("\n")
      .filter((l) => l.startsWith("fpr:"))
      .map((l) => l.split(":")[9]);
    expect(fingerprints[0]).toBe(NODESOURCE_KEY.fingerprint);
    // The primary key has no expiry date: an inline key that expired would break every boot.
    const primary = shown.stdout
      .split("\n")
      .find((l) => l.startsWith("pub:"))!
      .split(":");
    expect(primary[6]).toBe("");
  });

  test("docs/infrastructure.md lists every host a boot reaches, whatever the server and image", () => {
    const docs = fs.readFileSync(path.join(__dirname, "../../docs/infrastructure.md"), "utf8");
    const egress = docs.slice(
      docs.indexOf("## Egress of the verifier hosts"),
      docs.indexOf("## Name limits"),
    );
    const texts = [
      ...(["10.11", "11.4"] as const).map((version) =>
        render({ flavor: "mariadb", version }, { baked: false, nodeMajorVersion: 22 }),
      ),
      ...(["8.0", "8.4"] as const).map((version) =>
        render({ flavor: "mysql", version }, { baked: false, nodeMajorVersion: 22 }),
      ),
      render({ flavor: "mariadb", version: "10.11" }, { baked: true }),
    ];
    const hosts = new Set(
      texts
        .flatMap((t) => [
          ...[...t.matchAll(/\bhttps?:\/\/([a-z0-9.-]+)/g)].map((m) => m[1]),
          ...[...t.matchAll(/\bhkps:\/\/([a-z0-9.-]+:\d+)/g)].map((m) => m[1]),
          ...[...t.matchAll(/\bs3:\/\/([a-z0-9.-]+)\//g)].map((m) => m[1]),
        ])
        // The stack's own bucket is the table's first row; regions are written as the docs write them.
        .filter((host) => host !== "mysql-backups-test")
        .map((host) => host.replace("eu-west-1", "<region>")),
    );
    expect([...hosts].sort()).toEqual([
      "amazoncloudwatch-agent-<region>",
      "deb.nodesource.com",
      "dlm.mariadb.com",
      "keyserver.ubuntu.com:443",
      "repo.mysql.com",
      "sqs.<region>.amazonaws.com",
    ]);
    for (const host of hosts)
      expect({ host, listed: egress.includes(`\`${host}`) }).toEqual({ host, listed: true });
  });

  test("the validator rejects broken user-data (the check can fail)", () => {
    expect(schema("#cloud-config\npackages: 3\n").status).not.toBe(0);
  });

  test("the exact bundle version is fetched and its sha256 checked before install; a bad one terminates the boot", () => {
    const text = userDataOf(dev);
    const sha = dev.outputs.bundleSha256 as string;
    const bundle = dev.resources.find((r) => r.type === "aws:s3/bucketObjectv2:BucketObjectv2")!;
    expect(text).toContain(
      `aws s3api get-object --region eu-west-1 --bucket ${dev.outputs.bucketName as string} --key artifacts/mysql-backup/mysql-backup.cjs --version-id ${bundle.state.versionId as string} /usr/local/bin/mysql-backup.download`,
    );
    expect(text).toContain(
      `echo "${sha}  /usr/local/bin/mysql-backup.download" | sha256sum -c --quiet - || {`,
    );
    expect(text).toMatch(/missing or corrupt" >&2; poweroff; exit 1; }/);
  });

  test("the CloudWatch agent ships the verifier's and cloud-init's logs to the stack's log group", () => {
    const doc = parseYaml(userDataOf(dev).replace(/^#cloud-config\n/, "")) as {
      write_files: Array<{ path: string; content: string }>;
    };
    const agent = JSON.parse(
      doc.write_files.find((f) => f.path === "/opt/aws/amazon-cloudwatch-agent/etc/mysql-backup.json")!
        .content,
    ) as { logs: { logs_collected: { files: { collect_list: Array<Record<string, string>> } } } };
    expect(agent.logs.logs_collected.files.collect_list).toEqual([
      {
        file_path: "/var/log/mysql-backup/verifier.log",
        log_group_name: dev.outputs.verifierLogGroupName,
        log_stream_name: "{instance_id}/verifier",
        timezone: "UTC",
      },
      {
        file_path: "/var/log/cloud-init-output.log",
        log_group_name: dev.outputs.verifierLogGroupName,
        log_stream_name: "{instance_id}/cloud-init",
        timezone: "UTC",
      },
    ]);
    expect(userDataOf(dev)).toContain(
      "aws s3 cp --no-sign-request --region eu-west-1 s3://amazoncloudwatch-agent-eu-west-1/debian/amd64/latest/amazon-cloudwatch-agent.deb",
    );
  });
});

describe("systemd units", () => {
  let root: string;

  beforeAll(() => {
    // A root with the distribution's units (targets the ours depend on) and a stand-in for the one
    // binary the units start, so `--root` verification checks our units and nothing else.
    root = path.join(work, "root");
    fs.mkdirSync(path.join(root, "usr/lib/systemd"), { recursive: true });
    fs.cpSync("/usr/lib/systemd/system", path.join(root, "usr/lib/systemd/system"), {
      recursive: true,
      verbatimSymlinks: true,
    });
    fs.mkdirSync(path.join(root, "etc/systemd/system"), { recursive: true });
    fs.mkdirSync(path.join(root, path.dirname(INSTALLED_BINARY)), { recursive: true });
    fs.writeFileSync(path.join(root, INSTALLED_BINARY), "#!/bin/sh\n", { mode: 0o755 });
  });

  const verify = (units: Record<string, string>): { status: number | null; out: string } => {
    for (const [name, text] of Object.entries(units))
      fs.writeFileSync(path.join(root, "etc/systemd/system", name), text);
    return run("systemd-analyze", [
      "verify",
      `--root=${root}`,
      ...Object.keys(units).map((n) => `/etc/systemd/system/${n}`),
    ]);
  };

  test("each replica's backup service and timer pass `systemd-analyze verify` with no warning", () => {
    for (const s of [dev, prod]) {
      const services = copyNamed(s, "-copy-mysql-backup-service");
      const timers = copyNamed(s, "-copy-mysql-backup-timer");
      expect(services.length).toBe(timers.length);
      services.forEach((service, i) => {
        expect(
          verify({
            "mysql-backup.service": shipped(service).text!,
            "mysql-backup.timer": shipped(timers[i]).text!,
          }),
        ).toEqual({
          status: 0,
          out: "",
        });
      });
    }
  });

  test("the backup service runs the installed CLI with its config", () => {
    const text = shipped(copyNamed(dev, "-copy-mysql-backup-service")[0]).text!;
    expect(text).toContain(
      "ExecStart=/usr/local/bin/mysql-backup backup --config /etc/mysql-backup/backup.json",
    );
    expect(text).toContain("Type=oneshot");
  });

  test("the hardened backup service (writable paths given) and its timer pass `systemd-analyze verify`", () => {
    const service = backupServiceUnit({
      cluster: "orders",
      host: "replica1",
      writablePaths: ["/var/backups/mysql", "/srv/mysql/.snapshots"],
    });
    const timer = backupTimerUnit({ schedule: "*-*-* 02:00:00 UTC", randomizedDelaySec: "30min" });
    expect(verify({ "mysql-backup.service": service, "mysql-backup.timer": timer })).toEqual({
      status: 0,
      out: "",
    });
    const lines = service.split("\n");
    // Nice and the I/O class would also slow the lock window: the backup lowers itself after the lock.
    expect(lines.filter((l) => /^(Nice|IOSchedulingClass|CPUSchedulingPolicy)=/.test(l))).toEqual([]);
    for (const line of [
      "Type=oneshot",
      "CPUWeight=20",
      "IOWeight=10",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/backups/mysql /srv/mysql/.snapshots -/run/lvm -/run/lock/lvm",
      "PrivateTmp=yes",
      "ProtectHome=yes",
    ]) {
      expect(lines).toContain(line);
    }
    // Snapshots and mounts need CAP_SYS_ADMIN; nothing lets the run change owners or load modules.
    const caps = lines
      .find((l) => l.startsWith("CapabilityBoundingSet="))!
      .split("=")[1]
      .split(" ");
    expect(caps).toContain("CAP_SYS_ADMIN");
    expect(caps).not.toContain("CAP_CHOWN");
    expect(caps).not.toContain("CAP_SYS_MODULE");
    expect(lines.some((l) => l.startsWith("PrivateDevices"))).toBe(false);
    expect(timer.split("\n")).toEqual(
      expect.arrayContaining([
        "Persistent=true",
        "RandomizedDelaySec=30min",
        "OnCalendar=*-*-* 02:00:00 UTC",
      ]),
    );
    expect(() => backupServiceUnit({ cluster: "c", host: "h", writablePaths: ["relative/dir"] })).toThrow(
      /absolute/,
    );
  });

  test("each replica's binlog archiver (point-in-time recovery) passes `systemd-analyze verify`, always restarts, and keeps one capability", () => {
    for (const s of [dev, prod]) {
      const units = copyNamed(s, "-copy-mysql-backup-binlog-service");
      expect(units.length).toBe(copyNamed(s, "-copy-mysql-backup-service").length);
      for (const unit of units) {
        const text = shipped(unit).text!;
        expect(verify({ "mysql-backup-binlog.service": text })).toEqual({ status: 0, out: "" });
        expect(text.split("\n")).toEqual(
          expect.arrayContaining([
            "ExecStart=/usr/local/bin/mysql-backup binlog --config /etc/mysql-backup/backup.json",
            'Environment="NODE_OPTIONS=--max-semi-space-size=1 --max-old-space-size=64"',
            "Restart=always",
            "StartLimitIntervalSec=0",
            "KillMode=mixed",
            "TimeoutStopSec=90s",
            "CapabilityBoundingSet=CAP_DAC_READ_SEARCH",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "StateDirectory=mysql-backup/binlog",
            "StateDirectoryMode=0700",
            "PrivateDevices=yes",
            "WantedBy=multi-user.target",
          ]),
        );
      }
    }
    expect(() => binlogServiceUnit({ cluster: "c", host: "h", stateDir: "relative" })).toThrow(/absolute/);
    expect(binlogServiceUnit({ cluster: "c", host: "h", stateDir: "/srv/binlog-state" })).toContain(
      "ReadWritePaths=/srv/binlog-state",
    );
  });

  test("each replica's backup.json tells its archiver the cluster's RPO, its state directory, the bucket's retention, and to announce every segment to the verifiers", () => {
    const byHost = Object.fromEntries(
      copyNamed(prod, "-copy-backup-json").map((r) => {
        const config = parseBackupConfig(JSON.parse(shipped(r).text!));
        return [config.host, config.binlog];
      }),
    );
    expect(byHost["orders-db3"]).toEqual({
      rpoSeconds: 10,
      stateDir: "/var/lib/mysql-backup/binlog",
      announce: true,
      retentionDays: 400,
    });
    expect(byHost["billing-db2"]).toMatchObject({ rpoSeconds: 5 });
  });

  test("without writable paths the backup service keeps /var writable (ProtectSystem=full)", () => {
    const lines = backupServiceUnit({ cluster: "c", host: "h" }).split("\n");
    expect(lines).toContain("ProtectSystem=full");
    expect(lines.some((l) => l.startsWith("ReadWritePaths"))).toBe(false);
  });

  test("the verifier service (from the user-data) passes `systemd-analyze verify`, restarts on failure and logs to its file", () => {
    const cloudConfig = parseYaml(userDataOf(dev)) as {
      write_files: Array<{ path: string; content: string }>;
    };
    const unit = cloudConfig.write_files.find((f) =>
      f.path.endsWith("mysql-backup-verifier.service"),
    )!.content;
    expect(verify({ "mysql-backup-verifier.service": unit })).toEqual({ status: 0, out: "" });
    expect(unit).toContain(
      "ExecStart=/usr/local/bin/mysql-backup verify --config /etc/mysql-backup/verify.json",
    );
    expect(unit).toContain("Restart=on-failure");
    expect(unit.split("\n")).toEqual(
      expect.arrayContaining([
        "StandardOutput=append:/var/log/mysql-backup/verifier.log",
        "StandardError=inherit",
        "LogsDirectory=mysql-backup",
      ]),
    );
  });

  test("the verifier service is hardened: read-only but its scratch directory, few capabilities, a stop that waits for the scratch server", () => {
    const unit = verifierServiceUnit();
    const lines = unit.split("\n");
    for (const line of [
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/lib/mysql-verify",
      "PrivateTmp=yes",
      "PrivateDevices=yes",
      "ProtectHome=yes",
      "ProtectKernelModules=yes",
      "KillMode=mixed",
      // One assignment, quoted: systemd splits an unquoted value at its spaces.
      'Environment="NODE_OPTIONS=--max-semi-space-size=1"',
    ]) {
      expect(lines).toContain(line);
    }
    const caps = lines
      .find((l) => l.startsWith("CapabilityBoundingSet="))!
      .split("=")[1]
      .split(" ");
    expect(caps).toEqual(expect.arrayContaining(["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"]));
    expect(caps).not.toContain("CAP_SYS_ADMIN");
    expect(caps).not.toContain("CAP_SYS_MODULE");
    // Longer than the scratch server's own stop (its grace before SIGKILL, which the host scripts import).
    expect(lines).toContain(`TimeoutStopSec=${VERIFIER_STOP_TIMEOUT_SECONDS}s`);
    expect(VERIFIER_STOP_TIMEOUT_SECONDS).toBeGreaterThan(SCRATCH_SERVER_STOP_GRACE_SECONDS);
    expect(verify({ "mysql-backup-verifier.service": unit })).toEqual({ status: 0, out: "" });
  });

  test("`systemd-analyze security` rates the verifier service at most as exposed as the backup service", () => {
    const exposure = (name: string, text: string): number => {
      const file = path.join(work, name);
      fs.writeFileSync(file, text);
      const r = run("systemd-analyze", ["security", "--offline=yes", file]);
      const level = /Overall exposure level for \S+: ([\d.]+)/.exec(r.out);
      if (!level) throw new Error(`systemd-analyze security printed no exposure level:\n${r.out}`);
      return Number(level[1]);
    };
    const verifier = exposure("mysql-backup-verifier.service", verifierServiceUnit());
    const backup = exposure(
      "mysql-backup.service",
      backupServiceUnit({
        cluster: "c",
        host: "h",
        writablePaths: ["/var/backups/mysql", "/srv/.snapshots"],
      }),
    );
    expect(verifier).toBeLessThanOrEqual(backup);
    expect(verifier).toBeLessThan(6);
  });

  test("the verifier refuses a unit whose binary is missing (the check can fail)", () => {
    const unit = "[Service]\nExecStart=/usr/local/bin/not-installed\n";
    expect(verify({ "broken.service": unit }).status).not.toBe(0);
  });

  test("every OnCalendar value in the stacks passes `systemd-analyze calendar`", () => {
    const schedules = [
      ...copyNamed(dev, "-copy-mysql-backup-timer"),
      ...copyNamed(prod, "-copy-mysql-backup-timer"),
    ].map((r) => /^OnCalendar=(.+)$/m.exec(shipped(r).text!)![1]);
    expect(schedules.sort()).toEqual(["*-*-* 00/6:00:00 UTC", "*-*-* 01:30:00 UTC", "*-*-* 02:00:00 UTC"]);
    for (const schedule of schedules) {
      expect(run("systemd-analyze", ["calendar", schedule]).status).toBe(0);
    }
    expect(run("systemd-analyze", ["calendar", "every day at two"]).status).not.toBe(0);
  });

  test("a schedule cannot smuggle extra unit lines", () => {
    expect(() => backupTimerUnit({ schedule: "daily\nExecStart=/bin/sh" })).toThrow(
      /one OnCalendar expression/,
    );
  });
});

test("systemd-analyze and cloud-init are the real tools", () => {
  expect(
    execFileSync("systemd-analyze", ["--version"], {
      encoding: "utf8",
      env: { ...process.env, PATH: SBIN_PATH },
    }),
  ).toMatch(/^systemd \d+/);
  expect(run("cloud-init", ["--version"]).out).toMatch(/\d+\.\d+/);
});
