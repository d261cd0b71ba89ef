/**
 * The replica install script, run for real by sh below a scratch root (its `root` seam), with `systemctl`
 * replaced by a stand-in on PATH that can be told to fail: an install that fails at any step is retried
 * cleanly by the next `pulumi up` (the same staged files), one whose completion Pulumi never heard of is
 * recognised, and an uninstall removes only the install it belongs to.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { INSTALL_MARKER, installScript, uninstallScript } from "../../components";
import {
  BACKUP_CONFIG_PATH,
  BACKUP_SERVICE,
  BACKUP_TIMER,
  BINLOG_SERVICE,
  INSTALLED_BINARY,
  UNIT_DIR,
} from "../../contracts/units";

let root: string;
let bin: string;
let stage: string;
let calls: string;
const HASH = "a".repeat(64);
const BUNDLE = "#!/usr/bin/env node\nconsole.log('mysql-backup');\n";
const OPTION_FILE = "/etc/mysql-backup/client.cnf";

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "replica-install-"));
  bin = path.join(root, "fake-bin");
  stage = path.join(root, "var/tmp/mysql-backup-stage-aaaaaaaaaaaaaaaa");
  calls = path.join(root, "systemctl.calls");
  for (const dir of [
    bin,
    stage,
    path.join(root, "usr/local/bin"),
    path.join(root, UNIT_DIR),
    path.join(root, "etc/mysql-backup"),
  ])
    fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(root, OPTION_FILE), "[client]\nuser=backup\n", { mode: 0o600 });
  // systemctl: records its arguments; fails `restart` while $root/fail-restart exists.
  fs.writeFileSync(
    path.join(bin, "systemctl"),
    `#!/bin/sh\necho "$*" >> ${calls}\nif [ "$1" = restart ] && [ -e ${root}/fail-restart ]; then echo "Job for ${BACKUP_TIMER} failed" >&2; exit 1; fi\n`,
    { mode: 0o755 },
  );
  fs.writeFileSync(path.join(stage, "mysql-backup.cjs"), BUNDLE);
  fs.writeFileSync(path.join(stage, "backup.json"), "{}\n");
  fs.writeFileSync(path.join(stage, BACKUP_SERVICE), "[Service]\n");
  fs.writeFileSync(path.join(stage, BACKUP_TIMER), "[Timer]\n");
  fs.writeFileSync(path.join(stage, BINLOG_SERVICE), "[Service]\n");
});

afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

function sh(script: string): { status: number | null; err: string } {
  const r = spawnSync("sh", ["-s"], {
    input: script,
    encoding: "utf8",
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` },
  });
  return { status: r.status, err: r.stderr };
}

/** Point-in-time recovery is on by default: the archiver is installed and restarted with the timer. */
const install = (binlog = true): { status: number | null; err: string } =>
  sh(
    installScript({
      dir: stage,
      bundleSha256: createHash("sha256").update(BUNDLE).digest("hex"),
      optionFile: OPTION_FILE,
      hash: HASH,
      root,
      binlog,
    }),
  );
const installed = (p: string): string => path.join(root, p);

test("an install that fails at its last step is retried from the same staged files by the next run", () => {
  fs.writeFileSync(path.join(root, "fail-restart"), "");
  const failed = install();
  expect(failed.status).not.toBe(0);
  expect(failed.err).toContain(`Job for ${BACKUP_TIMER} failed`);
  // Nothing the retry needs is gone, and the install is not recorded as done.
  expect(fs.existsSync(path.join(stage, "mysql-backup.cjs"))).toBe(true);
  expect(fs.existsSync(installed(INSTALL_MARKER))).toBe(false);

  fs.rmSync(path.join(root, "fail-restart"));
  expect(install()).toEqual({ status: 0, err: "" });
  expect(fs.readFileSync(installed(INSTALLED_BINARY), "utf8")).toBe(BUNDLE);
  expect(fs.statSync(installed(INSTALLED_BINARY)).mode & 0o777).toBe(0o755);
  expect(fs.statSync(installed(BACKUP_CONFIG_PATH)).mode & 0o777).toBe(0o640);
  expect(fs.readFileSync(installed(INSTALL_MARKER), "utf8").trim()).toBe(HASH);
  expect(fs.existsSync(stage)).toBe(false);
  expect(fs.readFileSync(calls, "utf8").trim().split("\n")).toEqual([
    "daemon-reload",
    `enable ${BACKUP_TIMER}`,
    `restart ${BACKUP_TIMER}`,
    "daemon-reload",
    `enable ${BACKUP_TIMER}`,
    `restart ${BACKUP_TIMER}`,
    `enable ${BINLOG_SERVICE}`,
    `restart ${BINLOG_SERVICE}`,
  ]);
  expect(fs.statSync(installed(`${UNIT_DIR}/${BINLOG_SERVICE}`)).mode & 0o777).toBe(0o644);
});

test("a finished install Pulumi never heard of is run again without its staged files", () => {
  expect(install().status).toBe(0);
  expect(fs.existsSync(stage)).toBe(false);
  expect(install()).toEqual({ status: 0, err: "" });
});

test("a staging directory gone before the install completed is a clear error, not a half install", () => {
  fs.rmSync(stage, { recursive: true });
  const r = install();
  expect(r.status).not.toBe(0);
  expect(r.err).toMatch(
    /is gone but install a{64} never completed: run pulumi up --replace on this replica's -stage step/,
  );
  expect(fs.existsSync(installed(INSTALLED_BINARY))).toBe(false);
});

test("a corrupt staged bundle stops the install before anything is replaced", () => {
  fs.writeFileSync(path.join(stage, "mysql-backup.cjs"), "tampered\n");
  const r = install();
  expect(r.status).not.toBe(0);
  expect(fs.existsSync(installed(INSTALLED_BINARY))).toBe(false);
  expect(fs.existsSync(stage)).toBe(true);
});

test("an uninstall removes the install it belongs to, and leaves a newer one alone", () => {
  expect(install().status).toBe(0);
  expect(sh(uninstallScript("b".repeat(64), root))).toEqual({
    status: 0,
    err: `install ${"b".repeat(64)} is not the current one here; nothing to remove\n`,
  });
  expect(fs.existsSync(installed(INSTALLED_BINARY))).toBe(true);
  expect(sh(uninstallScript(HASH, root)).status).toBe(0);
  for (const p of [
    INSTALLED_BINARY,
    BACKUP_CONFIG_PATH,
    `${UNIT_DIR}/${BACKUP_TIMER}`,
    `${UNIT_DIR}/${BINLOG_SERVICE}`,
    INSTALL_MARKER,
  ])
    expect(fs.existsSync(installed(p))).toBe(false);
  expect(fs.readFileSync(calls, "utf8")).toContain(`disable --now ${BINLOG_SERVICE}`);
});

test("point-in-time recovery turned off: the next install stops the archiver and removes its unit", () => {
  expect(install(true).status).toBe(0);
  expect(fs.existsSync(installed(`${UNIT_DIR}/${BINLOG_SERVICE}`))).toBe(true);
  fs.mkdirSync(stage, { recursive: true });
  for (const f of ["mysql-backup.cjs", "backup.json", BACKUP_SERVICE, BACKUP_TIMER])
    fs.writeFileSync(path.join(stage, f), f === "mysql-backup.cjs" ? BUNDLE : "x\n");
  fs.writeFileSync(calls, "");
  expect(install(false)).toEqual({ status: 0, err: "" });
  expect(fs.existsSync(installed(`${UNIT_DIR}/${BINLOG_SERVICE}`))).toBe(false);
  expect(fs.readFileSync(calls, "utf8").trim().split("\n")).toEqual([
    `disable --now ${BINLOG_SERVICE}`,
    "daemon-reload",
    `enable ${BACKUP_TIMER}`,
    `restart ${BACKUP_TIMER}`,
  ]);
});
