import { join } from "node:path";
import { bundleHostScripts } from "../scripts/bundle";
import { runMeasured, type CommandRun, type MeasureOptions } from "./measure";

/**
 * This pipeline, run as a replica host and a verifier host run it: the `mysql-backup` CLI as the
 * esbuild bundle the components ship (`scripts/bundle.ts`), with the lab's configs and `--json`, whose
 * last stdout line is the result. The development entry `bin/mysql-backup.js` compiles TypeScript on
 * every start (≈ 1 s of CPU on this machine), which no host pays; it is the fallback when bundling fails.
 */

/** The development entry of the CLI. */
export const DEV_CLI = join(__dirname, "..", "bin", "mysql-backup.js");

/** Builds the CLI bundle into `dir` and returns its path, or the development entry (with why) on failure. */
export async function buildCli(dir: string): Promise<{ cli: string; problem?: string }> {
  try {
    const bundle = await bundleHostScripts({ outfile: join(dir, "mysql-backup.cjs") });
    return { cli: bundle.path };
  } catch (error) {
    return { cli: DEV_CLI, problem: `bundling the CLI failed, ran ${DEV_CLI}: ${(error as Error).message}` };
  }
}

/**
 * The exact command of our backup: as shipped, at the priority it was started with; the CLI itself yields
 * to the database (nice 10, idle I/O class) once the lock is released (`hostscripts/backup/priority.ts`).
 */
export function backupCommand(cli: string, configPath: string): string {
  return `node ${cli} backup --config ${configPath} --json`;
}

/** The exact command of one verification. */
export function verifyCommand(cli: string, configPath: string): string {
  return `node ${cli} verify --config ${configPath} --once --json`;
}

/** A CLI run with its parsed `--json` result. */
export interface PipelineRun {
  run: CommandRun;
  result: Record<string, unknown>;
}

/** Runs a subcommand measured; throws with the CLI's own error when it does not exit 0. */
export async function runPipeline(
  what: string,
  command: string,
  opts: MeasureOptions = {},
): Promise<PipelineRun> {
  const run = await runMeasured(command, opts);
  const result = lastJsonLine(run.stdout);
  if (run.exitCode !== 0 || result === undefined || result.ok === false) {
    throw new Error(
      `bench: our ${what} failed (exit ${run.exitCode}).\ncommand: ${command}\n` +
        `result: ${JSON.stringify(result)}\nstderr:\n${run.stderrTail}`,
    );
  }
  return { run, result };
}

/** The last line of stdout parsed as a JSON object, or undefined. */
export function lastJsonLine(stdout: string): Record<string, unknown> | undefined {
  const line = stdout.trimEnd().split("\n").pop() ?? "";
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A number from a CLI result by dotted path (`timings.archiveSeconds`), trying each candidate in turn;
 * undefined when none is a number. The result shapes belong to the host scripts: this keeps the bench
 * readable when a field moves, and a missing figure shows as "n/a" rather than a wrong one.
 */
export function numberAt(result: unknown, ...paths: string[]): number | undefined {
  for (const path of paths) {
    let value: unknown = result;
    for (const key of path.split(".")) {
      value =
        typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
    }
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return undefined;
}

/** A string from a CLI result by dotted path, or undefined. */
export function stringAt(result: unknown, path: string): string | undefined {
  let value: unknown = result;
  for (const key of path.split(".")) {
    value = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[key] : undefined;
  }
  return typeof value === "string" ? value : undefined;
}
