import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { readdir, readFile, readlink } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { $ } from "zx";

/**
 * Processes of the lab: the servers, the emulator and the load are started detached (their own session,
 * so they outlive the CLI that started them), and found again by the lab directory that appears in their
 * command line or working directory — which is what makes `down` work without state.json.
 */

/** `$` for library code: quiet, and with the sbin directories that root's tools (losetup, mkfs) live in. */
export const sh = $({
  quiet: true,
  env: { ...process.env, PATH: `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin` },
});

/** How to start one detached process. */
export interface DetachedCommand {
  command: string;
  args: string[];
  /** Working directory; inside the lab dir so `down` can find the process by its cwd. */
  cwd: string;
  /** stdout and stderr go here (appended). */
  logFile: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts a process in its own session that survives our exit; returns its pid. */
export function spawnDetached(cmd: DetachedCommand): number {
  const log = openSync(cmd.logFile, "a", 0o640);
  try {
    const child = spawn(cmd.command, cmd.args, {
      cwd: cmd.cwd,
      detached: true,
      stdio: ["ignore", log, log],
      env: cmd.env ?? process.env,
    });
    if (child.pid === undefined) throw new Error(`could not start ${cmd.command}; see ${cmd.logFile}`);
    // Node still reaps the child if it exits while we run, so it never lingers as a zombie of ours.
    child.on("error", () => undefined);
    child.unref();
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** True while the process exists and is not a zombie. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The state follows the parenthesised command name, which may itself contain spaces or parens.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Polls `check` every `intervalMs` until it returns true or `timeoutMs` passes; returns the last answer. */
export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** A process that refers to the lab directory. */
export interface LabProcess {
  pid: number;
  /** The command line, arguments joined by spaces. */
  command: string;
}

/** Process names that may be found by their working directory alone (what the lab and verifier start). */
const CWD_MATCHED_NAMES = new Set(["mariadbd", "mysqld", "sysbench", "node", "fauxqs"]);

/**
 * Every live process whose command line names `dir` (or a path below it), or whose working directory is
 * inside it, except this process and its ancestors (e.g. the `lab down --dir DIR` command itself).
 */
export async function processesUsing(dir: string): Promise<LabProcess[]> {
  const spared = await ancestorsOfSelf();
  const found: LabProcess[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (spared.has(pid) || !(await isAlive(pid))) continue;
    const info = await describe(pid);
    if (info === undefined) continue;
    if (mentionsDir(info.command, dir) || (CWD_MATCHED_NAMES.has(info.name) && isInside(info.cwd, dir))) {
      found.push({ pid, command: info.command });
    }
  }
  return found;
}

async function describe(pid: number): Promise<{ command: string; cwd: string; name: string } | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const command = raw.split("\0").filter(Boolean).join(" ");
    const name = (await readFile(`/proc/${pid}/comm`, "utf8")).trim();
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => "");
    return { command, cwd, name };
  } catch {
    return undefined; // it exited while we looked
  }
}

/** `dir` appears as a whole path (not as a prefix of a longer name such as `dir-2`). */
export function mentionsDir(command: string, dir: string): boolean {
  let at = command.indexOf(dir);
  while (at >= 0) {
    const next = command.charAt(at + dir.length);
    if (next === "" || !/[A-Za-z0-9._-]/.test(next)) return true;
    at = command.indexOf(dir, at + 1);
  }
  return false;
}

function isInside(path: string, dir: string): boolean {
  const clean = path.replace(/ \(deleted\)$/, "");
  return clean === dir || clean.startsWith(`${dir}/`);
}

async function ancestorsOfSelf(): Promise<Set<number>> {
  const pids = new Set<number>();
  let pid = process.pid;
  while (pid > 1 && !pids.has(pid)) {
    pids.add(pid);
    try {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8");
      pid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    } catch {
      break;
    }
  }
  return pids;
}

/**
 * Sends SIGTERM to each process, waits up to `graceMs` for all of them to exit, then SIGKILLs what is left
 * and waits for that too. Returns the pids that refused to die (normally none).
 */
export async function terminate(pids: number[], graceMs: number): Promise<number[]> {
  signalAll(pids, "SIGTERM");
  const alive = async () => (await Promise.all(pids.map(isAlive))).some(Boolean);
  if (!(await waitUntil(async () => !(await alive()), graceMs))) {
    signalAll(pids, "SIGKILL");
    await waitUntil(async () => !(await alive()), 10_000);
  }
  const stubborn: number[] = [];
  for (const pid of pids) if (await isAlive(pid)) stubborn.push(pid);
  return stubborn;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** The last lines of a log file, for error messages. */
export async function tail(path: string, lines = 15): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "(no log written)");
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}
