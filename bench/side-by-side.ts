import { writeFile } from "node:fs/promises";
import { say } from "./benchlab";
import { mustRunMeasured } from "./measure";
import { median } from "./stall";

/**
 * The frame of the like-for-like scripts (archive-ab.ts, extract-ab.ts): named sides, each a shell command,
 * run round by round in alternating order (so neither side always runs first on a warmer machine), each
 * measured (wall, CPU of every process, peak RSS), then medians per side.
 */

/** One side: its name and the command of one run (`round` lets the caller give each run its own input). */
export interface Side {
  name: string;
  /** Prepares the run's input, returns the command and the raw bytes it handles, and cleans up after. */
  run: (round: number, measure: (command: string, rawBytes: number) => Promise<SideRun>) => Promise<SideRun>;
}

/** One measured run of a side. */
export interface SideRun {
  side: string;
  round: number;
  rawBytes: number;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMiB: number;
  /** The command's last line of output. */
  lastLine: string;
}

/** Medians per side: wall, raw MB/s, CPU-s; the largest peak RSS. */
export interface SideSummary {
  wallSeconds: number;
  mbPerSecond: number;
  cpuSeconds: number;
  peakRssMiB: number;
}

/** Runs every side `rounds` times, the order reversed every other round; logs each run. */
export async function alternate(sides: Side[], rounds: number): Promise<SideRun[]> {
  const runs: SideRun[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const side of round % 2 ? sides : [...sides].reverse()) {
      const result = await side.run(round, async (command, rawBytes) => {
        const run = await mustRunMeasured(side.name, command);
        return {
          side: side.name,
          round,
          rawBytes,
          wallSeconds: run.wallSeconds,
          cpuSeconds: run.cpuUserSeconds + run.cpuSysSeconds,
          peakRssMiB: run.peakRssBytes / 2 ** 20,
          lastLine: run.stdout.trim().split("\n").pop() ?? "",
        };
      });
      runs.push(result);
      say(
        `round ${round} ${side.name}: ${result.wallSeconds.toFixed(2)} s wall, ` +
          `${(result.rawBytes / result.wallSeconds / 1e6).toFixed(0)} MB/s, ${result.cpuSeconds.toFixed(1)} CPU-s, ` +
          `${result.peakRssMiB.toFixed(0)} MiB`,
      );
    }
  }
  return runs;
}

/** The medians of each side's runs, by side name. */
export function summarize(sides: Side[], runs: SideRun[]): Record<string, SideSummary> {
  return Object.fromEntries(
    sides.map(({ name }) => {
      const mine = runs.filter((r) => r.side === name);
      const summary: SideSummary = {
        wallSeconds: median(mine.map((r) => r.wallSeconds)),
        mbPerSecond: median(mine.map((r) => r.rawBytes / r.wallSeconds / 1e6)),
        cpuSeconds: median(mine.map((r) => r.cpuSeconds)),
        peakRssMiB: Math.max(...mine.map((r) => r.peakRssMiB)),
      };
      return [name, summary];
    }),
  );
}

/** Prints the summary and writes the results (when `out` is given) as the bench's JSON files are written. */
export async function report<T extends { summary: unknown }>(
  results: T,
  out: string | undefined,
): Promise<void> {
  console.log(JSON.stringify(results.summary, null, 2));
  if (out) await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
}

/** Runs a bench script's main: an error is printed and the process exits 1. */
export function runScript(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}

/** Takes `--name VALUE` out of `args`; undefined when absent. */
export function takeOption(args: string[], name: string): string | undefined {
  const at = args.indexOf(name);
  return at >= 0 ? args.splice(at, 2)[1] : undefined;
}
