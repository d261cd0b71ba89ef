import { cpus, loadavg, totalmem } from "node:os";
import { readFile } from "node:fs/promises";
import { sh } from "../lab/processes";

/** The machine and tool versions a benchmark ran with, for results.json and BENCHMARKS.md. */
export interface Machine {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  os: string;
  /** 1-minute load average when the run started and ended: other work on a shared machine shows here. */
  loadAverageAtStart: number;
  loadAverageAtEnd?: number;
  versions: Record<string, string>;
}

/** First line of a tool's version output (or "missing"). */
async function versionOf(command: string[]): Promise<string> {
  const [binary, ...args] = command;
  const out = await sh`${binary} ${args}`.nothrow();
  const text = `${out.stdout}\n${out.stderr}`.trim();
  return out.exitCode === 0 || text !== "" ? (text.split("\n")[0] ?? "").trim() : "missing";
}

/** Describes this machine. */
export async function describeMachine(): Promise<Machine> {
  const osRelease = await readFile("/etc/os-release", "utf8").catch(() => "");
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(osRelease)?.[1] ?? "unknown";
  const tools: Record<string, string[]> = {
    mariadbd: ["mariadbd", "--version"],
    mariabackup: ["mariabackup", "--version"],
    mydumper: ["mydumper", "--version"],
    sysbench: ["sysbench", "--version"],
    zstd: ["zstd", "--version"],
    tar: ["tar", "--version"],
    btrfs: ["btrfs", "--version"],
  };
  const versions: Record<string, string> = { node: process.version };
  for (const [name, command] of Object.entries(tools)) versions[name] = await versionOf(command);
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryBytes: totalmem(),
    kernel: (await sh`uname -r`).stdout.trim(),
    os: pretty,
    loadAverageAtStart: loadavg()[0],
    versions,
  };
}

/** The 1-minute load average now. */
export function loadAverageNow(): number {
  return loadavg()[0];
}
