import { parseStatusConfig, type StatusConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, FlagSpecs, Subcommand } from "../common/command";
import { StatusReader } from "./scan";
import { collectStatus, statusPrefix, summarizeStatus } from "./status";

/** `status`'s own flags. */
const statusFlags = {
  cluster: { type: "string", value: "NAME", describe: "show only this cluster" },
  host: { type: "string", value: "NAME", describe: "show only this host (of every cluster that has it)" },
} as const satisfies FlagSpecs;

/** Nagios' UNKNOWN: `status` could not judge (bad flags or config, S3 unreachable or denied). */
export const STATUS_UNKNOWN = 3;

/**
 * `mysql-backup status`: the health of every cluster and host from S3 alone (manifests, verdicts), for a
 * person or a Nagios-style check. Exit code: 0 ok, 1 warning, 2 critical, 3 could not judge.
 */
export const statusCommand: Subcommand<StatusConfig, typeof statusFlags> = {
  name: "status",
  describe: "the health of every cluster and host: newest backup, newest verified backup, what failed since",
  synopsis: ["--config FILE [--cluster NAME] [--host NAME] [--json]"],
  configDescribe: "the status config: bucket, prefix, expected clusters (StatusConfig)",
  flags: statusFlags,
  examples: [
    {
      command: "mysql-backup status --config /etc/mysql-backup/status.json",
      describe: "every cluster and host; exit 0 ok, 1 warning, 2 critical, 3 unknown (a Nagios check as is)",
    },
    {
      command: "mysql-backup status --config /etc/mysql-backup/status.json --cluster orders --json",
      describe: "one cluster as JSON (schema: contracts/status.ts)",
    },
  ],
  failureExitCode: STATUS_UNKNOWN,
  parseConfig: parseStatusConfig,
  async run(config, flags): Promise<CommandOutcome> {
    const clients = await createAwsClients(config.aws);
    try {
      const reader = new StatusReader(clients.s3, config.s3.bucket, statusPrefix(config));
      const report = await collectStatus(
        reader,
        config,
        { cluster: flags.options.cluster, host: flags.options.host },
        new Date(),
      );
      return { exitCode: report.exitCode, result: report, summary: summarizeStatus(report) };
    } finally {
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.cloudwatch.destroy();
    }
  },
};
