/**
 * The chain suite's arithmetic (`npm run bench -- --chain`): the issue's budget and targets judged from a
 * round's figures, the primary's transaction count from a GTID position, and the per-name RSS of a real
 * process tree (a child's memory told apart from its parent's).
 */
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { sequenceSum, type ChainBenchResults, type ChainRound } from "../../bench/chain";
import { judgeChainTargets, medianMax, renderChain, roundFigures } from "../../bench/chain-report";
import { treeRssByName } from "../../bench/measure";

function round(over: Partial<ChainRound> = {}): ChainRound {
  return {
    from: "A",
    to: "B",
    primary: { transactions: 6000, seconds: 60, tps: 100 },
    verifyWallSeconds: 40,
    memory: {
      verifierPeakMiB: 150,
      nodePeakMiB: 120,
      serverPeakMiB: 600,
      binlogToolPeakMiB: 0,
      samples: 400,
      peakAtSeconds: 20,
      peakDuring: "replaying",
    },
    verification: {
      seconds: 10,
      downloadExtractSeconds: 4,
      recoverySeconds: 3,
      checksSeconds: 3,
      checksumSeconds: 0.5,
    },
    chain: {
      verdict: "verified",
      failure: null,
      seconds: 14,
      replaySeconds: 2,
      transactions: 6000,
      segments: 6,
      tablesCompared: 9,
      replayTps: 3000,
      replayOverPrimary: 30,
    },
    drill: {
      verdict: "passed",
      failure: null,
      rtoSeconds: 12,
      replaySeconds: 1,
      transactions: 3000,
      seconds: 15,
    },
    manifestToChainSeconds: 26,
    manifestToVerificationSeconds: 11,
    ...over,
  };
}

function results(rounds: ChainRound[]): ChainBenchResults {
  return {
    startedAt: "2026-12-01T00:00:00.000Z",
    finishedAt: "2026-12-01T00:10:00.000Z",
    machine: {
      cores: 2,
      cpuModel: "test",
      loadAverageAtStart: 1,
      loadAverageAtEnd: 2,
    } as ChainBenchResults["machine"],
    command: "npm run bench -- --chain",
    dataset: { tables: 4, tableSize: 200_000 },
    load: { tool: "sysbench oltp_write_only", rate: 100, threads: 2 },
    loadSeconds: 60,
    rounds,
    notes: [],
  };
}

test("the budget is (B's verification + replay) × 1.1, and A's restore is the chain without its replay", () => {
  expect(roundFigures(round())).toEqual({
    budgetSeconds: 13.2,
    overBudgetSeconds: 12.8,
    restoreOfASeconds: 12,
  });
  expect(roundFigures(round({ chain: null, manifestToChainSeconds: null }))).toEqual({
    budgetSeconds: null,
    overBudgetSeconds: null,
    restoreOfASeconds: null,
  });
});

test("targets are judged on the worst round: one slow replay or one large peak misses", () => {
  const met = judgeChainTargets(results([round(), round({ manifestToChainSeconds: 13 })]));
  expect(met.map((t) => t.met)).toEqual([true, true, false]);
  const slow = round();
  slow.chain = { ...slow.chain!, replayOverPrimary: 9.5 };
  const missed = judgeChainTargets(
    results([
      round({ manifestToChainSeconds: 13 }),
      slow,
      round({ memory: { ...round().memory, verifierPeakMiB: 300 } }),
    ]),
  );
  expect(missed.map((t) => t.met)).toEqual([false, false, false]);
  expect(missed[0]!.measured).toBe("median 30×, worst 9.5×");
  const within = judgeChainTargets(results([round({ manifestToChainSeconds: 13 })]));
  expect(within[2]!.met).toBe(true);
  expect(judgeChainTargets(results([])).map((t) => t.met)).toEqual([null, null, null]);
});

test("with rounds rotating, the targets are judged on the kept tree replayed alongside B, and every kind is set side by side", () => {
  const early = round({ start: "kept-alongside", manifestToChainSeconds: 13 });
  const kept = round({ start: "kept", manifestToChainSeconds: 14 });
  const after = round({ start: "after", manifestToChainSeconds: 26 });
  const alongside = round({ start: "alongside", manifestToChainSeconds: 20 });
  const four = results([early, kept, after, alongside]);
  expect(judgeChainTargets(four).map((t) => t.met)).toEqual([true, true, true]);
  // Without such rounds (recorded before them): the kept rounds, else the machine's default restore.
  expect(judgeChainTargets(results([kept, after])).map((t) => t.met)).toEqual([true, true, false]);
  expect(judgeChainTargets(results([alongside, after])).map((t) => t.met)).toEqual([true, true, false]);
  const wide = results([alongside, after]);
  wide.machine = { ...wide.machine, cores: 4 };
  expect(judgeChainTargets(wide)[2]!.measured).toBe(
    "verdict minus budget: median 6.8 s, max 6.8 s (> 0: over)",
  );
  const text = renderChain(four);
  expect(text).toContain("| 1 | kept, replayed alongside B | 10 |");
  expect(text).toContain("| 2 | kept, replayed after B | 10 |");
  expect(text).toContain("| 3 | restored after B | 10 |");
  expect(text).toContain("| 4 | restored alongside B | 10 |");
  expect(text).toContain('The targets are judged on the "kept, replayed alongside B" rounds (2 cores)');
  expect(text).toMatch(
    /A's kept tree replayed alongside B's verification \(1 rounds\): .*chain verdict 2 s \/ 2 s after B's/,
  );
  expect(text).toMatch(/A's kept tree replayed after B's verdict \(1 rounds\): .*verdict minus budget 0.8 s/);
  expect(text).toMatch(/A restored after B's verdict \(1 rounds\): .*chain verdict 15 s \/ 15 s after B's/);
  expect(text).toMatch(/A restored alongside B's verification \(1 rounds\): .*verdict minus budget 6.8 s/);
});

test("median and max skip missing values", () => {
  expect(medianMax([3, null, 1, 2, undefined])).toEqual({ median: 2, max: 3 });
  expect(medianMax([4, 1])).toEqual({ median: 1, max: 4 });
  expect(medianMax([null])).toBeNull();
});

test("the section names the command, every round and the targets", () => {
  const text = renderChain(
    results([round(), round({ chain: null, drill: null, manifestToChainSeconds: null })]),
  );
  expect(text).toContain("`npm run bench -- --chain`");
  expect(text).toContain("| 2 (chain none) |");
  expect(text).toContain("verdict minus budget: median 12.8 s, max 12.8 s (> 0: over)");
  expect(text).toContain("| 1 | restored after B | 10 |");
});

test("the primary's transactions are the sum of its GTID sequence numbers", () => {
  expect(sequenceSum("0-1-120")).toBe(120);
  expect(sequenceSum("0-1-120,1-2-4")).toBe(124);
  expect(sequenceSum("")).toBe(0);
});

test("a process tree's RSS is summed per name, a child apart from its parent", async () => {
  const child = spawn("bash", ["-c", "sleep 30 & wait"], { stdio: "ignore", detached: true });
  try {
    let byName = new Map<string, number>();
    for (let i = 0; i < 50 && !byName.has("sleep"); i++) {
      await sleep(50);
      byName = await treeRssByName(child.pid!);
    }
    expect(byName.get("bash")).toBeGreaterThan(0);
    expect(byName.get("sleep")).toBeGreaterThan(0);
  } finally {
    // The whole group: the sleep too, not only its shell.
    process.kill(-child.pid!, "SIGKILL");
  }
});
