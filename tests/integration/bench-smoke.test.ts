/**
 * `npm run bench` in miniature: the real bench (lab, our CLI, mysqldump, mydumper, mariabackup, scratch
 * servers, snapshots) on a tiny dataset, into a temporary output directory. It proves the harness runs
 * end to end, writes sane results and a report, and leaves nothing behind — not the figures themselves.
 * The stall method is also checked on synthetic traces, where the right answer is known.
 */
import { execFile } from "node:child_process";
import { access, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { leftovers } from "../../lab/lab";
import { parseBashTimes, runMeasured } from "../../bench/measure";
import type { BenchResults } from "../../bench/results";
import { quantile, stallDuring } from "../../bench/stall";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const tsx = join(repo, "node_modules", ".bin", "tsx");

describe("the stall method", () => {
  test("a 500 ms gap in a 20 ms rhythm is a stall of 480 ms, placed where it happened", () => {
    const rhythm = Array.from({ length: 300 }, (_, i) => i * 20);
    // The applier stops at 4000 and resumes at 4500, while the backup runs from 3990 to 4700.
    const trace = rhythm.filter((t) => t <= 4000 || t >= 4500);
    const stall = stallDuring(trace, 3990, 4700, 3000);
    expect(stall.longestGapMs).toBe(500);
    expect(stall.baselineMedianGapMs).toBe(20);
    expect(stall.stallMs).toBe(480);
    expect(stall.longestGapToEpochMs - stall.longestGapFromEpochMs).toBe(500);
  });

  test("an applier that never moves again is stalled until the backup ends", () => {
    const trace = Array.from({ length: 100 }, (_, i) => i * 20); // last change at 1980
    const stall = stallDuring(trace, 1990, 3000, 1000);
    expect(stall.changesDuringBackup).toBe(0);
    expect(stall.longestGapMs).toBe(3000 - 1990);
  });

  test("an undisturbed applier shows no stall", () => {
    const trace = Array.from({ length: 300 }, (_, i) => i * 20);
    expect(stallDuring(trace, 3000, 5000, 3000).stallMs).toBe(0);
  });

  test("p99 by nearest rank of 10 values is the largest", () => {
    expect(quantile([5, 1, 9, 3, 7, 2, 8, 4, 6, 10], 0.99)).toBe(10);
    expect(quantile([5, 1, 9, 3, 7, 2, 8, 4, 6, 10], 0.5)).toBe(5);
  });
});

describe("measuring a command", () => {
  test("bash `times` lines parse into seconds", () => {
    expect(parseBashTimes("0m0.010s 0m0.020s\n1m2.500s 0m0.250s\n")).toEqual({
      shellUser: 0.01,
      shellSys: 0.02,
      childrenUser: 62.5,
      childrenSys: 0.25,
    });
  });

  test("CPU and memory of a whole pipeline are counted", async () => {
    // The second process holds ~64 MiB while the first burns CPU: both must show.
    const measured = await runMeasured(
      "head -c 300000000 /dev/zero | sha256sum >/dev/null; " +
        "python3 -c 'import time; b = bytearray(64 * 1024 * 1024); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(0.5)'",
    );
    expect(measured.exitCode).toBe(0);
    expect(measured.cpuUserSeconds + measured.cpuSysSeconds).toBeGreaterThan(0.1);
    expect(measured.peakRssBytes).toBeGreaterThan(60 * 2 ** 20);
    expect(measured.peakRssBytes).toBeLessThan(200 * 2 ** 20);
  }, 30_000);

  test("a child between fork and exec does not count its parent's memory twice", async () => {
    // A 150 MiB node spawning 200 short children: before the fix the peak read ~350 MiB for ~200 MiB.
    const script =
      "const b = []; for (let i = 0; i < 150; i++) b.push(Buffer.alloc(1 << 20, 1)); " +
      'const { execFileSync } = require("child_process"); for (let i = 0; i < 200; i++) execFileSync("true"); ' +
      "console.log(process.memoryUsage().rss)";
    const measured = await runMeasured(`node -e '${script}'`);
    expect(measured.exitCode).toBe(0);
    const own = Number(measured.stdout.trim());
    expect(measured.peakRssBytes).toBeGreaterThan(own * 0.8);
    expect(measured.peakRssBytes).toBeLessThan(own * 1.2);
  }, 60_000);

  test("a failing pipeline reports its exit code (pipefail)", async () => {
    const measured = await runMeasured("false | cat");
    expect(measured.exitCode).toBe(1);
  });
});

describe("npm run bench, tiny", () => {
  let out: string;
  let dir: string;
  let results: BenchResults;
  let report: string;

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "bench-smoke-out-"));
    // Fresh and empty, as tests/support/lab.ts makes them: the lab opens it to the mysql user itself.
    dir = await mkdtemp(join(tmpdir(), "bench-smoke-lab-"));
    await run(
      tsx,
      [join(repo, "bench", "run.ts"), "--size", "tiny", "--backups", "2", "--dir", dir, "--out", out],
      { cwd: repo, env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } },
    );
    results = JSON.parse(await readFile(join(out, "results.json"), "utf8")) as BenchResults;
    report = await readFile(join(out, "BENCHMARKS.md"), "utf8");
  }, 300_000);

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  test("the lab, its snapshots and scratch servers are gone", async () => {
    const left = await leftovers(dir);
    expect(left).toEqual({ mounts: [], loops: [], processes: [], snapshots: [], scratch: [] });
    await expect(access(dir)).rejects.toThrow();
  });

  test("the dataset and our backups and verification are measured", () => {
    expect(results.notes.filter((n) => !n.includes("MiB parts"))).toEqual([]);
    expect(results.dataset.rows).toBe(2 * 10_000);
    expect(results.ours.backups).toHaveLength(2);
    for (const backup of results.ours.backups) {
      expect(backup.lockMs).toBeGreaterThan(0);
      expect(backup.archiveSeconds).toBeGreaterThan(0);
      expect(backup.rawBytes).toBeGreaterThan(results.dataset.datadirBytes / 2);
      expect(backup.peakRssBytes).toBeGreaterThan(10 * 2 ** 20);
      expect(backup.stall.changesDuringBackup).toBeGreaterThan(0);
    }
    // Ours yields to the database after the lock, and the stall has its control: windows with no backup at all.
    expect(results.ours.backups[0].result.priorityAfterLock).toMatchObject({ nice: 10, ioClass: "idle" });
    expect(results.control?.stalls).toHaveLength(3);
    for (const control of results.control?.stalls ?? [])
      expect(control.changesDuringBackup).toBeGreaterThan(0);
    expect(results.ours.verify?.verdict).toBe("verified");
    expect(results.ours.verify?.toQueryableSeconds).toBeGreaterThan(0);
    expect(results.ours.plainExtract?.bytes).toBeGreaterThan(0);
  });

  test("every competitor backed up and restored every row", () => {
    expect(results.competitors.map((c) => c.name)).toEqual(["mysqldump", "mydumper", "mariabackup"]);
    for (const competitor of results.competitors) {
      expect(competitor.backup?.artifactBytes).toBeGreaterThan(0);
      expect(competitor.restore?.rowsRestored).toBe(results.dataset.rows);
    }
  });

  test("the limit and every target have figures, and the report shows them with the commands", () => {
    expect(results.limit.map((l) => l.tag)).toEqual(["before", "after"]);
    expect(results.targets).toHaveLength(7);
    for (const target of results.targets) expect(target.measured).toBeGreaterThan(0);
    expect(report).toContain("## Targets");
    expect(report).toContain("mariadb-dump --socket=");
    expect(report).toContain("| zstd -T0 -1");
    expect(report).toContain(`${results.machine.cores} cores`);
    expect(report).toMatch(/\| no backup \(control: 3 windows of [\d.]+ s\)/);
  });
});
