import { noCheckpoint, type Checkpoint } from "./checkpoint";
import type { Logger } from "./log";

/** Flags every subcommand understands. */
export interface CommonFlags {
  /** Print the result as one JSON object on the last line of stdout. */
  json: boolean;
  /** `verify` only: handle at most one message, then exit (tests, the demo). */
  once: boolean;
  /** Arguments after the subcommand that are not common flags (e.g. `restore list`). */
  rest: string[];
}

/** What a subcommand ran to: an exit code, a result for `--json`, a summary for people. */
export interface CommandOutcome {
  exitCode: number;
  result: unknown;
  summary: string;
}

/**
 * What the process that runs the CLI hands a command besides its config: the seams a test entry fills in
 * (tests/support/pausing-cli.ts). `productionRuntime` is what `mysql-backup` runs with on a host.
 */
export interface CommandRuntime {
  /** Called at each pause point of a backup. Defaults to `noCheckpoint`. */
  checkpoint: Checkpoint;
}

/** The runtime of `mysql-backup` on a host. */
export const productionRuntime: CommandRuntime = { checkpoint: noCheckpoint };

/**
 * One subcommand of `mysql-backup`: how to validate its config file, and how to run it.
 * The CLI only parses flags, loads the config and calls `run`; everything else lives in the module.
 */
export interface Subcommand<Config> {
  name: string;
  describe: string;
  parseConfig(value: unknown): Config;
  /** Flags of this subcommand alone (e.g. `--target`), passed through to `flags.rest` with their values. */
  ownFlags?: string[];
  run(config: Config, flags: CommonFlags, log: Logger, runtime: CommandRuntime): Promise<CommandOutcome>;
}
