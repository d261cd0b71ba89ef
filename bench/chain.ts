import { spawn } from "node:child_process";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChainVerdict, DrillVerdict, VerificationReport, VerifyConfig } from "../contracts";
import type { ChainStartKind } from "../hostscripts/verify/chain";
import { keptDirOf } from "../hostscripts/verify/kept";
import { labUp, primaryGtid, startLoad, stopLoad, type Lab } from "../lab/lab";
import { describeMachine, loadAverageNow, type Machine } from "./machine";
import { treeRssByName } from "./measure";
import { backupCommand, buildCli, lastJsonLine, runPipeline, stringAt, verifyCommand } from "./pipeline";

/**
 * `npm run bench -- --chain`: what the PITR proof (issue 14) costs the verifier, on one lab with the binlog
 * archiver and sysbench at a fixed rate on the primary the whole time. Snapshot A is taken and verified; then
 * per round: the load runs `--chain-seconds`, snapshot B is taken, and the shipped CLI `verify --once` (in a
 * child, so its process tree's memory can be sampled) verifies B, proves the chain A → B and drills a restore
 * to a random point between them, exactly as the daemon handles B's message. B becomes the next round's A.
 * Per round, side by side: B's own verification, the chain proof and its replay (rate against the primary's
 * commit rate measured over the same interval), the drill's RTO, the time from B's manifest to its chain
 * verdict against the issue's budget, and the verifier's peak RSS with the scratch servers' apart. Rounds
 * rotate where A comes from: the tree kept since A's verification, replayed alongside B's verification (as
 * the verifier ships, on the verifier that verified A) or after B's verdict; restored again after B's verdict
 * or alongside B's verification (with the kept trees removed first: what another verifier does), so the four
 * are compared in one run on a shared machine.
 */

/** Process names whose memory is the scratch database's, not the verifier's. */
const SERVER_NAMES = new Set(["mariadbd", "mysqld"]);
/** Process names of the binlog tools, reported apart too. */
const BINLOG_TOOL_NAMES = new Set(["mariadb-binlog", "mysqlbinlog"]);
/** RSS poll interval while the verifier runs. */
const RSS_SAMPLE_MS = 100;

/** The verifier's memory during one `verify --once` (peaks over the polls, MiB). */
export interface VerifierMemory {
  /** The verifier's process tree without the scratch servers and binlog tools (node and its tar, zstd, …). */
  verifierPeakMiB: number;
  /** The verifier's node process alone. */
  nodePeakMiB: number;
  /** The scratch mariadbd (buffer pool and all), reported apart. */
  serverPeakMiB: number;
  /** mariadb-binlog / mysqlbinlog children, reported apart (0: none ran). */
  binlogToolPeakMiB: number;
  samples: number;
  /** When the verifier's peak was polled (seconds after the child started), and its last log line then. */
  peakAtSeconds: number;
  peakDuring: string;
}

/** One round: A → B. */
export interface ChainRound {
  from: string;
  to: string;
  /**
   * Where the proof's A came from, as the verifier reported it (`ChainResult.start`): the kept tree, restored
   * alongside B's verification or after B's verdict. Absent in results recorded before it (after).
   */
  start?: ChainStartKind;
  /** Transactions the primary committed between A's and B's snapshot starts, and per second. */
  primary: { transactions: number; seconds: number; tps: number };
  /** The `verify --once` child: wall seconds and its memory. */
  verifyWallSeconds: number;
  memory: VerifierMemory;
  /** B's own verification (its report's timings). */
  verification: {
    seconds: number;
    downloadExtractSeconds: number;
    recoverySeconds: number;
    checksSeconds: number;
    checksumSeconds: number | null;
  };
  chain: {
    verdict: ChainVerdict["verdict"];
    failure: string | null;
    seconds: number;
    replaySeconds: number | null;
    transactions: number | null;
    segments: number | null;
    tablesCompared: number;
    /** Replayed transactions per second, and that over the primary's commit rate. */
    replayTps: number | null;
    replayOverPrimary: number | null;
  } | null;
  drill: {
    verdict: DrillVerdict["verdict"];
    failure: string | null;
    /** PitrRestoreSeconds: seconds from the drill's start to the restored server answering at T. */
    rtoSeconds: number | null;
    replaySeconds: number | null;
    transactions: number | null;
    seconds: number;
  } | null;
  /** From B's backup command returning (its manifest and message are written) to the chain verdict. */
  manifestToChainSeconds: number | null;
  /** From the same moment to B's verification report. */
  manifestToVerificationSeconds: number;
}

/** What `--chain` writes to `bench/results-chain.json`. */
export interface ChainBenchResults {
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  command: string;
  dataset: { tables: number; tableSize: number };
  load: { tool: string; rate: number; threads: number };
  /** Seconds of load between two snapshots. */
  loadSeconds: number;
  /** NODE_OPTIONS the verifier ran with ("" for none, as its unit runs it today). */
  verifierNodeOptions?: string;
  rounds: ChainRound[];
  notes: string[];
}

/** How the suite runs. */
export interface ChainBenchOptions {
  dir: string;
  size: { tables: number; tableSize: number; imageSizeGiB: number };
  rate: number;
  rounds: number;
  loadSeconds: number;
  /** NODE_OPTIONS for the verifier child (an experiment; its unit sets none). */
  verifierNodeOptions: string;
  command: string;
  say: (message: string) => void;
}

const LOAD_THREADS = 2;
const round2 = (n: number) => Math.round(n * 100) / 100;
const mib = (bytes: number) => round2(bytes / 1024 / 1024);

/** The whole suite; the caller removes the lab (also on failure). */
export async function runChainBench(opts: ChainBenchOptions): Promise<ChainBenchResults> {
  const results: ChainBenchResults = {
    startedAt: new Date().toISOString(),
    finishedAt: "",
    machine: await describeMachine(),
    command: opts.command,
    dataset: { tables: opts.size.tables, tableSize: opts.size.tableSize },
    load: { tool: "sysbench oltp_write_only", rate: opts.rate, threads: LOAD_THREADS },
    loadSeconds: opts.loadSeconds,
    verifierNodeOptions: opts.verifierNodeOptions,
    rounds: [],
    notes: [],
  };
  opts.say(
    `bringing the lab up in ${opts.dir} (archiver on, ${opts.size.tables} × ${opts.size.tableSize} rows)`,
  );
  const lab = await labUp({ dir: opts.dir, ...opts.size, pitr: true });
  const work = join(lab.dir, "bench-chain");
  await mkdir(work, { recursive: true });
  const { cli, problem } = await buildCli(work);
  if (problem !== undefined) results.notes.push(problem);
  await startLoad(lab, { rate: opts.rate, threads: LOAD_THREADS });
  try {
    const configs = await chainConfigs(lab, work);
    opts.say("snapshot A, verified (no chain before it)");
    let previous = await snapshot(lab, cli);
    await verifyOnce(lab, cli, opts.verifierNodeOptions, configs.after);
    for (let i = 1; i <= opts.rounds; i++) {
      const asked = ROTATION[(i - 1) % ROTATION.length]!;
      opts.say(`round ${i}/${opts.rounds}: ${opts.loadSeconds} s of load at ${opts.rate} tx/s`);
      await sleep(opts.loadSeconds * 1000);
      const next = await snapshot(lab, cli);
      opts.say(
        `round ${i}: verify --once over ${next.backupId} (chain from ${previous.backupId}, A ${asked}, drill)`,
      );
      // Another verifier's view: no tree of A kept here (B's own is kept for the next round as ever).
      if (asked === "after" || asked === "alongside") await forgetKept(configs.scratchDir);
      const verified = await verifyOnce(lab, cli, opts.verifierNodeOptions, configs[asked]);
      const measured = roundOf(previous, next, verified);
      if (measured.chain !== null && measured.start !== asked)
        results.notes.push(`round ${i}: A was to come ${asked}, the verifier says ${measured.start ?? "?"}`);
      results.rounds.push(measured);
      opts.say(describeRound(measured));
      previous = next;
    }
  } catch (error) {
    results.notes.push(`the run stopped early: ${(error as Error).message.split("\n")[0]}`);
    opts.say(`failed: ${(error as Error).message}`);
  } finally {
    await stopLoad(lab).catch(() => undefined);
  }
  results.machine.loadAverageAtEnd = loadAverageNow();
  results.finishedAt = new Date().toISOString();
  return results;
}

/** Where A comes from, round after round: the first round's A is the one verified before it, so kept. */
const ROTATION: readonly ChainStartKind[] = ["kept-alongside", "kept", "after", "alongside"];

/**
 * The lab's verifier config per kind of round: `chain.replayAlongside` true or false on the kept tree;
 * `chain.restoreAlongside` false or true for A restored again (its kept tree removed first). Every one keeps
 * B's tree.
 */
async function chainConfigs(
  lab: Lab,
  work: string,
): Promise<Record<ChainStartKind, string> & { scratchDir: string }> {
  const config = JSON.parse(await readFile(lab.verifyConfigPath, "utf8")) as VerifyConfig;
  const write = async (name: string, restoreAlongside: boolean, replayAlongside: boolean) => {
    const path = join(work, name);
    const chain = { ...config.chain, restoreAlongside, replayAlongside, keepVerified: true };
    await writeFile(path, `${JSON.stringify({ ...config, chain }, null, 2)}\n`, { mode: 0o600 });
    return path;
  };
  const after = await write("verify-after.json", false, false);
  return {
    "kept-alongside": await write("verify-replay-alongside.json", false, true),
    kept: after,
    after,
    alongside: await write("verify-alongside.json", true, false),
    scratchDir: config.scratchDir,
  };
}

/** Removes the verifier's kept trees, as if B's message had reached another verifier. */
async function forgetKept(scratchDir: string): Promise<void> {
  const dir = keptDirOf({ scratchDir } as VerifyConfig);
  for (const name of await readdir(dir).catch(() => [] as string[]))
    await rm(join(dir, name), { recursive: true, force: true });
}

interface Snapshot {
  backupId: string;
  /** When the backup command was started and returned (ms). */
  startedAt: number;
  endedAt: number;
  /** The primary's committed transactions (sum of its GTID sequence numbers) when the backup started. */
  primarySeq: number;
}

/** Takes a backup of the replica with the shipped CLI; notes the primary's commit count before it. */
async function snapshot(lab: Lab, cli: string): Promise<Snapshot> {
  const primarySeq = sequenceSum(await primaryGtid(lab));
  const startedAt = Date.now();
  const { result } = await runPipeline("backup", backupCommand(cli, lab.backupConfigPath));
  const backupId = stringAt(result, "backupId");
  if (backupId === undefined)
    throw new Error(`bench: the backup's result has no backupId: ${JSON.stringify(result)}`);
  return { backupId, startedAt, endedAt: Date.now(), primarySeq };
}

/** Transactions in a MariaDB GTID position (`0-1-120,1-1-4`): the sum of its sequence numbers. */
export function sequenceSum(gtid: string): number {
  return gtid
    .split(",")
    .filter((part) => part.trim() !== "")
    .reduce((sum, part) => sum + Number(part.trim().split("-")[2] ?? NaN), 0);
}

/** What one `verify --once` returned, with its memory. */
interface Verified {
  result: {
    outcome?: string;
    backupId?: string;
    report?: VerificationReport;
    chain?: { verdict: ChainVerdict; start?: ChainStartKind } | null;
    drill?: { verdict: DrillVerdict } | null;
  };
  wallSeconds: number;
  memory: VerifierMemory;
}

/**
 * `verify --once --json` in a child, its process tree sampled every 100 ms and summed per name: the
 * verifier's own (node and every helper it runs) apart from the scratch servers and binlog tools.
 */
async function verifyOnce(lab: Lab, cli: string, nodeOptions: string, configPath: string): Promise<Verified> {
  const [command, ...args] = verifyCommand(cli, configPath).split(" ");
  const started = performance.now();
  const env = { ...process.env, NODE_OPTIONS: nodeOptions };
  const child = spawn(command!, args, { cwd: lab.dir, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  // The verifier's last log message, to say which step its memory peaked in.
  let step = "starting";
  child.stdout
    .setEncoding("utf8")
    .on("data", (chunk: string) => (stdout = (stdout + chunk).slice(-1_000_000)));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-64_000);
    step = lastLogMessage(chunk) ?? step;
  });
  const memory = sampleMemory(child.pid ?? -1, () => step);
  const code = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (exit) => resolve(exit ?? 1));
  });
  const wallSeconds = round2((performance.now() - started) / 1000);
  const peaks = await memory.stop();
  const result = lastJsonLine(stdout) as Verified["result"] | undefined;
  if (code !== 0 || result === undefined || result.outcome !== "verified") {
    const tail = stderr.trimEnd().split("\n").slice(-15).join("\n");
    throw new Error(
      `bench: verify --once did not verify (exit ${code}, outcome ${result?.outcome ?? "none"}).\nstderr:\n${tail}`,
    );
  }
  return { result, wallSeconds, memory: peaks };
}

/** The `message` of the last whole JSON log line in a chunk of the CLI's stderr (with its chain or drill). */
function lastLogMessage(chunk: string): string | undefined {
  const lines = chunk.split("\n").filter((l) => l.startsWith("{"));
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const line = JSON.parse(lines[i]!) as { message?: string; chain?: string; drill?: string };
      if (typeof line.message !== "string") continue;
      const where = line.chain ? `chain ${line.chain}` : line.drill ? `drill to ${line.drill}` : undefined;
      return `${line.message.slice(0, 100)}${where ? ` (${where})` : ""}`;
    } catch {
      continue;
    }
  }
  return undefined;
}

function sampleMemory(root: number, step: () => string): { stop(): Promise<VerifierMemory> } {
  const started = performance.now();
  const peak = { verifier: 0, node: 0, server: 0, tool: 0, at: 0, during: "" };
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const byName = await treeRssByName(root);
      let server = 0;
      let tool = 0;
      let total = 0;
      for (const [name, bytes] of byName) {
        total += bytes;
        if (SERVER_NAMES.has(name)) server += bytes;
        else if (BINLOG_TOOL_NAMES.has(name)) tool += bytes;
      }
      if (total > 0) samples++;
      if (total - server - tool > peak.verifier) {
        peak.verifier = total - server - tool;
        peak.at = (performance.now() - started) / 1000;
        peak.during = step();
      }
      peak.node = Math.max(peak.node, byName.get("node") ?? 0);
      peak.server = Math.max(peak.server, server);
      peak.tool = Math.max(peak.tool, tool);
      await sleep(RSS_SAMPLE_MS);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return {
        verifierPeakMiB: mib(peak.verifier),
        nodePeakMiB: mib(peak.node),
        serverPeakMiB: mib(peak.server),
        binlogToolPeakMiB: mib(peak.tool),
        samples,
        peakAtSeconds: round2(peak.at),
        peakDuring: peak.during,
      };
    },
  };
}

/** The round's figures from the two snapshots and B's verification. */
function roundOf(a: Snapshot, b: Snapshot, verified: Verified): ChainRound {
  const { result } = verified;
  const report = result.report;
  if (report === undefined || result.backupId !== b.backupId)
    throw new Error(`bench: verify --once verified ${result.backupId ?? "nothing"}, not ${b.backupId}`);
  const seconds = (b.startedAt - a.startedAt) / 1000;
  const transactions = b.primarySeq - a.primarySeq;
  const tps = transactions / seconds;
  const chain = result.chain?.verdict ?? null;
  const drill = result.drill?.verdict ?? null;
  const replayTps = chain?.replay ? chain.replay.transactions / chain.replay.seconds : null;
  const since = (iso: string) => round2((Date.parse(iso) - b.endedAt) / 1000);
  return {
    from: a.backupId,
    to: b.backupId,
    start: result.chain?.start,
    primary: { transactions, seconds: round2(seconds), tps: round2(tps) },
    verifyWallSeconds: verified.wallSeconds,
    memory: verified.memory,
    verification: {
      seconds: report.timings.restoreSeconds,
      downloadExtractSeconds: report.timings.downloadExtractSeconds,
      recoverySeconds: report.timings.recoverySeconds,
      checksSeconds: report.timings.checksSeconds,
      checksumSeconds: report.timings.checksumSeconds ?? null,
    },
    chain: chain && {
      verdict: chain.verdict,
      failure: chain.failure ? `${chain.failure.kind}: ${chain.failure.detail}` : null,
      seconds: chain.seconds,
      replaySeconds: chain.replay?.seconds ?? null,
      transactions: chain.replay?.transactions ?? null,
      segments: chain.replay?.segments ?? null,
      tablesCompared: chain.tablesCompared,
      replayTps: replayTps === null ? null : round2(replayTps),
      replayOverPrimary: replayTps === null || tps <= 0 ? null : round2(replayTps / tps),
    },
    drill: drill && {
      verdict: drill.verdict,
      failure: drill.failure ? `${drill.failure.kind}: ${drill.failure.detail}` : null,
      rtoSeconds: drill.restore?.secondsToQueryable ?? null,
      replaySeconds: drill.restore?.replaySeconds ?? null,
      transactions: drill.restore?.transactions ?? null,
      seconds: drill.seconds,
    },
    manifestToChainSeconds: chain ? since(chain.verifiedAt) : null,
    manifestToVerificationSeconds: since(report.verifiedAt),
  };
}

function describeRound(r: ChainRound): string {
  return (
    `${r.from} → ${r.to}: B verified in ${r.verification.seconds}s; chain ${r.chain?.verdict ?? "none"} in ${r.chain?.seconds ?? "-"}s ` +
    `(replay ${r.chain?.transactions ?? "-"} tx in ${r.chain?.replaySeconds ?? "-"}s = ${r.chain?.replayOverPrimary ?? "-"}× the primary's ${r.primary.tps} tx/s); ` +
    `drill ${r.drill?.verdict ?? "none"}, RTO ${r.drill?.rtoSeconds ?? "-"}s; manifest → chain verdict ${r.manifestToChainSeconds ?? "-"}s; ` +
    `verifier peak RSS ${r.memory.verifierPeakMiB} MiB (node ${r.memory.nodePeakMiB}, scratch server ${r.memory.serverPeakMiB} apart)`
  );
}
