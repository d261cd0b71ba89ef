import { setTimeout as sleep } from "node:timers/promises";
import { parseBackupConfig, type BackupConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode } from "../common/errors";
import type { Logger } from "../common/log";
import { sinkFromConfig } from "../common/metrics";
import { connect, readConfiguredOptionFile } from "../common/mysql";
import { logProgress, ttyProgress } from "../common/progress";
import { sessionOf } from "./lock";
import { yieldToDatabase } from "./priority";
import { runBackup, type BackupDeps, type BackupResult } from "./run";
import { driverFor, runCommand } from "../common/snapshot";

/** `mysql-backup backup --config FILE [--json]`. */
export const backupCommand: Subcommand<BackupConfig> = {
  name: "backup",
  describe: "snapshot this replica, archive it, upload it to S3 and signal the verifiers",
  synopsis: ["--config FILE [--json]"],
  configDescribe: "the replica's backup config (BackupConfig)",
  examples: [
    {
      command: "mysql-backup backup --config /etc/mysql-backup/backup.json",
      describe:
        "take one backup now, as mysql-backup.timer does (run `mysql-backup check` first on a new host)",
    },
    {
      command: "systemctl start mysql-backup.service && journalctl -fu mysql-backup.service",
      describe: "the same through systemd, with the unit's priorities; the journal gets JSON",
    },
  ],
  parseConfig: parseBackupConfig,
  async run(config, _flags, log, runtime): Promise<CommandOutcome> {
    const deps = await backupDeps(config, log);
    const result = await runBackup(config, {
      ...deps,
      afterUnlock: () => yieldToDatabase(log),
      checkpoint: runtime.checkpoint,
    });
    return { exitCode: ExitCode.Ok, result, summary: summarize(result) };
  },
};

/** The production dependencies of a config: option-file sessions, the configured driver, AWS and the sink. */
export async function backupDeps(config: BackupConfig, log: Logger): Promise<BackupDeps> {
  const options = await readConfiguredOptionFile(config.mysql.optionFile);
  const aws = await createAwsClients(config.aws);
  return {
    async openSession() {
      const conn = await connect(options, `the local server (${config.host})`);
      // A session the watchdog killed reports it as an error event; unheard, that would end the process.
      conn.on("error", (e: Error) =>
        log.warn("MySQL session ended", { connectionId: conn.threadId, error: e.message }),
      );
      return {
        ...sessionOf(conn),
        async close() {
          await Promise.race([conn.end().catch(() => undefined), sleep(2000, undefined, { ref: false })]);
          conn.destroy();
        },
      };
    },
    driver: driverFor(config.snapshot, runCommand),
    s3: aws.s3,
    sqs: aws.sqs,
    metrics: sinkFromConfig(config.metrics, aws.cloudwatch),
    log,
    progress: process.stderr.isTTY ? ttyProgress(process.stderr) : logProgress(log),
  };
}

/** A few lines for a person. */
export function summarize(r: BackupResult): string {
  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  const gtid = r.position.gtidSlavePos ?? r.position.gtidExecuted ?? r.position.gtidBinlogPos ?? "(none)";
  return [
    `backup ${r.backupId} of ${r.cluster}/${r.host} complete (${r.server.flavor} ${r.server.version})`,
    `  lock     mode ${r.lockMode} (${r.lockChosenBy}): ${r.lockMs.toFixed(1)} ms (${r.lockMethod}), commits held ${r.holdMs.toFixed(1)} ms, snapshot ${r.snapshotMs.toFixed(1)} ms, GTID ${gtid}` +
      (r.lockMode === "none" ? " (read before the snapshot; the verifier records the exact one)" : ""),
    `  archive  ${mb(r.rawBytes)} → ${mb(r.archiveBytes)} in ${r.archiveSeconds.toFixed(1)} s, ${r.files} files, ${r.tables} tables`,
    `  upload   s3://${r.bucket}/${r.manifestKey} in ${r.uploadSeconds.toFixed(1)} s, tagged retention=${r.retention}; total ${r.totalSeconds.toFixed(1)} s`,
  ].join("\n");
}
