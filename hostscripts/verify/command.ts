import { hostname } from "node:os";
import { $ } from "zx";
import { parseVerifyConfig, type VerifyConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, FlagSpecs, Subcommand } from "../common/command";
import { ExitCode } from "../common/errors";
import { sinkFromConfig } from "../common/metrics";
import { runVerifier } from "./daemon";
import { exitCodeOf, summarizeResult } from "./result";

/**
 * `mysql-backup verify`: the daemon, or `--once` for tests and the demo. The daemon runs until SIGTERM or
 * SIGINT and then exits 0, whatever its last message's outcome (which failed verdicts have paged already);
 * `--once` exits with the code of its one message.
 */
/** `verify`'s own flags. */
const verifyFlags = {
  once: {
    type: "boolean",
    describe:
      "verify the next backup, then exit; binlog segment messages before it are checked on the way (tests, the demo, by hand)",
  },
} as const satisfies FlagSpecs;

export const verifyCommand: Subcommand<VerifyConfig, typeof verifyFlags> = {
  name: "verify",
  describe: "restore backups from the queue into a scratch server and check them",
  synopsis: ["--config FILE [--once] [--json]"],
  configDescribe: "the verifier's config (VerifyConfig)",
  flags: verifyFlags,
  examples: [
    {
      command: "mysql-backup verify --config /etc/mysql-backup/verify.json",
      describe: "the daemon, as mysql-backup-verifier.service runs it",
    },
    {
      command: "mysql-backup verify --config /etc/mysql-backup/verify.json --once",
      describe: "verify the next waiting backup and exit (10 if it failed verification)",
    },
  ],
  parseConfig: parseVerifyConfig,
  async run(config, flags, log): Promise<CommandOutcome> {
    const clients = await createAwsClients(config.aws);
    const stop = new AbortController();
    const onSignal = () => {
      log.info("stopping: a restore in progress is interrupted and its message released");
      stop.abort();
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    try {
      const result = await runVerifier(
        config,
        { once: flags.options.once === true },
        {
          ...clients,
          metrics: sinkFromConfig(config.metrics, clients.cloudwatch),
          log,
          $: $({ quiet: true }),
          now: () => new Date(),
          hostname: hostname(),
          signal: stop.signal,
        },
      );
      // The daemon's last message may have failed, but a stop systemd asked for is not a failure of the unit.
      const stopped = stop.signal.aborted && flags.options.once !== true;
      return {
        exitCode: stopped ? ExitCode.Ok : exitCodeOf(result.outcome),
        result,
        summary: stopped
          ? `stopped on request; the last message:\n${summarizeResult(result)}`
          : summarizeResult(result),
      };
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      clients.s3.destroy();
      clients.sqs.destroy();
      clients.cloudwatch.destroy();
    }
  },
};
