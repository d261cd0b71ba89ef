import { RESTORE_ALONGSIDE_MIN_CORES } from "../contracts/chain-verdict";
import type { ChainStartKind } from "../hostscripts/verify/chain";
import type { ChainBenchResults, ChainRound } from "./chain";
import { writeSection } from "./sections";

/**
 * The chain-proof section of BENCHMARKS.md, rendered from `bench/results-chain.json` between its markers
 * (added at the end the first time; the main suite keeps it), and the issue's targets judged from the recorded figures, so
 * `--chain --render` writes it again without a lab.
 */

/** The generic markers the main suite keeps as they are (bench/report.ts `keptSections`). */
const BEGIN = "<!-- bench:chain:start -->";
const END = "<!-- bench:chain:end -->";

/** Issue 14's targets. */
export const CHAIN_TARGETS = {
  /** Replay at least this many times the primary's commit rate. */
  replayOverPrimary: 10,
  /** The verifier's peak RSS (scratch servers apart), MiB. */
  verifierPeakMiB: 256,
  /** Manifest → chain verdict within (B's verification + replay) × this. */
  budgetFactor: 1.1,
} as const;

/** One round's derived figures. */
export interface ChainRoundFigures {
  /** (B's verification + replay) × 1.1. */
  budgetSeconds: number | null;
  /** Manifest → chain verdict minus the budget (> 0: missed by that much). */
  overBudgetSeconds: number | null;
  /** Of the chain proof: everything but the replay (A's tree taken or restored again, checksums, compare). */
  restoreOfASeconds: number | null;
}

/** The derived figures of a round; null where the round has no chain. */
export function roundFigures(r: ChainRound): ChainRoundFigures {
  if (r.chain === null || r.chain.replaySeconds === null || r.manifestToChainSeconds === null)
    return { budgetSeconds: null, overBudgetSeconds: null, restoreOfASeconds: null };
  const budget = (r.verification.seconds + r.chain.replaySeconds) * CHAIN_TARGETS.budgetFactor;
  return {
    budgetSeconds: round(budget),
    overBudgetSeconds: round(r.manifestToChainSeconds - budget),
    restoreOfASeconds: round(r.chain.seconds - r.chain.replaySeconds),
  };
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Median (lower of the two middle values for an even count) and max of the defined values. */
export function medianMax(values: (number | null | undefined)[]): { median: number; max: number } | null {
  const xs = values.filter((v): v is number => typeof v === "number").sort((a, b) => a - b);
  if (xs.length === 0) return null;
  return { median: xs[Math.floor((xs.length - 1) / 2)]!, max: xs[xs.length - 1]! };
}

/** Median and min (for rates, where the worst is the lowest). */
function medianMin(values: (number | null | undefined)[]): { median: number; min: number } | null {
  const xs = values.filter((v): v is number => typeof v === "number").sort((a, b) => a - b);
  if (xs.length === 0) return null;
  return { median: xs[Math.floor((xs.length - 1) / 2)]!, min: xs[0]! };
}

const mm = (s: { median: number; max: number } | null, unit = "") =>
  s === null ? "n/a" : `${s.median}${unit} / ${s.max}${unit}`;

/** Whether the verifier restores A alongside B by default on the run's machine (its cores). */
export const alongsideByDefault = (r: ChainBenchResults) => r.machine.cores >= RESTORE_ALONGSIDE_MIN_CORES;

/** Where a round's A came from (results recorded before the kept trees restored A after B). */
const startOf = (x: ChainRound): ChainStartKind => x.start ?? "after";

/**
 * The rounds run as the verifier ships when B reaches the verifier that verified A: A's kept tree replayed
 * alongside B's verification (`chain.replayAlongside`). When a run has none (recorded before it), its kept
 * rounds, else (recorded before the kept trees) the rounds of the machine's default restore.
 */
export function shippedRounds(r: ChainBenchResults): ChainRound[] {
  for (const kind of ["kept-alongside", "kept"] as const) {
    const rounds = r.rounds.filter((x) => startOf(x) === kind);
    if (rounds.length > 0) return rounds;
  }
  return r.rounds.filter((x) => startOf(x) === (alongsideByDefault(r) ? "alongside" : "after"));
}

/** The targets, judged on the worst of the rounds run as the verifier ships. */
export function judgeChainTargets(
  r: ChainBenchResults,
): { target: string; measured: string; met: boolean | null }[] {
  const rounds = shippedRounds(r);
  const figures = rounds.map(roundFigures);
  const replay = medianMin(rounds.map((x) => x.chain?.replayOverPrimary));
  const rss = medianMax(rounds.map((x) => x.memory.verifierPeakMiB));
  const over = medianMax(figures.map((f) => f.overBudgetSeconds));
  return [
    {
      target: `replay ≥ ${CHAIN_TARGETS.replayOverPrimary}× the primary's commit rate`,
      measured: replay === null ? "n/a" : `median ${replay.median}×, worst ${replay.min}×`,
      met: replay === null ? null : replay.min >= CHAIN_TARGETS.replayOverPrimary,
    },
    {
      target: `verifier peak RSS ≤ ${CHAIN_TARGETS.verifierPeakMiB} MiB (scratch servers apart)`,
      measured: rss === null ? "n/a" : `median ${rss.median} MiB, max ${rss.max} MiB`,
      met: rss === null ? null : rss.max <= CHAIN_TARGETS.verifierPeakMiB,
    },
    {
      target: "manifest → chain verdict ≤ (B's verification + replay) + 10 %",
      measured:
        over === null
          ? "n/a"
          : `verdict minus budget: median ${over.median} s, max ${over.max} s (> 0: over)`,
      met: over === null ? null : over.max <= 0,
    },
  ];
}

/** The section's markdown. */
export function renderChain(r: ChainBenchResults): string {
  const figures = r.rounds.map(roundFigures);
  const cell = (v: number | null | undefined, unit = "") =>
    v === null || v === undefined ? "n/a" : `${v}${unit}`;
  const lines = [
    "## The PITR proof: chain A → B and the drill, per snapshot (`--chain`)",
    "",
    `Run ${r.startedAt} → ${r.finishedAt} with \`${r.command}\` on ${r.machine.cores} cores (${r.machine.cpuModel}), ` +
      `load average ${r.machine.loadAverageAtStart.toFixed(1)} → ${(r.machine.loadAverageAtEnd ?? NaN).toFixed(1)} ` +
      `(a shared machine: compare within this run); dataset ${r.dataset.tables} × ${r.dataset.tableSize} rows; ` +
      `${r.load.tool} at ${r.load.rate} tx/s (${r.load.threads} threads) on the primary throughout, the lab's marker ` +
      `(1 row/s) beside it; ${r.loadSeconds} s of load between snapshots; the binlog archiver on the replica; ` +
      `the verifier with ${r.verifierNodeOptions ? `NODE_OPTIONS=\`${r.verifierNodeOptions}\`` : "no NODE_OPTIONS (as its unit runs it)"}.`,
    "",
    "Each round: snapshot B, then the shipped CLI `verify --once` in a child handles B's message as the daemon " +
      "does: B's verification, the chain proof A → B (A's tree, the archive replayed to B's GTID state, " +
      "every table's checksum compared) and the drill (a restore to a random second between A and B). B is the " +
      "next round's A. Rounds rotate where A's tree comes from: kept since A's verification (`chain.keepVerified`, " +
      "as the verifier ships when B reaches the verifier that verified A) and replayed alongside B's verification " +
      "(`chain.replayAlongside`, the default) or after B's verdict; restored again after B's verdict " +
      `(another verifier's way below ${RESTORE_ALONGSIDE_MIN_CORES} cores) or alongside B's ` +
      `verification (its way from ${RESTORE_ALONGSIDE_MIN_CORES} cores), the kept trees removed before those ` +
      "rounds. The column says what the verifier reported. The targets are judged on the " +
      `"${shippedRounds(r)[0] === undefined ? "kept" : LABELS[startOf(shippedRounds(r)[0]!)].short}" rounds (${r.machine.cores} cores). ` +
      "Peak RSS is polled every 100 ms over the whole child, per process name: the verifier's " +
      "figure is its tree (node, tar, zstd, …) without the scratch `mariadbd` and any `mariadb-binlog`, which are " +
      "reported apart (the drill and the chain replay through the server's own applier; no `mariadb-binlog` ran " +
      "when its column is 0). The primary's rate is its committed GTIDs between A's and B's backups over that time.",
    "",
    "| round | A's tree | B verify s | chain s | replay s | replayed tx | replay tx/s | primary tx/s | × primary | drill RTO s | drill s | verify --once s | manifest → chain verdict s | after B's verdict s | budget s | verdict minus budget s | chain s but the replay | verifier peak RSS MiB (node alone) | scratch server MiB |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...r.rounds.map((x, i) => {
      const f = figures[i]!;
      return (
        `| ${i + 1}${x.chain?.verdict === "verified" ? "" : ` (chain ${x.chain?.verdict ?? "none"})`}${x.drill && x.drill.verdict !== "passed" ? ` (drill ${x.drill.verdict})` : ""} ` +
        `| ${where(x)} | ${x.verification.seconds} | ${cell(x.chain?.seconds)} | ${cell(x.chain?.replaySeconds)} | ${cell(x.chain?.transactions)} ` +
        `| ${cell(x.chain?.replayTps)} | ${x.primary.tps} | ${cell(x.chain?.replayOverPrimary, "×")} | ${cell(x.drill?.rtoSeconds)} | ${cell(x.drill?.seconds)} | ${x.verifyWallSeconds} ` +
        `| ${cell(x.manifestToChainSeconds)} | ${cell(afterVerdict(x))} | ${cell(f.budgetSeconds)} | ${cell(f.overBudgetSeconds)} | ${cell(f.restoreOfASeconds)} ` +
        `| ${x.memory.verifierPeakMiB} (${x.memory.nodePeakMiB}) | ${x.memory.serverPeakMiB} |`
      );
    }),
    "",
    `Median / max over ${r.rounds.length} rounds: B's verification ${mm(medianMax(r.rounds.map((x) => x.verification.seconds)), " s")}; ` +
      `chain proof ${mm(medianMax(r.rounds.map((x) => x.chain?.seconds)), " s")}; replay ${mm(medianMax(r.rounds.map((x) => x.chain?.replaySeconds)), " s")}; ` +
      `drill RTO ${mm(medianMax(r.rounds.map((x) => x.drill?.rtoSeconds)), " s")}; manifest → chain verdict ${mm(medianMax(r.rounds.map((x) => x.manifestToChainSeconds)), " s")}; ` +
      `the whole \`verify --once\` ${mm(medianMax(r.rounds.map((x) => x.verifyWallSeconds)), " s")}; ` +
      `verifier peak RSS ${mm(medianMax(r.rounds.map((x) => x.memory.verifierPeakMiB)), " MiB")}; ` +
      `mariadb-binlog ${mm(medianMax(r.rounds.map((x) => x.memory.binlogToolPeakMiB)), " MiB")}.`,
    "",
    "Where the verifier's memory peaked (its last log line before the poll that saw the peak):",
    "",
    ...r.rounds.map(
      (x, i) =>
        `- round ${i + 1}: ${x.memory.verifierPeakMiB} MiB at ${x.memory.peakAtSeconds} s of ${x.verifyWallSeconds} s, during "${x.memory.peakDuring}"`,
    ),
    "",
    "| target (issue 14) | measured | met |",
    "| --- | --- | --- |",
    ...judgeChainTargets(r).map(
      (t) => `| ${t.target} | ${t.measured} | ${t.met === null ? "n/a" : t.met ? "yes" : "**no**"} |`,
    ),
    "",
    sideBySide(r),
    "",
  ];
  for (const note of r.notes) lines.push(`- note: ${note}`);
  return lines.join("\n");
}

/** Where a round's A came from, in the table. */
const where = (x: ChainRound) => LABELS[startOf(x)].short;

const LABELS: Record<ChainStartKind, { short: string; long: string }> = {
  "kept-alongside": {
    short: "kept, replayed alongside B",
    long: "A's kept tree replayed alongside B's verification",
  },
  kept: { short: "kept, replayed after B", long: "A's kept tree replayed after B's verdict" },
  after: { short: "restored after B", long: "A restored after B's verdict" },
  alongside: { short: "restored alongside B", long: "A restored alongside B's verification" },
};

/** Seconds from B's verification report to its chain verdict. */
function afterVerdict(x: ChainRound): number | null {
  return x.manifestToChainSeconds === null
    ? null
    : round(x.manifestToChainSeconds - x.manifestToVerificationSeconds);
}

/** Each kind of round of this run, side by side (the kinds it ran). */
function sideBySide(r: ChainBenchResults): string {
  const kinds = (["kept-alongside", "kept", "after", "alongside"] as const).map((kind) => {
    const rounds = r.rounds.filter((x) => startOf(x) === kind);
    return {
      kind,
      n: rounds.length,
      verify: medianMax(rounds.map((x) => x.verification.seconds)),
      total: medianMax(rounds.map((x) => x.manifestToChainSeconds)),
      after: medianMax(rounds.map(afterVerdict)),
      over: medianMax(rounds.map((x) => roundFigures(x).overBudgetSeconds)),
      rss: medianMax(rounds.map((x) => x.memory.verifierPeakMiB)),
    };
  });
  const ran = kinds.filter((k) => k.n > 0);
  if (ran.length < 2) return "";
  const say = (k: (typeof kinds)[0]) =>
    `${LABELS[k.kind].long} (${k.n} rounds): B's verification ${mm(k.verify, " s")}, chain verdict ${mm(k.after, " s")} after B's and ` +
    `${mm(k.total, " s")} after B's manifest, verdict minus budget ${mm(k.over, " s")}, verifier peak ${mm(k.rss, " MiB")}`;
  return `Side by side (median / max): ${ran.map(say).join("; ")}.`;
}

/** Puts the section into the report file, replacing the previous one. */
export async function writeChainSection(reportPath: string, results: ChainBenchResults): Promise<void> {
  await writeSection(reportPath, { begin: BEGIN, end: END }, `${BEGIN}\n\n${renderChain(results)}\n\n${END}`);
}
