import { hostname } from "node:os";
import { $ } from "zx";
import { parseVerifyConfig, type VerifyConfig } from "../../contracts";
import { createAwsClients } from "../common/aws";
import type { CommandOutcome, Subcommand } from "../common/command";
import { ExitCode } from "../common/errors";
import { sinkFromConfig } from "../common/metrics";
import { runVerifier } from "./daemon";
import { exitCodeOf, summarizeResult } from "./result";

/**
 * `mysql-backup verify`: the daemon, or `--once` for tests and the demo. The daemon runs until SIGTERM or
 * SIGINT and then exits 0, whatever its last message's outcome (which failed verdicts have paged already);
 * `--once` exits with the code of its one message.
 */
export const verifyCommand: Subcommand<VerifyConfig> = {
  name: "verify",
  describe: "restore backups from the queue into a scratch server and check them",
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
        { once: flags.once },
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
      const stopped = stop.signal.aborted && !flags.once;
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
