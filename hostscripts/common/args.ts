import { parseArgs } from "node:util";
import type { CommandFlags, FlagSpecs, Subcommand } from "./command";
import { PipelineError } from "./errors";

/**
 * The command line of one subcommand, read with node's `util.parseArgs` (Node 18.3+, stable since 20): a
 * maintained parser of the POSIX/GNU conventions (`--flag value`, `--flag=value`, `--` ends the flags)
 * with no dependency to pin and ship in the bundle. It runs in its token mode so that this module can say
 * what is wrong in the words of this tool: the nearest known flag for a typo, the flag that needs a value,
 * the one that takes none.
 */

/** The flags every subcommand takes. */
export const COMMON_FLAGS = {
  config: { type: "string", value: "FILE", describe: "the JSON config file (docs/configuration.md)" },
  json: {
    type: "boolean",
    describe: "print the result as one JSON object (the default when stdout is the journal)",
  },
  help: { type: "boolean", describe: "show this help and exit" },
} as const satisfies FlagSpecs;

/** A subcommand's command line, parsed. */
export interface ParsedCommandLine {
  /** `--help` (or `-h`) was given: print the help, run nothing. */
  help: boolean;
  configPath: string | null;
  flags: CommandFlags;
}

/**
 * Parses what follows the subcommand's name. Throws a Usage error naming the flag and what is wrong with
 * it; its hint points at `--help`.
 */
export function parseCommandLine(command: Subcommand<unknown>, argv: string[]): ParsedCommandLine {
  const specs: FlagSpecs = { ...COMMON_FLAGS, ...command.flags };
  const usage = (message: string): PipelineError =>
    new PipelineError(
      "Usage",
      `${command.name}: ${message}`,
      `mysql-backup ${command.name} --help lists its flags`,
    );
  const { tokens } = parseArgs({
    args: argv,
    options: Object.fromEntries(
      Object.entries(specs).map(([name, spec]) => [name, name === "help" ? { ...spec, short: "h" } : spec]),
    ),
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === "positional") positionals.push(token.value);
    if (token.kind !== "option") continue;
    const spec = specs[token.name];
    if (spec === undefined) throw usage(unknownFlag(token.rawName, Object.keys(specs)));
    const value = token.value ?? "";
    if (spec.type === "string" && (value === "" || (!token.inlineValue && value.startsWith("--"))))
      throw usage(`${token.rawName} needs a value (--${token.name} ${spec.value ?? "VALUE"})`);
    if (spec.type === "boolean" && token.value !== undefined) throw usage(`--${token.name} takes no value`);
    if (token.name in values && spec.type === "string") throw usage(`--${token.name} is given twice`);
    values[token.name] = spec.type === "string" ? value : true;
  }
  const { config, json, help, ...options } = values;
  const allowed = command.positionals?.length ?? 0;
  if (!help && positionals.length > allowed) {
    throw usage(
      `unexpected argument "${positionals[allowed]}"` +
        (allowed === 0 ? " (it takes no arguments, only flags)" : ""),
    );
  }
  return {
    help: help === true,
    configPath: typeof config === "string" ? config : null,
    flags: { json: json === true, options, positionals },
  };
}

/** "unknown flag --jsno (did you mean --json?)". */
function unknownFlag(raw: string, known: string[]): string {
  const name = raw.replace(/^-+/, "");
  const nearest = nearestName(name, known);
  return `unknown flag ${raw}${nearest === null ? "" : ` (did you mean --${nearest}?)`}`;
}

/**
 * The known name nearest to `name` by edit distance, or null when none is near enough to be the one meant:
 * at most 2 edits, or a third of the name's length for long names.
 */
export function nearestName(name: string, known: readonly string[]): string | null {
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: { name: string; distance: number } | null = null;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance <= limit && (best === null || distance < best.distance))
      best = { name: candidate, distance };
  }
  return best?.name ?? null;
}

/**
 * Optimal string alignment distance: insertions, deletions, substitutions and transpositions of two adjacent
 * characters each cost one, so `--jsno` is one edit from `--json`, as a person counts it.
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** `mysql-backup <command> --help`: what it does, its usage, every flag, the examples. */
export function commandHelp(command: Subcommand<unknown>): string {
  const flags: Array<[string, string]> = [
    ["--config " + COMMON_FLAGS.config.value, command.configDescribe],
    ...Object.entries(command.flags ?? {}).map(([name, spec]): [string, string] => [
      spec.type === "string" ? `--${name} ${spec.value ?? "VALUE"}` : `--${name}`,
      spec.describe,
    ]),
    ["--json", COMMON_FLAGS.json.describe],
    ["-h, --help", COMMON_FLAGS.help.describe],
  ];
  const width = Math.max(
    ...flags.map(([f]) => f.length),
    ...(command.positionals ?? []).map((p) => p.name.length),
  );
  const lines = [
    `mysql-backup ${command.name}: ${command.describe}`,
    "",
    ...command.synopsis.map((s, i) => `${i === 0 ? "usage:" : "      "} mysql-backup ${command.name} ${s}`),
  ];
  if (command.positionals?.length) {
    lines.push(
      "",
      "arguments:",
      ...command.positionals.map((p) => `  ${p.name.padEnd(width)}  ${p.describe}`),
    );
  }
  lines.push("", "flags:", ...flags.map(([flag, describe]) => `  ${flag.padEnd(width)}  ${describe}`));
  lines.push("", "examples:");
  for (const example of command.examples) lines.push(`  ${example.command}`, `      ${example.describe}`);
  lines.push("", "Exit codes and what to do about each: docs/operations.md");
  return lines.join("\n");
}

/** `mysql-backup --help`: the commands and how to learn more. */
export function toolHelp(commands: ReadonlyArray<Subcommand<unknown>>): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "mysql-backup: MySQL/MariaDB backups from filesystem snapshots, verified by restoring every one",
    "",
    "usage: mysql-backup <command> --config FILE [flags]",
    "       mysql-backup <command> --help",
    "       mysql-backup --version [--json]",
    "",
    "commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.describe}`),
    "",
    "`mysql-backup <command> --help` shows a command's flags and examples; docs/first-hour.md is the way in.",
  ].join("\n");
}
