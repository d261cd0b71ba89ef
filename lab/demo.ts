import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { describePitrDemo, pitrDemo, type PitrDemoSummary } from "./demo-pitr";
import { labDown, labUp, type Lab } from "./lab";

/**
 * `npm run demo`: the whole pipeline on this machine. Brings the lab up with write load and the binlog
 * archiver, takes one backup of the busy replica and verifies it through the real CLI, then a second one,
 * restores to a second between the two (point-in-time recovery) and checks the restored server's newest
 * marker row, prints what happened, and tears the lab down. Exits 0 only if the backup was verified and the
 * restore reached exactly the point. `--json`: the summary is one JSON object on the
 * last line of stdout. `--dir DIR`: the lab's directory (default `<repo>/.lab`).
 */

const repo = resolve(__dirname, "..");
const cliPath = resolve(repo, "bin/mysql-backup.js");

interface CliRun {
  code: number;
  result: Record<string, unknown>;
  seconds: number;
}

/** Runs `mysql-backup <args> --json` and parses the JSON object on its last stdout line. */
function runCli(args: string[], onLog: (line: string) => void): Promise<CliRun> {
  const started = Date.now();
  return new Promise((done) => {
    const child = execFile(
      process.execPath,
      [cliPath, ...args, "--json"],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => {
        const last = stdout.trim().split("\n").pop() ?? "";
        let result: Record<string, unknown>;
        try {
          result = JSON.parse(last);
        } catch {
          result = { ok: false, message: `no JSON result from mysql-backup ${args[0]}: ${last}` };
        }
        const code = error ? Number((error as NodeJS.ErrnoException & { code?: number }).code ?? 1) : 0;
        done({ code, result, seconds: (Date.now() - started) / 1000 });
      },
    );
    child.stderr?.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line.trim()) onLog(line);
    });
  });
}

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v ?? NaN));
const mb = (bytes: unknown): string => `${(num(bytes) / 1e6).toFixed(1)} MB`;
const s = (seconds: unknown): string => `${num(seconds).toFixed(2)} s`;

/** One of the CLI's JSON log lines as a short readable line: the message and its figures. */
function readableLog(line: string): string {
  try {
    const { time: _time, level, message, backupId: _id, cluster: _c, host: _h, ...fields } = JSON.parse(line);
    const figures = Object.entries(fields)
      .filter(([, v]) => typeof v === "number" || typeof v === "string")
      .map(([k, v]) => `${k}=${typeof v === "number" ? Math.round(v * 1000) / 1000 : v}`)
      .join(" ");
    return `${level === "info" ? "" : String(level).toUpperCase() + " "}${message}${figures ? `  (${figures})` : ""}`;
  } catch {
    return line;
  }
}

/** The readable summary; `summary` is what `--json` prints. */
function describe(summary: DemoSummary): string {
  const b = summary.backup;
  const v = summary.verification;
  const lines = [
    "",
    `mysql-backup-pipeline demo — ${summary.verified ? "VERIFIED" : "NOT VERIFIED"}`,
    "",
    `backup ${b.backupId} of ${summary.cluster}/${summary.host} while sysbench wrote to the primary`,
    `  lock window      ${num(b.lockMs).toFixed(1)} ms (lock mode ${b.lockMode}: ${b.lockMethod})`,
    `  data             ${mb(b.rawBytes)} in ${b.files} files, ${b.tables} tables`,
    `  archive          ${mb(b.archiveBytes)} (zstd, ratio ${(num(b.rawBytes) / num(b.archiveBytes)).toFixed(2)})` +
      ` in ${s(b.archiveSeconds)} = ${(num(b.rawBytes) / 1e6 / num(b.archiveSeconds)).toFixed(0)} MB/s`,
    `  upload           ${s(b.uploadSeconds)}, tagged retention=${String(b.retention)}, backup total ${s(b.totalSeconds)}`,
    `  s3://${b.bucket}/${b.manifestKey}`,
    "",
    `verification: ${v.verdict}${v.failedCheck ? ` (failed check: ${v.failedCheck})` : ""}`,
    `  restore          ${s(v.restoreSeconds)} = download+extract ${s(v.downloadExtractSeconds)}` +
      ` + recovery ${s(v.recoverySeconds)} + checks ${s(v.checksSeconds)}`,
    `  checks passed    ${v.checksPassed}/${v.checksTotal}${v.checks.length ? "" : " (none ran)"}`,
    ...v.checks.map((c) => `    ${c.passed ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`),
    `  GTID captured    ${v.gtidCaptured ?? "-"}`,
    `  GTID restored    ${v.gtidRestored ?? "-"}`,
    `  tables checked   ${v.tablesChecked}, rows ${v.rows}`,
    "",
  ];
  return lines.join("\n");
}

interface DemoSummary {
  verified: boolean;
  cluster: string;
  host: string;
  backup: Record<string, unknown>;
  verification: {
    verdict: string;
    failedCheck: string | null;
    restoreSeconds: number;
    downloadExtractSeconds: number;
    recoverySeconds: number;
    checksSeconds: number;
    checks: Array<{ name: string; passed: boolean; detail: string }>;
    checksPassed: number;
    checksTotal: number;
    gtidCaptured: string | null;
    gtidRestored: string | null;
    tablesChecked: number;
    rows: number;
  };
  labSeconds: number;
  /** The point-in-time part: the archive's RPO lag and a restore to a second between two snapshots. */
  pitr: PitrDemoSummary;
}

/** Picks the verifier's figures out of its `--json` result. */
function verificationSummary(result: Record<string, unknown>): DemoSummary["verification"] {
  const report = (result.report ?? result) as Record<string, unknown>;
  const timings = (report.timings ?? {}) as Record<string, number>;
  const checks = (report.checks ?? []) as DemoSummary["verification"]["checks"];
  const position = (report.position ?? {}) as {
    captured?: { gtid: string | null };
    restored?: { gtid: string | null } | null;
  };
  const tables = (report.tables ?? []) as Array<{ rows: number | null }>;
  return {
    verdict: String(report.verdict ?? result.outcome ?? "error"),
    failedCheck: (report.failedCheck as string | null) ?? null,
    restoreSeconds: timings.restoreSeconds ?? NaN,
    downloadExtractSeconds: timings.downloadExtractSeconds ?? NaN,
    recoverySeconds: timings.recoverySeconds ?? NaN,
    checksSeconds: timings.checksSeconds ?? NaN,
    checks,
    checksPassed: checks.filter((c) => c.passed).length,
    checksTotal: checks.length,
    gtidCaptured: position.captured?.gtid ?? null,
    gtidRestored: position.restored?.gtid ?? null,
    tablesChecked: tables.length,
    rows: tables.reduce((sum, t) => sum + (t.rows ?? 0), 0),
  };
}

async function demo(json: boolean, dir: string): Promise<number> {
  const say = (line: string): void => {
    if (!json) console.log(line);
  };
  // A crashed earlier run may have left mounts, loop devices or servers behind.
  await labDown(dir);
  let lab: Lab | undefined;
  try {
    say(
      "bringing up the lab: btrfs loop volume, MariaDB primary → replica (GTID), S3/SQS emulator, sysbench load, binlog archiver",
    );
    const labStarted = Date.now();
    lab = await labUp({ dir, load: true, pitr: true });
    const labSeconds = (Date.now() - labStarted) / 1000;
    say(`lab up in ${labSeconds.toFixed(1)} s; letting the write load run for 5 s`);
    await new Promise((r) => setTimeout(r, 5000));

    say("mysql-backup backup …");
    const backup = await runCli(["backup", "--config", lab.backupConfigPath], (l) =>
      say(`  ${readableLog(l)}`),
    );
    const backupDoneMs = Date.now();
    if (backup.code !== 0) {
      const summary = { verified: false, stage: "backup", exitCode: backup.code, backup: backup.result };
      if (json) console.log(JSON.stringify(summary));
      else console.error(`backup failed (exit ${backup.code}): ${String(backup.result.message ?? "")}`);
      return 1;
    }
    say("mysql-backup verify --once …");
    const verify = await runCli(["verify", "--config", lab.verifyConfigPath, "--once"], (l) =>
      say(`  ${readableLog(l)}`),
    );
    const verification = verificationSummary(verify.result);
    const b = backup.result;
    const cli = (args: string[]) => runCli(args, (l) => say(`  ${readableLog(l)}`));
    const pitr = await pitrDemo(
      lab,
      { backupId: String(b.backupId), doneMs: backupDoneMs },
      cli,
      say,
      labStarted,
    );
    const summary: DemoSummary = {
      verified: verify.code === 0 && verification.verdict === "verified",
      cluster: String(b.cluster ?? "lab"),
      host: String(b.host ?? "replica1"),
      backup: b,
      verification,
      labSeconds,
      pitr,
    };
    if (json) console.log(JSON.stringify(summary));
    else console.log([describe(summary), ...describePitrDemo(pitr)].join("\n"));
    return summary.verified && pitr.markerIsTheExpectedOne ? 0 : 1;
  } finally {
    say("tearing the lab down");
    await labDown(dir);
  }
}

const argv = process.argv.slice(2);
const dirAt = argv.indexOf("--dir");
demo(argv.includes("--json"), dirAt >= 0 ? resolve(argv[dirAt + 1]) : resolve(repo, ".lab")).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
