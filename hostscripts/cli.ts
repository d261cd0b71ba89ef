import { readFile } from "node:fs/promises";
import { ContractError } from "../contracts";
import { backupCommand } from "./backup/command";
import { binlogCommand } from "./binlog/command";
import {
  productionRuntime,
  type CommandOutcome,
  type CommandRuntime,
  type CommonFlags,
  type Subcommand,
} from "./common/command";
import { ExitCode, PipelineError, messageOf } from "./common/errors";
import { createLogger } from "./common/log";
import { restoreCommand } from "./restore/command";
import { verifyCommand } from "./verify/command";

// Each subcommand validates its own config type; the registry only needs to call it.
const commands: Record<string, Subcommand<never>> = {
  backup: backupCommand as Subcommand<never>,
  verify: verifyCommand as Subcommand<never>,
  restore: restoreCommand as Subcommand<never>,
  binlog: binlogCommand as Subcommand<never>,
};

const usage = `usage: mysql-backup <command> --config FILE [--json] [--once]

commands:
${Object.values(commands)
  .map((c) => `  ${c.name.padEnd(8)} ${c.describe}`)
  .join("\n")}

  --config FILE  JSON config (see docs/configuration.md)
  --json         print the result as one JSON object on the last line of stdout
  --once         verify: handle at most one message, then exit; binlog: archive what is committed, then exit`;

/** Parsed command line: the subcommand, the config path and the common flags. */
export interface Invocation {
  command: string;
  configPath: string;
  flags: CommonFlags;
}

/** Parses argv (without node and script); throws a Usage error that says what is wrong. */
export function parseArgs(argv: string[]): Invocation {
  const [command, ...args] = argv;
  if (!commands[command]) throw new PipelineError("Usage", `unknown command "${command}"`, usage);
  const flags: CommonFlags = { json: false, once: false, rest: [] };
  let configPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--json") flags.json = true;
    else if (arg === "--once") flags.once = true;
    else if (arg === "--config") configPath = args[++i];
    else if (arg.startsWith("--config=")) configPath = arg.slice("--config=".length);
    else if (arg.startsWith("--") && !commands[command].ownFlags?.includes(arg.split("=")[0]))
      throw new PipelineError("Usage", `unknown flag "${arg}"`, usage);
    else flags.rest.push(arg);
  }
  if (!configPath) throw new PipelineError("Usage", `${command} needs --config FILE`, usage);
  return { command, configPath, flags };
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

/**
 * The whole CLI: returns the exit code; prints the result on stdout and logs on stderr. `runtime` is what a
 * test entry injects into the command; hosts run with the production one.
 */
export async function main(argv: string[], runtime: CommandRuntime = productionRuntime): Promise<number> {
  // The SDK warns on every run that its 2027 releases need Node 22; the pin to Node 20 is deliberate
  // (README, "Runtime"), and a multi-line warning per run would drown the journal's JSON lines.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const log = createLogger({ pretty: process.stderr.isTTY === true });
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h") {
    process.stdout.write(usage + "\n");
    return argv.length === 0 ? ExitCode.Usage : ExitCode.Ok;
  }
  let json = argv.includes("--json");
  try {
    const invocation = parseArgs(argv);
    json = invocation.flags.json;
    const command = commands[invocation.command];
    const config = await loadConfig(invocation.configPath, command);
    const outcome: CommandOutcome = await command.run(config, invocation.flags, log, runtime);
    process.stdout.write(json ? JSON.stringify(outcome.result) + "\n" : outcome.summary + "\n");
    return outcome.exitCode;
  } catch (e) {
    const err =
      e instanceof PipelineError
        ? e
        : new PipelineError("Internal", messageOf(e), "this is a bug: report it", { cause: e });
    if (json)
      process.stdout.write(
        JSON.stringify({ ok: false, error: err.kind, message: err.message, hint: err.hint }) + "\n",
      );
    log.error(err.message, { error: err.kind, hint: err.hint, exitCode: err.exitCode });
    return err.exitCode;
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
