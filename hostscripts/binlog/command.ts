import { setTimeout as sleep } from "node:timers/promises";
import { parseBackupConfig, type BackupConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, FlagSpecs, Subcommand } from "../common/command";
import { ExitCode } from "../common/errors";
import { sinkFromConfig } from "../common/metrics";
import { connect, readConfiguredOptionFile } from "../common/mysql";
import { runArchiver, type ArchiverResult } from "./archiver";

/**
 * `mysql-backup binlog --config FILE [--once] [--json]`: the binlog archiver of a replica (a systemd service,
 * always on). It reads the replica's own config (`backup.json`, its `binlog` section for the archiver's
 * settings). SIGTERM (systemctl stop) makes it cut and upload what it read, then exit 0. `--once` archives
 * everything the server has committed and exits.
 */
/** `binlog`'s own flags. */
const binlogFlags = {
  once: {
    type: "boolean",
    describe: "archive everything the server has committed, upload it, then exit (tests, by hand)",
  },
} as const satisfies FlagSpecs;

export const binlogCommand: Subcommand<BackupConfig, typeof binlogFlags> = {
  name: "binlog",
  describe:
    "archive this server's binary log to S3 as it is written (point-in-time recovery); runs until stopped",
  synopsis: ["--config FILE [--once] [--json]"],
  configDescribe: "the replica's backup config (BackupConfig, its `binlog` section)",
  flags: binlogFlags,
  examples: [
    {
      command: "mysql-backup binlog --config /etc/mysql-backup/backup.json",
      describe:
        "the archiver, as mysql-backup-binlog.service runs it (SIGTERM uploads what was read, then exits 0)",
    },
    {
      command: "mysql-backup binlog --config /etc/mysql-backup/backup.json --once",
      describe: "archive what is committed now and exit",
    },
  ],
  parseConfig: parseBackupConfig,
  async run(config, flags, log, runtime): Promise<CommandOutcome> {
    const options = await readConfiguredOptionFile(config.mysql.optionFile);
    const aws = await createAwsClients(config.aws);
    const stop = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      log.info(`${signal}: cutting and uploading what was read, then stopping`);
      stop.abort();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      const result = await runArchiver(
        config,
        { once: flags.options.once === true },
        {
          async connect() {
            const session = await connect(options, `the local server (${config.host})`);
            // A dropped session reports an error event; unheard, it would end the process.
            session.on("error", (e: Error) => log.warn("MySQL session ended", { error: e.message }));
            return session;
          },
          s3: aws.s3,
          sqs: aws.sqs,
          metrics: sinkFromConfig(config.metrics, aws.cloudwatch),
          log: log.with({ cluster: config.cluster, host: config.host }),
          now: () => new Date(),
          sleep: (ms, signal) => sleep(ms, undefined, { signal }).catch(() => undefined),
          signal: stop.signal,
          checkpoint: runtime.checkpoint,
        },
      );
      return { exitCode: ExitCode.Ok, result, summary: summarize(config, result) };
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      aws.s3.destroy();
      aws.sqs.destroy();
      aws.cloudwatch.destroy();
    }
  },
};

/** A few lines for a person. */
export function summarize(config: BackupConfig, r: ArchiverResult): string {
  const lines = [
    `binlog archive of ${config.cluster}/${config.host}: epoch ${r.epoch ?? "(none)"}, last segment ${r.sequence}`,
    `  archived ${r.segmentsArchived} segments, ${(r.bytesArchived / 1024 / 1024).toFixed(1)} MiB; lag ${r.lagSeconds.toFixed(1)} s; ${r.spooled} segments still spooled`,
  ];
  for (const e of r.epochsStarted)
    lines.push(`  new epoch ${e.epoch} (${e.reason})${e.missing ? `: GAP, lost ${e.missing}` : ""}`);
  return lines.join("\n");
}
