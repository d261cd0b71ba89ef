import { spawn } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Timing of one shell command (usually a pipeline) the way `/usr/bin/time` would, without needing it:
 * wall clock from here, CPU of the whole pipeline from bash's `times` (which counts every descendant
 * the shell waited for, including what those waited for), and peak memory by polling the RSS of the
 * whole process tree, since a pipeline's memory is the sum of its processes.
 */

/** What one measured command did. */
export interface CommandRun {
  /** The command exactly as it ran (bash), for BENCHMARKS.md. */
  command: string;
  exitCode: number;
  wallSeconds: number;
  /** User CPU of every process of the command. */
  cpuUserSeconds: number;
  /** System CPU of every process of the command. */
  cpuSysSeconds: number;
  /** Highest sum of the RSS of all processes of the command at one poll (every `sampleMs`). */
  peakRssBytes: number;
  /** stdout of the command (capped at its last 64 KiB). */
  stdout: string;
  /** stderr of the command (capped at its last 64 KiB). */
  stderr: string;
  /** The last lines of stderr, for error messages. */
  stderrTail: string;
}

/** How to run a measured command. */
export interface MeasureOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** RSS poll interval. Defaults to 50 ms. */
  sampleMs?: number;
  /**
   * Process names (`comm`) left out of the RSS sum, with their descendants: the verifier's scratch
   * mariadbd holds a buffer pool sized by its own settings, which is the database's memory, not ours.
   */
  excludeFromRss?: string[];
}

const PAGE_SIZE = 4096;
const KEEP_STDOUT = 64 * 1024;

/** Runs `command` with bash (pipefail on) and measures it; never throws for a non-zero exit. */
export async function runMeasured(command: string, opts: MeasureOptions = {}): Promise<CommandRun> {
  // fd 3 carries `times` so the command's own stdout and stderr stay untouched.
  const script = `set -o pipefail\n${command}\nrc=$?\ntimes >&3\nexit $rc`;
  const started = performance.now();
  const child = spawn("bash", ["-c", script], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe", "pipe"],
  });
  const stdout = collect(child.stdout, KEEP_STDOUT);
  const stderr = collect(child.stderr, KEEP_STDOUT);
  const times = collect(child.stdio[3] as NodeJS.ReadableStream, KEEP_STDOUT);
  const sampler = sampleTreeRss(child.pid ?? -1, opts.sampleMs ?? 50, new Set(opts.excludeFromRss ?? []));
  const exitCode = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  const wallSeconds = (performance.now() - started) / 1000;
  const peakRssBytes = await sampler.stop();
  const cpu = parseBashTimes(await times);
  return {
    command,
    exitCode,
    wallSeconds,
    cpuUserSeconds: cpu.childrenUser + cpu.shellUser,
    cpuSysSeconds: cpu.childrenSys + cpu.shellSys,
    peakRssBytes,
    stdout: await stdout,
    stderr: await stderr,
    stderrTail: (await stderr).trimEnd().split("\n").slice(-15).join("\n"),
  };
}

/** Like `runMeasured`, but throws, naming the step and quoting stderr, when the command fails. */
export async function mustRunMeasured(
  step: string,
  command: string,
  opts: MeasureOptions = {},
): Promise<CommandRun> {
  const run = await runMeasured(command, opts);
  if (run.exitCode !== 0) {
    throw new Error(
      `bench: ${step} failed (exit ${run.exitCode}).\ncommand: ${command}\nstderr:\n${run.stderrTail}`,
    );
  }
  return run;
}

function collect(stream: NodeJS.ReadableStream | null, keep: number): Promise<string> {
  return new Promise((resolve) => {
    if (stream === null) return resolve("");
    let text = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text = (text + chunk).slice(-keep);
    });
    stream.on("end", () => resolve(text));
    stream.on("error", () => resolve(text));
  });
}

/** CPU seconds from bash's `times`: first line the shell's own user/sys, second its children's. */
export interface BashTimes {
  shellUser: number;
  shellSys: number;
  childrenUser: number;
  childrenSys: number;
}

/** Parses the two lines of bash `times` (`0m1.234s 0m0.056s`). */
export function parseBashTimes(text: string): BashTimes {
  const values = [...text.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  if (values.length !== 4) throw new Error(`bench: could not read CPU times from bash \`times\`: "${text}"`);
  const [shellUser, shellSys, childrenUser, childrenSys] = values;
  return { shellUser, shellSys, childrenUser, childrenSys };
}

/** Polls the summed RSS of `root` and its descendants until stopped; `stop` returns the peak. */
export function sampleTreeRss(
  root: number,
  intervalMs: number,
  exclude: Set<string> = new Set(),
): { stop(): Promise<number> } {
  let running = true;
  let peak = 0;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await treeRss(root, exclude));
      await sleep(intervalMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Sum of the RSS of a process and all its descendants (0 once it is gone), without `exclude`d names. */
export async function treeRss(root: number, exclude: Set<string> = new Set()): Promise<number> {
  let total = 0;
  for (const pid of await descendantsAndSelf(root, exclude)) total += await rssOf(pid);
  return total;
}

/**
 * The RSS of a process tree summed per process name (`comm`), so one poll can tell a program's own memory from
 * its children's (the verifier's scratch mariadbd, a mariadb-binlog): same rules as `treeRss`.
 */
export async function treeRssByName(root: number): Promise<Map<string, number>> {
  const byName = new Map<string, number>();
  for (const pid of await descendantsAndSelf(root, new Set())) {
    const name = await commOf(pid);
    byName.set(name, (byName.get(name) ?? 0) + (await rssOf(pid)));
  }
  return byName;
}

/**
 * The processes of a tree, without `exclude`d names and without a child that has not exec'd yet: between
 * fork and exec a child maps its parent's pages copy-on-write, so its RSS would count the parent's memory a
 * second time (a 200 MiB node spawning often showed a 350 MiB peak). Such a child has its parent's command line.
 */
async function descendantsAndSelf(root: number, exclude: Set<string>): Promise<number[]> {
  const all: number[] = [];
  const pending: { pid: number; parentCmdline?: string }[] = [{ pid: root }];
  while (pending.length > 0) {
    const { pid, parentCmdline } = pending.pop() as { pid: number; parentCmdline?: string };
    if (exclude.size > 0 && exclude.has(await commOf(pid))) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (parentCmdline !== undefined && cmdline === parentCmdline) continue;
    all.push(pid);
    for (const child of await childrenOf(pid)) pending.push({ pid: child, parentCmdline: cmdline });
  }
  return all;
}

async function commOf(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();
}

async function childrenOf(pid: number): Promise<number[]> {
  // Threads can have children too (a child is listed under the thread that forked it).
  const threads = await readdirSafe(`/proc/${pid}/task`);
  const children: number[] = [];
  for (const tid of threads) {
    const text = await readFile(`/proc/${pid}/task/${tid}/children`, "utf8").catch(() => "");
    children.push(...text.split(" ").filter(Boolean).map(Number));
  }
  return children;
}

async function readdirSafe(path: string): Promise<string[]> {
  return readdir(path).catch(() => [] as string[]);
}

async function rssOf(pid: number): Promise<number> {
  const statm = await readFile(`/proc/${pid}/statm`, "utf8").catch(() => "");
  const pages = Number(statm.split(" ")[1] ?? 0);
  return Number.isFinite(pages) ? pages * PAGE_SIZE : 0;
}

/** CPU seconds (user + system) a process has used so far, e.g. the replica's mysqld; 0 once it is gone. */
export async function processCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  if (stat === "") return 0;
  // Fields after the parenthesised name: state is field 3; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;
