import { noCheckpoint, type Checkpoint } from "./checkpoint";
import type { Logger } from "./log";

/** One flag of a subcommand, as `--help` shows it and the parser checks it. */
export interface FlagSpec {
  /** A `string` flag takes a value (`--target DIR` or `--target=DIR`); a `boolean` flag takes none. */
  type: "string" | "boolean";
  /** One line for `--help`. */
  describe: string;
  /** The value's placeholder in `--help` (`DIR`, `BACKUP_ID`). Defaults to `VALUE`. */
  value?: string;
}

/** A subcommand's own flags, by long name without the dashes (`"until-gtid"`). */
export type FlagSpecs = Record<string, FlagSpec>;

/** The values of `F` as parsed: a string flag's value, `true` for a boolean flag given, absent otherwise. */
export type FlagValues<F extends FlagSpecs> = {
  [K in keyof F]?: F[K]["type"] extends "string" ? string : boolean;
};

/** What the command line gave a subcommand besides `--config`. */
export interface CommandFlags<V = Record<string, string | boolean | undefined>> {
  /**
   * Print the result as one JSON object on stdout: `--json`, or stdout is the journal (under systemd).
   * On a terminal or a pipe, the summary for people instead.
   */
  json: boolean;
  /** The subcommand's own flags (those it declares in `flags`). */
  options: V;
  /** Arguments that are not flags (e.g. `list` in `restore list`). */
  positionals: string[];
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

/** One example of `--help`: a command line and what it does. */
export interface Example {
  command: string;
  describe: string;
}

/**
 * One subcommand of `mysql-backup`: what `--help` says about it, how to validate its config file, and how to
 * run it. The CLI parses the flags it declares, loads the config and calls `run`; everything else lives in
 * the command's folder.
 */
export interface Subcommand<Config, F extends FlagSpecs = FlagSpecs> {
  name: string;
  /** One line for the command list. */
  describe: string;
  /** The usage lines after `mysql-backup <name>`, e.g. `--config FILE [--json]`. */
  synopsis: string[];
  /** Which config file `--config` takes, for `--help` (e.g. "the replica's backup config"). */
  configDescribe: string;
  /** Flags of this subcommand beside `--config`, `--json` and `--help`. Defaults to none. */
  flags?: F;
  /** The arguments that are not flags, by name, for `--help` and the parser's count. Defaults to none. */
  positionals?: Array<{ name: string; describe: string }>;
  /** Shown by `--help`. */
  examples: Example[];
  /**
   * The exit code of any failure once the command is known (usage, config, S3), instead of the failure
   * class's own code: `status` exits 3 (UNKNOWN) so a Nagios-style check never reads a failure as a health
   * state. Defaults to the class's code (docs/operations.md).
   */
  failureExitCode?: number;
  parseConfig(value: unknown): Config;
  run(
    config: Config,
    flags: CommandFlags<FlagValues<F>>,
    log: Logger,
    runtime: CommandRuntime,
  ): Promise<CommandOutcome>;
}
