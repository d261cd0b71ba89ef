import { setTimeout as sleep } from "node:timers/promises";
import {
  ContractError,
  parseBackupConfig,
  parseCheckReport,
  parseVerifyConfig,
  type BackupConfig,
  type CheckReport,
  type VerifyConfig,
} from "../../contracts";
import { createAwsClients, type AwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode, PipelineError, messageOf } from "../common/errors";
import { connect, query, readOptionFile } from "../common/mysql";
import { driverFor, runCommand } from "../common/snapshot";
import { versionInfo } from "../common/version";
import { summarizeCheck, type Checklist } from "./findings";
import { commandPath } from "./host";
import type { CheckSession } from "./mysql";
import { checkReplica } from "./replica";
import { checkVerifier } from "./verifier";

/** What `check --config` was given: a replica's backup config or a verifier's verify config. */
export type CheckTarget =
  { role: "replica"; config: BackupConfig } | { role: "verifier"; config: VerifyConfig };

/**
 * Tells the two configs apart by the keys only one of them has, then validates it as that one, so a bad
 * backup config gets the backup config's errors, not "this is not a verify config".
 */
export function parseCheckConfig(value: unknown): CheckTarget {
  const keys = value !== null && typeof value === "object" ? Object.keys(value) : [];
  const replica = ["snapshot", "localDir", "mysql", "cluster"].some((k) => keys.includes(k));
  const verifier = ["scratchDir", "mysqld", "restore", "catchUp"].some((k) => keys.includes(k));
  if (replica && !verifier) return { role: "replica", config: parseBackupConfig(value) };
  if (verifier && !replica) return { role: "verifier", config: parseVerifyConfig(value) };
  throw new ContractError("check config", [
    "(top level) is neither a backup config (snapshot, localDir, mysql, …) nor a verify config (scratchDir, …): pass the file the service runs with",
  ]);
}

/**
 * `mysql-backup check`: a preflight that proves, before the first real run, everything the run will need,
 * and names what is wrong and how to fix it. Exit 0 when ready (warnings allowed), 15 when a check failed.
 */
export const checkCommand: Subcommand<CheckTarget> = {
  name: "check",
  describe:
    "prove this replica or verifier has everything its runs need (MySQL, privileges, volume, S3, queue)",
  synopsis: ["--config FILE [--json]"],
  configDescribe: "the config the service runs with: a replica's backup.json or a verifier's verify.json",
  examples: [
    {
      command: "mysql-backup check --config /etc/mysql-backup/backup.json",
      describe: "on a replica, before its first backup: exit 0 when ready, 15 when something is missing",
    },
    {
      command: "mysql-backup check --config /etc/mysql-backup/verify.json --json",
      describe: "on a verifier, every finding as JSON (schema: contracts/check.ts)",
    },
  ],
  parseConfig: parseCheckConfig,
  async run(target): Promise<CommandOutcome> {
    const { clients, problem } = await awsClients(target.config.aws);
    try {
      const list =
        target.role === "replica"
          ? await checkReplica(target.config, {
              openSession: sessionOpener(target.config.mysql.optionFile),
              driver: driverFor(target.config.snapshot, runCommand),
              aws: clients,
              awsProblem: problem,
              path: commandPath(),
              now: new Date(),
              version: (await versionInfo()).version,
            })
          : await checkVerifier(target.config, {
              aws: clients,
              awsProblem: problem,
              path: commandPath(),
              run: runCommand,
            });
      const report = reportOf(target, list);
      return {
        exitCode: report.ok ? ExitCode.Ok : ExitCode.CheckFailed,
        result: report,
        summary: summarizeCheck(report),
      };
    } finally {
      clients?.s3.destroy();
      clients?.sqs.destroy();
      clients?.cloudwatch.destroy();
    }
  },
};

function reportOf(target: CheckTarget, list: Checklist): CheckReport {
  return parseCheckReport({
    formatVersion: 1,
    role: target.role,
    subject:
      target.role === "replica"
        ? `replica ${target.config.cluster}/${target.config.host}`
        : `verifier of ${target.config.sqs.queueUrl.split("/").pop()}`,
    ok: list.ok,
    findings: list.findings,
  });
}

/** The AWS clients, or why they cannot be built (a finding, not a crash: the other checks still run). */
async function awsClients(
  settings: BackupConfig["aws"],
): Promise<{ clients: AwsClients | null; problem?: { message: string; hint: string } }> {
  try {
    return { clients: await createAwsClients(settings) };
  } catch (error) {
    const e = error instanceof PipelineError ? error : null;
    return {
      clients: null,
      problem: { message: messageOf(error), hint: e?.hint ?? "check the aws section" },
    };
  }
}

/** Sessions opened the way the backup opens them: the option file's credentials, a 10 s connect timeout. */
function sessionOpener(optionFile: string): () => Promise<CheckSession> {
  return async () => {
    const conn = await connect(await readOptionFile(optionFile), "the local server");
    // The watchdog check kills one of these: its error event must not end the process.
    conn.on("error", () => undefined);
    return {
      id: conn.threadId,
      query: (sql) => query(conn, sql),
      async close() {
        await Promise.race([conn.end().catch(() => undefined), sleep(2000, undefined, { ref: false })]);
        conn.destroy();
      },
    };
  };
}
