import { readFile } from "node:fs/promises";
import { ContractError } from "../contracts";
import { backupCommand } from "./backup/command";
import { binlogCommand } from "./binlog/command";
import { checkCommand } from "./check/command";
import { COMMON_FLAGS, commandHelp, nearestName, parseCommandLine, toolHelp } from "./common/args";
import {
  productionRuntime,
  type CommandFlags,
  type CommandOutcome,
  type CommandRuntime,
  type Subcommand,
} from "./common/command";
import { ExitCode, PipelineError, messageOf } from "./common/errors";
import { createLogger } from "./common/log";
import { stdoutIsJournal } from "./common/output";
import { describeVersion, versionInfo } from "./common/version";
import { restoreCommand } from "./restore/command";
import { statusCommand } from "./status/command";
import { verifyCommand } from "./verify/command";

// Each subcommand validates its own config type and declares its own flags; the registry only calls it.
const commands = [
  backupCommand,
  verifyCommand,
  restoreCommand,
  binlogCommand,
  statusCommand,
  checkCommand,
] as unknown as ReadonlyArray<Subcommand<never>>;

/** What the command line asks for. */
export type Invocation =
  | { kind: "run"; command: Subcommand<never>; configPath: string; flags: CommandFlags }
  | { kind: "help"; text: string }
  | { kind: "version"; json: boolean };

/**
 * Parses argv (without node and script). `journal`: stdout is the journal, so results are JSON without
 * `--json`. Throws a Usage error that says what is wrong and names the nearest command or flag for a typo.
 */
export function parseInvocation(argv: string[], journal = false): Invocation {
  const [name = "", ...rest] = argv;
  if (name === "--help" || name === "-h" || name === "help")
    return { kind: "help", text: toolHelp(commands) };
  if (name === "--version") {
    const extra = rest.find((arg) => arg !== "--json");
    if (extra !== undefined)
      throw new PipelineError(
        "Usage",
        `--version takes only --json, not "${extra}"`,
        "mysql-backup --version [--json]",
      );
    return { kind: "version", json: rest.includes("--json") || journal };
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    const nearest = nearestName(
      name.replace(/^-+/, ""),
      commands.map((c) => c.name),
    );
    throw new PipelineError(
      "Usage",
      `unknown command "${name}"${nearest === null ? "" : ` (did you mean ${nearest}?)`}`,
      `the commands are ${commands.map((c) => c.name).join(", ")}; mysql-backup --help says what each does`,
    );
  }
  const parsed = parseCommandLine(command, rest);
  if (parsed.help) return { kind: "help", text: commandHelp(command) };
  if (parsed.configPath === null) {
    throw new PipelineError(
      "Usage",
      `${command.name} needs --config ${COMMON_FLAGS.config.value} (${command.configDescribe})`,
      `mysql-backup ${command.name} --help shows an example`,
    );
  }
  return {
    kind: "run",
    command,
    configPath: parsed.configPath,
    flags: { ...parsed.flags, json: parsed.flags.json || journal },
  };
}

/** Reads and validates the config file; errors name the file, the key and the expected value. */
export async function loadConfig<T>(path: string, command: Subcommand<T>): Promise<T> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new PipelineError(
      "Config",
      `cannot read config file ${path}: ${messageOf(e)}`,
      "check the --config path",
      {
        cause: e,
      },
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new PipelineError(
      "Config",
      `config file ${path} is not valid JSON: ${messageOf(e)}`,
      "fix the JSON syntax",
      {
        cause: e,
      },
    );
  }
  try {
    return command.parseConfig(value);
  } catch (e) {
    if (e instanceof ContractError) {
      throw new PipelineError("Config", `config file ${path}: ${e.message}`, "fix the keys named above", {
        cause: e,
      });
    }
    throw e;
  }
}

/** Where the CLI writes; a test passes its own. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** stdout is the systemd journal (results as JSON). */
  journal: boolean;
  /** stderr is a terminal (log lines for people). */
  stderrIsTty: boolean;
}

const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  journal: stdoutIsJournal(),
  stderrIsTty: process.stderr.isTTY === true,
};

/**
 * The whole CLI: returns the exit code; prints the result on stdout (JSON under the journal or with
 * `--json`, the summary for people otherwise) and logs on stderr. `runtime` is what a test entry injects
 * into the command; hosts run with the production one.
 */
export async function main(
  argv: string[],
  runtime: CommandRuntime = productionRuntime,
  io: CliIo = processIo,
): Promise<number> {
  // The SDK warns on every run that its 2027 releases need Node 22; the pin to Node 20 is deliberate
  // (README, "Runtime"), and a multi-line warning per run would drown the journal's JSON lines.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const log = createLogger({ pretty: io.stderrIsTty, write: (line) => io.stderr(line + "\n") });
  let json = io.journal || argv.includes("--json");
  const named = commands.find((c) => c.name === argv[0]);
  if (argv.length === 0) {
    io.stderr(toolHelp(commands) + "\n");
    return ExitCode.Usage;
  }
  try {
    const invocation = parseInvocation(argv, io.journal);
    if (invocation.kind === "help") {
      io.stdout(invocation.text + "\n");
      return ExitCode.Ok;
    }
    if (invocation.kind === "version") {
      const info = await versionInfo();
      io.stdout((invocation.json ? JSON.stringify(info) : describeVersion(info)) + "\n");
      return ExitCode.Ok;
    }
    json = invocation.flags.json;
    const config = await loadConfig(invocation.configPath, invocation.command);
    // parseCommandLine checked every flag against this command's own specs, so the values have their types.
    const flags = invocation.flags as never;
    const outcome: CommandOutcome = await invocation.command.run(config, flags, log, runtime);
    io.stdout((json ? JSON.stringify(outcome.result) : outcome.summary) + "\n");
    return outcome.exitCode;
  } catch (e) {
    const err =
      e instanceof PipelineError
        ? e
        : new PipelineError("Internal", messageOf(e), "this is a bug: report it", { cause: e });
    const exitCode = named?.failureExitCode ?? err.exitCode;
    if (json) {
      io.stdout(JSON.stringify({ ok: false, error: err.kind, message: err.message, hint: err.hint }) + "\n");
      log.error(err.message, { error: err.kind, hint: err.hint, exitCode });
    } else {
      io.stderr(`mysql-backup: ${err.message}\nwhat to do: ${err.hint} (${err.kind}, exit ${exitCode})\n`);
    }
    return exitCode;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(ExitCode.Internal);
    },
  );
}
