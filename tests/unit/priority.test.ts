/**
 * The backup yields to the database after the lock: run in a child process (lowering a priority cannot be
 * undone without privilege, and the test runner must keep its own), then every thread of that process is
 * read back from /proc and from the real `ionice`.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const TSX = join(__dirname, "..", "..", "node_modules", ".bin", "tsx");
const PRIORITY = join(__dirname, "..", "..", "hostscripts", "backup", "priority.ts");
const LOG = join(__dirname, "..", "..", "hostscripts", "common", "log.ts");

/** Runs yieldToDatabase in a fresh process and reports each thread's nice value and I/O class afterwards. */
async function yieldInChild(
  settings: string,
  ionice = "ionice",
): Promise<{
  outcome: { nice: number; ioClass: string; threads: number; ioProblem?: string };
  nice: number[];
  ioClasses: string[];
}> {
  const script = `
    const { readdirSync, readFileSync } = require("node:fs");
    const { execFileSync } = require("node:child_process");
    const { yieldToDatabase } = require(${JSON.stringify(PRIORITY)});
    const { memoryLogger } = require(${JSON.stringify(LOG)});
    const { runCommand } = require(${JSON.stringify(join(__dirname, "..", "..", "hostscripts", "common", "snapshot", "driver.ts"))});
    const run = (argv) => runCommand(argv[0] === "ionice" ? [${JSON.stringify(ionice)}, ...argv.slice(1)] : argv);
    (async () => {
      const outcome = await yieldToDatabase(memoryLogger(), ${settings}, run);
      const tids = readdirSync("/proc/self/task");
      // Field 19 of /proc/<pid>/task/<tid>/stat is the nice value (after the command name in parentheses).
      const nice = tids.map((t) => Number(readFileSync("/proc/self/task/" + t + "/stat", "utf8").split(") ")[1].split(" ")[16]));
      const ioClasses = tids.map((t) => execFileSync("ionice", ["-p", t], { encoding: "utf8" }).trim());
      process.stdout.write(JSON.stringify({ outcome, nice, ioClasses }));
    })();
  `;
  const { stdout } = await run(TSX, ["-e", script]);
  return JSON.parse(stdout);
}

test("after the lock every thread runs at nice 10 in the idle I/O class", async () => {
  const { outcome, nice, ioClasses } = await yieldInChild(`{ nice: 10, ioClass: "idle" }`);
  expect(outcome).toEqual({ nice: 10, ioClass: "idle", threads: nice.length });
  expect(nice.length).toBeGreaterThan(1); // node's own threads (libuv pool, V8) are set too
  expect(new Set(nice)).toEqual(new Set([10]));
  expect(new Set(ioClasses)).toEqual(new Set(["idle"]));
}, 30_000);

test("best-effort keeps the disk share while the CPU priority drops", async () => {
  const { nice, ioClasses } = await yieldInChild(`{ nice: 5, ioClass: "best-effort" }`);
  expect(new Set(nice)).toEqual(new Set([5]));
  for (const io of ioClasses) expect(io).toMatch(/^best-effort/);
}, 30_000);

test("without ionice the CPU priority is still lowered and the problem is reported, not thrown", async () => {
  const { outcome, nice } = await yieldInChild(`{ nice: 10, ioClass: "idle" }`, "/nonexistent/ionice");
  expect(new Set(nice)).toEqual(new Set([10]));
  expect(outcome.ioProblem).toMatch(/^ionice exited/);
}, 30_000);
