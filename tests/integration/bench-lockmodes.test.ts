/**
 * `npm run bench -- --lock-modes` in miniature: one backup per mode per load and one mariabackup run on the
 * tiny dataset, into a temporary output directory holding a copy of the last results.json. It proves the
 * suite runs end to end, measures every mode (none too) and mariabackup at both loads, renders its section
 * into BENCHMARKS.md and leaves nothing behind — not the figures themselves. The parts that judge figures are
 * checked on made-up ones first.
 */
import { execFile } from "node:child_process";
import { access, copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { blockCommitWindow, type LockModeLoad, type LockModesResults } from "../../bench/lockmodes";
import { lockModeTargets } from "../../bench/lockmodes-report";
import type { StallMeasurement } from "../../bench/stall";
import { leftovers } from "../../lab/lab";

const run = promisify(execFile);
const repo = resolve(__dirname, "..", "..");
const tsx = join(repo, "node_modules", ".bin", "tsx");

describe("judging the figures", () => {
  test("mariabackup's BLOCK_COMMIT window is read from its log, widened to whole seconds", () => {
    const log = [
      "[00] 2026-11-30 16:57:35 Finished BACKUP STAGE BLOCK_DDL",
      "[00] 2026-11-30 16:57:35 Starting BACKUP STAGE BLOCK_COMMIT",
      "[00] 2026-11-30 16:57:35 Acquired locks for BACKUP STAGE BLOCK_COMMIT",
      "[00] 2026-11-30 16:57:36 Starting BACKUP STAGE END",
    ].join("\n");
    const window = blockCommitWindow(log);
    expect(window).toEqual({
      from: new Date("2026-11-30T16:57:35").getTime(),
      to: new Date("2026-11-30T16:57:37").getTime(),
    });
    expect(blockCommitWindow("[00] 2026-11-30 16:57:35 Starting BACKUP STAGE START")).toBeUndefined();
  });

  test("targets: p99 against the goal, none against the method's noise floor", () => {
    const stall = (stallMs: number, noise = 25): StallMeasurement => ({
      longestGapMs: stallMs + 5,
      baselineMedianGapMs: 5,
      baselineMaxGapMs: noise,
      stallMs,
      changesDuringBackup: 10,
      longestGapFromEpochMs: 0,
      longestGapToEpochMs: 0,
    });
    const load = (name: string, blocked: Record<string, number[]>): LockModeLoad => ({
      name,
      rate: name === "max" ? 0 : 200,
      threads: 2,
      primaryTxPerSecond: 200,
      replicaTxPerSecond: 200,
      backups: Object.entries(blocked).flatMap(([mode, values]) =>
        values.map((v) => ({
          mode: mode as "none" | "commit" | "global",
          wallSeconds: 5,
          window: stall(v),
          stall: stall(v),
          replicaLagSeconds: { before: 0, after: 0 },
        })),
      ),
      mariabackup: [],
    });
    const results = {
      loads: [
        load("200 tx/s", { none: [0, 3, 10], commit: [20, 40, 49], global: [60, 90, 120] }),
        load("max", { none: [30], commit: [80] }),
      ],
    } as LockModesResults;
    const verdicts = lockModeTargets(results).map((t) => [t.target, t.measured, t.met]);
    expect(verdicts).toEqual([
      ["none: applier blocked per backup, p99 at 200 tx/s", 10, true],
      ["commit: applier blocked per backup, p99 at 200 tx/s", 49, true],
      ["global: applier blocked per backup, p99 at 200 tx/s", 120, false],
      ["none: applier blocked per backup, p99 at max", 30, false],
      ["commit: applier blocked per backup, p99 at max", 80, true],
    ]);
  });
});

describe("npm run bench -- --lock-modes, tiny", () => {
  let out: string;
  let dir: string;
  let results: LockModesResults;
  let report: string;

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), "bench-lockmodes-out-"));
    dir = await mkdtemp(join(tmpdir(), "bench-lockmodes-lab-"));
    await copyFile(join(repo, "bench", "results.json"), join(out, "results.json"));
    await run(
      tsx,
      [
        join(repo, "bench", "run.ts"),
        "--lock-modes",
        "--size",
        "tiny",
        "--backups",
        "1",
        "--mariabackups",
        "1",
        "--dir",
        dir,
        "--out",
        out,
      ],
      { cwd: repo, env: { ...process.env, PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin` } },
    );
    results = JSON.parse(await readFile(join(out, "results-lockmodes.json"), "utf8")) as LockModesResults;
    report = await readFile(join(out, "BENCHMARKS.md"), "utf8");
  }, 600_000);

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  test("the lab, its snapshots and scratch servers are gone", async () => {
    expect(await leftovers(dir)).toEqual({
      mounts: [],
      loops: [],
      processes: [],
      snapshots: [],
      scratch: [],
    });
    await expect(access(dir)).rejects.toThrow();
  });

  test("every mode and mariabackup were measured at both loads", () => {
    expect(results.loads.map((l) => [l.name, l.rate])).toEqual([
      ["200 tx/s", 200],
      ["max", 0],
    ]);
    for (const load of results.loads) {
      expect(load.backups.map((b) => b.mode)).toEqual(["none", "commit", "global"]);
      for (const backup of load.backups) {
        // The window was found in the backup's own log and the applier was seen moving around it.
        expect(backup.window).toBeDefined();
        expect(backup.stall.changesDuringBackup).toBeGreaterThan(0);
      }
      expect(load.backups.find((b) => b.mode === "none")?.lockMs).toBe(0);
      expect(load.backups.find((b) => b.mode === "commit")?.lockMs).toBeGreaterThan(0);
      expect(load.mariabackup).toHaveLength(1);
      expect(load.mariabackup[0].window).toBeDefined();
      expect(load.primaryTxPerSecond).toBeGreaterThan(0);
    }
    expect(results.command).toContain("--lock-modes");
  });

  test("BENCHMARKS.md gains the section, with the targets, the tables and the command", () => {
    expect(report).toContain("## Lock modes (issue 17)");
    expect(report).toContain("npm run bench -- --lock-modes --size tiny");
    expect(report).toContain("| commit: applier blocked per backup, p99 at 200 tx/s |");
    expect(report).toMatch(/\| mariabackup \(its BLOCK_COMMIT window\) +\| 1 +\|/);
    // The main run's sections are still there, re-rendered from the copied results.json.
    expect(report).toContain("## Targets (issue 7, issue 2)");
  });
});
